"""Advection: invariants, the translation identity, and convergence order."""

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as fnp
from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import advection
from fluidgrad.ops.advection import advect, maccormack, semi_lagrangian

from ops import domains

SCHEMES = list(advection.SCHEMES)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name, ndim", domains.ALL)
def test_constant_scalar_stays_constant(name, ndim, scheme):
    domain = domains.make(name, ndim)
    rng = onp.random.default_rng(0)
    u = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    q = onp.full(domain.grid.shape, 0.37)
    out = advect(q, u, dt=domains.H, domain=domain, scheme=scheme)
    onp.testing.assert_allclose(out, 0.37, rtol=1e-14)


def _unit_translation(n=16, ndim=2, axis=0):
    grid = Grid((n,) * ndim, (1.0,) * ndim)
    domain = Domain(grid, Boundaries.periodic(ndim))
    dt = 0.05
    u = tuple(onp.full(s, grid.dx / dt if d == axis else 0.0) for d, s in enumerate(domain.velocity_shapes))
    return domain, u, dt


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_unit_translation_is_a_shift_and_its_gradient_is_the_input(scheme, ndim):
    """jax-cfd's identity: advecting by exactly one cell is a permutation, so the
    gradient of ½‖q'‖² with respect to q is q itself."""
    domain, u, dt = _unit_translation(8 if ndim == 3 else 16, ndim)
    q = onp.random.default_rng(1).standard_normal(domain.grid.shape)
    out = advect(q, u, dt=dt, domain=domain, scheme=scheme)
    onp.testing.assert_allclose(out, onp.roll(q, 1, axis=0), atol=1e-12)
    g = fg.grad(lambda q: 0.5 * fnp.sum(advect(q, u, dt=dt, domain=domain, scheme=scheme) ** 2))(q)
    onp.testing.assert_allclose(g, q, atol=1e-12)


def _vortex_velocity(domain, t, period):
    """LeVeque's reversible single vortex from ψ = sin²(πx) sin²(πy) cos(πt/T)/π,
    on the MAC faces (discretely divergence-free: differences of ψ at the nodes)."""
    grid = domain.grid
    h = grid.dx
    xn = onp.arange(grid.shape[0] + 1) * h
    yn = onp.arange(grid.shape[1] + 1) * h
    X, Y = onp.meshgrid(xn, yn, indexing="ij")
    psi = onp.sin(onp.pi * X) ** 2 * onp.sin(onp.pi * Y) ** 2 * onp.cos(onp.pi * t / period) / onp.pi
    u = (psi[:, 1:] - psi[:, :-1]) / h     # u = ∂ψ/∂y on x-faces
    v = -(psi[1:, :] - psi[:-1, :]) / h    # v = -∂ψ/∂x on y-faces
    return u, v


def _vortex_error(n, scheme, period=1.0, cfl=1.0, width=0.15):
    grid = Grid((n, n), (1.0, 1.0))
    domain = Domain(grid, Boundaries.closed(2, "free_slip"))
    x, y = grid.mesh()
    q0 = onp.exp(-((x - 0.5) ** 2 + (y - 0.72) ** 2) / (2 * width ** 2))
    steps = int(onp.ceil(period / (cfl * grid.dx)))
    dt = period / steps
    q = q0
    for k in range(steps):
        u = _vortex_velocity(domain, (k + 0.5) * dt, period)
        q = advect(q, u, dt=dt, domain=domain, scheme=scheme)
    return onp.abs(q - q0).mean()


@pytest.mark.slow
def test_convergence_order_on_the_reversible_vortex():
    orders = {}
    for scheme in SCHEMES:
        e = [_vortex_error(n, scheme) for n in (32, 64, 128)]
        orders[scheme] = onp.log2(e[1] / e[2])
    assert 0.85 <= orders["semi_lagrangian"] <= 1.3, orders
    assert orders["maccormack"] >= 1.8, orders
