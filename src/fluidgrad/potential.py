"""Divergence-free MAC velocities from a potential: a stream function ψ on the grid
nodes in 2-D (``u = ∂ψ/∂y, v = -∂ψ/∂x``) or a vector potential A on the cell edges in
3-D (``u = ∇ × A``).

The potential is zeroed on the boundary nodes of bounded axes, so the velocity has no
normal flow through the walls. The curl is built from differentiable array operations
(:mod:`fluidgrad.numpy`), so it can be differentiated in the potential; both the
initial conditions (a random divergence-free field) and the optimizer's
``initial_velocity`` parametrization use it.
"""

from __future__ import annotations

import numpy as onp

from . import numpy as fnp
from .backend import xp_of


def _node_count(domain, axis):
    return domain.grid.shape[axis] + (0 if domain.periodic(axis) else 1)


def potential_shapes(domain) -> tuple:
    """The array shapes of the potential: one node array (2-D), three edge arrays (3-D)."""
    if domain.ndim == 2:
        return ((_node_count(domain, 0), _node_count(domain, 1)),)
    return tuple(tuple(domain.grid.shape[a] if a == c else _node_count(domain, a) for a in range(3))
                 for c in range(3))


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


def velocity_from_potential(potential, domain) -> tuple:
    """The MAC velocity (a tuple of face arrays) ``curl`` of ``potential`` (the arrays of
    :func:`potential_shapes`); differentiable in ``potential``."""
    h = domain.dx
    per = domain.boundaries.periodic_axes
    if domain.ndim == 2:
        psi = potential[0] * _boundary_node_mask(potential[0], domain, (0, 1))
        return (_node_difference(psi, 1, per[1], h), -_node_difference(psi, 0, per[0], h))
    a = [potential[c] * _boundary_node_mask(potential[c], domain, [e for e in range(3) if e != c])
         for c in range(3)]
    dx = lambda c, e: _node_difference(a[c], e, per[e], h)  # noqa: E731 - ∂A_c/∂x_e
    return (dx(2, 1) - dx(1, 2), dx(0, 2) - dx(2, 0), dx(1, 0) - dx(0, 1))
