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
    masked = tuple(g * m for g, m in zip(grad, domain.open_faces, strict=True))
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
    u = tuple(onp.ones(s) * c for s, c in zip(domain.velocity_shapes, (1.0, 2.0, 3.0), strict=True))
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


def _levi_civita(i, j, k):
    return (i - j) * (j - k) * (k - i) / 2


def test_3d_curl_of_sines_in_a_periodic_box():
    """Each component a sum of sines of the two other coordinates, every one of the six
    derivatives with its own amplitude. On the centres the central difference of
    ``sin(k x)`` is exactly ``k cos(k x) · sin(k h) / (k h)``."""
    grid = Grid((8, 8, 8), (1.0, 1.0, 1.0))
    domain = Domain(grid, Boundaries.periodic(3))
    k, h = 2 * onp.pi, grid.dx
    amplitude = {(0, 1): 1.0, (0, 2): 2.0, (1, 0): 3.0, (1, 2): 5.0, (2, 0): 7.0, (2, 1): 11.0}
    u = []
    for c in range(3):
        x = grid.mesh(c, True)
        u.append(sum(amplitude[c, a] * onp.sin(k * x[a]) for a in range(3) if a != c))
    x = grid.mesh()
    d = {(c, a): amplitude[c, a] * k * onp.cos(k * x[a]) * onp.sin(k * h) / (k * h) for c, a in amplitude}
    expected = (d[2, 1] - d[1, 2], d[0, 2] - d[2, 0], d[1, 0] - d[0, 1])   # ∇ × u
    w = stencils.vorticity(tuple(u), domain=domain)
    assert len(w) == 3
    for got, want in zip(w, expected, strict=True):
        onp.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ndim, axis", [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])
def test_curl_of_a_shear_is_exact_in_every_cell_up_to_the_walls(ndim, axis):
    """The components tangential to the faces normal to ``axis`` grow linearly across the
    box, between a resting and a moving no-slip wall; the other walls are free-slip. Every
    wall ghost is exact for this field, so every cell, boundary cells included, has the
    exact curl ``(∇ × u)_i = Σ ε_ijk ∂_j u_k`` (2-D: its z component)."""
    shape = (6, 5, 4)[:ndim]
    grid = Grid(shape, tuple(0.25 * n for n in shape))
    rates = dict(zip([c for c in range(ndim) if c != axis], (0.7, -1.3)[:ndim - 1], strict=True))
    wall = [rates.get(c, 0.0) * grid.size[axis] for c in range(ndim)]
    spec = {"xyz"[b]: "free_slip" for b in range(ndim) if b != axis}
    spec.update({f"{'xyz'[axis]}_lo": "no_slip", f"{'xyz'[axis]}_hi": {"type": "no_slip", "velocity": wall}})
    domain = Domain(grid, Boundaries.from_dict(spec, ndim))
    u = tuple(rates.get(c, 0.0) * grid.mesh(c, False)[axis] for c in range(ndim))
    w = stencils.vorticity(u, domain=domain)
    if ndim == 2:
        expected = [sum(_levi_civita(2, axis, c) * r for c, r in rates.items())]
        w = (w,)
    else:
        expected = [sum(_levi_civita(i, axis, c) * r for c, r in rates.items()) for i in range(3)]
    assert any(expected)
    for got, want in zip(w, expected, strict=True):
        assert got.shape == shape
        onp.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_divergence_of_known_fields_is_exact_in_every_cell():
    """Walls on x and y (their faces are the boundary values), periodic z:
    ``u = (a x², b y², c sin(k z))`` has ``div u = 2a x + 2b y + 2c cos(k z) sin(k h/2) / h``
    exactly at the centres (the forward difference of x² over a cell is 2x at its centre)."""
    grid = Grid((6, 5, 4), (1.5, 1.25, 1.0))
    domain = Domain(grid, Boundaries.from_dict({"x_lo": "no_slip", "x_hi": "outflow", "y": "free_slip",
                                                "z": "periodic"}, 3))
    a, b, c, k, h = 0.7, -1.1, 1.9, 2 * onp.pi, grid.dx
    u = (a * grid.mesh(0, False)[0] ** 2, b * grid.mesh(1, False)[1] ** 2, c * onp.sin(k * grid.mesh(2, True)[2]))
    x, y, z = grid.mesh()
    expected = 2 * a * x + 2 * b * y + 2 * c * onp.cos(k * z) * onp.sin(k * h / 2) / h
    onp.testing.assert_allclose(stencils.divergence(u, domain=domain), expected, rtol=0, atol=1e-12)


def test_gradient_of_a_known_field_is_exact_on_every_face():
    """``p = (x - Lx)·(s + q y² + r sin(k z))``: a wall at x = 0 (zero normal gradient on its
    face), an outflow at x = Lx (p = 0 there: the ghost -p is exact for this p), free-slip
    y walls, periodic z. Interior faces get the exact differences of the centre values."""
    grid = Grid((6, 5, 4), (1.5, 1.25, 1.0))
    domain = Domain(grid, Boundaries.from_dict({"x_lo": "no_slip", "x_hi": "outflow", "y": "free_slip",
                                                "z": "periodic"}, 3))
    s, q, r, k, h, lx = 0.4, -0.9, 1.3, 2 * onp.pi, grid.dx, grid.size[0]
    x, y, z = grid.mesh()
    p = (x - lx) * (s + q * y ** 2 + r * onp.sin(k * z))
    g = stencils.gradient(p, domain=domain)
    xf, yf, zf = grid.mesh(0, False)
    gx = s + q * yf ** 2 + r * onp.sin(k * zf)
    gx[0] = 0.0                                                  # the wall face
    onp.testing.assert_allclose(g[0], gx, rtol=0, atol=1e-12)    # ... and the outflow face at x = Lx
    xf, yf, zf = grid.mesh(1, False)
    gy = (xf - lx) * q * 2 * yf
    gy[:, [0, -1]] = 0.0                                         # the y walls
    onp.testing.assert_allclose(g[1], gy, rtol=0, atol=1e-12)
    xf, yf, zf = grid.mesh(2, True)
    gz = (xf - lx) * r * 2 * onp.cos(k * zf) * onp.sin(k * h / 2) / h
    onp.testing.assert_allclose(g[2], gz, rtol=0, atol=1e-12)
    assert len(g) == 3
