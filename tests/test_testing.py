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
