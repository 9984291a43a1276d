"""The problem both framework bridges are checked on: a 10-step MacCormack rollout in a
closed box (walls) around a circular obstacle, as a function of the initial velocity and
a control force held over the steps."""

import numpy as onp

import fluidgrad as fg
import fluidgrad.numpy as fnp
from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.grid import Grid
from fluidgrad.ops import PressureSolve
from fluidgrad.simulation import Physics, Simulation

STEPS = 10


def problem(shape=(10, 8), dtype=onp.float64, seed=0):
    """``(rollout, velocity, force, weights)``: ``rollout(velocity, force) -> (density,
    velocity)`` after STEPS steps; the inputs as numpy face arrays; weights for a loss."""
    grid = Grid(shape, (shape[0] / shape[1], 1.0))
    domain = Domain(grid, Boundaries.closed(2), [Obstacle("circle", center=(0.55, 0.45), radius=0.18)])
    exact = PressureSolve("auto", tolerance=1e-13, adjoint_tolerance=1e-14)
    sim = Simulation(domain, 0.03, Physics(viscosity=0.01, buoyancy=(0.0, 1.5)), advection="maccormack",
                     pressure=exact, dtype=dtype)
    rng = onp.random.default_rng(seed)
    x, y = grid.mesh()
    state = sim.initial_state(density=onp.exp(-((x - 0.7) ** 2 + (y - 0.25) ** 2) / 0.03))
    velocity = tuple((0.3 * rng.standard_normal(s)).astype(dtype) for s in domain.velocity_shapes)
    force = tuple((0.5 * rng.standard_normal(s)).astype(dtype) for s in domain.velocity_shapes)

    def rollout(velocity, force):
        final = sim.rollout(state.replace(velocity=velocity), STEPS, controls=force, force=lambda k, c: c)
        return final.density, final.velocity

    weights = (rng.standard_normal(grid.shape), tuple(rng.standard_normal(s) for s in domain.velocity_shapes))
    return rollout, velocity, force, weights


def loss_of(outputs, weights, sum_=fnp.sum):
    """``Σ w·density + Σ_d w_d·u_d``: a scalar that reads every output."""
    density, velocity = outputs
    total = sum_(weights[0] * density)
    for w, u in zip(weights[1], velocity):
        total = total + sum_(w * u)
    return total


def reference_gradient(rollout, velocity, force, weights):
    """``fluidgrad.value_and_grad`` of the loss, with no framework in between."""
    return fg.value_and_grad(lambda v, f: loss_of(rollout(v, f), weights), argnums=(0, 1))(velocity, force)
