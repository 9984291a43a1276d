"""Differentiable numpy: the namespace behind ``import fluidgrad.numpy as np``.

Every numpy function is available. Those with derivative rules (arithmetic, math
functions, reductions, shaping, indexing, products) are primitives; functions whose
result has no derivative (comparisons, ``floor``, ``argmax``, ``zeros_like``, ...)
pass their inputs through as plain values; any other numpy function is a primitive
without rules: it computes as usual and differentiating through it raises a clear
error naming it.
"""

from __future__ import annotations

import functools
import types

import numpy as onp

from ..core import Primitive
from ..core import raw as _raw
from ..tensor import Tensor
from ..tree import tree_map
from . import arith, products, reductions, shaping

#: numpy functions whose output does not depend differentiably on their inputs.
NONDIFFERENTIABLE = frozenset("""
    floor ceil round around rint trunc fix sign signbit heaviside floor_divide mod remainder fmod
    argmax argmin argsort argwhere nonzero flatnonzero searchsorted digitize bincount histogram
    unique count_nonzero shape ndim size result_type can_cast iscomplexobj isrealobj isscalar
    zeros_like ones_like empty_like full_like isnan isinf isfinite isposinf isneginf isclose
    allclose array_equal array_equiv equal not_equal greater greater_equal less less_equal
    logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_xor invert
    left_shift right_shift any all iscomplex isreal zeros ones empty full arange eye identity
    indices meshgrid tri tril_indices triu_indices diag_indices ravel_multi_index unravel_index
    broadcast_shapes histogram2d histogramdd gcd lcm logspace geomspace
""".split())

_DEFINED = {}
for _module in (arith, reductions, shaping, products):
    for _name, _obj in vars(_module).items():
        if isinstance(_obj, Primitive) or (
                callable(_obj) and getattr(_obj, "__module__", None) == _module.__name__
                and not _name.startswith("_") and not isinstance(_obj, type)):
            _DEFINED[_name] = _obj
for _private in ("prim", "linear", "shape_of", "dtype_of", "broadcast_like", "restore"):
    _DEFINED.pop(_private, None)


def strip(tree):
    """``tree`` with every Tensor replaced by its plain value (no gradient flows)."""
    return tree_map(_raw, tree)


def passthrough(fun):
    """``fun`` applied to plain values: a function whose result carries no derivative."""
    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        return fun(*strip(list(args)), **strip(kwargs))
    return wrapper


def _contains_tensor(obj):
    if type(obj) is Tensor:
        return True
    if isinstance(obj, (list, tuple)):
        return any(_contains_tensor(o) for o in obj)
    return False


def _nested_stack(obj):
    if isinstance(obj, (list, tuple)):
        return shaping.stack([_nested_stack(o) for o in obj])
    return obj


def array(obj, dtype=None, *args, **kwargs):
    """numpy.array; a (nested) list holding Tensors becomes a differentiable stack."""
    if _contains_tensor(obj):
        out = _nested_stack(obj)
        return arith.astype(out, dtype) if dtype is not None else out
    return onp.array(obj, dtype, *args, **kwargs)


def asarray(obj, dtype=None, *args, **kwargs):
    """numpy.asarray; Tensors pass through (cast if ``dtype`` is given)."""
    if type(obj) is Tensor:
        return obj if dtype is None or obj.dtype == dtype else arith.astype(obj, dtype)
    if _contains_tensor(obj):
        return array(obj, dtype)
    return onp.asarray(obj, dtype, *args, **kwargs)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """numpy.linspace, differentiable in ``start`` and ``stop`` (scalars)."""
    if not (type(start) is Tensor or type(stop) is Tensor) or retstep or axis != 0:
        return onp.linspace(_raw(start), _raw(stop), num, endpoint, retstep, dtype, axis)
    steps = num - 1 if endpoint else num
    t = onp.arange(num) / max(steps, 1)
    out = start + (stop - start) * t.astype(dtype or onp.result_type(_raw(start), _raw(stop), float))
    return arith.astype(out, dtype) if dtype is not None else out


def copy(a, *args, **kwargs):
    """A copy of ``a`` (Tensors are immutable, so a Tensor is returned as it is)."""
    return a if type(a) is Tensor else onp.copy(a, *args, **kwargs)


def stop_gradient(x):
    """``x`` with no derivative: every Tensor in the tree replaced by its value."""
    return strip(x)


_DEFINED.update(array=array, asarray=asarray, linspace=linspace, copy=copy,
                var=reductions.var, std=reductions.std)


def _wrap(name, obj, prefix=""):
    if name in NONDIFFERENTIABLE:
        return passthrough(obj)
    return Primitive(obj, prefix + name, register=False)


def _is_function(obj):
    return callable(obj) and not isinstance(obj, (type, types.ModuleType))


def _wrap_module(module, prefix, defined):
    ns = types.ModuleType(f"fluidgrad.numpy.{prefix.rstrip('.')}")
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if name in defined:
            setattr(ns, name, defined[name])
        elif _is_function(obj):
            setattr(ns, name, _wrap(name, obj, prefix))
        elif not isinstance(obj, types.ModuleType):
            setattr(ns, name, obj)
    return ns


def namespace() -> dict:
    """The public names of fluidgrad.numpy."""
    ns = {}
    for name in dir(onp):
        if name.startswith("_"):
            continue
        obj = getattr(onp, name)
        if name in _DEFINED:
            continue
        if _is_function(obj):
            ns[name] = _wrap(name, obj)
        elif not isinstance(obj, types.ModuleType):
            ns[name] = obj  # dtypes, constants, classes
    ns.update(_DEFINED)
    ns["linalg"] = _wrap_module(onp.linalg, "linalg.", {"norm": reductions.norm})
    ns["fft"] = _wrap_module(onp.fft, "fft.", {})
    ns["random"] = onp.random
    ns["stop_gradient"] = stop_gradient
    return ns


#: name -> function, what ``fluidgrad.numpy`` exports
NAMESPACE = namespace()
