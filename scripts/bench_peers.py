#!/usr/bin/env python3
"""fluidgrad against JAX, PyTorch and HIPS autograd on one reference task.

Reference task (the same math in every framework, ``--dtype`` float32 by default):
a periodic 2-D box [0, 1]² of N×N cells, h = 1/N, MAC grid (u on the x-faces, face i at
x = i h and y at cell centres; v on the y-faces; density at cell centres), T steps of
dt = 0.5 h. Each step, in fluidgrad's order (``Simulation.step`` with no forces):

1. semi-Lagrangian advection (Euler backtrace, bilinear interpolation, periodic wrap) of
   the density and of both velocity components, all with the velocity at the start of
   the step: at each lattice point x (cell centres for the density, its own faces for a
   component) sample U(x) bilinearly (at the faces of u: u itself and the average of the
   4 nearest v; at cell centres: the average of the two faces), depart from
   x_d = x - dt U(x), take the bilinear interpolant of the field at x_d;
2. projection: b = div u - mean(div u) with div = (u[i+1]-u[i] + v[j+1]-v[j]) / h, then
   10 damped-Jacobi sweeps (ω = 2/3, from p = 0, 5-point periodic Laplacian) on
   ∇²p = b, p -= mean(p) (exactly ``fluidgrad.ops.linear_solvers.solve_jacobi``), then
   u -= (p[i] - p[i-1]) / h, v likewise.

Loss = mean((density_T - target)²); its gradient is taken with respect to the initial
velocity (u, v). Initial density: a Gaussian (centre (0.5, 0.4), σ = 0.1); target: the
same Gaussian at (0.5, 0.6); initial velocity: the discrete curl of the stream function
ψ = 0.05 sin(2πx) sin(2πy) at the cell corners (divergence-free on the MAC grid, |u| ≤ 0.32).

Frameworks, each in its own subprocess (this script with ``--one FRAMEWORK``):

* fluidgrad: ``Simulation(..., advection="semi_lagrangian",
  pressure=PressureSolve("jacobi", iterations=10))``, ``fluidgrad.value_and_grad`` of the
  loss through ``sim.rollout(..., checkpoint=False)`` (the whole tape, as the peers keep;
  ``--checkpoint`` uses rollout's default memory-budgeted checkpointing instead);
* JAX: ``jax.jit(jax.value_and_grad(loss))``, the time loop a ``jax.lax.scan``;
* PyTorch (CPU): ``torch.autograd.grad``;
* autograd: ``autograd.value_and_grad``.

The peers are written plainly (array operations, no Python loops over cells).
Reported per framework and N: seconds per value_and_grad (median of ``--repeat`` runs
after one warm-up call, which for JAX includes compilation), the ratio to fluidgrad, the
peak memory (high-water RSS minus the RSS after imports and setup, before the first call),
the first-call (compile) time, the loss and the relative L2 difference of the gradient
from fluidgrad's. Frameworks that are not installed are listed as such.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

FRAMEWORKS = ("fluidgrad", "jax", "torch", "autograd")
MODULES = {"fluidgrad": "fluidgrad", "jax": "jax", "torch": "torch", "autograd": "autograd"}
ITERATIONS = 10      # Jacobi sweeps per projection
OMEGA = 2.0 / 3.0    # solve_jacobi's damping
CFL = 0.5            # dt = CFL h


# ---------------------------------------------------------------------------
# the task's data (numpy, shared by all frameworks)

def setup(n, dtype):
    """Initial velocity (u, v), initial density and target as numpy arrays of ``dtype``."""
    import numpy as np
    h = 1.0 / n
    faces = np.arange(n) * h
    centres = (np.arange(n) + 0.5) * h

    def psi(x, y):
        return 0.05 * np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y)

    xf, yf = np.meshgrid(faces, faces, indexing="ij")            # cell corners
    corner = psi(xf, yf)
    u = (np.roll(corner, -1, axis=1) - corner) / h               # dψ/dy on x-faces
    v = -(np.roll(corner, -1, axis=0) - corner) / h              # -dψ/dx on y-faces
    xc, yc = np.meshgrid(centres, centres, indexing="ij")

    def blob(cx, cy, sigma=0.1):
        return np.exp(-((xc - cx) ** 2 + (yc - cy) ** 2) / (2 * sigma ** 2))

    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    return cast(u), cast(v), cast(blob(0.5, 0.4)), cast(blob(0.5, 0.6))


def points(n, dtype):
    """Coordinates (ij meshes) of the u-faces, the v-faces and the cell centres."""
    import numpy as np
    h = 1.0 / n
    f, c = np.arange(n) * h, (np.arange(n) + 0.5) * h
    mesh = lambda a, b: tuple(np.asarray(m, dtype=dtype) for m in np.meshgrid(a, b, indexing="ij"))
    return mesh(f, c), mesh(c, f), mesh(c, c)


# ---------------------------------------------------------------------------
# the peers: one step written once against a small adapter per framework

def python_loop(count, body, init):
    x = init
    for k in range(count):
        x = body(k, x)
    return x


class Ops:
    """What differs between jax.numpy, torch and autograd.numpy: ``roll``, ``mean``,
    splitting a coordinate into a (periodic) integer index and a fraction, gathering, and
    the loop over the Jacobi sweeps (``jax.lax.fori_loop`` in JAX)."""

    def __init__(self, roll, mean, split, gather, loop=python_loop):
        self.roll, self.mean, self.split, self.gather, self.loop = roll, mean, split, gather, loop


def make_loss(ops, n, steps, consts):
    """``loss(u, v)`` of the reference task; ``consts``: (density0, target, face/centre
    coordinates) already converted to the framework's arrays."""
    rho0, target, (ux, uy), (vx, vy), (cx, cy) = consts
    h = 1.0 / n
    dt = CFL * h
    inv_diag = 1.0 / (-4.0 / (h * h))
    roll = ops.roll

    def interp(f, ox, oy, x, y):
        """Bilinear periodic interpolant of ``f`` (sample (i, j) at ((i+ox)h, (j+oy)h))."""
        i0, tx = ops.split(x / h - ox, n)
        j0, ty = ops.split(y / h - oy, n)
        i1, j1 = (i0 + 1) % n, (j0 + 1) % n
        g = ops.gather
        return ((1 - tx) * (1 - ty) * g(f, i0, j0) + (1 - tx) * ty * g(f, i0, j1)
                + tx * (1 - ty) * g(f, i1, j0) + tx * ty * g(f, i1, j1))

    def advect(u, v, rho):
        # velocity at the u-faces, the v-faces and the cell centres
        v_at_u = 0.25 * (v + roll(v, 1, 0) + roll(v, -1, 1) + roll(roll(v, 1, 0), -1, 1))
        u_at_v = 0.25 * (u + roll(u, -1, 0) + roll(u, 1, 1) + roll(roll(u, -1, 0), 1, 1))
        u_c = 0.5 * (u + roll(u, -1, 0))
        v_c = 0.5 * (v + roll(v, -1, 1))
        rho = interp(rho, 0.5, 0.5, cx - dt * u_c, cy - dt * v_c)
        u_new = interp(u, 0.0, 0.5, ux - dt * u, uy - dt * v_at_u)
        v_new = interp(v, 0.5, 0.0, vx - dt * u_at_v, vy - dt * v)
        return u_new, v_new, rho

    def project(u, v):
        div = (roll(u, -1, 0) - u + roll(v, -1, 1) - v) / h
        b = div - ops.mean(div)

        def sweep(_, p):
            lap = (roll(p, 1, 0) + roll(p, -1, 0) + roll(p, 1, 1) + roll(p, -1, 1) - 4 * p) / (h * h)
            return p + OMEGA * inv_diag * (b - lap)

        p = ops.loop(ITERATIONS - 1, sweep, OMEGA * inv_diag * b)
        p = p - ops.mean(p)
        return u - (p - roll(p, 1, 0)) / h, v - (p - roll(p, 1, 1)) / h

    def step(u, v, rho):
        u, v, rho = advect(u, v, rho)
        u, v = project(u, v)
        return u, v, rho

    def loss(u, v):
        rho = rho0
        for _ in range(steps):
            u, v, rho = step(u, v, rho)
        return ops.mean((rho - target) ** 2)

    return loss, step


