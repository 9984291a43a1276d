"""Sources: density (or any scalar) injected in a region, velocity imposed in a region.

Both are affine in the field and linear in the rate/value, built from differentiable
array operations (``q + rate Δt m`` and ``(1 - m) u + m v``), so rates and values can
be optimized too. Regions are cell masks made from the obstacle shapes
(circle/sphere, box, mask).
"""

from __future__ import annotations

from ..backend import raw
from ..boundaries import Obstacle


def region_mask(grid, shape, **params):
    """Boolean cell mask of a region: ``region_mask(grid, 'circle', center=.., radius=..)``."""
    return Obstacle(shape, **params).cells(grid)


def add_source(q, mask, rate, dt):
    """``q + rate Δt m``: inject ``rate`` per unit time where ``m`` (a 0/1 mask) is set."""
    return q + (rate * dt) * mask.astype(q.dtype)


def impose(q, mask, value):
    """``(1 - m) q + m value``: hold ``q`` at ``value`` inside the region."""
    m = mask.astype(q.dtype)
    return q * (1 - m) + value * m


def close_faces(velocity, domain, fixed=None):
    """The MAC ``velocity`` with every closed face (walls, inflow faces, faces touching a
    solid cell) at its prescribed value: ``u·open + fixed`` (``fixed``: the domain's, or
    given face arrays, e.g. with an inflow profile). What a state holds on those faces has
    no effect, so its gradient there is exactly zero."""
    if not domain.has_closed_faces:
        return tuple(velocity)
    if fixed is None:
        fixed = tuple(domain.array("fixed_velocity", raw(u), d) for d, u in enumerate(velocity))
    return tuple(u * domain.array("open_faces", raw(u), d) + c for d, (u, c) in enumerate(zip(velocity, fixed)))
