"""The gradient-checking utilities must catch wrong rules."""

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as np
from fluidgrad.testing import GradientCheckError, check_grad, check_vjp, taylor_test


def _wrong_vjp_primitive():
    square = fg.primitive(lambda x: x * x, name="square_with_wrong_vjp")
    square.defvjp(lambda g, ans, x: g * 2.1 * x)  # should be 2x
    square.defjvp(lambda d, ans, x: d * 2 * x)
    return square


def test_check_vjp_catches_a_wrong_vjp():
    with pytest.raises(GradientCheckError, match="dot-product test failed"):
        check_vjp(_wrong_vjp_primitive(), onp.linspace(0.1, 1, 6))


def test_check_vjp_catches_a_wrong_jvp():
    p = fg.primitive(lambda x: np.sin(x), name="sin_with_wrong_rules")
    p.defvjp(lambda g, ans, x: g * np.sin(x))
    p.defjvp(lambda d, ans, x: d * np.sin(x))  # consistent with the VJP, both wrong
    with pytest.raises(GradientCheckError, match="central differences"):
        check_vjp(p, onp.linspace(0.1, 1, 6))


def test_check_grad_catches_a_wrong_gradient():
    square = _wrong_vjp_primitive()
    with pytest.raises(GradientCheckError):
        check_grad(lambda x: np.sum(square(x)), onp.linspace(0.1, 1, 6))
    assert check_grad(lambda x: np.sum(x * x), onp.linspace(0.1, 1, 6)) < 1e-8


def test_taylor_test_rates():
    x = onp.linspace(0.1, 1, 6)
    assert abs(taylor_test(lambda x: np.sum(np.exp(x) * np.sin(x)), x) - 2.0) < 0.1
    square = _wrong_vjp_primitive()
    result = taylor_test(lambda x: np.sum(square(x)), x, full=True)
    assert result.rate < 1.1 and abs(result.rates[-1] - 1.0) < 0.1 and len(result.rates) == 4


# --- gradient_check: U-curves, cosine, JVP vs VJP, Taylor, plateaus and kinks -------------

import json  # noqa: E402

from fluidgrad.testing import GradientReport, gradient_check, gradient_check_tree  # noqa: E402

X = onp.linspace(0.1, 1, 6)


def _smooth(x):
    return np.sum(np.exp(x) * np.sin(x))


def _smooth_grad(x):
    return onp.exp(x) * (onp.sin(x) + onp.cos(x))


def test_gradient_check_passes_a_right_gradient_with_rate_two():
    r = gradient_check(_smooth, X, jvp="auto")
    assert r.passed and r.smooth and r.diagnosis is None
    assert r.best_error <= 1e-8 and r.cosine >= 1 - 1e-12 and r.jvp_error <= 1e-12
    assert r.size == 6 and len(r.directions) == 4 and r.evaluations == 1 + 4 * 2 * 15
    for d in r.directions:
        assert d.plateau is not None and d.plateau_decades >= 2
        assert d.taylor_range is not None and abs(d.taylor_slope - 2) < 0.1 and d.taylor_plateau_decades >= 1
        assert min(d.errors) == d.best_error and d.errors[0] > 1e3 * d.best_error  # a U, judged at its bottom
    assert r.taylor_decades >= 1
    assert "PASSED" in r.summary() and "FAILED" not in r.summary()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_check_fails_a_gradient_off_by_a_tenth_of_a_percent(seed):
    r = gradient_check(_smooth, X, 1.001 * _smooth_grad(X), seed=seed)
    assert not r.passed and r.best_error > 1e-4
    assert r.cosine > 0.9999  # a scaled gradient keeps its direction: only the U-curve catches it
    assert all(d.taylor_plateau_decades == 0 for d in r.directions)  # rate 1, not 2, at small h
    assert "FAILED" in r.summary()


def test_gradient_check_fails_a_gradient_with_one_component_flipped():
    g = _smooth_grad(X)
    g[2] *= -1
    r = gradient_check(_smooth, X, g)
    assert not r.passed and r.cosine < 0.99 and r.best_error > 1e-2


def test_gradient_check_catches_a_wrong_jvp():
    r = gradient_check(_smooth, X, jvp=lambda v: 1.0001 * float(_smooth_grad(X) @ v))
    assert r.best_error <= 1e-8 and r.jvp_error > 1e-5 and not r.passed


def test_a_kink_at_the_point_is_diagnosed():
    r = gradient_check(lambda x: np.sum(np.abs(x)), onp.zeros(5), onp.ones(5))
    assert not r.smooth and "kink at this point" in r.diagnosis and not r.passed
    assert all(d.kink for d in r.directions)
    assert r.diagnosis in r.summary() and r.diagnosis.count("\n") == 0


def test_a_noisy_loss_has_no_plateau():
    table = onp.random.default_rng(5).standard_normal(1 << 16)

    def noisy(x):  # x² plus a staircase of 1e-4 steps at the scale 1e-10: FD never settles
        return float(onp.sum(x ** 2) + 1e-4 * table[int(abs(onp.sum(x)) * 1e10) % table.size])

    r = gradient_check(noisy, X, 2 * X)
    assert not r.smooth and all(d.plateau is None for d in r.directions)
    assert r.diagnosis.startswith("the loss looks non-smooth here") and "never settle" in r.diagnosis


def test_gradient_check_near_a_kink_finds_the_plateau_below_it():
    x = onp.array([3e-5, -0.4, 0.7, 1.1])  # the first |x_i| is crossed by the larger steps only
    r = gradient_check(lambda x: np.sum(np.abs(x) * x + np.abs(x)), x, directions=3)
    assert r.passed and r.smooth
    assert all(d.errors[0] > 1e-3 and d.plateau[0] <= 1e-4 for d in r.directions)


def test_report_json_round_trip():
    r = gradient_check(_smooth, X, jvp="auto", directions=2)
    data = json.loads(json.dumps(r.to_dict()))
    assert data["passed"] is True and len(data["directions"]) == 2 and len(data["directions"][0]["errors"]) == 15
    back = GradientReport.from_dict(data)
    assert back.to_dict() == r.to_dict() and back.summary().splitlines()[:-1] == r.summary().splitlines()[:-1]


def test_gradient_check_tree_on_nested_containers():
    def f(tree):
        return np.sum(tree["a"] ** 2) + np.sum(np.sin(tree["b"][0])) * tree["b"][1]

    tree = {"a": onp.arange(3.0), "b": (onp.linspace(0, 1, 4).astype(onp.float64), 1.5)}
    r = gradient_check_tree(f, tree)
    assert r.passed and r.size == 8


def test_check_grad_uses_the_best_step():
    # with one fixed step this gradient check would fail: 1e-6 is too large for the curvature here
    f = lambda x: np.sum(np.sin(1e3 * x))  # noqa: E731
    assert check_grad(f, X * 1e-3, eps=1e-2, raise_on_failure=False) > 1e-6
    assert check_grad(f, X * 1e-3) < 1e-6


def test_gradient_check_tree_pushes_the_auto_jvp_through_every_leaf():
    """jvp="auto" on a tree: the tangent reaches the arrays and the plain float (the leaves
    used to be rebuilt with np.asarray, which dropped it: a JVP error of 1.0 always)."""
    tree = {"a": onp.linspace(0.5, 1.5, 9).reshape(3, 3), "b": onp.arange(4.0), "c": 1.5}
    report = gradient_check_tree(lambda t: np.sum(t["a"] ** 3) + np.sum(np.sin(t["b"])) * t["c"], tree, jvp="auto")
    assert report.passed and report.jvp_error < 1e-12, report.jvp_error
