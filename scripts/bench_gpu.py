#!/usr/bin/env python3
"""Steps per second of 2-D smoke (FFT and multigrid projection) and 3-D smoke on a GPU,
forward and forward+backward, float32, with the achieved fraction of the measured
device-to-device copy bandwidth.

Sizes: 2-D 512², 1024², 2048², 4096²; 3-D 128³, 256³ (``--quick``: 256², 64³).
A step is sources → MacCormack advection → buoyancy → projection; "fwd+bwd" is the
gradient of the final density's mean square with respect to the initial density over
``--steps`` steps (checkpointed by the default budget), divided by the step count.
Bandwidth fraction: the bytes a step must read and write at least (about 20 state-sized
arrays forward) over the measured copy bandwidth (cupy ``a[...] = b``). Prints a table
and one JSON line.
"""

import argparse
import json
import time

import numpy as np


def copy_bandwidth(cp, nbytes=2 ** 30):
    a = cp.ones(nbytes // 4, dtype=cp.float32)
    b = cp.empty_like(a)
    b[...] = a
    cp.cuda.Device().synchronize()
    t = time.perf_counter()
    for _ in range(10):
        b[...] = a
    cp.cuda.Device().synchronize()
    return 2 * nbytes * 10 / (time.perf_counter() - t)


def measure(cp, shape, solver, steps):
    import fluidgrad as fg
    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.ops import PressureSolve
    from fluidgrad.simulation import Physics, Simulation
    ndim = len(shape)
    grid = Grid(shape, tuple(n / max(shape) for n in shape))
    boundaries = Boundaries.periodic(ndim) if solver == "fft" else Boundaries.closed(ndim, "free_slip")
    buoyancy = tuple(1.0 if d == 1 else 0.0 for d in range(ndim))
    sim = Simulation(Domain(grid, boundaries), 0.5 / max(shape), Physics(buoyancy=buoyancy),
                     pressure=PressureSolve(solver, tolerance=1e-3), backend="cupy", dtype=np.float32)
    x = grid.mesh()
    density = np.exp(-sum((xi - 0.5) ** 2 for xi in x) / 0.01)
    s0 = sim.initial_state(density=density)
    sync = cp.cuda.Device().synchronize
    sim.rollout(s0, 2)
    sync()
    t = time.perf_counter()
    sim.rollout(s0, steps)
    sync()
    fwd = steps / (time.perf_counter() - t)
    loss = lambda d: fg.numpy.mean(sim.rollout(s0.replace(density=d), steps).density ** 2)  # noqa: E731
    fg.grad(loss)(s0.density)
    sync()
    t = time.perf_counter()
    fg.grad(loss)(s0.density)
    sync()
    both = steps / (time.perf_counter() - t)
    state_bytes = sim.state_bytes()
    return fwd, both, state_bytes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    import cupy as cp
    bandwidth = copy_bandwidth(cp)
    cases = ([((256, 256), "fft"), ((64, 64, 64), "multigrid")] if args.quick else
             [((n, n), s) for n in (512, 1024, 2048, 4096) for s in ("fft", "multigrid")]
             + [((n, n, n), "fft") for n in (128, 256)])
    rows = []
    print(f"device copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    print(f"  {'grid':>14} {'solver':>9} {'fwd steps/s':>12} {'fwd+bwd steps/s':>16} {'bw fraction':>11}")
    for shape, solver in cases:
        try:
            fwd, both, state_bytes = measure(cp, shape, solver, args.steps)
        except Exception as exc:  # report and go on: one size must not hide the others
            print(f"  {'x'.join(map(str, shape)):>14} {solver:>9}  failed: {type(exc).__name__}: {exc}")
            rows.append({"shape": shape, "solver": solver, "error": str(exc)})
            continue
        fraction = fwd * 20 * state_bytes / bandwidth
        rows.append({"shape": shape, "solver": solver, "fwd_steps_per_s": fwd, "fwd_bwd_steps_per_s": both,
                     "bandwidth_fraction": fraction})
        print(f"  {'x'.join(map(str, shape)):>14} {solver:>9} {fwd:12.0f} {both:16.0f} {fraction:11.2f}")
    print(json.dumps({"bench": "gpu", "copy_bandwidth_gb_s": bandwidth / 1e9, "results": rows}))


if __name__ == "__main__":
    main()
