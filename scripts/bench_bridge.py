#!/usr/bin/env python3
"""Overhead of the framework bridges: the gradient of a rollout's loss through
``fluidgrad.torch.wrap`` and ``fluidgrad.jax.wrap`` against ``fluidgrad.value_and_grad``
on the same function, in the same process.

The task (default): a 64² closed box with buoyant smoke, 50 MacCormack steps, float32;
the loss is the mean squared distance of the final density to a target, as a function
of the initial velocity. Each variant gives value and gradient:

* ``direct``: ``fluidgrad.value_and_grad(loss)(velocity)``;
* ``torch``: ``wrap(loss)(tensors)`` then ``.backward()``;
* ``jax``, ``jax jit``: ``jax.value_and_grad(wrap(loss))``, eagerly and under ``jax.jit``.

Each round runs every variant once, in a shuffled order (so a slower phase of a shared
machine, or the clean-up after the previous variant, hits all alike); the table gives
each variant's median wall and CPU seconds (this process's, all threads) and the median
over rounds of its ratio to ``direct`` in the same round; one JSON line follows. A framework that is not installed
is skipped. ``--threads`` fixes the kernels' threads (default: as fluidgrad decides).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as onp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fluidgrad as fg  # noqa: E402
import fluidgrad.numpy as fnp  # noqa: E402
from fluidgrad.boundaries import Boundaries, Domain  # noqa: E402
from fluidgrad.grid import Grid  # noqa: E402
from fluidgrad.simulation import Physics, Simulation  # noqa: E402

import machine  # noqa: E402


def task(n, steps, dtype):
    """``(loss, velocity)``: the loss of the initial velocity (numpy face arrays)."""
    grid = Grid((n, n), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.closed(2)), 0.5 / n, Physics(buoyancy=(0.0, 1.0)), dtype=dtype)
    x, y = grid.mesh()
    state = sim.initial_state(density=onp.exp(-((x - 0.5) ** 2 + (y - 0.25) ** 2) / 0.01))
    target = onp.roll(state.density, n // 8, axis=1).astype(dtype)
    rng = onp.random.default_rng(0)
    velocity = tuple((0.1 * rng.standard_normal(s)).astype(dtype) for s in sim.domain.velocity_shapes)

    def loss(velocity):
        final = sim.rollout(state.replace(velocity=velocity), steps)
        return fnp.mean((final.density - target) ** 2)

    return loss, velocity


def variants(loss, velocity):
    """name -> a function returning (value, gradient as numpy arrays)."""
    out = {"direct": lambda: fg.value_and_grad(loss)(velocity)}
    try:
        import torch
        import fluidgrad.torch as fgt
        torch.set_num_threads(1)  # the torch side is a sum; keep torch's pool off the kernels' cores
        wrapped = fgt.wrap(loss)

        def through_torch():
            v = tuple(torch.from_numpy(a).requires_grad_() for a in velocity)
            value = wrapped(v)
            value.backward()
            return value.item(), tuple(t.grad.numpy() for t in v)

        out["torch"] = through_torch
    except ImportError:
        pass
    try:
        import jax
        import fluidgrad.jax as fgj
        value_and_grad = jax.value_and_grad(fgj.wrap(loss))
        jitted = jax.jit(value_and_grad)
        v = tuple(jax.numpy.asarray(a) for a in velocity)

        def through(f):
            def run():
                value, grad = f(v)
                jax.block_until_ready(grad)
                return float(value), tuple(onp.asarray(g) for g in grad)
            return run

        out["jax"] = through(value_and_grad)
        out["jax jit"] = through(jitted)
    except ImportError:
        pass
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (each runs every variant once)")
    parser.add_argument("--threads", default=None, help="kernel threads: N or auto (default: FLUIDGRAD_THREADS or auto)")
    args = parser.parse_args(argv)
    if args.threads:
        from fluidgrad.ops import compiled
        compiled.set_threads(args.threads if args.threads == "auto" else int(args.threads))

    loss, velocity = task(args.n, args.steps, onp.dtype(args.dtype))
    runs = variants(loss, velocity)
    reference = None
    for name, run in runs.items():  # warm-up: compile kernels, trace, check agreement
        value, grad = run()
        if reference is None:
            reference = (value, grad)
        else:
            err = max(float(onp.abs(g - r).max() / (onp.abs(r).max() or 1)) for g, r in zip(grad, reference[1]))
            tol = 1e-5 if args.dtype == "float32" else 1e-12
            if err > tol:
                raise SystemExit(f"{name}: gradient differs from direct by {err:.2e} (relative)")
    seconds = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    order = list(runs)
    rng = random.Random(0)
    for _ in range(args.repeat):
        rng.shuffle(order)
        for name in order:
            run = runs[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    info = machine.describe()
    print(f"# {machine.headline(info)}")
    print(f"# gradient of a {args.n}² {args.steps}-step rollout's loss, {args.dtype}, medians of {args.repeat}")
    def ratio(times, name):  # the median over rounds of this round's time / direct's
        return statistics.median(t / d for t, d in zip(times[name], times["direct"]))

    rows = []
    print(f"{'variant':<10} {'wall s':>9} {'vs direct':>10} {'CPU s':>9} {'vs direct':>10}")
    for name in runs:
        wall, used = statistics.median(seconds[name]), statistics.median(cpu[name])
        rows.append({"variant": name, "seconds": wall, "ratio": ratio(seconds, name),
                     "cpu_seconds": used, "cpu_ratio": ratio(cpu, name)})
        print(f"{name:<10} {wall:9.4f} {rows[-1]['ratio']:9.3f}× {used:9.4f} {rows[-1]['cpu_ratio']:9.3f}×")
    print(json.dumps({"benchmark": "bridge", "machine": info, "n": args.n, "steps": args.steps,
                      "dtype": args.dtype, "repeat": args.repeat, "rows": rows}))


if __name__ == "__main__":
    main()
