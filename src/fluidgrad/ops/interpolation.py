"""Multilinear interpolation of grid fields at arbitrary points, with its transpose and
its derivative with respect to the points.

A field lives on a *lattice*: sample ``i`` along axis ``d`` sits at
``x = (i + offset_d) h``; stencils take points in index units ``s = x/h - offset_d``, so
that a point at rest sits exactly on a sample on every path. Cell-centred fields have offset ½ on every axis; velocity
component ``c`` has offset 0 along axis ``c``. Before sampling, a field gets one ghost
layer on each bounded side (its boundary rule), so interpolation near a wall sees the
wall. Periodic axes wrap; beyond the ghost layer points are clamped to it.

A :class:`Stencil` holds, for each point, the 2ᵈ corner indices and weights, so that

* ``gather``: ``q(x) = Σ_k w_k q[i_k]``;
* ``scatter``: the transpose, ``adj_q[i_k] += w_k g`` (repeated indices add up);
* ``slope``: ``∂q(x)/∂x_d = Σ_k (∂w_k/∂x_d) q[i_k]`` (0 where a point is clamped).

The interpolant has kinks where a coordinate sits exactly on a sample (and at the ends
of a bounded axis, where clamping starts). There the slope is **the mean of the two
one-sided slopes**, ``(q[i+1] - q[i-1]) / 2h`` on a sample and half the inner slope at
an end - what central differences measure, and mirror-symmetric. The fused kernels
(:func:`.fused_lattice.locate`) follow the same rule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as onp

from ..backend import xp_of
from . import fused_padding, gpu, stencils
from .dispatch import Kernel


@dataclasses.dataclass(frozen=True)
class Lattice:
    shape: tuple
    offset: tuple
    periodic: tuple
    h: float

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def field_lattice(domain, location) -> Lattice:
    """The lattice of a field at ``location`` ('center' or a face axis), unpadded."""
    shape = domain.grid.shape if location == "center" else domain.face_shape(location)
    offset = tuple(0.0 if d == location else 0.5 for d in range(domain.ndim))
    return Lattice(tuple(shape), offset, domain.boundaries.periodic_axes, domain.dx)


def padded_lattice(domain, location) -> Lattice:
    """The lattice after :func:`pad_field`: one more sample on each bounded side."""
    lat = field_lattice(domain, location)
    shape = tuple(n if p else n + 2 for n, p in zip(lat.shape, lat.periodic))
    offset = tuple(o if p else o - 1 for o, p in zip(lat.offset, lat.periodic))
    return Lattice(shape, offset, lat.periodic, lat.h)


def _ghost_rules(domain, location):
    """The 2-D ghost rules ``(a, b)`` of ``location`` as [a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, ...]
    and which axes are padded, for the fused kernels (cached)."""
    key = ("ghost-rules", location)
    out = domain._cache.get(key)
    if out is None:
        rules = [x for d in range(2) for side in range(2) for x in stencils.cell_rule(domain, location, d, side)]
        out = domain._cache[key] = (onp.array(rules, dtype=float), not domain.periodic(0), not domain.periodic(1))
    return out


def _pad_field_reference(q, domain, location, homogeneous=False):
    """``q`` with one ghost layer on every bounded side, by its boundary rules."""
    if domain.all_periodic:
        return q
    for d in range(domain.ndim):
        if not domain.periodic(d):
            q = stencils.pad(q, d, stencils.cell_rule(domain, location, d, 0),
                             stencils.cell_rule(domain, location, d, 1), homogeneous)
    return q


def _pad_field_fused(q, domain, location, homogeneous=False):
    if domain.all_periodic:
        return q
    return fused_padding.pad.pick(q.size)(q, *_ghost_rules(domain, location), homogeneous)


def _pad_field_transpose_reference(g, domain, location):
    """Adjoint of :func:`pad_field` (its homogeneous part)."""
    if domain.all_periodic:
        return g
    for d in reversed(range(domain.ndim)):
        if not domain.periodic(d):
            g = stencils.pad_transpose(g, d, stencils.cell_rule(domain, location, d, 0),
                                       stencils.cell_rule(domain, location, d, 1))
    return g


def _pad_field_transpose_fused(g, domain, location):
    if domain.all_periodic:
        return g
    return fused_padding.pad_transpose.pick(g.size)(g, *_ghost_rules(domain, location))


pad_field = Kernel("pad_field", _pad_field_reference)
pad_field.implementation("fused", fused_padding.supports)(_pad_field_fused)
pad_field_transpose = Kernel("pad_field.transpose", _pad_field_transpose_reference)
pad_field_transpose.implementation("fused", fused_padding.supports)(_pad_field_transpose_fused)
pad_field.implementation("gpu", gpu.supports_padding)(gpu.pad_field)
pad_field_transpose.implementation("gpu", gpu.supports_padding)(gpu.pad_field_transpose)


def pad_velocity(velocity, domain, homogeneous=False):
    """Each MAC component padded by :func:`pad_field` (a list)."""
    return [pad_field(u, domain, d, homogeneous) for d, u in enumerate(velocity)]


def lattice_points(domain, location, lattice, like):
    """The samples of ``location`` in index units of ``lattice`` (a tuple of arrays,
    cached): ``i + offset_location - offset_lattice``, exact, as the fused kernels place them."""
    xp = xp_of(like)
    field = field_lattice(domain, location)
    key = ("lattice-points", location, lattice.offset, xp.__name__, like.dtype)
    points = domain._cache.get(key)
    if points is None:
        axes = [onp.arange(n) + (o - lo) for n, o, lo in zip(field.shape, field.offset, lattice.offset)]
        points = domain._cache[key] = tuple(xp.asarray(m, dtype=like.dtype)
                                            for m in onp.meshgrid(*axes, indexing="ij"))
    return points


class Stencil:
    """Corner indices (flat, into the padded field), weights and weight slopes."""

    __slots__ = ("index", "weight", "slope_weight", "kink", "size", "shape")

    def __init__(self, index, weight, slope_weight, kink, size, shape):
        self.index = index
        self.weight = weight
        self.slope_weight = slope_weight
        self.kink = kink  # per axis: None, or (indices, weights) of the sample below i0
        self.size = size
        self.shape = shape


def _axis(s, n, periodic, xp):
    """One axis of a stencil at lattice coordinates ``s``: lower and upper index, the
    fraction, d(fraction)/ds (``None`` for 1; ½ at the ends of a bounded axis, 0 beyond),
    and where ``s`` sits exactly on an inner sample (``None`` if nowhere) with the index
    below it."""
    if periodic:
        f = xp.floor(s)
        t = s - f
        i0 = f.astype(xp.int64) % n
        kink = t == 0
        return i0, (i0 + 1) % n, t, None, kink, (i0 - 1) % n
    if n == 1:
        zero = xp.zeros(s.shape, dtype=xp.int64)
        return zero, zero, xp.zeros_like(s), xp.zeros_like(s), None, None
    sc = xp.clip(s, 0, n - 1)
    i0 = xp.minimum(xp.floor(sc).astype(xp.int64), n - 2)
    t = sc - i0.astype(sc.dtype)  # float32 - int64 would promote to float64
    inside = (s > 0) & (s < n - 1)
    ends = (s == 0) | (s == n - 1)
    dt = inside.astype(s.dtype) + 0.5 * ends.astype(s.dtype)
    kink = inside & (t == 0)
    return i0, i0 + 1, t, dt, kink, xp.maximum(i0 - 1, 0)


def stencil(lattice: Lattice, points) -> Stencil:
    """Interpolation stencil of ``lattice`` at ``points``, a tuple of coordinate arrays in
    the lattice's index units (sample ``i`` at ``i``; see :func:`lattice_points`). Slopes
    are per unit length (``∂/∂x = ∂/∂s / h``)."""
    xp = xp_of(points[0])
    ndim = len(lattice.shape)
    axes = [_axis(points[d], lattice.shape[d], lattice.periodic[d], xp) for d in range(ndim)]
    strides = [math.prod(lattice.shape[d + 1:]) for d in range(ndim)]

    def flat(indices):
        out = None
        for i, stride in zip(indices, strides):
            term = i * stride if stride != 1 else i
            out = term if out is None else out + term
        return out

    def factors(bits):
        return [ax[2] if b else 1 - ax[2] for ax, b in zip(axes, bits)]

    index, weight = [], []
    slope_weight = [[] for _ in range(ndim)]
    for bits in itertools.product((0, 1), repeat=ndim):
        index.append(flat([ax[1] if b else ax[0] for ax, b in zip(axes, bits)]))
        f = factors(bits)
        weight.append(math.prod(f[1:], start=f[0]))
        for d, b in enumerate(bits):
            w = (1.0 if b else -1.0) / lattice.h
            if axes[d][3] is not None:
                w = w * axes[d][3]
            for e in range(ndim):
                if e != d:
                    w = w * f[e]
            slope_weight[d].append(w)
    # on an inner sample, the mean of the one-sided slopes: (q[i+1] - q[i-1]) / 2h
    kinks = []
    for d, (_, _, _, dt, kink, below) in enumerate(axes):
        if kink is None or not bool(xp.any(kink)):
            kinks.append(None)
            continue
        half = 0.5 * kink.astype(points[0].dtype)
        extra_index, extra_weight = [], []
        for k, bits in enumerate(itertools.product((0, 1), repeat=ndim)):
            scale = (1 - half) if bits[d] else (1 - 2 * half)
            slope_weight[d][k] = slope_weight[d][k] * scale
            if not bits[d]:
                extra_index.append(flat([below if e == d else (ax[1] if b else ax[0])
                                         for e, (ax, b) in enumerate(zip(axes, bits))]))
                w = -half / lattice.h * (1.0 if dt is None else dt)
                f = factors(bits)
                for e in range(ndim):
                    if e != d:
                        w = w * f[e]
                extra_weight.append(w)
        kinks.append((extra_index, extra_weight))
    return Stencil(index, weight, slope_weight, kinks, lattice.size, points[0].shape)


def gather(field, st: Stencil):
    """``Σ_k w_k field[i_k]`` at each point."""
    flat = field.reshape(-1)
    xp = xp_of(field)
    out = None
    for idx, w in zip(st.index, st.weight):
        term = w * xp.take(flat, idx)
        out = term if out is None else out + term
    return out


def scatter(g, st: Stencil, shape):
    """Transpose of :func:`gather`: ``adj[i_k] += w_k g`` into an array of ``shape``."""
    xp = xp_of(g)
    index = xp.concatenate([i.reshape(-1) for i in st.index])
    values = xp.concatenate([(w * g).reshape(-1) for w in st.weight])
    out = xp.bincount(index, weights=values, minlength=st.size)
    return out.astype(g.dtype, copy=False).reshape(shape)


def slope(field, st: Stencil):
    """``∂/∂x_d`` of the interpolant at each point, for every axis ``d``."""
    flat = field.reshape(-1)
    xp = xp_of(field)
    corners = [xp.take(flat, idx) for idx in st.index]
    out = []
    for weights, kink in zip(st.slope_weight, st.kink):
        total = None
        for c, w in zip(corners, weights):
            total = w * c if total is None else total + w * c
        if kink is not None:
            for idx, w in zip(*kink):
                total = total + w * xp.take(flat, idx)
        out.append(total)
    return out


def corner_values(field, st: Stencil):
    """The 2ᵈ corner values at each point, stacked on a new first axis."""
    flat = field.reshape(-1)
    xp = xp_of(field)
    return xp.stack([xp.take(flat, idx) for idx in st.index])
