#!/usr/bin/env python3
"""Cost of differentiating long fluid rollouts (backpropagation through time).

Scenario: a 2D smoke plume in a closed unit box (no-slip walls), buoyancy (0, 1),
no viscosity, MacCormack advection, ``PressureSolve("auto")`` (the fast DCT solver: no
obstacles), ``dt = h`` (CFL ~1 at |u| = 1; the CFL number reached at the end of the
forward run is reported), float32 by default (``--dtype``). The initial density is a
Gaussian blob, the initial velocity a small smooth random field (projected).

Measured, per grid size at ``--steps`` T (default 128², 256², 512² and T = 100):

* forward: plain ``sim.rollout(state, T, checkpoint=False)`` on numpy arrays, no tape;
* gradient: ``fluidgrad.value_and_grad`` of ``mean(density(T)²)`` with respect to the
  initial velocity, with the default checkpointing (``checkpoint=True,
  memory_budget=None``) and without (``checkpoint=False``); the ratio gradient/forward;
* peak memory of the gradient: each configuration runs in a fresh subprocess (this
  script with ``--one CONFIG``), which reports ``ru_maxrss`` after the gradient minus the
  RSS right before it (after imports, setup and a 2-step warm-up that fills the caches);
* snapshots (as chosen by the memory budget), recomputation sweeps, and step
  evaluations per step (counted through ``rollout``'s ``monitor``: 1 = no recomputation).

Then at ``--long-size`` (256²) with ``--long-steps`` T (2,000): the gradient with the
default budget and with 20 snapshots (``--snapshots``), plus the same-snapshot gradient at
T = ``--steps`` for comparison of peak memory; the forward time at the long T is
extrapolated linearly from the forward at T = ``--steps`` (``--long-forward`` measures
it). Times are medians of ``--repeat`` runs on grids up to 256² at T = ``--steps``, else of
one run (the "runs" column).

The T = 10,000, S = 20 target is extrapolated from the long run with the model
``gradient = a·E + b·T`` (a: forward time per step, E: step evaluations of the binomial
schedule, counted at the long T and computed for T = 10,000 by the same recursion as
``fluidgrad.checkpointing``, b: tape + backward time per step, fitted from the long run).
``--direct-10k N`` also runs T = 10,000, S = 20 directly on an N² grid (slow).

Targets (from the issue): gradient <= 2.5x forward without checkpointing; checkpointed
peak memory independent of T within 2x (T = steps vs long steps, same snapshots);
gradient <= 5x forward at T = 10,000 with 20 snapshots.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import current_rss_kib  # noqa: E402  (the same RSS reading as the other benchmarks)

DEFAULT_SIZES = [128, 256, 512]
QUICK_SIZES = [16, 32]
T_TARGET = 10_000  # the long-rollout target


# ---------------------------------------------------------------------------
# one configuration (runs in a fresh subprocess)

def build(n, dtype):
    import numpy

    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.ops import PressureSolve
    from fluidgrad.simulation import Physics, Simulation

    grid = Grid((n, n), (1.0, 1.0))
    domain = Domain(grid, Boundaries.closed(2))
    sim = Simulation(domain, grid.dx / 1.0, Physics(viscosity=0.0, buoyancy=(0.0, 1.0)),
                     advection="maccormack", pressure=PressureSolve("auto"), dtype=dtype)
    x, y = grid.mesh()
    density = numpy.exp(-((x - 0.5) ** 2 + (y - 0.2) ** 2) / (2 * 0.08 ** 2))
    rng = numpy.random.default_rng(0)
    velocity = [0.1 * smooth(rng, s) for s in domain.velocity_shapes]
    return sim, sim.initial_state(velocity=velocity, density=density)


def smooth(rng, shape, modes=4):
    """A sum of a few random low-frequency Fourier modes, scaled to max|f| = 1."""
    import numpy
    axes = numpy.meshgrid(*[numpy.linspace(0, 1, n) for n in shape], indexing="ij")
    f = numpy.zeros(shape)
    for _ in range(modes):
        term = rng.standard_normal()
        for x in axes:
            term = term * numpy.cos(2 * numpy.pi * (rng.integers(1, 4) * x + rng.random()))
        f += term
    return f / numpy.abs(f).max()


def run_one(cfg):
    """Time (and for gradients, peak memory of) one configuration; returns a dict."""
    import numpy

    import fluidgrad as fg
    import fluidgrad.numpy as fnp
    from fluidgrad.checkpointing import snapshots_for_budget, sweeps_needed

    n, steps, repeat = cfg["n"], cfg["steps"], cfg["repeat"]
    sim, s0 = build(n, cfg["dtype"])
    out = dict(cfg, state_bytes=sim.state_bytes())

    if cfg["kind"] == "forward":
        sim.rollout(s0, 2, checkpoint=False)  # warm-up: fills the domain's caches
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            final = sim.rollout(s0, steps, checkpoint=False)
            times.append(time.perf_counter() - t0)
        umax = max(float(numpy.abs(u).max()) for u in final.velocity)
        out.update(time_s=statistics.median(times), times_s=times,
                   state_dtype=str(final.density.dtype), cfl_end=umax * sim.dt / sim.domain.dx)
        return out

    checkpoint, snapshots = cfg["checkpoint"], cfg.get("snapshots")
    evals = [0]

    def count(k, state):
        evals[0] += 1

    def loss(u, T):
        final = sim.rollout(s0.replace(velocity=u), T, checkpoint=checkpoint, snapshots=snapshots,
                            memory_budget=None, monitor=count)
        return fnp.mean(final.density ** 2)

    grad_fn = fg.value_and_grad(loss)
    grad_fn(s0.velocity, 2)  # warm-up (caches, tape machinery)
    gc.collect()
    base = current_rss_kib()
    times = []
    for _ in range(repeat):
        evals[0] = 0
        t0 = time.perf_counter()
        value, g = grad_fn(s0.velocity, steps)
        times.append(time.perf_counter() - t0)
        norm = float(numpy.sqrt(sum(float(numpy.sum(numpy.asarray(a, dtype=float) ** 2)) for a in g)))
        del g
        gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    used = snapshots
    if checkpoint and snapshots is None:
        used = snapshots_for_budget(None, sim.state_bytes(), steps)
    out.update(time_s=statistics.median(times), times_s=times, peak_mib=(peak - base) / 1024,
               base_rss_mib=base / 1024, loss=float(value), grad_norm=norm,
               snapshots_used=used if checkpoint else None,
               sweeps=sweeps_needed(steps, used) if (checkpoint and used) else 0,
               evals_per_step=evals[0] / steps)
    return out


# ---------------------------------------------------------------------------
# the schedule's step evaluations, mirroring fluidgrad.checkpointing._reverse

def schedule_evaluations(steps, snapshots):
    """Step evaluations of a checkpointed gradient: forward pass plus recomputations
    (each step's final taped evaluation included)."""
    from fluidgrad.checkpointing import beta, sweeps_needed

    @functools.lru_cache(maxsize=None)
    def count(length, s, t):
        if length <= 1:
            return length
        split = max(1, length - beta(s - 1, t))
        # the segment runs once untaped, then is re-run (taped) by its VJP
        return split + count(split, s, t - 1) + count(length - split, s - 1, t)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * steps + 1000))
    return count(steps, snapshots, sweeps_needed(steps, snapshots))


