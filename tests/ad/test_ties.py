"""Kinks at ties: where ``maximum``/``minimum``/``fmax``/``fmin`` see equal arguments, or
``clip`` meets a bound, the cotangent is split evenly (1/2 to each side), which is what a
central difference measures; ``abs`` at 0 has derivative 0 (also the central difference)."""

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as fnp

X = onp.array([1.0, 2.0, -0.5, 3.0])
Y = onp.array([1.0, 1.0, -0.5, 4.0])   # ties at entries 0 and 2
#: d out / d x and d out / d y at each entry, for maximum (fmax) and minimum (fmin)
SHARES = {"max": ([0.5, 1.0, 0.5, 0.0], [0.5, 0.0, 0.5, 1.0]),
          "min": ([0.5, 0.0, 0.5, 1.0], [0.5, 1.0, 0.5, 0.0])}
BINARY = [("maximum", "max"), ("minimum", "min"), ("fmax", "max"), ("fmin", "min")]


def _central(fun, x, v, eps=2.0 ** -10):
    """Central difference of ``fun`` at ``x`` along ``v`` (exact here: fun is piecewise linear
    and ``eps`` a power of two)."""
    return (onp.asarray(fun(x + eps * v)) - onp.asarray(fun(x - eps * v))) / (2 * eps)


@pytest.mark.parametrize("name, kind", BINARY)
def test_vjp_and_jvp_split_evenly_at_ties(name, kind):
    fun = getattr(fnp, name)
    w = onp.array([1.0, 10.0, 100.0, 1000.0])
    gx, gy = fg.grad(lambda x, y: fnp.sum(w * fun(x, y)), argnums=(0, 1))(X, Y)
    onp.testing.assert_array_equal(gx, w * onp.array(SHARES[kind][0]))
    onp.testing.assert_array_equal(gy, w * onp.array(SHARES[kind][1]))
    _, tangent = fg.jvp(fun, (X, Y), (onp.full(4, 1.0), onp.full(4, 10.0)))
    onp.testing.assert_array_equal(tangent, onp.array(SHARES[kind][0]) + 10.0 * onp.array(SHARES[kind][1]))


@pytest.mark.parametrize("name, kind", BINARY)
def test_shares_at_ties_are_the_central_differences(name, kind):
    fun = getattr(fnp, name)
    for k in range(4):
        e = onp.eye(4)[k]
        dx = _central(lambda x: fun(x, Y), X, e)[k]
        dy = _central(lambda y: fun(X, y), Y, e)[k]
        assert (dx, dy) == (SHARES[kind][0][k], SHARES[kind][1][k]), (k, dx, dy)


@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
def test_a_broadcast_tie_sums_the_halves(name):
    """A scalar tied with two entries of a vector gets 1/2 + 1/2."""
    fun = getattr(fnp, name)
    x = onp.array([0.5, 0.5, 0.5 + (1 if name in ("maximum", "fmax") else -1)])
    gx, gy = fg.grad(lambda x, y: fnp.sum(fun(x, y)), argnums=(0, 1))(x, 0.5)
    onp.testing.assert_array_equal(gx, [0.5, 0.5, 1.0])
    assert gy == 1.0


def test_clip_at_a_bound_splits_evenly():
    lo, hi = -1.0, 2.0
    x = onp.array([-3.0, -1.0, 0.5, 2.0, 4.0])
    expected = onp.array([0.0, 0.5, 1.0, 0.5, 0.0])
    g = fg.grad(lambda x: fnp.sum(fnp.clip(x, lo, hi)))(x)
    onp.testing.assert_array_equal(g, expected)
    _, tangent = fg.jvp(lambda x: fnp.clip(x, lo, hi), (x,), (onp.ones(5),))
    onp.testing.assert_array_equal(tangent, expected)
    central = [_central(lambda x: onp.clip(x, lo, hi), x, e)[k] for k, e in enumerate(onp.eye(5))]
    onp.testing.assert_array_equal(central, expected)
    onp.testing.assert_array_equal(fg.grad(lambda x: fnp.sum(fnp.clip(x, lo, None)))(x), [0, 0.5, 1, 1, 1])
    onp.testing.assert_array_equal(fg.grad(lambda x: fnp.sum(fnp.clip(x, None, hi)))(x), [1, 1, 1, 0.5, 0])
    composite = fg.grad(lambda x: fnp.sum(fnp.minimum(fnp.maximum(x, lo), hi)))(x)
    onp.testing.assert_array_equal(composite, expected)


def test_abs_at_zero_has_the_central_difference_zero():
    x = onp.array([-2.0, 0.0, 3.0])
    onp.testing.assert_array_equal(fg.grad(lambda x: fnp.sum(fnp.abs(x)))(x), [-1.0, 0.0, 1.0])
    assert _central(onp.abs, 0.0, 1.0) == 0.0


def test_max_and_min_reductions_share_a_tie_evenly():
    """The reductions give each of k tied entries 1/k (for k = 2 the central difference)."""
    x = onp.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    onp.testing.assert_array_equal(fg.grad(lambda x: fnp.sum(fnp.max(x, axis=1)))(x),
                                   [[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    onp.testing.assert_array_equal(fg.grad(lambda x: fnp.min(x))(x), [[0, 1, 0], [0, 0, 0]])
    e = onp.zeros_like(x)
    e[0, 0] = 1.0
    assert _central(lambda x: onp.max(x, axis=1), x, e)[0] == 0.5
