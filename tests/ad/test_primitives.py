"""Every registered primitive passes the dot-product test (JVP vs VJP) and a
central-difference check of its JVP, in float64; linear primitives pass the transpose
identity. A primitive registered without test inputs fails the suite."""

import importlib
import pkgutil

import numpy as onp
import pytest

import fluidgrad
import fluidgrad.ops  # noqa: F401 - registers the fluid kernels
import fluidgrad.collocated  # noqa: F401 - registers the collocated <-> MAC maps
from fluidgrad.ad.core import Primitive, differentiable_primitives
from fluidgrad.ad.tree import flatten, tree_map
from fluidgrad.testing import _inner, _random_like, check_vjp
from ad.primitive_cases import CASES as ARRAY_CASES
from ops.kernel_cases import CASES as KERNEL_CASES

CASES = {**ARRAY_CASES, **KERNEL_CASES}

PRIMITIVES = differentiable_primitives()
PARAMS = [pytest.param(name, k, id=f"{name}-{case.id or k}")
          for name in sorted(CASES) for k, case in enumerate(CASES[name])]


def _primitives_defined_in_fluidgrad():
    found = {}
    for info in pkgutil.walk_packages(fluidgrad.__path__, "fluidgrad."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, Primitive) and obj.has_vjp:
                found[obj.name] = obj
    return found


def test_no_primitive_with_rules_escapes_the_registry():
    unregistered = sorted(name for name, p in _primitives_defined_in_fluidgrad().items()
                          if PRIMITIVES.get(name) is not p)
    assert not unregistered, f"primitives with rules but not registered: {unregistered}"


def test_every_registered_primitive_has_test_inputs():
    missing = sorted(set(PRIMITIVES) - set(CASES))
    assert not missing, f"primitives without test inputs in primitive_cases.py: {missing}"
    stale = sorted(set(CASES) - set(PRIMITIVES))
    assert not stale, f"test inputs for primitives that are not registered: {stale}"


@pytest.mark.parametrize("name, k", PARAMS)
def test_dot_product_and_finite_differences(name, k):
    case = CASES[name][k]
    args = case.make(onp.random.default_rng(k))
    result = check_vjp(PRIMITIVES[name], *args, argnums=case.argnums, kwargs=case.kwargs,
                       rtol_dot=case.rtol_dot, rtol_fd=1e-6)
    assert result.dot_product_error <= case.rtol_dot
    assert result.finite_difference_error <= 1e-6


LINEAR = [pytest.param(name, k, id=f"{name}-{case.id or k}") for name in sorted(CASES)
          if PRIMITIVES.get(name) is not None and PRIMITIVES[name].transpose_argnum is not None
          for k, case in enumerate(CASES[name])]


@pytest.mark.parametrize("name, k", LINEAR)
def test_transpose_identity(name, k):
    """<A x, y> = <x, Aᵀ y> with the forward map itself and the registered transpose
    (for affine maps, A x is taken without the constant: A x - A 0)."""
    prim = PRIMITIVES[name]
    case = CASES[name][k]
    rng = onp.random.default_rng(100 + k)
    args = list(case.make(rng))
    i = prim.transpose_argnum
    x = args[i]
    ax = prim(*args, **case.kwargs)
    y = _random_like(ax, rng)
    aty = prim.vjps[i](y, ax, *args, **case.kwargs)
    zero_args = list(args)
    zero_args[i] = tree_map(onp.zeros_like, x)
    offset = prim(*zero_args, **case.kwargs)
    ax_linear = tree_map(lambda a, b: onp.asarray(a) - onp.asarray(b), ax, offset)
    lhs, rhs = _inner(ax_linear, y), _inner(x, aty)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs), 1.0)


def _as_float32(tree):
    return tree_map(lambda x: x.astype(onp.float32) if isinstance(x, onp.ndarray) and x.dtype == onp.float64
                    else (onp.float32(x) if isinstance(x, float) else x), tree)


FLOAT32 = [pytest.param(name, k, id=f"{name}-{case.id or k}") for name in sorted(KERNEL_CASES)
           for k, case in enumerate(KERNEL_CASES[name])]


@pytest.mark.parametrize("name, k", FLOAT32)
def test_kernels_keep_float32(name, k):
    """No silent promotion: float32 inputs give float32 outputs and adjoints."""
    case = KERNEL_CASES[name][k]
    args = _as_float32(list(case.make(onp.random.default_rng(k))))
    prim = PRIMITIVES[name]
    ans = prim(*args, **case.kwargs)
    assert all(x.dtype == onp.float32 for x in flatten(ans)[0] if hasattr(x, "dtype")), name
    g = _as_float32(_random_like(ans, onp.random.default_rng(0)))
    argnums = tuple(i for i, a in enumerate(args) if any(getattr(x, "dtype", None) == onp.float32
                                                          for x in flatten(a)[0]))
    adjs = prim.apply_vjp(g, ans, args, case.kwargs, argnums)
    for i, adj in adjs.items():
        for x in flatten(adj)[0]:
            if hasattr(x, "dtype") and getattr(x, "ndim", 0) > 0:
                assert x.dtype == onp.float32, (name, i)
