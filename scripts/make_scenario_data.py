#!/usr/bin/env python3
"""Generate the data files of the bundled optimization scenarios (deterministic).

* ``smoke_target.png``: the smoke of ``smoke_target`` after 100 steps when started with
  a hidden velocity (two stream-function modes): a target that smoke can reach;
* ``fit_buoyancy_observed.npz``: the final density of ``fit_buoyancy`` with buoyancy
  1.3 (the scenario starts from 0.5 and should recover 1.3).
"""

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from fluidgrad.optimize import InitialVelocity
from fluidgrad.scenario import bundled_dir, load_scenario
from fluidgrad.simulation import Physics

FOLDER = Path(str(bundled_dir()))


def smoke_target():
    scenario = load_scenario("smoke_target", {"optimize.loss.target": {"type": "zero"}})
    sim = scenario.simulation()
    n = scenario.grid.resolution[0]
    x, y = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
    psi = 0.02 * (np.sin(2 * np.pi * x) * np.sin(2 * np.pi * y) + 0.5 * np.cos(2 * np.pi * (x + 2 * y)))
    state = scenario.initial_state(sim)
    state = state.replace(velocity=InitialVelocity().apply((psi,), sim))
    density = np.clip(sim.rollout(state, scenario.steps).density, 0, 1)
    image = np.flipud(density.T)  # [x, y] with y up -> image rows top-down
    iio.imwrite(FOLDER / "smoke_target.png", np.round(image * 255).astype(np.uint8))


def fit_buoyancy():
    scenario = load_scenario("fit_buoyancy", {"optimize.loss.target": {"type": "zero"}})
    sim = scenario.simulation()
    final = sim.rollout(scenario.initial_state(sim), scenario.steps, physics=Physics(buoyancy=(0.0, 1.3)))
    np.savez_compressed(FOLDER / "fit_buoyancy_observed.npz", density=final.density)


if __name__ == "__main__":
    smoke_target()
    fit_buoyancy()
    print("wrote", ", ".join(sorted(p.name for p in FOLDER.glob("*") if p.suffix in (".png", ".npz"))))
