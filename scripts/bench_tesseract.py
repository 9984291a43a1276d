#!/usr/bin/env python3
"""Forward and VJP time through fluidgrad's Mosaic Tesseract, loaded in-process.

The task is Mosaic's ``cost/vjp_cost`` point (default): Mosaic's multimode initial
condition at N = 128, ν = 0.01, dt = 0.01, 100 steps. ``forward`` is
``Tesseract.apply``; ``vjp`` is ``Tesseract.vector_jacobian_product`` in ``v0`` for a
random cotangent of ``result`` (it includes its own forward pass, as Mosaic times it).
After one warm-up of each (kernel compilation, caches), each round times one forward
and one VJP in a shuffled order; the table gives the median seconds and the median over
rounds of the VJP/forward ratio; one JSON line follows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as onp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

API = Path(__file__).resolve().parents[1] / "tesseract" / "navier-stokes-grid" / "tesseract_api.py"


def initial_velocity(n):
    """Mosaic's multimode initial condition (its own generator; needs mosaic-bench and jax),
    else a Taylor-Green vortex."""
    spec = importlib.util.find_spec("mosaic")
    try:
        path = Path(list(spec.submodule_search_locations)[0]) / "benchmarks/problems/navier_stokes_grid/ics.py"
        load = importlib.util.spec_from_file_location("mosaic_ns_grid_ics", path)
        ics = importlib.util.module_from_spec(load)
        load.loader.exec_module(ics)
        return onp.asarray(ics._multimode(n, seed=42)), "multimode"
    except (AttributeError, TypeError, ImportError, FileNotFoundError):
        x = onp.arange(n) * 2 * onp.pi / n
        X, Y = onp.meshgrid(x, x, indexing="ij")
        v = onp.stack([onp.sin(X) * onp.cos(Y), -onp.cos(X) * onp.sin(Y)], -1)[:, :, None, :]
        return v.astype(onp.float32), "taylor_green"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--viscosity", type=float, default=0.01)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (each times one forward and one VJP)")
    parser.add_argument("--threads", default=None, help="kernel threads: N or auto (default: FLUIDGRAD_THREADS or auto)")
    args = parser.parse_args(argv)
    if args.threads:
        from fluidgrad.ops import compiled
        compiled.set_threads(args.threads if args.threads == "auto" else int(args.threads))
    from tesseract_core import Tesseract

    tess = Tesseract.from_tesseract_api(str(API))
    v0, ic = initial_velocity(args.n)
    inputs = {"v0": v0, "viscosity": onp.array([args.viscosity], onp.float32),
              "dt": onp.array([args.dt], onp.float32), "steps": args.steps, "domain_extent": 2 * onp.pi}
    cotangent = {"result": onp.random.default_rng(0).standard_normal(v0.shape).astype(onp.float32)}
    runs = {
        "forward": lambda: tess.apply(inputs),
        "vjp": lambda: tess.vector_jacobian_product(inputs=inputs, vjp_inputs=["v0"], vjp_outputs=["result"],
                                                    cotangent_vector=cotangent),
    }
    for run in runs.values():
        run()  # warm-up
    times = {name: [] for name in runs}
    ratios = []
    for _ in range(args.repeat):
        order = list(runs)
        random.shuffle(order)
        this = {}
        for name in order:
            start = time.perf_counter()
            runs[name]()
            this[name] = time.perf_counter() - start
            times[name].append(this[name])
        ratios.append(this["vjp"] / this["forward"])
    info = machine.describe()
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = statistics.median(ratios)
    print(f"fluidgrad Tesseract, {ic} N={args.n}, {args.steps} steps, ν={args.viscosity}, dt={args.dt}; "
          f"median of {args.repeat} rounds")
    print(machine.headline(info))
    print(f"{'pass':<10}{'seconds':>10}")
    for name, t in median.items():
        print(f"{name:<10}{t:>10.3f}")
    print(f"{'vjp/fwd':<10}{ratio:>10.2f}")
    print(json.dumps({"benchmark": "tesseract", "ic": ic, "n": args.n, "steps": args.steps,
                      "forward_s": round(median["forward"], 4), "vjp_s": round(median["vjp"], 4),
                      "vjp_over_forward": round(ratio, 3), "rounds": args.repeat, **info}))


if __name__ == "__main__":
    main()
