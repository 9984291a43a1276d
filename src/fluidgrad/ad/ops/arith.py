"""Elementwise operations: arithmetic with broadcasting and the usual math functions.

Rules are written with these same differentiable operations, so they can be
differentiated again (higher-order derivatives). A VJP *un-broadcasts* its result:
it sums over the axes the forward pass broadcast, and casts to the argument's dtype.
"""

from __future__ import annotations

import math

import numpy as onp

from ..core import Primitive
from ..core import raw as _raw
from . import reductions, shaping


def prim(fun, name=None, **kw):
    return Primitive(fun, name or fun.__name__, register=True, **kw)


def shape_of(x):
    return getattr(x, "shape", ())


def dtype_of(x):
    return x.dtype if hasattr(x, "dtype") else onp.result_type(x)


def unbroadcast(g, target):
    """Sum ``g`` down to the shape of ``target`` and cast it to ``target``'s dtype."""
    shape = shape_of(target)
    gshape = shape_of(g)
    if gshape != shape:
        extra = len(gshape) - len(shape)
        if extra > 0:
            g = reductions.sum(g, tuple(range(extra)))
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and shape_of(g)[i] != 1)
        if axes:
            g = reductions.sum(g, axes, keepdims=True)
    if hasattr(target, "dtype"):
        dt = target.dtype
        gdt = dtype_of(g)
        if gdt != dt:
            if gdt.kind == "c" and dt.kind != "c":
                g = real(g)
            g = astype(g, dt)
    return g


def broadcast_like(dot, ans):
    """A tangent broadcast to the shape (and dtype) of the output ``ans``."""
    if shape_of(dot) != shape_of(ans):
        dot = shaping.broadcast_to(dot, shape_of(ans))
    if hasattr(ans, "dtype") and dtype_of(dot) != ans.dtype and ans.dtype.kind in "fc":
        dot = astype(dot, ans.dtype)
    return dot


# -- dtype -----------------------------------------------------------------

def _astype(x, dtype):
    return x.astype(dtype) if hasattr(x, "astype") else onp.asarray(x, dtype=dtype)


astype = prim(_astype, "astype")
astype.defvjp(lambda g, ans, x, dtype: astype(g, dtype_of(x)),
              needs=((),))
astype.defjvp(lambda dot, ans, x, dtype: astype(dot, dtype))


# -- arithmetic --------------------------------------------------------------

negative = prim(onp.negative, linear=True)
negative.deftranspose(lambda g, x: negative(g))

add = prim(onp.add)
add.defvjp(lambda g, ans, x, y: unbroadcast(g, x), lambda g, ans, x, y: unbroadcast(g, y),
           needs=((), ()))
add.defjvp(lambda d, ans, x, y: broadcast_like(d, ans), lambda d, ans, x, y: broadcast_like(d, ans))

subtract = prim(onp.subtract)
subtract.defvjp(lambda g, ans, x, y: unbroadcast(g, x),
                lambda g, ans, x, y: unbroadcast(negative(g), y),
                needs=((), ()))
subtract.defjvp(lambda d, ans, x, y: broadcast_like(d, ans),
                lambda d, ans, x, y: broadcast_like(negative(d), ans))

multiply = prim(onp.multiply)
multiply.defvjp(lambda g, ans, x, y: unbroadcast(g * y, x),
                lambda g, ans, x, y: unbroadcast(g * x, y),
                needs=((1,), (0,)))
multiply.defjvp(lambda d, ans, x, y: broadcast_like(d * y, ans),
                lambda d, ans, x, y: broadcast_like(x * d, ans))

divide = prim(onp.divide, "divide")
divide.defvjp(lambda g, ans, x, y: unbroadcast(g / y, x),
              lambda g, ans, x, y: unbroadcast(negative(g) * ans / y, y),
              needs=((1,), (1, "ans")))
divide.defjvp(lambda d, ans, x, y: broadcast_like(d / y, ans),
              lambda d, ans, x, y: broadcast_like(negative(d) * ans / y, ans))
