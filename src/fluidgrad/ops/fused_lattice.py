"""Where a field's samples sit for the fused advection kernels: locating a coordinate
on a lattice axis (:func:`locate`, shared by the 2-D and 3-D kernels) and the
:class:`Layout` that places a field's lattice on the padded velocity lattices.
"""

from __future__ import annotations

import math

import numpy as onp

from . import interpolation as interp
from .compiled import jit


@jit
def locate(s, n, periodic):
    """Lower/upper index, fraction and d(fraction)/ds at lattice coordinate ``s`` of an
    axis of ``n`` samples (periodic: wrapped; bounded: clamped to the end samples, where
    d(fraction)/ds is ½, the mean of the one-sided slopes, and 0 beyond). A coordinate
    that is not finite gives index 0 and a NaN fraction (NaN in, NaN out). On an inner
    sample (fraction 0, slope 1) the slopes take the mean of both sides, :func:`below`."""
    fn = float(n)
    if periodic:
        f = math.floor(s)
        w = f - fn * math.floor(f / fn)  # the wrap, branch-free (vectorizes in rows)
        k = int(w) if (w >= 0.0 and w < fn) else 0
        return k, (k + 1 if k + 1 < n else 0), s - f, 1.0
    if n == 1:
        return 0, 0, 0.0, 0.0
    top = fn - 1.0
    sc = min(max(s, 0.0), top)
    f = math.floor(sc)
    k = min(int(f), n - 2) if (f >= 0.0 and f <= top) else 0
    return k, k + 1, sc - k, 1.0 if (s > 0.0 and s < top) else (0.5 if (s == 0.0 or s == top) else 0.0)


@jit
def below(k, n):
    """The sample before ``k`` on an axis of ``n`` (wrapping: only periodic axes have an
    inner sample at ``k = 0``)."""
    return k - 1 if k > 0 else n - 1


def _axis_table(s, n, periodic):
    """:func:`locate` for an array of coordinates: (lower, upper, fraction)."""
    if periodic:
        f = onp.floor(s)
        i0 = f.astype(onp.int64) % n
        return i0, (i0 + 1) % n, s - f
    if n == 1:
        zero = onp.zeros(s.shape, dtype=onp.int64)
        return zero, zero, onp.zeros(s.shape)
    sc = onp.clip(s, 0, n - 1)
    i0 = onp.minimum(onp.floor(sc).astype(onp.int64), n - 2)
    return i0, i0 + 1, sc - i0


class Layout:
    """How the lattice of a field sits on the padded lattices (cached per domain and
    location). Velocity component ``c`` at the field's sample (i, j[, k]) is the mean of
    its samples at indices ``tables[a][2c]``, ``tables[a][2c+1]`` along each axis ``a`` (the
    second only where ``avg[ndim·c + a]``): on a MAC grid the multilinear weights at lattice
    points are 1 or ½. ``geo`` = [shift per axis..., periodic per axis...] places sample
    (i, j, ...) at lattice coordinates (i + shift₀, j + shift₁, ...) of the field's own
    padded lattice. The tables (``axes``, used by the 3-D kernels) are ``vrow``, ``vcol``
    and in 3-D ``vdep``; they are cyclic shifts, ``tables[a][2c][i] = (i + s) mod p``
    with ``s = shift[ndim·c + a]`` (the 2-D kernels' form)."""

    def __init__(self, domain, location):
        nd = domain.ndim
        field = interp.field_lattice(domain, location)
        padded = interp.padded_lattice(domain, location)
        tables = [onp.zeros((2 * nd, n), dtype=onp.int64) for n in field.shape]
        self.avg = onp.zeros(nd * nd, dtype=onp.bool_)
        self.shift = onp.zeros(nd * nd, dtype=onp.int64)
        for comp in range(nd):
            lat = interp.padded_lattice(domain, comp)
            for a in range(nd):
                s = onp.arange(field.shape[a]) + (field.offset[a] - lat.offset[a])
                lo, hi, t = _axis_table(s, lat.shape[a], lat.periodic[a])
                cyclic = (onp.arange(field.shape[a]) + lo[0]) % lat.shape[a]
                if not (onp.all(t == t[0]) and t[0] in (0.0, 0.5) and onp.array_equal(lo, cyclic)
                        and (t[0] == 0.0 or onp.array_equal(hi, (lo + 1) % lat.shape[a]))):
                    raise AssertionError("velocity samples are not MAC-staggered")  # pragma: no cover
                tables[a][2 * comp], tables[a][2 * comp + 1] = lo, hi
                self.avg[nd * comp + a] = t[0] == 0.5
                self.shift[nd * comp + a] = lo[0]
        self.axes = tables  # vrow, vcol[, vdep]
        self.geo = onp.array([field.offset[a] - padded.offset[a] for a in range(nd)]
                             + [float(padded.periodic[a]) for a in range(nd)])

    @property
    def tables(self):
        return (*self.axes, self.avg, self.geo)

    @classmethod
    def of(cls, domain, location):
        key = ("fused-layout", location)
        lay = domain._cache.get(key)
        if lay is None:
            lay = domain._cache[key] = cls(domain, location)
        return lay