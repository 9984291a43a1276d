#!/usr/bin/env python3
"""Forward and VJP times of the fluid kernels (the primitives of ``fluidgrad.ops``).

For each grid size and dtype a lid-driven box is built (closed no-slip walls, the
``y_hi`` wall moving with velocity 1 along x) on the unit square/cube, with smooth
random inputs: a velocity of order 1 and ``dt = h / max|u|`` (CFL number ~1). Per kernel:

* forward: the raw primal ``p.fun(*args, **kwargs)`` (no tape);
* VJP: ``p.apply_vjp(g, ans, args, kwargs, argnums)`` with a random cotangent ``g`` of
  the output's structure, for all differentiable positional arguments;

each the median of ``--repeat`` runs (fewer on the large grids) after one warm-up call
(which fills the domain's caches), and the ratio VJP/forward. ``project`` is timed with
the 'auto' solver (DCT on this box) and with 'cg' on the same box plus a circular
(spherical) obstacle (at most 200 iterations; the iterations run in float64 for float32 fields). A kernel that fails is reported as skipped with its error.
Prints one table per (size, dtype), then one JSON line with all numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy

from fluidgrad import ops
from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.grid import Grid

DEFAULT_SIZES = ["128x128", "512x512", "64x64x64"]
QUICK_SIZES = ["32x32", "16x16x16"]


def smooth(rng, shape, dtype, modes=4):
    """A sum of a few random low-frequency Fourier modes, scaled to max|f| = 1."""
    axes = numpy.meshgrid(*[numpy.linspace(0, 1, n) for n in shape], indexing="ij")
    f = numpy.zeros(shape)
    for _ in range(modes):
        term = rng.standard_normal()
        for x in axes:
            term = term * numpy.cos(2 * numpy.pi * (rng.integers(1, 4) * x + rng.random()))
        f += term
    return (f / numpy.abs(f).max()).astype(dtype)


def lid_box(shape, obstacle=False):
    ndim = len(shape)
    lid = [1.0] + [0.0] * (ndim - 1)
    grid = Grid(shape, tuple(n / shape[0] for n in shape))
    obstacles = []
    if obstacle:
        center = tuple(s / 2 for s in grid.size)
        obstacles = [Obstacle("circle" if ndim == 2 else "sphere", center=center, radius=0.15)]
    return Domain(grid, Boundaries.from_dict({"y_hi": {"type": "no_slip", "velocity": lid}}, ndim),
                  obstacles)


def cases(shape, dtype, rng):
    """(name, primitive, args, kwargs, argnums) for every kernel on this grid."""
    box, blocked = lid_box(shape), lid_box(shape, obstacle=True)
    ndim, h = len(shape), box.dx
    u = tuple(smooth(rng, s, dtype) for s in box.velocity_shapes)
    q = smooth(rng, shape, dtype)
    dt = h / max(float(numpy.abs(c).max()) for c in u)   # CFL ~ 1
    nu = 0.1 * h * h / dt                                  # explicit diffusion stays stable
    d, sl = dict(domain=box), dict(domain=box, dt=dt)
    return [
        ("divergence", ops.divergence, (u,), d, (0,)),
        ("gradient", ops.gradient, (q,), d, (0,)),
        ("laplacian", ops.laplacian, (q,), d, (0,)),
        ("face_to_center", ops.face_to_center, (u,), d, (0,)),
        ("center_to_face", ops.center_to_face, (q,), dict(d, axis=0), (0,)),
        ("vorticity", ops.vorticity, (u,), d, (0,)),
        ("semi_lagrangian", ops.semi_lagrangian, (q, u), sl, (0, 1)),
        ("maccormack", ops.maccormack, (q, u), sl, (0, 1)),
        ("maccormack u0", ops.maccormack, (u[0], u), dict(sl, location=0), (0, 1)),
        ("project auto", ops.project, (u,), dict(d, solve=ops.PressureSolve("auto")), (0,)),
        ("project cg+obstacle", ops.project, (u,),
         dict(domain=blocked, solve=ops.PressureSolve("cg", tolerance=1e-5, max_iterations=200)), (0,)),
        ("implicit_diffusion u0", ops.implicit_diffusion, (u[0], nu), dict(sl, location=0), (0, 1)),
        ("explicit_diffusion u0", ops.explicit_diffusion, (u[0], nu), dict(sl, location=0), (0, 1)),
        ("vorticity_confinement", ops.vorticity_confinement, (u, 0.3), d, (0, 1)),
    ]


def like(x, rng):
    """A random array (or tuple/list of arrays) with the structure of ``x``."""
    if isinstance(x, (tuple, list)):
        return type(x)(like(v, rng) for v in x)
    return rng.standard_normal(x.shape).astype(x.dtype)


def median_time(fn, repeat):
    fn()  # warm-up: fills the domain's caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(shape, dtype, repeat, rng):
    rows = []
    for name, prim, args, kwargs, argnums in cases(shape, dtype, rng):
        row = {"kernel": name}
        try:
            fwd = median_time(lambda: prim.fun(*args, **kwargs), repeat)
            ans = prim.fun(*args, **kwargs)
            g = like(ans, rng)
            vjp = median_time(lambda: prim.apply_vjp(g, ans, args, kwargs, argnums), repeat)
            row.update(forward_ms=fwd * 1e3, vjp_ms=vjp * 1e3, ratio=vjp / fwd)
        except Exception as exc:  # noqa: BLE001 - report the row as skipped, keep going
            row["skipped"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=None, metavar="NxN[xN]",
                   help=f"grid resolutions (default: {' '.join(DEFAULT_SIZES)})")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=7, help="repeats on grids up to 128^2 cells")
    p.add_argument("--repeat-large", type=int, default=3, help="repeats on larger grids")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {' '.join(QUICK_SIZES)}, float64, 3 repeats")
    args = p.parse_args(argv)
    if args.quick:
        sizes, dtypes, repeat, repeat_large = args.sizes or QUICK_SIZES, ["float64"], 3, 3
    else:
        sizes, dtypes = args.sizes or DEFAULT_SIZES, args.dtypes
        repeat, repeat_large = args.repeat, args.repeat_large

    rng = numpy.random.default_rng(0)
    results = []
    start = time.perf_counter()
    for size in sizes:
        shape = tuple(int(n) for n in size.lower().split("x"))
        for dtype in dtypes:
            n_rep = repeat if numpy.prod(shape) <= 128 * 128 else repeat_large
            t0 = time.perf_counter()
            rows = bench(shape, dtype, n_rep, rng)
            print(f"\n{size} {dtype}, median of {n_rep} ({time.perf_counter() - t0:.1f} s)")
            width = max(len(r["kernel"]) for r in rows)
            print(f"  {'kernel':<{width}}  {'forward ms':>10}  {'VJP ms':>10}  {'VJP/fwd':>7}")
            for r in rows:
                if "skipped" in r:
                    print(f"  {r['kernel']:<{width}}  skipped: {r['skipped']}")
                else:
                    print(f"  {r['kernel']:<{width}}  {r['forward_ms']:10.2f}  {r['vjp_ms']:10.2f}  "
                          f"{r['ratio']:7.2f}")
                results.append({"size": size, "dtype": dtype, "repeat": n_rep, **r})
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    print(json.dumps({"bench": "kernels", "results": results}))


if __name__ == "__main__":
    main()
