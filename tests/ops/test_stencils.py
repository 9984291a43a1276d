"""Stencils against exact results and identities."""

import numpy as onp
import pytest

from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import stencils
from fluidgrad.ops.pressure import poisson_operator

from ops import domains


@pytest.mark.parametrize("name, ndim", domains.ALL)
def test_divergence_of_masked_gradient_is_the_pressure_laplacian(name, ndim):
    """L = D M G is exactly the operator the iterative solvers use."""
    domain = domains.make(name, ndim)
    p = onp.random.default_rng(0).standard_normal(domain.grid.shape) * domain.fluid
    grad = stencils.gradient(p, domain=domain)
    masked = tuple(g * m for g, m in zip(grad, domain.open_faces))
    lhs = stencils.divergence(masked, domain=domain)
    rhs = poisson_operator(domain, p).apply(p)
    onp.testing.assert_allclose(lhs[domain.fluid], rhs[domain.fluid], rtol=1e-12, atol=1e-9)


def test_gradient_and_divergence_are_exact_on_linear_fields():
    grid = Grid((8, 6, 5), (1.0, 0.75, 0.625))
    domain = Domain(grid, Boundaries.from_dict({"x": "periodic"}, 3))
    x, y, z = grid.mesh()
    p = 2.0 * y - 3.0 * z
    g = stencils.gradient(p, domain=domain)
    onp.testing.assert_allclose(g[1][:, 1:-1], 2.0)
    onp.testing.assert_allclose(g[2][:, :, 1:-1], -3.0)
    onp.testing.assert_allclose(g[1][:, 0], 0.0)   # walls: no normal pressure gradient
    u = tuple(onp.ones(s) * c for s, c in zip(domain.velocity_shapes, (1.0, 2.0, 3.0)))
    onp.testing.assert_allclose(stencils.divergence(u, domain=domain), 0.0, atol=1e-14)


def test_vorticity_of_solid_body_rotation_is_twice_the_rate():
    grid = Grid((16, 16), (1.0, 1.0))
    domain = Domain(grid, Boundaries.closed(2, "free_slip"))
    omega = 0.7
    xu, yu = grid.mesh(0, False)
    xv, yv = grid.mesh(1, False)
    u = (-omega * (yu - 0.5), omega * (xv - 0.5))
    w = stencils.vorticity(u, domain=domain)
    onp.testing.assert_allclose(w[2:-2, 2:-2], 2 * omega, rtol=1e-12)


def test_laplacian_second_order_on_a_periodic_sine():
    errors = []
    for n in (16, 32):
        grid = Grid((n, n), (1.0, 1.0))
        domain = Domain(grid, Boundaries.periodic(2))
        x, y = grid.mesh()
        q = onp.sin(2 * onp.pi * x) * onp.cos(2 * onp.pi * y)
        lap = stencils.laplacian(q, domain=domain)
        errors.append(onp.abs(lap + 8 * onp.pi ** 2 * q).max())
    assert 3.8 < errors[0] / errors[1] < 4.2


def test_averaging_keeps_constants():
    for name, ndim in domains.ALL:
        domain = domains.make(name, ndim)
        c = onp.full(domain.grid.shape, 1.5)
        for axis in range(ndim):
            onp.testing.assert_allclose(stencils.center_to_face(c, domain=domain, axis=axis), 1.5)
        u = tuple(onp.full(s, 2.0) for s in domain.velocity_shapes)
        for a in stencils.face_to_center(u, domain=domain):
            onp.testing.assert_allclose(a, 2.0)
