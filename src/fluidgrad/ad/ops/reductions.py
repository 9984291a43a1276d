"""Reductions over axes: sum, mean, prod, max/min, cumsum, and var/std/norm composites.

The VJP of a reduction *restores* the reduced axes: the cotangent is reshaped to
keep-dims form and broadcast back over the input (``adj_x = broadcast(g)`` for a sum).
"""

from __future__ import annotations

import math

import numpy as onp

from ..core import Primitive
from . import arith, shaping


def _axes(axis, ndim):
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, (tuple, list)):
        axis = (axis,)
    return tuple(sorted(a % ndim if ndim else 0 for a in axis))


def restore(g, shape, axis, keepdims):
    """Broadcast a reduced cotangent ``g`` back to ``shape``."""
    if shape == arith.shape_of(g):
        return g
    if not keepdims:
        axes = _axes(axis, len(shape))
        g = shaping.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return shaping.broadcast_to(g, shape)


def _count(shape, axis):
    return math.prod(shape[a] for a in _axes(axis, len(shape)))


def _sum(x, axis=None, dtype=None, keepdims=False):
    return onp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)


sum = Primitive(_sum, "sum", linear=True, register=True)  # noqa: A001 - numpy's name
sum.deftranspose(lambda g, x, axis=None, dtype=None, keepdims=False:
                 arith.astype(restore(g, arith.shape_of(x), axis, keepdims), arith.dtype_of(x))
                 if dtype is not None else restore(g, arith.shape_of(x), axis, keepdims))


def _mean(x, axis=None, dtype=None, keepdims=False):
    return onp.mean(x, axis=axis, dtype=dtype, keepdims=keepdims)


mean = Primitive(_mean, "mean", linear=True, register=True)
mean.deftranspose(lambda g, x, axis=None, dtype=None, keepdims=False:
                  restore(g, arith.shape_of(x), axis, keepdims) / _count(arith.shape_of(x), axis))


def _prod(x, axis=None, dtype=None, keepdims=False):
    return onp.prod(x, axis=axis, dtype=dtype, keepdims=keepdims)


prod = Primitive(_prod, "prod", register=True)
prod.defvjp(lambda g, ans, x, axis=None, dtype=None, keepdims=False:
            restore(g * ans, arith.shape_of(x), axis, keepdims) / x, needs=((0, "ans"),))
prod.defjvp(lambda d, ans, x, axis=None, dtype=None, keepdims=False:
            sum(d * restore(ans, arith.shape_of(x), axis, keepdims) / x, axis, keepdims=keepdims))


def _extremum_weights(ans, x, axis, keepdims, like):
    """Where ``x`` attains the max/min, 1/(number of ties); 0 elsewhere (raw array)."""
    x_raw, ans_raw = arith._raw(x), arith._raw(ans)
    shape = arith.shape_of(x_raw)
    hit = x_raw == restore(ans_raw, shape, axis, keepdims)
    ties = onp.sum(hit, axis=_axes(axis, len(shape)), keepdims=True)
    return (hit / ties).astype(arith.dtype_of(like))


def _reduce_with(fun, name):
    def reduce(x, axis=None, keepdims=False):
        return fun(x, axis=axis, keepdims=keepdims)

    p = Primitive(reduce, name, register=True)
    p.defvjp(lambda g, ans, x, axis=None, keepdims=False:
             restore(g, arith.shape_of(x), axis, keepdims) * _extremum_weights(ans, x, axis, keepdims, g),
             needs=((0, "ans"),))
    p.defjvp(lambda d, ans, x, axis=None, keepdims=False:
             sum(d * _extremum_weights(ans, x, axis, keepdims, d), axis, keepdims=keepdims))
    return p


max = _reduce_with(onp.max, "max")  # noqa: A001
min = _reduce_with(onp.min, "min")  # noqa: A001
amax, amin = max, min


def _cumsum(x, axis=None, dtype=None):
    return onp.cumsum(x, axis=axis, dtype=dtype)


def _cumsum_transpose(g, x, axis=None, dtype=None):
    """Reverse cumulative sum: ``adj_x[i] = sum_{j >= i} g[j]``."""
    if axis is None:
        rev = shaping.flip(cumsum(shaping.flip(g, 0), 0), 0)
        return shaping.reshape(rev, arith.shape_of(x))
    return shaping.flip(cumsum(shaping.flip(g, axis), axis), axis)


cumsum = Primitive(_cumsum, "cumsum", linear=True, register=True)
cumsum.deftranspose(_cumsum_transpose)


# -- composites (differentiated through their parts) -----------------------------

def _any_tensor(*args):
    return any(hasattr(a, "_fg_value") for a in args)


def var(x, axis=None, dtype=None, ddof=0, keepdims=False):
    """Variance, ``sum |x - mean|² / (N - ddof)``."""
    if not _any_tensor(x):
        return onp.var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    d = x - mean(x, axis, keepdims=True)
    n = _count(arith.shape_of(x), axis)
    return sum(arith.real(d * arith.conj(d)), axis, keepdims=keepdims) / (n - ddof)


def std(x, axis=None, dtype=None, ddof=0, keepdims=False):
    """Standard deviation, ``sqrt(var)``."""
    if not _any_tensor(x):
        return onp.std(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)
    return arith.sqrt(var(x, axis, ddof=ddof, keepdims=keepdims))


def norm(x, ord=None, axis=None, keepdims=False):
    """Vector p-norms and the Frobenius norm (numpy.linalg.norm for those cases)."""
    if not _any_tensor(x):
        return onp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)
    matrix = (axis is None and len(arith.shape_of(x)) == 2) or (
        isinstance(axis, tuple) and len(axis) == 2)
    if ord is None or ord == "fro" or (ord == 2 and not matrix):
        return arith.sqrt(sum(arith.real(x * arith.conj(x)), axis, keepdims=keepdims))
    if matrix:
        raise NotImplementedError(f"norm: ord={ord!r} for matrices is not differentiable here")
    a = arith.absolute(x)
    if ord == onp.inf:
        return max(a, axis, keepdims=keepdims)
    if ord == -onp.inf:
        return min(a, axis, keepdims=keepdims)
    if ord == 1:
        return sum(a, axis, keepdims=keepdims)
    return sum(a ** ord, axis, keepdims=keepdims) ** (1.0 / ord)
