"""MacCormack's continuous limiter, the array-API reference: nodal bounds (the min and
max of a field over each sample's 3ᵈ neighbours) and the clamp, with the rules for their
derivatives at ties. The fused kernels (:mod:`.fused_advection_2d`, ``_3d``) do the same.

The limiter clamps ``c = q¹ + (q - q⁰)/2`` to ``[I[m](x_d), I[M](x_d)]``: the nodal bounds
interpolated with ``q¹``'s weights, so that they move continuously with the departure
point ``x_d`` (see :mod:`.advection`).
"""

from __future__ import annotations

import itertools
import math

import numpy as onp

from ..backend import xp_of


def _shift(a, offset, periodic, fill):
    """``b[i] = a[i + offset]`` (``offset``: -1, 0 or 1 per axis), wrapped on periodic
    axes, ``fill`` beyond the ends of bounded ones."""
    xp = xp_of(a)
    for axis, (o, wraps) in enumerate(zip(offset, periodic)):
        if o == 0:
            continue
        if wraps:
            a = xp.roll(a, -o, axis=axis)
            continue
        n = a.shape[axis]
        edge = xp.full(a.shape[:axis] + (1,) + a.shape[axis + 1:], fill, dtype=a.dtype)
        inner = xp.take(a, xp.arange(1, n) if o > 0 else xp.arange(n - 1), axis=axis)
        a = xp.concatenate((inner, edge) if o > 0 else (edge, inner), axis=axis)
    return a


#: values within this many units of round-off count as tied when the limiter's
#: derivative is chosen: in a flat region ties are exact in exact arithmetic, and the
#: reference and fused paths round differently
TIE_ULPS = 32


def tie_tolerance(dtype) -> float:
    """The relative tolerance of a tie in ``dtype``: :data:`TIE_ULPS` machine epsilons."""
    return TIE_ULPS * float(onp.finfo(dtype).eps)


def near(a, b, tol):
    """``|a - b| ≤ tol · max(|a|, |b|)`` (False for NaN)."""
    xp = xp_of(a)
    return xp.abs(a - b) <= tol * xp.maximum(xp.abs(a), xp.abs(b))


class NodalBounds:
    """``m[i] = min`` and ``M[i] = max`` of the padded field ``qp`` over the 3ᵈ samples
    around sample ``i`` (periodic axes wrap; bounded axes stop at the ghost layer).
    Piecewise linear in ``qp``: the derivative shares each bound equally among the
    samples that attain it (to round-off, :data:`TIE_ULPS`)."""

    def __init__(self, qp, periodic):
        xp = xp_of(qp)
        self.qp, self.periodic = qp, periodic
        self.tol = tie_tolerance(qp.dtype)
        self.offsets = list(itertools.product((-1, 0, 1), repeat=qp.ndim))
        self.lo, self.hi = qp, qp
        for o in self.offsets:
            self.lo = xp.minimum(self.lo, _shift(qp, o, periodic, math.inf))
            self.hi = xp.maximum(self.hi, _shift(qp, o, periodic, -math.inf))
        self.count_lo = sum(self._attains(o, self.lo) for o in self.offsets)
        self.count_hi = sum(self._attains(o, self.hi) for o in self.offsets)

    def _attains(self, o, bound):
        """1 where the neighbour at offset ``o`` equals ``bound``, else 0."""
        return near(_shift(self.qp, o, self.periodic, math.nan), bound, self.tol).astype(self.qp.dtype)

    def tangent(self, dot_qp):
        """``(dot_m, dot_M)`` for a tangent of ``qp``."""
        out = []
        for bound, count in ((self.lo, self.count_lo), (self.hi, self.count_hi)):
            total = sum(self._attains(o, bound) * _shift(dot_qp, o, self.periodic, 0.0) for o in self.offsets)
            out.append(total / count)
        return out

    def transpose(self, adj_lo, adj_hi):
        """``adj_qp`` from the cotangents of ``m`` and ``M``."""
        total = 0.0
        for bound, count, adj in ((self.lo, self.count_lo, adj_lo), (self.hi, self.count_hi, adj_hi)):
            share = adj / count
            for o in self.offsets:
                back = tuple(-x for x in o)
                attains = near(self.qp, _shift(bound, back, self.periodic, math.nan), self.tol)
                total = total + attains.astype(self.qp.dtype) * _shift(share, back, self.periodic, 0.0)
        return total


def clamp_shares(corrected, lo, hi):
    """``r = min(max(c, lo), hi)`` (``lo ≤ hi``) and the shares ``(s_c, s_lo, s_hi)`` of
    its derivative: all to the active argument; ½ each where ``c`` ties one bound (what
    central differences measure where ``c`` crosses it); all to ``c`` where ``c`` ties
    both (a flat neighbourhood: the bounds, min and max of the perturbed neighbours,
    enclose ``c``'s perturbation). Ties are to round-off (:data:`TIE_ULPS`)."""
    xp = xp_of(corrected)
    r = xp.minimum(xp.maximum(corrected, lo), hi)
    dtype = r.dtype
    tol = tie_tolerance(dtype)
    at_lo, at_hi = near(corrected, lo, tol), near(corrected, hi, tol)
    tie_lo = (at_lo & ~at_hi).astype(dtype)
    tie_hi = (at_hi & ~at_lo).astype(dtype)
    inside = ((corrected > lo) & (corrected < hi) & ~at_lo & ~at_hi) | (at_lo & at_hi)
    below = (corrected < lo) & ~at_lo
    above = (corrected > hi) & ~at_hi
    return r, [inside.astype(dtype) + 0.5 * (tie_lo + tie_hi), below.astype(dtype) + 0.5 * tie_lo,
               above.astype(dtype) + 0.5 * tie_hi]
