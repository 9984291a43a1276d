"""Shape and layout operations: reshape, transposes, broadcasting, indexing, stacking,
padding and rolling.

All of them are linear, so each is registered with its transpose: the VJP of
indexing is a scatter-add into zeros (``untake``), the VJP of ``pad`` gathers the
interior (and, for wrap/edge/reflect modes, adds the copied border cells back).
"""

from __future__ import annotations

import math

import numpy as onp

from ...backend import bincount_add, scatter_add, xp_of
from ...errors import InputError
from ..core import Primitive
from . import arith


def linear(fun, name=None):
    return Primitive(fun, name or fun.__name__, linear=True, register=True)


def _ndim(x):
    return len(arith.shape_of(x))


# -- reshaping -----------------------------------------------------------------

def _reshape(x, shape, order="C"):
    return onp.reshape(x, shape, order=order)


reshape = linear(_reshape, "reshape")
reshape.deftranspose(lambda g, x, shape, order="C": reshape(g, arith.shape_of(x), order=order))


def ravel(x, order="C"):
    """``x`` as a 1-D array."""
    return reshape(x, (-1,), order=order)


def _squeeze(x, axis=None):
    return onp.squeeze(x, axis)


squeeze = linear(_squeeze, "squeeze")
squeeze.deftranspose(lambda g, x, axis=None: reshape(g, arith.shape_of(x)))

expand_dims = linear(onp.expand_dims)
expand_dims.deftranspose(lambda g, x, axis: reshape(g, arith.shape_of(x)))


def _broadcast_to(x, shape):
    return onp.broadcast_to(x, shape)


broadcast_to = linear(_broadcast_to, "broadcast_to")
broadcast_to.deftranspose(lambda g, x, shape: arith.unbroadcast(g, x))

# -- axis order ----------------------------------------------------------------


def _transpose(x, axes=None):
    return onp.transpose(x, axes)


def _transpose_transpose(g, x, axes=None):
    if axes is None:
        return transpose(g)
    return transpose(g, tuple(onp.argsort([a % _ndim(x) for a in axes])))


transpose = linear(_transpose, "transpose")
transpose.deftranspose(_transpose_transpose)

swapaxes = linear(onp.swapaxes)
swapaxes.deftranspose(lambda g, x, a, b: swapaxes(g, a, b))

moveaxis = linear(onp.moveaxis)
moveaxis.deftranspose(lambda g, x, source, destination: moveaxis(g, destination, source))


def _flip(x, axis=None):
    return onp.flip(x, axis)


flip = linear(_flip, "flip")
flip.deftranspose(lambda g, x, axis=None: flip(g, axis))


def _negate_shift(shift):
    return tuple(-s for s in shift) if isinstance(shift, (tuple, list)) else -shift


def _roll(x, shift, axis=None):
    return onp.roll(x, shift, axis)


roll = linear(_roll, "roll")
roll.deftranspose(lambda g, x, shift, axis=None: roll(g, _negate_shift(shift), axis))

# -- indexing --------------------------------------------------------------------


def _is_advanced(index):
    """True if ``index`` holds an integer array or list (repeats need a scatter-add)."""
    parts = index if isinstance(index, tuple) else (index,)
    for p in parts:
        if isinstance(p, list) or (hasattr(p, "dtype") and p.dtype.kind in "iu" and p.ndim > 0):
            return True
    return False


def _getitem(x, index):
    return x[index]


def _untake(g, index, shape):
    """Zeros of ``shape`` with ``g`` added at ``index`` (repeated indices add up)."""
    g_raw = arith._raw(g)
    xp = xp_of(g_raw)
    out = xp.zeros(shape, dtype=xp.asarray(g_raw).dtype)
    if _is_advanced(index):
        scatter_add(out, index, g_raw)
    else:
        out[index] = g_raw
    return out


getitem = linear(_getitem, "getitem")
untake = linear(_untake, "untake")
getitem.deftranspose(lambda g, x, index: untake(g, index, arith.shape_of(x)))
untake.deftranspose(lambda g, h, index, shape: getitem(g, index))


def take(a, indices, axis=None):
    """Elements of ``a`` at ``indices`` along ``axis`` (flattened when axis is None)."""
    if axis is None:
        return getitem(ravel(a), indices)
    axis = axis % _ndim(a)
    return getitem(a, (slice(None),) * axis + (indices,))


def _take_flat(x, flat_index):
    return x.reshape(-1)[flat_index]


