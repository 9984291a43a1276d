#!/usr/bin/env python3
"""fluidgrad's own CPU costs on the reference task of ``bench_peers.py``.

Reference task: periodic N×N box, T steps of semi-Lagrangian advection (density and
velocity) + projection with 10 Jacobi sweeps, loss = mean((density_T - target)²),
gradient with respect to the initial velocity (see ``bench_peers.py``). Per N:

* forward: ``sim.rollout`` without a tape; gradient: ``fluidgrad.value_and_grad`` through
  the whole tape (``checkpoint=False``, as the peers keep); their ratio (target ≤ 2.5);
* time per step per cell (ns) of the gradient, and its ratio to the smallest N ≥ 128 in
  the run (target: within 20 % from 128² to 1024², i.e. linear in the number of cells);
* tape and Python overhead per step: the gradient's wall time minus the time spent inside
  the compiled kernels (every numba dispatcher of the ``fluidgrad.ops.fused_*`` modules wrapped by a
  timer), per step and as a share of the step (target < 5 % at N = 128);
* peak memory of the gradient with the default checkpointing (``checkpoint=True``, the
  default 192 MiB budget), in a fresh subprocess: its high-water RSS minus the RSS before the
  first call (target ≤ 300 MB at N = 512).

Times are medians of ``--repeat`` runs after a warm-up. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_peers  # noqa: E402  (the task's data and the memory helpers)


def build(n, steps, dtype, checkpoint):
    """``(forward(), value_and_grad())`` of the reference task."""
    import fluidgrad as fg
    import fluidgrad.numpy as fnp
    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.ops.pressure import PressureSolve
    from fluidgrad.simulation import Physics, Simulation

    u, v, rho0, target = bench_peers.setup(n, dtype)
    domain = Domain(Grid((n, n), (1.0, 1.0)), Boundaries.periodic(2))
    sim = Simulation(domain, bench_peers.CFL / n, Physics(), advection="semi_lagrangian",
                     pressure=PressureSolve("jacobi", iterations=bench_peers.ITERATIONS), dtype=dtype)
    state = sim.zeros_state().replace(density=rho0)

    def loss(velocity):
        final = sim.rollout(state.replace(velocity=velocity), steps, checkpoint=checkpoint)
        return fnp.mean((final.density - target) ** 2)

    value_and_grad = fg.value_and_grad(loss)
    return (lambda: loss((u, v))), (lambda: value_and_grad((u, v)))


def median_time(fun, repeat):
    fun()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fun()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class KernelTimer:
    """Wraps every compiled kernel of the fused modules (both forms of a twin) to add up
    its wall time."""

    MODULES = ("fused_advection_2d", "fused_advection_3d", "fused_padding", "fused_poisson", "fused_projection")

    def __init__(self):
        import importlib
        self.total, self.saved, self.by_kernel = 0.0, [], {}
        for module_name in self.MODULES:
            module = importlib.import_module("fluidgrad.ops." + module_name)
            for name in dir(module):
                obj = getattr(module, name)
                if name.startswith("_"):
                    continue
                if type(obj).__name__ == "CPUDispatcher":
                    self._wrap(module, name, obj)
                elif type(obj).__name__ == "Twin":
                    for form in ("serial", "parallel"):
                        self._wrap(obj, form, getattr(obj, form))

    def _wrap(self, owner, name, kernel):
        self.saved.append((owner, name, kernel))
        setattr(owner, name, self._timed(kernel))

    def _timed(self, kernel):
        name = kernel.py_func.__name__

        def call(*args):
            t0 = time.perf_counter()
            try:
                return kernel(*args)
            finally:
                elapsed = time.perf_counter() - t0
                self.total += elapsed
                self.by_kernel[name] = self.by_kernel.get(name, 0.0) + elapsed
        return call

    def restore(self):
        for owner, name, obj in self.saved:
            setattr(owner, name, obj)


def measure(n, steps, dtype, repeat):
    forward, grad = build(n, steps, dtype, checkpoint=False)
    fwd = median_time(forward, repeat)
    total = median_time(grad, repeat)
    timer = KernelTimer()
    try:
        grad()
        timer.total, timer.by_kernel = 0.0, {}
        t0 = time.perf_counter()
        grad()
        wall = time.perf_counter() - t0
        kernels = timer.total
        by_kernel = {k: v / steps * 1e6 for k, v in sorted(timer.by_kernel.items(), key=lambda kv: -kv[1])}
    finally:
        timer.restore()
    overhead = max(wall - kernels, 0.0)
    return dict(n=n, forward_s=fwd, grad_s=total, ratio=total / fwd,
                ns_per_cell_step=total / (steps * n * n) * 1e9,
                overhead_us_per_step=overhead / steps * 1e6, overhead_share=overhead / wall,
                kernel_us_per_step=by_kernel)


def peak_memory(n, steps, dtype):
    """Peak memory (MB) of one checkpointed gradient, in a fresh process."""
    cfg = json.dumps(dict(n=n, steps=steps, dtype=dtype))
    out = subprocess.run([sys.executable, __file__, "--memory-one", cfg], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def memory_one(cfg):
    cfg = json.loads(cfg)
    _, grad = build(cfg["n"], 2, cfg["dtype"], checkpoint=True)
    grad()  # caches and compiled kernels in place
    _, grad = build(cfg["n"], cfg["steps"], cfg["dtype"], checkpoint=True)
    base = bench_peers.current_rss_kib()
    grad()
    print(json.dumps(dict(peak_mb=(bench_peers.high_water_kib() - base) / 1024)))



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--memory-sizes", type=int, nargs="*", default=[512],
                   help="sizes whose checkpointed peak memory is measured (subprocesses)")
    p.add_argument("--memory-one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_one:
        memory_one(args.memory_one)
        return

    import numba
    rows = []
    for n in args.sizes:
        repeat = args.repeat if n <= 512 else max(1, args.repeat // 2)
        rows.append(measure(n, args.steps, args.dtype, repeat))
    base = next((r for r in rows if r["n"] >= 128), rows[0])
    for r in rows:
        r["per_cell_vs_base"] = r["ns_per_cell_step"] / base["ns_per_cell_step"]
        if r["n"] in args.memory_sizes:
            r["peak_mb_checkpointed"] = peak_memory(r["n"], args.steps, args.dtype)

    print(f"reference task, T = {args.steps}, {args.dtype}, {numba.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; medians of {args.repeat}")
    print(f"{'N':>5} {'forward s':>10} {'grad s':>8} {'ratio':>6} {'ns/cell/step':>13} "
          f"{'vs ' + str(base['n']) + '²':>8} {'overhead µs/step':>17} {'share':>6} {'peak MB (ckpt)':>15}")
    for r in rows:
        mem = r.get("peak_mb_checkpointed")
        print(f"{r['n']:>5} {r['forward_s']:>10.4f} {r['grad_s']:>8.4f} {r['ratio']:>6.2f} "
              f"{r['ns_per_cell_step']:>13.2f} {r['per_cell_vs_base']:>8.2f} "
              f"{r['overhead_us_per_step']:>17.0f} {100 * r['overhead_share']:>5.1f}% "
              f"{'' if mem is None else f'{mem:.0f}':>15}")
    print(json.dumps(dict(bench="cpu", steps=args.steps, dtype=args.dtype, threads=numba.get_num_threads(),
                          cpus=os.cpu_count(), results=rows)))


if __name__ == "__main__":
    main()