true_divide = divide


def _safe_power_exponent(y):
    """``y - 1`` where ``y != 0``, else 1: keeps ``x**(y-1)`` finite at ``x = 0``."""
    if isinstance(y, (int, float)):
        return y - 1 if y != 0 else 1
    return where(_raw(y) != 0, y - 1, onp.ones((), dtype_of(y)))


def _log_base(x):
    """``log(x)`` where ``x != 0``, else 0 (the y-derivative of x**y at x = 0 is 0)."""
    return log(where(_raw(x) != 0, x, 1.0))


power = prim(onp.power)
power.defvjp(lambda g, ans, x, y: unbroadcast(g * y * x ** _safe_power_exponent(y), x),
             lambda g, ans, x, y: unbroadcast(g * ans * _log_base(x), y),
             needs=((0, 1), (0, "ans")))
power.defjvp(lambda d, ans, x, y: broadcast_like(d * y * x ** _safe_power_exponent(y), ans),
             lambda d, ans, x, y: broadcast_like(d * ans * _log_base(x), ans))

square = prim(onp.square)
square.defvjp(lambda g, ans, x: g * 2 * x,
              needs=((0,),))
square.defjvp(lambda d, ans, x: d * 2 * x)

reciprocal = prim(onp.reciprocal)
reciprocal.defvjp(lambda g, ans, x: negative(g) * ans * ans,
                  needs=(("ans",),))
reciprocal.defjvp(lambda d, ans, x: negative(d) * ans * ans)

# -- exponentials and logarithms -----------------------------------------------

exp = prim(onp.exp)
exp.defvjp(lambda g, ans, x: g * ans,
           needs=(("ans",),))
exp.defjvp(lambda d, ans, x: d * ans)

expm1 = prim(onp.expm1)
expm1.defvjp(lambda g, ans, x: g * (ans + 1),
             needs=(("ans",),))
expm1.defjvp(lambda d, ans, x: d * (ans + 1))

exp2 = prim(onp.exp2)
exp2.defvjp(lambda g, ans, x: g * ans * math.log(2.0),
            needs=(("ans",),))
exp2.defjvp(lambda d, ans, x: d * ans * math.log(2.0))

log = prim(onp.log)
log.defvjp(lambda g, ans, x: g / x,
           needs=((0,),))
log.defjvp(lambda d, ans, x: d / x)

log1p = prim(onp.log1p)
log1p.defvjp(lambda g, ans, x: g / (x + 1),
             needs=((0,),))
log1p.defjvp(lambda d, ans, x: d / (x + 1))

log2 = prim(onp.log2)
log2.defvjp(lambda g, ans, x: g / (x * math.log(2.0)),
            needs=((0,),))
log2.defjvp(lambda d, ans, x: d / (x * math.log(2.0)))

log10 = prim(onp.log10)
log10.defvjp(lambda g, ans, x: g / (x * math.log(10.0)),
             needs=((0,),))
log10.defjvp(lambda d, ans, x: d / (x * math.log(10.0)))

logaddexp = prim(onp.logaddexp)
logaddexp.defvjp(lambda g, ans, x, y: unbroadcast(g * exp(x - ans), x),
                 lambda g, ans, x, y: unbroadcast(g * exp(y - ans), y),
                 needs=((0, "ans"), (1, "ans")))
logaddexp.defjvp(lambda d, ans, x, y: broadcast_like(d * exp(x - ans), ans),
                 lambda d, ans, x, y: broadcast_like(d * exp(y - ans), ans))

sqrt = prim(onp.sqrt)
sqrt.defvjp(lambda g, ans, x: g * 0.5 / ans,
            needs=(("ans",),))
sqrt.defjvp(lambda d, ans, x: d * 0.5 / ans)

cbrt = prim(onp.cbrt)
cbrt.defvjp(lambda g, ans, x: g / (3 * ans * ans),
            needs=(("ans",),))
cbrt.defjvp(lambda d, ans, x: d / (3 * ans * ans))