def _put_add_flat(g, flat_index, shape):
    """Zeros of ``shape`` (flattened) with ``g`` added at ``flat_index``; -1 entries are dropped."""
    xp = xp_of(g)
    out = xp.zeros(math.prod(shape), dtype=g.dtype)
    keep = flat_index.reshape(-1) >= 0
    bincount_add(out, flat_index.reshape(-1)[keep], g.reshape(-1)[keep])
    return out.reshape(shape)


take_flat = linear(_take_flat, "take_flat")
put_add_flat = linear(_put_add_flat, "put_add_flat")
take_flat.deftranspose(lambda g, x, flat_index: put_add_flat(g, flat_index, arith.shape_of(x)))
put_add_flat.deftranspose(lambda g, h, flat_index, shape: take_flat(g, flat_index) * (flat_index >= 0))

# -- joining -----------------------------------------------------------------------


def _stack(arrays, axis=0):
    return onp.stack(arrays, axis)


def _stack_transpose(g, arrays, axis=0):
    axis = axis % (_ndim(arrays[0]) + 1)
    return type(arrays)(getitem(g, (slice(None),) * axis + (i,)) for i in range(len(arrays)))


stack = linear(_stack, "stack")
stack.deftranspose(_stack_transpose)


def _concatenate(arrays, axis=0):
    return onp.concatenate(arrays, axis)


def _concatenate_transpose(g, arrays, axis=0):
    if axis is None:
        g = reshape(g, (-1,))
        sizes = [math.prod(arith.shape_of(a)) for a in arrays]
        shapes = [arith.shape_of(a) for a in arrays]
        offsets = onp.concatenate([[0], onp.cumsum(sizes)])
        return type(arrays)(reshape(getitem(g, slice(int(offsets[k]), int(offsets[k + 1]))), shapes[k])
                            for k in range(len(arrays)))
    axis = axis % _ndim(arrays[0])
    offsets = onp.concatenate([[0], onp.cumsum([arith.shape_of(a)[axis] for a in arrays])])
    return type(arrays)(getitem(g, (slice(None),) * axis + (slice(int(offsets[k]), int(offsets[k + 1])),))
                        for k in range(len(arrays)))


concatenate = linear(_concatenate, "concatenate")
concatenate.deftranspose(_concatenate_transpose)


def _atleast_2d_rows(a):
    return reshape(a, (1, -1)) if _ndim(a) < 2 else a


def vstack(arrays):
    return concatenate([_atleast_2d_rows(a) for a in arrays], 0)


def hstack(arrays):
    arrays = [reshape(a, (-1,)) if _ndim(a) == 0 else a for a in arrays]
    return concatenate(arrays, 0 if _ndim(arrays[0]) == 1 else 1)


def split(a, indices_or_sections, axis=0):
    """Split ``a`` along ``axis`` into equal sections or at the given indices."""
    n = arith.shape_of(a)[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise InputError("array split does not result in an equal division")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0, *indices_or_sections, n]
    axis = axis % _ndim(a)
    return [getitem(a, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def diff(a, n=1, axis=-1):
    """Forward differences ``a[i+1] - a[i]`` along ``axis``, ``n`` times."""
    axis = axis % _ndim(a)
    lead = (slice(None),) * axis
    for _ in range(n):
        a = getitem(a, lead + (slice(1, None),)) - getitem(a, lead + (slice(None, -1),))
    return a

# -- padding -------------------------------------------------------------------------


def _pad(x, pad_width, mode="constant", **kwargs):
    return onp.pad(x, pad_width, mode=mode, **kwargs)


def _pad_transpose(g, x, pad_width, mode="constant", **kwargs):
    shape = arith.shape_of(x)
    widths = onp.broadcast_to(onp.asarray(pad_width, dtype=int).reshape(-1, 2)
                              if onp.ndim(pad_width) else onp.full((1, 2), pad_width), (len(shape), 2))
    if mode == "constant":
        return getitem(g, tuple(slice(int(lo), int(lo) + n) for (lo, _), n in zip(widths, shape)))
    # every padded cell copies some input cell: add its cotangent back to that cell
    index_map = onp.pad(onp.arange(math.prod(shape)).reshape(shape), widths, mode=mode)
    index_map = xp_of(arith._raw(g)).asarray(index_map)
    return put_add_flat(g, index_map, shape)


pad = linear(_pad, "pad")
pad.deftranspose(_pad_transpose)


def _pad_jvp(dot, ans, x, pad_width, mode="constant", **kwargs):
    """Padding is affine in ``x`` (the constant border has no tangent)."""
    kwargs.pop("constant_values", None)
    return pad(dot, pad_width, mode, **kwargs)


pad.defjvp(_pad_jvp)