def build_jax(n, steps, dtype, data):
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def split(s, n):
        f = jnp.floor(s)
        return f.astype(jnp.int32) % n, s - f

    # the Jacobi sweeps in a fori_loop: unrolled, XLA:CPU fuses the chain of rolls and
    # the backward pass of the projection becomes ~70x slower than its forward
    ops = Ops(lambda x, k, a: jnp.roll(x, k, axis=a), jnp.mean, split, lambda f, i, j: f[i, j],
              loop=lambda count, body, init: jax.lax.fori_loop(0, count, body, init))
    u, v, rho0, target = (jnp.asarray(a) for a in data)
    consts = (rho0, target, *[tuple(jnp.asarray(c) for c in p) for p in points(n, dtype)])
    _, step = make_loss(ops, n, steps, consts)

    def loss(u, v):
        def body(carry, _):
            return step(*carry), None
        (_, _, rho), _ = jax.lax.scan(body, (u, v, rho0), None, length=steps)
        return jnp.mean((rho - target) ** 2)

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def call():
        value, grads = fn(u, v)
        jax.block_until_ready((value, grads))
        return value, grads
    return call, jax.__version__


def build_torch(n, steps, dtype, data, threads=0):
    import torch
    if threads:
        torch.set_num_threads(threads)

    def split(s, n):
        f = torch.floor(s.detach())
        return f.long() % n, s - f

    ops = Ops(lambda x, k, a: torch.roll(x, k, dims=a), torch.mean, split, lambda f, i, j: f[i, j])
    u0, v0, rho0, target = (torch.from_numpy(a) for a in data)
    consts = (rho0, target, *[tuple(torch.from_numpy(c) for c in p) for p in points(n, dtype)])
    loss, _ = make_loss(ops, n, steps, consts)

    def call():
        u = u0.clone().requires_grad_(True)
        v = v0.clone().requires_grad_(True)
        value = loss(u, v)
        grads = torch.autograd.grad(value, (u, v))
        return value.detach(), grads
    return call, torch.__version__