# -- trigonometric and hyperbolic ------------------------------------------------

sin = prim(onp.sin)
sin.defvjp(lambda g, ans, x: g * cos(x),
           needs=((0,),))
sin.defjvp(lambda d, ans, x: d * cos(x))

cos = prim(onp.cos)
cos.defvjp(lambda g, ans, x: negative(g) * sin(x),
           needs=((0,),))
cos.defjvp(lambda d, ans, x: negative(d) * sin(x))

tan = prim(onp.tan)
tan.defvjp(lambda g, ans, x: g / cos(x) ** 2,
           needs=((0,),))
tan.defjvp(lambda d, ans, x: d / cos(x) ** 2)

arcsin = prim(onp.arcsin)
arcsin.defvjp(lambda g, ans, x: g / sqrt(1 - x * x),
              needs=((0,),))
arcsin.defjvp(lambda d, ans, x: d / sqrt(1 - x * x))

arccos = prim(onp.arccos)
arccos.defvjp(lambda g, ans, x: negative(g) / sqrt(1 - x * x),
              needs=((0,),))
arccos.defjvp(lambda d, ans, x: negative(d) / sqrt(1 - x * x))

arctan = prim(onp.arctan)
arctan.defvjp(lambda g, ans, x: g / (1 + x * x),
              needs=((0,),))
arctan.defjvp(lambda d, ans, x: d / (1 + x * x))

arctan2 = prim(onp.arctan2)
arctan2.defvjp(lambda g, ans, y, x: unbroadcast(g * x / (x * x + y * y), y),
               lambda g, ans, y, x: unbroadcast(negative(g) * y / (x * x + y * y), x),
               needs=((0, 1), (0, 1)))
arctan2.defjvp(lambda d, ans, y, x: broadcast_like(d * x / (x * x + y * y), ans),
               lambda d, ans, y, x: broadcast_like(negative(d) * y / (x * x + y * y), ans))

sinh = prim(onp.sinh)
sinh.defvjp(lambda g, ans, x: g * cosh(x),
            needs=((0,),))
sinh.defjvp(lambda d, ans, x: d * cosh(x))

cosh = prim(onp.cosh)
cosh.defvjp(lambda g, ans, x: g * sinh(x),
            needs=((0,),))
cosh.defjvp(lambda d, ans, x: d * sinh(x))

tanh = prim(onp.tanh)
tanh.defvjp(lambda g, ans, x: g * (1 - ans * ans),
            needs=(("ans",),))
tanh.defjvp(lambda d, ans, x: d / cosh(x) ** 2)

arcsinh = prim(onp.arcsinh)
arcsinh.defvjp(lambda g, ans, x: g / sqrt(x * x + 1),
               needs=((0,),))
arcsinh.defjvp(lambda d, ans, x: d / sqrt(x * x + 1))

arctanh = prim(onp.arctanh)
arctanh.defvjp(lambda g, ans, x: g / (1 - x * x),
               needs=((0,),))
arctanh.defjvp(lambda d, ans, x: d / (1 - x * x))

# -- complex parts -------------------------------------------------------------

real = prim(onp.real, linear=True)
real.deftranspose(lambda g, x: astype(g, dtype_of(x)) if dtype_of(x).kind == "c" else g)
conj = prim(onp.conjugate, "conj", linear=True)
conj.deftranspose(lambda g, x: conj(g))
conjugate = conj

# -- piecewise ----------------------------------------------------------------


def _sign(x):
    return onp.sign(_raw(x))


absolute = prim(onp.absolute, "abs")
absolute.defvjp(lambda g, ans, x: g * _sign(x),
                needs=((0,),))
absolute.defjvp(lambda d, ans, x: d * _sign(x))
abs = absolute  # noqa: A001 - numpy's name


def _share(x, y, like):
    """1 where x wins, 0 where y wins, 1/2 on ties (splits the gradient evenly)."""
    x, y = _raw(x), _raw(y)
    return ((x > y) + 0.5 * (x == y)).astype(dtype_of(like))


