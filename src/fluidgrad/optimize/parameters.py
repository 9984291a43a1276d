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
  vorticity confinement, or a source rate (inflow speed).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as onp

from .. import numpy as fnp
from ..backend import xp_of
from ..simulation import Physics, Source


def _node_count(domain, axis):
    return domain.grid.shape[axis] + (0 if domain.periodic(axis) else 1)


def _node_difference(a, axis, periodic, h):
    """``(a[j+1] - a[j]) / h`` along ``axis`` (wrapping when periodic)."""
    if periodic:
        return (fnp.roll(a, -1, axis) - a) / h
    hi = [slice(None)] * a.ndim
    lo = [slice(None)] * a.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    return (a[tuple(hi)] - a[tuple(lo)]) / h


def _boundary_node_mask(like, domain, axes):
    """1 on nodes, 0 on the boundary nodes of bounded ``axes`` (no flow through walls),
    in the array module and dtype of ``like``."""
    shape = like.shape
    mask = onp.ones(shape)
    for axis in axes:
        if not domain.periodic(axis):
            index = [slice(None)] * len(shape)
            for j in (0, -1):
                index[axis] = j
                mask[tuple(index)] = 0.0
    return xp_of(like).asarray(mask, dtype=like.dtype)


@dataclasses.dataclass
class InitialVelocity:
    """The initial velocity, through a stream function / vector potential or raw."""

    parametrization: str = "stream"
    name: str = "initial_velocity"

    def shapes(self, sim):
        d = sim.domain
        if self.parametrization == "raw":
            return d.velocity_shapes
        if d.ndim == 2:
            return ((_node_count(d, 0), _node_count(d, 1)),)
        return tuple(tuple(d.grid.shape[a] if a == c else _node_count(d, a) for a in range(3))
                     for c in range(3))

    def initial(self, sim):
        return tuple(onp.zeros(s) for s in self.shapes(sim))

    def apply(self, raw, sim):
        d = sim.domain
        if self.parametrization == "raw":
            return tuple(raw)
        if self.parametrization != "stream":
            raise ValueError(f"initial_velocity: unknown parametrization {self.parametrization!r} "
                             f"(expected stream or raw)")
        h = d.dx
        per = d.boundaries.periodic_axes
        if d.ndim == 2:
            psi = raw[0] * _boundary_node_mask(raw[0], d, (0, 1))
            return (_node_difference(psi, 1, per[1], h), -_node_difference(psi, 0, per[0], h))
        a = [raw[c] * _boundary_node_mask(raw[c], d, [e for e in range(3) if e != c])
             for c in range(3)]
        dx = lambda c, e: _node_difference(a[c], e, per[e], h)  # noqa: E731 - ∂A_c/∂x_e
        return (dx(2, 1) - dx(1, 2), dx(0, 2) - dx(2, 0), dx(1, 0) - dx(0, 1))


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


PHYSICS_KEYS = ("viscosity", "buoyancy", "vorticity_confinement", "source_rate")


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


__all__ = ["ControlForce", "InitialDensity", "InitialVelocity", "PHYSICS_KEYS", "PhysicsParameter",
           "Source", "physics_with"]