def build_autograd(n, steps, dtype, data):
    import autograd
    import autograd.numpy as anp
    import numpy as np
    from autograd.tracer import getval

    def split(s, n):
        f = np.floor(getval(s))
        return f.astype(np.int64) % n, s - f

    ops = Ops(lambda x, k, a: anp.roll(x, k, axis=a), anp.mean, split, lambda f, i, j: f[i, j])
    u, v, rho0, target = data
    loss, _ = make_loss(ops, n, steps, (rho0, target, *points(n, dtype)))
    fn = autograd.value_and_grad(lambda uv: loss(*uv))

    def call():
        return fn((u, v))
    try:
        from importlib.metadata import version
        ver = version("autograd")
    except Exception:  # pragma: no cover
        ver = "?"
    return call, ver


def build_fluidgrad(n, steps, dtype, data, checkpoint=False):
    import fluidgrad as fg
    import fluidgrad.numpy as fnp
    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.ops.pressure import PressureSolve
    from fluidgrad.simulation import Physics, Simulation

    domain = Domain(Grid((n, n), (1.0, 1.0)), Boundaries.periodic(2))
    sim = Simulation(domain, CFL / n, Physics(), advection="semi_lagrangian",
                     pressure=PressureSolve("jacobi", iterations=ITERATIONS), dtype=dtype)
    u, v, rho0, target = data
    state = sim.zeros_state().replace(density=rho0)

    def loss(velocity):
        final = sim.rollout(state.replace(velocity=velocity), steps, checkpoint=checkpoint)
        return fnp.mean((final.density - target) ** 2)

    fn = fg.value_and_grad(loss)

    def call():
        return fn((u, v))
    return call, fg.__version__


BUILDERS = {"fluidgrad": build_fluidgrad, "jax": build_jax, "torch": build_torch,
            "autograd": build_autograd}


# ---------------------------------------------------------------------------
# one framework (runs in a fresh subprocess)

def current_rss_kib() -> int:
    """Resident set size now (KiB), from /proc; falls back to the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def high_water_kib() -> int:
    """Peak resident set size of this process image (KiB): VmHWM from /proc (ru_maxrss
    would include the parent's memory at the time of the fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def to_numpy(x):
    import numpy as np
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "_fg_value"):
        x = x._fg_value
    return np.asarray(x)


def run_one(cfg):
    import numpy as np
    name, n, steps, dtype = cfg["framework"], cfg["n"], cfg["steps"], cfg["dtype"]
    data = setup(n, dtype)
    kwargs = {}
    if name == "fluidgrad":
        kwargs["checkpoint"] = cfg.get("checkpoint", False)
    if name == "torch":
        kwargs["threads"] = cfg.get("threads", 0)
    call, version = BUILDERS[name](n, steps, dtype, data, **kwargs)
    base = current_rss_kib()

    t0 = time.perf_counter()
    value, grads = call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(cfg["repeat"]):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    peak = high_water_kib()

    grad_dtype = str(to_numpy(grads[0]).dtype)
    grads = [to_numpy(g).astype(np.float64) for g in grads]
    if cfg.get("grad_file"):
        np.savez(cfg["grad_file"], u=grads[0], v=grads[1])
    return dict(cfg, version=version, loss=float(to_numpy(value)),
                grad_norm=float(np.sqrt(sum((g ** 2).sum() for g in grads))),
                grad_dtype=grad_dtype, first_call_s=first, times_s=times,
                median_s=statistics.median(times), peak_rss_mb=(peak - base) / 1024,
                base_rss_mb=base / 1024)


# ---------------------------------------------------------------------------
# driver

def installed(name) -> bool:
    return importlib.util.find_spec(MODULES[name]) is not None