# ---------------------------------------------------------------------------
# driver

def spawn(cfg):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", json.dumps(cfg)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(cfg, failed=f"exit {proc.returncode}: {err}", wall_s=wall)
    return dict(json.loads(lines[-1]), wall_s=wall)


def label(r):
    if r["kind"] == "forward":
        return "forward (no tape)"
    if not r["checkpoint"]:
        return "grad, no checkpoint"
    return "grad, S=%d" % r["snapshots"] if r.get("snapshots") else "grad, default budget"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N",
                   help=f"N x N grids (default: {' '.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--steps", type=int, default=None, help="T of the size sweep (default 100)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=3, help="runs (median) up to 256² at T=steps")
    p.add_argument("--long-size", type=int, default=None, help="grid of the long rollout (default 256)")
    p.add_argument("--long-steps", type=int, default=None, help="T of the long rollout (default 2000)")
    p.add_argument("--snapshots", type=int, default=20, help="fixed snapshot count S of the long runs")
    p.add_argument("--long-forward", action="store_true",
                   help="measure the forward at the long T instead of extrapolating it")
    p.add_argument("--direct-10k", type=int, default=None, metavar="N",
                   help=f"also run T={T_TARGET}, S=snapshots directly on an N x N grid (slow)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 16² and 32², T=10, long rollout 32² x 100 steps, 1 run each")
    args = p.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return None

    if args.quick:
        sizes, steps = args.sizes or QUICK_SIZES, args.steps or 10
        long_size, long_steps, repeat = args.long_size or 32, args.long_steps or 100, 1
    else:
        sizes, steps = args.sizes or DEFAULT_SIZES, args.steps or 100
        long_size, long_steps, repeat = args.long_size or 256, args.long_steps or 2000, args.repeat
    S, dt = args.snapshots, args.dtype
    start = time.perf_counter()

    def cfg(kind, n, T, reps, checkpoint=True, snapshots=None):
        return dict(kind=kind, n=n, steps=T, repeat=reps, dtype=dt, checkpoint=checkpoint,
                    snapshots=snapshots)

    results = []
    for n in sizes:
        reps = repeat if n <= 256 else 1
        for c in (cfg("forward", n, steps, reps), cfg("grad", n, steps, reps),
                  cfg("grad", n, steps, reps, checkpoint=False)):
            results.append(spawn(c))
            print(f"  ... {n}² T={c['steps']} {label(c)}: {results[-1]['wall_s']:.0f} s",
                  file=sys.stderr, flush=True)

    long_cfgs = [cfg("grad", long_size, steps, 1, snapshots=S), cfg("grad", long_size, long_steps, 1),
                 cfg("grad", long_size, long_steps, 1, snapshots=S)]
    if long_size not in sizes:
        long_cfgs.insert(0, cfg("forward", long_size, steps, repeat))
    if args.long_forward:
        long_cfgs.insert(0, cfg("forward", long_size, long_steps, 1))
    if args.direct_10k:
        long_cfgs += [cfg("forward", args.direct_10k, T_TARGET, 1),
                      cfg("grad", args.direct_10k, T_TARGET, 1, snapshots=S)]
    for c in long_cfgs:
        results.append(spawn(c))
        print(f"  ... {c['n']}² T={c['steps']} {label(c)}: {results[-1]['wall_s']:.0f} s",
              file=sys.stderr, flush=True)
    total = time.perf_counter() - start

    def find(kind, n, T, checkpoint=True, snapshots=None):
        for r in results:
            if (r["kind"], r["n"], r["steps"]) == (kind, n, T) and "failed" not in r and (
                    kind == "forward" or (r["checkpoint"], r.get("snapshots")) == (checkpoint, snapshots)):
                return r
        return None

    def forward_time(n, T):
        """(seconds, how): measured at T, else scaled linearly from T=steps."""
        r = find("forward", n, T)
        if r:
            return r["time_s"], "measured"
        r = find("forward", n, steps)
        return (r["time_s"] * T / steps, f"{T // steps}x T={steps} fwd") if r else (None, "n/a")

    # -- table ---------------------------------------------------------------------
    first = next((r for r in results if "state_dtype" in r), {})
    print(f"2D smoke plume, closed box, buoyancy (0, 1), MacCormack, PressureSolve('auto'), "
          f"dt = h, {dt} requested; loss = mean(density(T)²), d/d(initial velocity)")
    if first.get("state_dtype") and first["state_dtype"] != dt:
        print(f"  NOTE: the state comes out of a step as {first['state_dtype']} (the simulator "
              f"promotes), so the work and the memory are those of {first['state_dtype']}")
    head = (f"  {'grid':>5} {'T':>6}  {'configuration':<22} {'runs':>4} {'time s':>9} {'/fwd':>6} "
            f"{'peak MiB':>9} {'snap':>5} {'sweeps':>6} {'evals/T':>7}  note")
    print(head)
    for r in results:
        name = label(r)
        if "failed" in r:
            print(f"  {r['n']:>4}² {r['steps']:>6}  {name:<22}  FAILED {r['failed']}")
            continue
        fwd, how = forward_time(r["n"], r["steps"])
        ratio = r["time_s"] / fwd if fwd else float("nan")
        r["forward_s"], r["forward_how"], r["ratio"] = fwd, how, ratio
        note = []
        if r["kind"] == "forward":
            note.append(f"CFL at end {r['cfl_end']:.2f}")
            peak = snap = sweeps = evals = ""
        else:
            peak = f"{r['peak_mib']:9.0f}"
            snap = "-" if not r["checkpoint"] else (r["snapshots_used"] or "none")
            sweeps, evals = r["sweeps"], f"{r['evals_per_step']:.2f}"
            if how != "measured":
                note.append(f"fwd = {how}")
            if not r["checkpoint"]:
                note.append(f"target /fwd <= 2.5: {'ok' if ratio <= 2.5 else 'MISSED'}")
            elif r["snapshots_used"] is None:
                note.append("tape fits the budget: not checkpointed")
        print(f"  {r['n']:>4}² {r['steps']:>6}  {name:<22} {len(r['times_s']):>4} {r['time_s']:9.2f} "
              f"{ratio:6.2f} {peak:>9} {snap!s:>5} {sweeps!s:>6} {evals:>7}  {'; '.join(note)}")

    # -- targets ---------------------------------------------------------------------
    targets = {}
    plain = [r for r in results if r["kind"] == "grad" and not r.get("checkpoint") and "ratio" in r]
    if plain:
        worst = max(plain, key=lambda r: r["ratio"])
        targets["grad_over_forward_no_checkpoint_max"] = worst["ratio"]
        print(f"target gradient <= 2.5x forward (no checkpointing): worst {worst['ratio']:.2f}x at "
              f"{worst['n']}² -> {'ok' if worst['ratio'] <= 2.5 else 'MISSED'}")
    short, long_ = find("grad", long_size, steps, snapshots=S), find("grad", long_size, long_steps, snapshots=S)
    if short and long_:
        growth = long_["peak_mib"] / max(short["peak_mib"], 1e-9)
        targets["peak_memory_growth_S"] = growth
        print(f"target checkpointed peak memory independent of T within 2x ({long_size}², S={S}): "
              f"T={steps} {short['peak_mib']:.0f} MiB, T={long_steps} {long_['peak_mib']:.0f} MiB, "
              f"x{growth:.2f} -> {'ok' if growth <= 2 else 'MISSED'}")
    from fluidgrad.checkpointing import DEFAULT_MEMORY_BUDGET
    ds, dl = find("grad", long_size, steps), find("grad", long_size, long_steps)
    if ds and dl:
        targets["peak_memory_growth_default"] = dl["peak_mib"] / max(ds["peak_mib"], 1e-9)
        print(f"  (default budget, {long_size}²: T={steps} {ds['peak_mib']:.0f} MiB "
              f"[{ds['snapshots_used'] or 'no'} snapshots], T={long_steps} {dl['peak_mib']:.0f} MiB "
              f"[{dl['snapshots_used'] or 'no'} snapshots]; the budget is "
              f"{DEFAULT_MEMORY_BUDGET / 2 ** 20:.0f} MiB of "
              f"{ds['state_bytes'] / 2 ** 20:.2f}-MiB states, counted at {dt} size)")
    if long_ and long_.get("forward_s"):
        a = long_["forward_s"] / long_steps
        E = schedule_evaluations(long_steps, S)
        counted = long_["evals_per_step"] * long_steps
        b = (long_["time_s"] - a * counted) / long_steps
        E10 = schedule_evaluations(T_TARGET, S)
        ratio10 = (a * E10 + b * T_TARGET) / (a * T_TARGET)
        targets.update(grad_over_forward_long=long_["ratio"], grad_over_forward_10k_extrapolated=ratio10)
        print(f"target total time <= 5x forward at T={T_TARGET}, S={S}: measured at {long_size}², "
              f"T={long_steps}: {long_['ratio']:.2f}x ({long_['sweeps']} sweeps, "
              f"{long_['evals_per_step']:.2f} evals/step"
              f"{'' if E == round(counted) else f'; schedule model says {E / long_steps:.2f}'}); "
              f"extrapolated to T={T_TARGET} (model a*E + b*T, {E10 / T_TARGET:.2f} evals/step, "
              f"tape+backward = {b / a:.2f} forward steps): {ratio10:.2f}x -> "
              f"{'ok' if ratio10 <= 5 else 'MISSED'}")
    if args.direct_10k:
        d = find("grad", args.direct_10k, T_TARGET, snapshots=S)
        if d:
            targets["grad_over_forward_10k_direct"] = d["ratio"]
            print(f"  direct at {args.direct_10k}², T={T_TARGET}, S={S}: {d['ratio']:.2f}x "
                  f"({d['sweeps']} sweeps) -> {'ok' if d['ratio'] <= 5 else 'MISSED'}")
    print(f"total {total:.0f} s")
    print(json.dumps({"bench": "bptt", "dtype": dt, "sizes": sizes, "steps": steps,
                      "long_size": long_size, "long_steps": long_steps, "snapshots": S,
                      "targets": targets, "total_s": total, "results": results}))
    return results


if __name__ == "__main__":
    main()
