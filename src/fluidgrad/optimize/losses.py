"""Losses on simulated states, and regularizers on parameters.

All are written with differentiable operations; a user loss is any function of the
states built from :mod:`fluidgrad.numpy`.
"""

from __future__ import annotations

from .. import numpy as fnp


def density_mse(state, target):
    """``mean((ρ - ρ_target)²)``."""
    return fnp.mean((state.density - target) ** 2)


def velocity_mse(state, target_velocity):
    """Mean squared difference of the face velocities, averaged over all faces."""
    total = sum(fnp.sum((u - t) ** 2) for u, t in zip(state.velocity, target_velocity))
    count = sum(t.size for t in target_velocity)
    return total / count


def kinetic_energy(state, cell_volume=1.0):
    """``½ Σ u² h^d`` over all faces."""
    return 0.5 * cell_volume * sum(fnp.sum(u * u) for u in state.velocity)


def smoothness(field, spacing=1.0):
    """``Σ |∇f|²`` by forward differences along every axis (a field or tuple of fields)."""
    fields = field if isinstance(field, (tuple, list)) else (field,)
    total = 0.0
    for f in fields:
        for axis in range(f.ndim):
            total = total + fnp.sum(fnp.diff(f, axis=axis) ** 2) / spacing ** 2
    return total


def effort(field):
    """``Σ f²``: the control effort (a field or tuple of fields)."""
    fields = field if isinstance(field, (tuple, list)) else (field,)
    return sum(fnp.sum(f * f) for f in fields)
