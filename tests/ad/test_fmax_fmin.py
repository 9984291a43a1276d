"""``fnp.fmax``/``fnp.fmin`` are numpy's NaN-ignoring fmax/fmin, with the derivative going
to the side that was picked (split evenly on ties, as for maximum/minimum)."""

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as fnp

NAN = onp.nan
X = onp.array([NAN, 1.0, 3.0, 2.0, NAN, -1.0])
Y = onp.array([2.0, NAN, 1.0, 2.0, NAN, 4.0])
#: d out / d x and d out / d y at each entry: NaN on one side picks the other; two NaNs
#: pick x (numpy returns the first NaN); a tie splits
SHARES = {
    "fmax": ([0.0, 1.0, 1.0, 0.5, 1.0, 0.0], [1.0, 0.0, 0.0, 0.5, 0.0, 1.0]),
    "fmin": ([0.0, 1.0, 0.0, 0.5, 1.0, 1.0], [1.0, 0.0, 1.0, 0.5, 0.0, 0.0]),
}


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_values_match_numpy_including_nans(name):
    ours, theirs = getattr(fnp, name), getattr(onp, name)
    onp.testing.assert_array_equal(ours(X, Y), theirs(X, Y))
    onp.testing.assert_array_equal(ours([NAN, 1.0], [2.0, NAN]), theirs([NAN, 1.0], [2.0, NAN]))
    onp.testing.assert_array_equal(ours(X, 0.5), theirs(X, 0.5))
    assert ours is not getattr(fnp, "maximum" if name == "fmax" else "minimum")


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_vjp_goes_to_the_picked_side(name):
    fun = getattr(fnp, name)
    w = onp.arange(1.0, 7.0)
    gx, gy = fg.grad(lambda x, y: fnp.sum(w * fun(x, y)), argnums=(0, 1))(X, Y)
    onp.testing.assert_allclose(gx, w * onp.array(SHARES[name][0]), rtol=0, atol=0)
    onp.testing.assert_allclose(gy, w * onp.array(SHARES[name][1]), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_jvp_goes_to_the_picked_side_and_matches_the_vjp(name):
    fun = getattr(fnp, name)
    dx, dy = onp.full(6, 1.0), onp.full(6, 10.0)
    value, tangent = fg.jvp(fun, (X, Y), (dx, dy))
    onp.testing.assert_array_equal(value, getattr(onp, name)(X, Y))
    expected = onp.array(SHARES[name][0]) * 1.0 + onp.array(SHARES[name][1]) * 10.0
    onp.testing.assert_allclose(tangent, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_derivative_matches_finite_differences_away_from_ties(name):
    fun = getattr(fnp, name)
    rng = onp.random.default_rng(3)
    x, y = rng.standard_normal((4, 5)), rng.standard_normal(5)
    x[0, ::2] = NAN
    loss = lambda a, b: fnp.sum(fnp.where(fnp.isnan(fun(a, b)), 0.0, fun(a, b)) ** 2)  # noqa: E731
    gx, gy = fg.grad(loss, argnums=(0, 1))(x, y)
    eps = 1e-6
    for arr, g, which in ((x, gx, 0), (y, gy, 1)):
        v = rng.standard_normal(arr.shape)
        plus = [x, y]
        minus = [x, y]
        plus[which], minus[which] = arr + eps * v, arr - eps * v
        fd = (float(loss(*plus)) - float(loss(*minus))) / (2 * eps)
        assert abs(fd - float(onp.nansum(g * v))) <= 1e-6 * max(1.0, abs(fd))
