"""A small optimization used by the resume tests (also run as a script by them)."""

import sys

import numpy as onp

from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.optimize import InitialVelocity, Problem, density_mse, make_optimizer, run
from fluidgrad.simulation import Physics, Simulation


class SeededVelocity(InitialVelocity):
    """A stream function starting from small noise (zero velocity is a kink of advection)."""

    def initial(self, sim):
        return tuple(1e-3 * onp.random.default_rng(0).standard_normal(s) for s in self.shapes(sim))


def build(n=16, steps=20, scheme="semi_lagrangian", dt=0.02):
    grid = Grid((n, n), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.periodic(2)), dt, Physics(), advection=scheme)
    x, y = grid.mesh()
    s0 = sim.initial_state(density=onp.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / (2 * 0.12 ** 2)))
    param = SeededVelocity()
    X, Y = onp.meshgrid(onp.arange(n) / n, onp.arange(n) / n, indexing="ij")
    psi = 0.02 * (onp.sin(2 * onp.pi * X) * onp.sin(2 * onp.pi * Y) + 0.5 * onp.cos(2 * onp.pi * (X + 2 * Y)))
    target = sim.rollout(s0.replace(velocity=param.apply((psi,), sim)), steps).density
    return Problem(sim, s0, [param], lambda states, values: density_mse(states[-1], target), steps)


if __name__ == "__main__":  # python tiny_problem.py FOLDER OPTIMIZER ITERATIONS
    folder, kind, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run(build(), make_optimizer(kind), iterations, folder,
        callback=lambda r: print(r["iteration"], flush=True))
