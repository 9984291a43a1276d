"""Forces on obstacles against published values, at three resolutions.

* ``stokes``: Stokes flow through a square array of cylinders (a periodic box, a body
  force drives it), ``F/(μU)`` against Sangani & Acrivos (1982), eq. 22 (Hasimoto's
  series): ``4π / (-½ ln c - 0.738 + c - 0.887 c² + 2.038 c³)``, ``c`` the solid fraction,
  ``U`` the mean velocity over the box;
* ``turek20``: Schäfer & Turek (1996) benchmark 2D-1, the channel 2.2 × 0.41 with the
  cylinder D = 0.1 at (0.2, 0.2), parabolic inflow (mean 0.2), ν = 10⁻³, Re = 20, steady:
  ``C_D = 5.5795``, ``C_L = 0.0106`` (the reference values of John & Matthies 2001);
* ``turek100``: benchmark 2D-2, Re = 100 (mean inflow 1), periodic shedding:
  ``C_D,max = 3.22-3.24``, ``C_L,max = 0.99-1.01``, ``St = 0.295-0.305``.

Prints a table and one JSON line. Usage: ``python scripts/validate_forces.py [stokes]
[turek20] [turek100] [--levels 3]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as onp

from fluidgrad import forces
from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.grid import Grid
from fluidgrad.ops import PressureSolve
from fluidgrad.simulation import Physics, Simulation


def sangani_acrivos(c):
    return 4 * math.pi / (-0.5 * math.log(c) - 0.738 + c - 0.887 * c ** 2 + 2.038 * c ** 3)


def stokes(n, radius=0.15, nu=1.0, f=1.0):
    """``F/(μU)`` of the periodic array at n² cells (νΔt/h² = 1/4), run to steady state."""
    domain = Domain(Grid((n, n), (1.0, 1.0)), Boundaries.periodic(2), [Obstacle("circle", center=(0.5, 0.5), radius=radius)])
    dt = 0.25 * domain.dx ** 2 / nu
    sim = Simulation(domain, dt, Physics(viscosity=nu))
    push = tuple(onp.full(domain.face_shape(d), f if d == 0 else 0.0) for d in range(2))
    state, mean = sim.zeros_state(), 0.0
    for _ in range(400):
        state = sim.rollout(state, 50, force=lambda k, c: push, checkpoint=False)
        new = float(state.velocity[0].mean())
        if abs(new - mean) < 1e-7 * abs(new):
            break
        mean = new
    drag = float(forces.drag(state, domain, nu, dt))
    return {"n": n, "cells_per_diameter": 2 * radius / domain.dx, "K": drag / (nu * new),
            "K_exact": sangani_acrivos(math.pi * radius ** 2), "balance": drag / (f * domain.open_faces[0].sum() * domain.dx ** 2)}


def turek(ny, reynolds, seconds, cfl=0.4):
    """Drag and lift coefficients of the Schäfer–Turek cylinder (ny cells across 0.41)."""
    h = 0.41 / ny
    nx = round(2.2 / h)
    mean_speed = 0.2 if reynolds == 20 else 1.0
    nu = 1e-3
    spec = {"x_lo": {"type": "inflow", "velocity": [mean_speed, 0.0]}, "x_hi": "outflow", "y": "no_slip"}
    domain = Domain(Grid((nx, ny), (nx * h, 0.41)), Boundaries.from_dict(spec, 2),
                    [Obstacle("circle", center=(0.2, 0.2), radius=0.05)])
    dt = cfl * h / (1.5 * mean_speed * 1.5)  # 1.5 Ū peak inflow, ~1.5× that around the cylinder
    y = domain.grid.cell_centers(1)
    profile = 6 * mean_speed * y * (0.41 - y) / 0.41 ** 2  # mean = mean_speed, peak 1.5×
    physics = Physics(viscosity=nu, inflow_profile=profile)
    # 41·2^k cells across: multigrid coarsens to 220 × 41 cells and no further, solved
    # there by a sparse LU (64 ms a step at 440 × 82; Jacobi-preconditioned CG: 575 ms)
    sim = Simulation(domain, dt, physics, pressure=PressureSolve("cg", tolerance=1e-5))
    steps = int(seconds / dt)
    records = []
    state = sim.zeros_state()
    t0 = time.perf_counter()
    for _ in range(steps):
        state = sim.step(state)
        total = forces.total_forces(state, domain, nu, dt)[0]
        records.append((float(total[0]), float(total[1])))
    wall = time.perf_counter() - t0
    drag, lift = onp.array(records).T
    scale = 2 / (mean_speed ** 2 * 0.1)
    cd, cl = drag * scale, lift * scale
    out = {"ny": ny, "cells_per_diameter": 0.1 / h, "steps": steps, "dt": dt, "seconds": wall}
    if reynolds == 20:
        out.update(C_D=float(cd[-1]), C_L=float(cl[-1]), C_D_change_last_10pct=float(abs(cd[-1] - cd[int(0.9 * steps)])))
    else:
        late = slice(steps // 2, None)
        lift_late = cl[late]
        crossings = onp.flatnonzero((lift_late[:-1] < lift_late.mean()) & (lift_late[1:] >= lift_late.mean()))
        period = (crossings[-1] - crossings[0]) * dt / (len(crossings) - 1) if len(crossings) > 2 else float("nan")
        out.update(C_D_max=float(cd[late].max()), C_L_max=float(cl[late].max()), St=float(0.1 / (period * mean_speed)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["stokes", "turek20"], choices=["stokes", "turek20", "turek100"])
    parser.add_argument("--levels", type=int, default=3, help="resolutions (each doubles the last)")
    parser.add_argument("--first", type=int, default=0, help="the first level (0: the coarsest)")
    args = parser.parse_args()
    report = {}
    levels = range(args.first, args.first + args.levels)
    if "stokes" in args.cases:  # each row printed as it is done: the finest take minutes
        print(f"Stokes flow through a square array of cylinders, c = 0.0707 (Sangani & Acrivos 1982: K = "
              f"{sangani_acrivos(math.pi * 0.15 ** 2):.3f})")
        print(f"{'cells':>6} {'D/h':>6} {'F/(μU)':>9} {'error':>8} {'F / body force':>15}", flush=True)
        for r in _rows(report, "stokes", (stokes(16 * 2 ** k) for k in levels)):
            print(f"{r['n']:>6} {r['cells_per_diameter']:>6.1f} {r['K']:>9.3f} {r['K'] / r['K_exact'] - 1:>+8.2%} "
                  f"{r['balance']:>15.8f}", flush=True)
    if "turek20" in args.cases:
        print("Schäfer-Turek 2D-1 (Re = 20): reference C_D = 5.5795, C_L = 0.0106")
        print(f"{'ny':>5} {'D/h':>5} {'C_D':>8} {'error':>8} {'C_L':>8} {'seconds':>8}", flush=True)
        for r in _rows(report, "turek20", (turek(41 * 2 ** k, 20, 8.0) for k in levels)):
            print(f"{r['ny']:>5} {r['cells_per_diameter']:>5.0f} {r['C_D']:>8.4f} {r['C_D'] / 5.5795 - 1:>+8.2%} "
                  f"{r['C_L']:>8.4f} {r['seconds']:>8.1f}", flush=True)
    if "turek100" in args.cases:
        print("Schäfer-Turek 2D-2 (Re = 100): reference C_D,max = 3.22-3.24, C_L,max = 0.99-1.01, St = 0.295-0.305")
        print(f"{'ny':>5} {'D/h':>5} {'C_D,max':>8} {'C_L,max':>8} {'St':>7} {'seconds':>8}", flush=True)
        for r in _rows(report, "turek100", (turek(41 * 2 ** k, 100, 12.0) for k in levels)):
            print(f"{r['ny']:>5} {r['cells_per_diameter']:>5.0f} {r['C_D_max']:>8.4f} {r['C_L_max']:>8.4f} "
                  f"{r['St']:>7.4f} {r['seconds']:>8.1f}", flush=True)
    print(json.dumps(report))


def _rows(report, name, rows):
    """Each row of ``rows`` as it is computed, kept in ``report[name]``."""
    report[name] = []
    for row in rows:
        report[name].append(row)
        yield row


if __name__ == "__main__":
    main()