maximum = prim(onp.maximum)
maximum.defvjp(lambda g, ans, x, y: unbroadcast(g * _share(x, y, g), x),
               lambda g, ans, x, y: unbroadcast(g * _share(y, x, g), y),
               needs=((0, 1), (0, 1)))
maximum.defjvp(lambda d, ans, x, y: broadcast_like(d * _share(x, y, d), ans),
               lambda d, ans, x, y: broadcast_like(d * _share(y, x, d), ans))

minimum = prim(onp.minimum)
minimum.defvjp(lambda g, ans, x, y: unbroadcast(g * _share(y, x, g), x),
               lambda g, ans, x, y: unbroadcast(g * _share(x, y, g), y),
               needs=((0, 1), (0, 1)))
minimum.defjvp(lambda d, ans, x, y: broadcast_like(d * _share(y, x, d), ans),
               lambda d, ans, x, y: broadcast_like(d * _share(x, y, d), ans))



def _picked(x, y, wins, like):
    """``fmax``/``fmin``'s share of ``x``: 1 where ``x`` is picked (it ``wins`` over ``y``,
    or ``y`` is NaN - also when both are), 0 where ``y`` is picked, 1/2 on ties."""
    x, y = _raw(x), _raw(y)
    return ((wins(x, y) | (y != y)) + 0.5 * (x == y)).astype(dtype_of(like))  # y != y: y is NaN


def _picked_other(x, y, wins, like):
    """The share of ``y``: 1 where ``y`` wins or only ``x`` is NaN, 1/2 on ties."""
    x, y = _raw(x), _raw(y)
    return ((wins(y, x) | ((x != x) & (y == y))) + 0.5 * (x == y)).astype(dtype_of(like))


def _nan_ignoring(fun, wins):
    """The primitive of ``fmax``/``fmin`` (``wins`` = ``>``/``<``): NaN-ignoring, with the
    derivative going to the side that was picked (split evenly on ties)."""
    p = prim(fun)
    p.defvjp(lambda g, ans, x, y: unbroadcast(g * _picked(x, y, wins, g), x),
             lambda g, ans, x, y: unbroadcast(g * _picked_other(x, y, wins, g), y),
             needs=((0, 1), (0, 1)))
    p.defjvp(lambda d, ans, x, y: broadcast_like(d * _picked(x, y, wins, d), ans),
             lambda d, ans, x, y: broadcast_like(d * _picked_other(x, y, wins, d), ans))
    return p


fmax = _nan_ignoring(onp.fmax, lambda a, b: a > b)
fmin = _nan_ignoring(onp.fmin, lambda a, b: a < b)


def _zero(x):
    return onp.zeros((), dtype=dtype_of(x))


where = prim(onp.where)
where.defvjp(lambda g, ans, c, x, y: unbroadcast(where(c, g, _zero(g)), x),
             lambda g, ans, c, x, y: unbroadcast(where(c, _zero(g), g), y),
             argnums=(1, 2), needs=((0,), (0,)))
where.defjvp(lambda d, ans, c, x, y: broadcast_like(where(c, d, _zero(d)), ans),
             lambda d, ans, c, x, y: broadcast_like(where(c, _zero(d), d), ans),
             argnums=(1, 2))


def _inside(x, lo, hi, like):
    """``clip``'s share of ``x``: 1 strictly between the bounds, 0 outside, 1/2 where ``x``
    equals a bound (a tie, split as in ``minimum(maximum(x, lo), hi)``)."""
    share = onp.ones(shape_of(_raw(x)), dtype_of(like))
    if lo is not None:
        share = share * _share(x, lo, like)
    if hi is not None:
        share = share * _share(hi, x, like)
    return share


clip = prim(onp.clip)
clip.defvjp(lambda g, ans, x, lo=None, hi=None: g * _inside(x, lo, hi, g),
            needs=((0, 1, 2),))
clip.defjvp(lambda d, ans, x, lo=None, hi=None: d * _inside(x, lo, hi, d))
