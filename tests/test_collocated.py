"""The collocated ↔ MAC maps: exact round trip, adjoints, and the error of the naive
average they replace."""

import numpy as onp
import pytest

from fluidgrad import InputError
from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.collocated import centers_to_faces, collocated_to_mac, faces_to_centers, mac_to_collocated
from fluidgrad.grid import Grid
from fluidgrad.testing import check_vjp


def _domain(n, ndim=2, boundaries=None):
    grid = Grid((n,) * ndim, (2 * onp.pi,) * ndim)
    return Domain(grid, boundaries or Boundaries.periodic(ndim))


def _naive_round_trip(c, axis):
    """Centre → face by the neighbour average, and back by the neighbour average."""
    f = 0.5 * (c + onp.roll(c, 1, axis))
    return 0.5 * (f + onp.roll(f, -1, axis))


@pytest.mark.parametrize("n", [8, 15, 16, 64])
@pytest.mark.parametrize("dtype, tol", [(onp.float64, 1e-14), (onp.float32, 1e-6)])
def test_round_trip_is_exact_for_any_field(n, dtype, tol):
    """Random fields carry every mode, the Nyquist mode of an even n included."""
    rng = onp.random.default_rng(n)
    domain = _domain(n)
    comps = tuple(rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    back = mac_to_collocated(collocated_to_mac(comps, domain), domain)
    for c, b in zip(comps, back, strict=True):
        assert b.dtype == dtype
        assert onp.linalg.norm(b - c) / onp.linalg.norm(c) < tol
    faces = tuple(rng.standard_normal((n, n)) for _ in range(2))
    again = collocated_to_mac(mac_to_collocated(faces, domain), domain)
    for f, a in zip(faces, again, strict=True):
        assert onp.linalg.norm(a - f) / onp.linalg.norm(f) < 1e-14


@pytest.mark.parametrize("n", [16, 64])
def test_naive_average_fails_the_same_round_trip(n):
    """The neighbour average loses sin²(π/n) of the smoothest mode; the shift loses nothing."""
    x = onp.arange(n) * 2 * onp.pi / n
    c = onp.sin(x)[:, None] * onp.cos(x)[None, :]
    naive = onp.linalg.norm(_naive_round_trip(c, 0) - c) / onp.linalg.norm(c)
    onp.testing.assert_allclose(naive, onp.sin(onp.pi / n) ** 2, rtol=1e-10)
    assert naive > 1e-4
    exact = faces_to_centers(centers_to_faces(c, axis=0), axis=0)
    assert onp.linalg.norm(exact - c) / onp.linalg.norm(c) < 1e-14


def test_face_values_are_the_field_half_a_cell_down():
    """A band-limited field lands on the faces with its exact values there."""
    n, k = 32, 3
    h = 2 * onp.pi / n
    x = onp.arange(n) * h                           # the cell points
    y = onp.arange(n) * h
    c = onp.cos(k * x[:, None] + 0.4) * onp.sin(2 * y[None, :])
    f = centers_to_faces(c, axis=0)
    exact = onp.cos(k * (x[:, None] - h / 2) + 0.4) * onp.sin(2 * y[None, :])
    onp.testing.assert_allclose(f, exact, atol=1e-13)
    g = centers_to_faces(c, axis=1)
    onp.testing.assert_allclose(g, onp.cos(k * x[:, None] + 0.4) * onp.sin(2 * (y[None, :] - h / 2)), atol=1e-13)


def test_nyquist_mode_is_passed_through():
    n = 8
    checker = (-1.0) ** onp.arange(n)[:, None] * onp.ones((1, 5))
    onp.testing.assert_allclose(centers_to_faces(checker, axis=0), checker, atol=1e-14)
    onp.testing.assert_allclose(faces_to_centers(checker, axis=0), checker, atol=1e-14)


@pytest.mark.parametrize("shape, axis", [((8, 6), 0), ((7, 5), 1), ((4, 6, 5), 2)])
def test_maps_are_orthogonal_and_each_others_transpose(shape, axis):
    """S Sᵀ = I, and ⟨S a, b⟩ = ⟨a, S⁻¹ b⟩ (the VJP of one is the other)."""
    rng = onp.random.default_rng(1)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    lhs = float((centers_to_faces(a, axis=axis) * b).sum())
    rhs = float((a * faces_to_centers(b, axis=axis)).sum())
    assert abs(lhs - rhs) <= 1e-13 * abs(lhs)
    onp.testing.assert_allclose(onp.linalg.norm(centers_to_faces(a, axis=axis)), onp.linalg.norm(a), rtol=1e-14)


@pytest.mark.parametrize("fun", [collocated_to_mac, mac_to_collocated])
def test_dot_product_and_finite_differences_through_the_vector_maps(fun):
    domain = _domain(12)
    rng = onp.random.default_rng(2)
    comps = tuple(rng.standard_normal((12, 12)) for _ in range(2))
    result = check_vjp(lambda v: fun(v, domain), comps, rtol_dot=1e-13, rtol_fd=1e-9, eps=1e-3)
    assert result.dot_product_error < 1e-13 and result.finite_difference_error < 1e-9


def _channel_domain(n):
    spec = {"x_lo": {"type": "inflow", "velocity": [1.0, 0.0]}, "x_hi": "outflow", "y": "no_slip"}
    return Domain(Grid((n, n), (1.0, 1.0)), Boundaries.from_dict(spec, 2))


def test_a_bounded_axis_gets_n_plus_one_faces_and_a_linear_field_round_trips_exactly():
    n = 10
    domain = _channel_domain(n)
    x = (onp.arange(n) + 0.5) / n                      # the cell centres of [0, 1]
    c = 2.0 + 3.0 * x[:, None] * onp.ones((1, n)) - 0.5 * x[None, :] * x[:, None]
    faces = collocated_to_mac((c, c.T.copy()), domain)
    assert faces[0].shape == (n + 1, n) and faces[1].shape == (n, n + 1)
    # a field linear along the axis lands on the faces (k h) with its exact values
    xf = onp.arange(n + 1) / n
    exact = 2.0 + 3.0 * xf[:, None] * onp.ones((1, n)) - 0.5 * x[None, :] * xf[:, None]
    onp.testing.assert_allclose(faces[0], exact, atol=1e-13)
    back = mac_to_collocated(faces, domain)
    onp.testing.assert_allclose(back[0], c, atol=1e-13)
    onp.testing.assert_allclose(back[1], c.T, atol=1e-13)


@pytest.mark.parametrize("n", [16, 32, 64])
def test_bounded_round_trip_is_second_order(n):
    """c → f → c loses (h²/4) c'' inside and nothing at the two end cells: a cosine of
    wavenumber 1 on [0, 1] comes back within sin²(π/2n) of itself, relative."""
    domain = _channel_domain(n)
    x = (onp.arange(n) + 0.5) / n
    c = onp.cos(onp.pi * x)[:, None] * onp.ones((1, n))
    back = mac_to_collocated(collocated_to_mac((c, onp.zeros((n, n))), domain), domain)[0]
    error = onp.abs(back - c).max()
    assert error <= onp.sin(onp.pi / (2 * n)) ** 2 * (1 + 1e-9)
    assert error >= 0.5 * onp.sin(onp.pi / (2 * n)) ** 2          # and not better: an honest O(h²)
    onp.testing.assert_allclose(back[[0, -1]], c[[0, -1]], atol=1e-14)


@pytest.mark.parametrize("fun", [collocated_to_mac, mac_to_collocated])
def test_dot_product_and_finite_differences_on_a_bounded_box(fun):
    n = 9
    domain = Domain(Grid((n, n), (1.0, 1.0)), Boundaries.from_dict({"x": "periodic", "y": "no_slip"}, 2))
    rng = onp.random.default_rng(3)
    if fun is collocated_to_mac:
        args = tuple(rng.standard_normal((n, n)) for _ in range(2))
    else:
        args = tuple(rng.standard_normal(domain.face_shape(d)) for d in range(2))
    result = check_vjp(lambda v: fun(v, domain), args, rtol_dot=1e-13, rtol_fd=1e-9, eps=1e-3)
    assert result.dot_product_error < 1e-13 and result.finite_difference_error < 1e-9


def test_the_wrong_number_of_components_is_refused():
    domain = _domain(8, boundaries=Boundaries.closed(2))
    with pytest.raises(InputError, match="expected 2 components"):
        collocated_to_mac((onp.zeros((8, 8)),), domain)
