"""What an optimization may change, and how raw optimizer variables map to it.

Each parameter has a raw value (an array the optimizer updates) and ``apply(raw)``,
a differentiable map to what the simulation uses:

* ``InitialVelocity``: by default a stream function ψ on the grid nodes (2-D,
  ``u = ∂ψ/∂y, v = -∂ψ/∂x``) or a vector potential A on the cell edges (3-D,
  ``u = ∇ × A``) - divergence-free by construction, zero normal flow at the walls;
  ``parametrization='raw'`` optimizes the face velocities directly;
* ``InitialDensity``: the density field itself;
* ``ControlForce``: a force per step, or held for ``hold`` steps, optionally on a grid
  ``coarsen`` times coarser and upsampled (piecewise constant) to the faces;
* ``PhysicsParameter``: a scalar (or vector) physical parameter: viscosity, buoyancy,
  vorticity confinement, or a source rate (inflow speed);
* ``InflowProfile``: the normal velocity on the inflow face, one value per face cell,
  optionally at a fixed flow rate.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as onp

from .. import numpy as fnp
from ..backend import xp_of
from ..errors import UnknownNameError
from ..potential import potential_shapes, velocity_from_potential
from ..simulation import Physics, Source


def gaussian_blur(field, sigma, periodic):
    """``field`` convolved with a Gaussian of ``sigma`` samples along every axis (truncated
    at 3σ, weights summing to 1): wrapped on periodic axes, mirrored at the ends of the
    others. Linear and differentiable (a sum of shifted copies)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = onp.arange(-radius, radius + 1)
    weights = onp.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    xp = xp_of(field)
    out = field
    for axis, wraps in enumerate(periodic):
        n = out.shape[axis]
        index = onp.pad(onp.arange(n), radius, mode="wrap" if wraps else "symmetric")
        total = None
        for k, w in zip(offsets, weights, strict=True):
            term = float(w) * fnp.take(out, xp.asarray(index[radius + k:radius + k + n]), axis)
            total = term if total is None else total + term
        out = total
    return out


@dataclasses.dataclass
class InitialVelocity:
    """The initial velocity, through a stream function / vector potential or raw; with
    ``smoothing = σ > 0`` the raw variables are first blurred by a Gaussian of σ cells
    (:func:`gaussian_blur`), which preconditions the optimization: the gradient reaching
    the variables is blurred too, so fine-scale noise no longer dominates it."""

    parametrization: str = "stream"
    smoothing: float = 0.0
    name: str = "initial_velocity"

    def shapes(self, sim):
        if self.parametrization == "raw":
            return sim.domain.velocity_shapes
        return potential_shapes(sim.domain)

    def initial(self, sim):
        return tuple(onp.zeros(s) for s in self.shapes(sim))

    def apply(self, raw, sim):
        d = sim.domain
        if self.smoothing:
            raw = tuple(gaussian_blur(r, self.smoothing, [d.periodic(a) for a in range(d.ndim)]) for r in raw)
        if self.parametrization == "raw":
            return tuple(raw)
        if self.parametrization != "stream":
            raise UnknownNameError("parametrization", self.parametrization, ("stream", "raw"),
                                   key="optimize.parametrization")
        return velocity_from_potential(raw, d)


@dataclasses.dataclass
class InitialDensity:
    name: str = "initial_density"

    def shapes(self, sim):
        return (sim.domain.grid.shape,)

    def initial(self, sim):
        return (onp.zeros(sim.domain.grid.shape),)

    def apply(self, raw, sim):
        return raw[0]


def _upsample(coarse, factor, shape):
    """Repeat each coarse cell ``factor`` times per axis, cropped/padded (edge) to ``shape``."""
    out = coarse
    xp = xp_of(coarse)
    for axis in range(coarse.ndim):
        index = xp.asarray(onp.minimum(onp.arange(shape[axis]) // factor, coarse.shape[axis] - 1))
        out = fnp.take(out, index, axis)
    return out


@dataclasses.dataclass
class ControlForce:
    """A body force on the velocity faces, one value per ``hold`` steps, on a grid
    ``coarsen`` times coarser than the simulation's."""

    steps: int
    hold: int = 1
    coarsen: int = 1
    name: str = "control_force"

    def windows(self) -> int:
        return math.ceil(self.steps / self.hold)

    def shapes(self, sim):
        return tuple((self.windows(),) + tuple(math.ceil(n / self.coarsen) for n in s)
                     for s in sim.domain.velocity_shapes)

    def initial(self, sim):
        return tuple(onp.zeros(s) for s in self.shapes(sim))

    def apply(self, raw, sim):
        return tuple(raw)  # the per-step force is taken by force_at

    def force_at(self, k, raw, sim):
        """The face force of step ``k``."""
        window = min(k // self.hold, self.windows() - 1)
        faces = sim.domain.velocity_shapes
        if self.coarsen == 1:
            return tuple(r[window] for r in raw)
        return tuple(_upsample(r[window], self.coarsen, s) for r, s in zip(raw, faces))


@dataclasses.dataclass
class InflowProfile:
    """The normal velocity on the box's inflow face, one value per face cell. With
    ``flow_rate='fixed'`` the flow rate stays that of the face's own velocity ``v̄``: the
    raw values are rescaled to that mean, ``v = v̄ r / mean(r)`` (so raw values kept
    non-negative by the optimizer's ``bounds`` give a profile without backflow, and the
    gradient reaching ``r`` has no component along ``r``); ``'free'`` uses ``r`` itself."""

    flow_rate: str = "fixed"
    name: str = "inflow_profile"

    def shapes(self, sim):
        return (sim.domain.inflow_profile_shape,)

    def initial(self, sim):
        return (onp.full(sim.domain.inflow_profile_shape, sim.domain.inflow_velocity()),)

    def apply(self, raw, sim):
        if self.flow_rate == "free":
            return raw[0]
        return raw[0] * (sim.domain.inflow_velocity() / fnp.mean(raw[0]))


PHYSICS_KEYS = ("viscosity", "buoyancy", "vorticity_confinement", "source_rate", "inflow_profile")


@dataclasses.dataclass
class PhysicsParameter:
    """One physical parameter to fit: 'viscosity', 'buoyancy', 'vorticity_confinement'
    or 'source_rate' (the rate of every source: an inflow speed)."""

    key: str

    @property
    def name(self):
        return self.key

    def shapes(self, sim):
        return ((sim.ndim,),) if self.key == "buoyancy" else ((),)

    def initial(self, sim):
        if self.key == "buoyancy":
            return (onp.asarray(sim.physics.buoyancy, dtype=float),)
        if self.key == "source_rate":
            rates = [s.rate for s in sim.sources]
            return (onp.asarray(float(rates[0]) if rates else 0.0),)
        return (onp.asarray(float(getattr(sim.physics, self.key))),)

    def apply(self, raw, sim):
        return raw[0]


def physics_with(sim, values: dict) -> Physics:
    """``sim.physics`` with the fitted parameters in ``values`` substituted."""
    changes = {k: v for k, v in values.items() if k in PHYSICS_KEYS}
    if "buoyancy" in changes:
        b = changes["buoyancy"]
        changes["buoyancy"] = tuple(b[d] for d in range(sim.ndim))
    return dataclasses.replace(sim.physics, **changes)


__all__ = ["ControlForce", "InflowProfile", "InitialDensity", "InitialVelocity", "PHYSICS_KEYS", "PhysicsParameter",
           "Source", "physics_with"]