def thread_env(threads):
    """The environment of a subprocess limited to ``threads`` threads (0: unchanged)."""
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1").strip()
    return env


def spawn(cfg, timeout):
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", json.dumps(cfg)],
                              capture_output=True, text=True, timeout=timeout,
                              env=thread_env(cfg.get("threads", 0)))
    except subprocess.TimeoutExpired:
        return dict(cfg, failed=f"timeout after {timeout} s", wall_s=time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        lines = proc.stderr.strip().splitlines()
        errors = [l for l in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", l)]
        err = (errors or lines or ["no output"])[-1]
        return dict(cfg, failed=f"exit {proc.returncode}: {err}", wall_s=wall)
    return dict(json.loads(lines[-1]), wall_s=wall)


def grad_error(r, ref):
    """Relative L2 difference of ``r``'s gradient from ``ref``'s (both saved as .npz)."""
    import numpy as np
    try:
        a, b = np.load(r["grad_file"]), np.load(ref["grad_file"])
    except (KeyError, OSError):
        return None
    num = sum(((a[k] - b[k]) ** 2).sum() for k in ("u", "v"))
    den = sum((b[k] ** 2).sum() for k in ("u", "v"))
    return float(np.sqrt(num / den)) if den > 0 else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[128], help="grid sizes N (N×N cells)")
    p.add_argument("--steps", type=int, default=100, help="time steps T")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=5, help="timed runs after the warm-up (median)")
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--checkpoint", action="store_true",
                   help="fluidgrad: rollout's default checkpointing instead of the whole tape")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per framework (torch, XLA, BLAS); 0: each framework's default")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    p.add_argument("--quick", action="store_true", help="N=32, T=10, repeat 2")
    p.add_argument("--one", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.quick:
        args.n, args.steps, args.repeat = [32], 10, 2

    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for n in args.n:
            for name in args.frameworks:
                cfg = dict(framework=name, n=n, steps=args.steps, dtype=args.dtype,
                           repeat=args.repeat, checkpoint=args.checkpoint, threads=args.threads,
                           grad_file=os.path.join(tmp, f"{name}-{n}.npz"))
                if not installed(name):
                    results.append(dict(cfg, status="not installed"))
                    continue
                r = spawn(cfg, args.timeout)
                r["status"] = "failed" if "failed" in r else "ok"
                results.append(r)
        for n in args.n:
            ref = next((r for r in results if r["n"] == n and r["framework"] == "fluidgrad"
                        and r["status"] == "ok"), None)
            for r in results:
                if r["n"] != n or r["status"] != "ok" or ref is None:
                    continue
                r["ratio_to_fluidgrad"] = r["median_s"] / ref["median_s"]
                r["loss_rel_diff"] = abs(r["loss"] - ref["loss"]) / abs(ref["loss"])
                r["grad_rel_diff"] = grad_error(r, ref)
    total = time.perf_counter() - start
    for r in results:
        r.pop("grad_file", None)

    print(f"reference task: periodic {'/'.join(f'{n}²' for n in args.n)}, T = {args.steps}, "
          f"dt = {CFL} h, {args.dtype}, semi-Lagrangian + {ITERATIONS} Jacobi sweeps; "
          f"value_and_grad w.r.t. the initial velocity; median of {args.repeat}; "
          f"{args.threads or 'default'} thread(s), {os.cpu_count()} CPUs")
    head = (f"{'N':>5}  {'framework':<10} {'s / v&g':>9} {'ratio':>7} {'peak MB':>9} "
            f"{'first s':>8} {'loss':>13} {'loss rel':>9} {'grad rel':>9}")
    print(head)
    print("-" * len(head))
    fmt = lambda x, spec: "-" if x is None else format(x, spec)
    for r in results:
        if r["status"] != "ok":
            why = r["status"] if r["status"] != "failed" else f"failed ({r['failed']})"
            print(f"{r['n']:>5}  {r['framework']:<10} {why}")
            continue
        print(f"{r['n']:>5}  {r['framework']:<10} {r['median_s']:9.3f} "
              f"{fmt(r.get('ratio_to_fluidgrad'), '7.2f')} {r['peak_rss_mb']:9.1f} "
              f"{r['first_call_s']:8.2f} {r['loss']:13.7e} {fmt(r.get('loss_rel_diff'), '9.1e')} "
              f"{fmt(r.get('grad_rel_diff'), '9.1e')}")
    print(f"total {total:.1f} s")
    print(json.dumps({"bench": "peers", "steps": args.steps, "dtype": args.dtype,
                      "sizes": args.n, "repeat": args.repeat, "checkpoint": args.checkpoint,
                      "threads": args.threads, "cpus": os.cpu_count(), "total_s": total, "results": results}))


if __name__ == "__main__":
    main()
