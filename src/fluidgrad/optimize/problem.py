"""An optimization problem: a simulation, the parameters to change, and a loss on the
rollout; evaluated with its gradient as a function of one flat vector."""

from __future__ import annotations

import math

import numpy as onp

from ..ad.transforms import value_and_grad
from ..backend import to_numpy
from ..errors import InputError
from .parameters import ControlForce, InitialDensity, InitialVelocity, PhysicsParameter, physics_with


class Problem:
    """Minimize ``loss(states, values)`` over ``parameters``.

    ``states`` is the list of states at ``loss_steps`` (default: just the final step);
    ``values`` maps each parameter's name to what the simulation used (so regularizers
    can see them). The rollout is checkpointed with ``memory_budget``.
    """

    def __init__(self, sim, initial_state, parameters, loss, steps, *, loss_steps=None,
                 memory_budget=None, checkpoint=True):
        self.sim = sim
        self.initial_state = initial_state
        self.parameters = list(parameters)
        self.loss = loss
        self.steps = int(steps)
        self.loss_steps = sorted(loss_steps) if loss_steps else [self.steps]
        if self.loss_steps[-1] > self.steps or self.loss_steps[0] < 1:
            raise InputError(f"steps must lie in 1..{self.steps}", key="optimize.loss.times")
        self.memory_budget = memory_budget
        self.checkpoint = checkpoint
        self._shapes = [s for p in self.parameters for s in p.shapes(sim)]

    # -- the flat vector -----------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self._shapes)

    def initial_raw(self):
        return [p.initial(self.sim) for p in self.parameters]

    def flatten(self, raw) -> onp.ndarray:
        return onp.concatenate([onp.asarray(to_numpy(a), dtype=float).ravel()
                                for leaves in raw for a in leaves]) if self._shapes else onp.zeros(0)

    def unflatten(self, x):
        out, offset = [], 0
        for p in self.parameters:
            leaves = []
            for shape in p.shapes(self.sim):
                n = math.prod(shape)
                leaves.append(self.sim.xp.asarray(x[offset:offset + n].reshape(shape), dtype=self.sim.dtype))
                offset += n
            out.append(tuple(leaves))
        return out

    # -- evaluation ----------------------------------------------------------------

    def values(self, raw) -> dict:
        """What each parameter is in simulation terms, from the raw variables."""
        return {p.name: p.apply(r, self.sim) for p, r in zip(self.parameters, raw)}

    def setup(self, raw):
        """What a rollout with parameters ``raw`` starts from: ``(values, initial state,
        physics, controls, force)`` (see :meth:`Simulation.rollout`)."""
        values = self.values(raw)
        state = self.initial_state
        if "initial_velocity" in values:
            state = state.replace(velocity=values["initial_velocity"])
        if "initial_density" in values:
            state = state.replace(density=values["initial_density"])
        control = next((p for p in self.parameters if isinstance(p, ControlForce)), None)
        controls = values.get(control.name) if control else None
        force = (lambda k, c: control.force_at(k, c, self.sim)) if control else None
        return values, state, physics_with(self.sim, values), controls, force

    def states(self, raw, monitor=None):
        """The states at the loss steps, for raw parameter values ``raw``."""
        values, state, physics, controls, force = self.setup(raw)
        out, done = [], 0
        for target in self.loss_steps:
            state = self.sim.rollout(state, target - done, physics=physics, controls=controls, force=force,
                                     checkpoint=self.checkpoint, memory_budget=self.memory_budget,
                                     monitor=monitor, start=done)
            out.append(state)
            done = target
        return out, values

    def objective(self, raw):
        states, values = self.states(raw)
        return self.loss(states, values)

    def value_and_grad(self, x):
        """``(loss, ∇loss)`` at the flat vector ``x`` (float, float64 numpy array)."""
        value, grads = value_and_grad(self.objective)(self.unflatten(x))
        return float(to_numpy(value)), self.flatten(grads)


__all__ = ["ControlForce", "InitialDensity", "InitialVelocity", "PhysicsParameter", "Problem"]
