"""Fused CPU kernels (numba) for advection and its derivatives: semi-Lagrangian (forward,
VJP, JVP) and MacCormack (forward, VJP) with the Euler backtrace, on 2-D and 3-D MAC grids
(no 3-D JVP kernel), and ghost-layer padding; also the switch, compilation decorators and
threading shared with :mod:`.fused_poisson` (the pressure-solve kernels).

The kernels do what the array-API reference does with whole-array temporaries: sample
the velocity at the field's points (on a MAC grid a mean of 1, 2, 4 or 8 samples, laid
out in a :class:`Layout`), trace back, interpolate. In 2-D each step is a pass of its
own over a row (the velocity at the row's points, then its departure points, both
vectorized passes into row buffers, then the gathers); the 3-D kernels do all of it per
point. The
arithmetic is the reference's, so results agree to round-off; the reference stays the
oracle (tests compare the two to 1e-12 in float64). Advected fields arrive padded with
their ghost layers.
VJP kernels add into adjoint buffers the caller provides (so all velocity cotangents of
a step can share one set).

Used for numpy arrays whenever numba is importable (``FLUIDGRAD_NUMBA=0`` at import
turns it off); kernels over 2048 points or more run in parallel. Compiled kernels are
cached on disk, so only the first process pays the compilation.
"""

from __future__ import annotations

import math
import os

import numpy as onp

try:  # numba is optional
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None


_ENABLED = numba is not None and os.environ.get("FLUIDGRAD_NUMBA", "1") != "0"


def available() -> bool:
    """On when numba is installed, unless ``FLUIDGRAD_NUMBA=0`` (read at import); the
    first call also settles the threads (see :func:`threads`)."""
    if _ENABLED and "n" not in _threads:
        threads()
    return _ENABLED


def _jit(fun):
    """Compiled, cached on disk; no Python division checks; helpers inlined."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(fun)


def _pjit(fun):
    """:func:`_jit` with ``parallel=True``: ``numba.prange`` loops run on several threads."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(fun)


@_jit
def _locate(s, n, periodic):
    """Lower/upper index, fraction and d(fraction)/ds at lattice coordinate ``s`` of an
    axis of ``n`` samples (periodic: wrapped; bounded: clamped to the end samples). A
    coordinate that is not finite gives index 0 and a NaN fraction (NaN in, NaN out)."""
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
    return k, k + 1, sc - k, 1.0 if (s >= 0.0 and s <= top) else 0.0


@_jit
def _bilinear(a, i0, i1, t0, j0, j1, t1):
    """``Σ_k w_k a[corner_k]`` with the bilinear weights of fractions (t0, t1)."""
    return ((1 - t0) * (1 - t1) * a[i0, j0] + (1 - t0) * t1 * a[i0, j1]
            + t0 * (1 - t1) * a[i1, j0] + t0 * t1 * a[i1, j1])


@_jit
def _bilinear_slope(a, i0, i1, t0, d0, j0, j1, t1, d1):
    """``(∂/∂s0, ∂/∂s1)`` of the bilinear interpolant in lattice units (``d`` zero where
    the coordinate was clamped)."""
    a00, a01, a10, a11 = a[i0, j0], a[i0, j1], a[i1, j0], a[i1, j1]
    return (d0 * ((1 - t1) * (a10 - a00) + t1 * (a11 - a01)),
            d1 * ((1 - t0) * (a01 - a00) + t0 * (a11 - a10)))


@_jit
def _spread(out, g, i0, i1, t0, j0, j1, t1):
    """Transpose of :func:`_bilinear`: add ``g`` times the weights into ``out``."""
    out[i0, j0] += (1 - t0) * (1 - t1) * g
    out[i0, j1] += (1 - t0) * t1 * g
    out[i1, j0] += t0 * (1 - t1) * g
    out[i1, j1] += t0 * t1 * g


@_jit
def _mean_segment(out, r0, r1, e, n, lo, hi, avg0, avg1):
    """``out[e + k]``: the mean of rows ``r0`` [and ``r1``] at columns ``e + k + lo``
    [and ``e + k + hi``], ``k < n``. One loop for every case: a sample not averaged over
    counts twice, so ``((a + b) + (c + d)) / 4`` is exactly the 1-, 2- or 4-point mean.

    Loops over slices: numba checks every signed index for wrap-around, and that check
    stops a loop from vectorizing (4-8× slower)."""
    o = out[e:]
    other = r1 if avg0 else r0
    upper = hi if avg1 else lo
    a0, b0, a1, b1 = r0[e + lo:], r0[e + upper:], other[e + lo:], other[e + upper:]
    for k in range(n):
        o[k] = 0.25 * ((a0[k] + b0[k]) + (a1[k] + b1[k]))


@_jit
def _scatter_cyclic(row, g, w, s, m):
    """``row[(j + s) mod len(row)] += w·g[j]`` for ``j < m`` (``0 ≤ s < len(row)``), over
    slices (see :func:`_mean_segment`)."""
    first = min(m, row.shape[0] - s)
    shifted = row[s:]
    for j in range(first):
        shifted[j] += w * g[j]
    wrapped = g[first:]
    for j in range(m - first):
        row[j] += w * wrapped[j]


@_jit
def _weight(like, avg0, avg1):
    """The weight 1, ½ or ¼ of the transposed averaging, in the precision of ``like``
    (a float32 adjoint is spread in float32)."""
    w = onp.empty(1, dtype=like.dtype)
    w[0] = (0.5 if avg0 else 1.0) * (0.5 if avg1 else 1.0)
    return w[0]


@_jit
def _sample_row(o, a, i, s0, s1, avg0, avg1):
    """``o[j]``: a velocity component at the points of the field's row ``i``, the mean of
    its samples at rows ``(i + s0) mod p₀`` [and the next] and columns ``(j + s1) mod p₁``
    [and the next] (the bilinear weights at lattice points of a MAC grid are 1 or ½).
    Three column segments: none, the upper and both neighbours wrapped."""
    r0, r1 = a[(i + s0) % a.shape[0]], a[(i + s0 + 1) % a.shape[0]]
    m, p = o.shape[0], r0.shape[0]
    upper, lower = p - s1 - 1, p - s1  # columns from which the upper/lower sample wraps
    _mean_segment(o, r0, r1, 0, min(upper, m), s1, s1 + 1, avg0, avg1)
    _mean_segment(o, r0, r1, upper, min(lower, m) - upper, s1, s1 + 1 - p, avg0, avg1)
    _mean_segment(o, r0, r1, lower, m - lower, s1 - p, s1 + 1 - p, avg0, avg1)


@_jit
def _spread_row(r, adj, g, s0, s1, avg0, avg1, w):
    """Row ``r`` of the transpose of :func:`_sample_row`: adds the cotangents ``g`` at
    the field's points into row ``r`` of the padded component's adjoint."""
    row = adj[r]
    for k in range(2 if avg0 else 1):
        i = (r - s0 - k) % adj.shape[0]
        if i < g.shape[0]:
            _scatter_cyclic(row, g[i], w, s1, g.shape[1])
            if avg1:
                _scatter_cyclic(row, g[i], w, (s1 + 1) % row.shape[0], g.shape[1])


@_jit
def _velocity_row(i, u, v, shift, avg, rows, k):
    """U at the points of the field's row ``i`` from the padded components: U_x into
    ``rows[k]``, U_y into ``rows[k + 1]``."""
    _sample_row(rows[k], u, i, shift[0], shift[1], avg[0], avg[1])
    _sample_row(rows[k + 1], v, i, shift[2], shift[3], avg[2], avg[3])


@_jit
def spread(gx, gy, shift, avg, adj_u, adj_v):
    """Transpose of the velocity sampling (:func:`_velocity_row` over all rows):
    ``adj_u += Sₓᵀ gx``, ``adj_v += S_yᵀ gy``."""
    wu, wv = _weight(adj_u, avg[0], avg[1]), _weight(adj_v, avg[2], avg[3])
    for r in range(max(adj_u.shape[0], adj_v.shape[0])):
        if r < adj_u.shape[0]:
            _spread_row(r, adj_u, gx, shift[0], shift[1], avg[0], avg[1], wu)
        if r < adj_v.shape[0]:
            _spread_row(r, adj_v, gy, shift[2], shift[3], avg[2], avg[3], wv)


@_jit
def _locate_row(base, step, c, vel, n, periodic, lo, hi, frac, slope):
    """:func:`_locate` for a row of points at lattice coordinates ``base + step·j - c·vel[j]``
    into row buffers; the loop vectorizes."""
    for j in range(vel.shape[0]):
        lo[j], hi[j], frac[j], slope[j] = _locate(base + step * j - c * vel[j], n, periodic)


@_jit
def _departures(i, ux, vy, geo, c, shape, ib, fb, k):
    """Bilinear stencils, on a padded lattice of ``shape``, of the departure points
    ``x - c·U`` of row ``i`` (``ux``, ``vy``: U at its points): ``ib[k:k+4]`` = i0, i1,
    j0, j1 and ``fb[k:k+4]`` = t0, d0, t1, d1 per point (fractions and their slopes, as
    :func:`_locate`)."""
    _locate_row(i + geo[0], 0.0, c, ux, shape[0], geo[2] > 0, ib[k], ib[k + 1], fb[k], fb[k + 1])
    _locate_row(geo[1], 1.0, c, vy, shape[1], geo[3] > 0, ib[k + 2], ib[k + 3], fb[k + 2], fb[k + 3])


@_jit
def _buffers(parts, traces, m):
    """Row buffers, ``parts`` sets (one per thread) over ``m`` points: ``traces`` stencils
    of :func:`_departures` (integer rows ``4k..4k+3``, float rows ``4k..4k+3``), then the
    velocity and a velocity tangent (float rows ``4·traces`` to ``4·traces + 3``)."""
    return onp.empty((parts, 4 * traces, m), dtype=onp.int64), onp.empty((parts, 4 * traces + 4, m))


@_jit
def _stencil(ib, fb, k, j):
    """Point ``j``'s stencil from the buffers: i0, i1, t0, d0, j0, j1, t1, d1."""
    return ib[k, j], ib[k + 1, j], fb[k, j], fb[k + 1, j], ib[k + 2, j], ib[k + 3, j], fb[k + 2, j], fb[k + 3, j]


@_jit
def _sl_forward_row(i, out, q, u, v, shift, avg, geo, c, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb, 4)
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    for j in range(out.shape[1]):
        i0, i1, t0, _, j0, j1, t1, _ = _stencil(ib, fb, 0, j)
        out[i, j] = _bilinear(q, i0, i1, t0, j0, j1, t1)


@_jit
def sl_forward(q, u, v, shift, avg, geo, shape0, shape1, c):
    """``q'(x) = I[q](x - Δt U(x))`` at every lattice point of the field (``c = Δt/h``;
    ``u``, ``v``: the padded components; ``shift``, ``avg``, ``geo``: the field's
    :class:`Layout`)."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(1, 1, shape1)
    for i in range(shape0):
        _sl_forward_row(i, out, q, u, v, shift, avg, geo, c, ib[0], fb[0])
    return out


@_jit
def _sl_vjp_row(i, g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb, 4)
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    for j in range(g.shape[1]):
        i0, i1, t0, d0, j0, j1, t1, d1 = _stencil(ib, fb, 0, j)
        gij = g[i, j]
        sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
        gx[i, j] = -c * (gij * sx)
        gy[i, j] = -c * (gij * sy)
        _spread(adj_q, gij, i0, i1, t0, j0, j1, t1)


@_jit
def sl_vjp(g, q, u, v, shift, avg, geo, c, adj_q, gx, gy):
    """``adj_q += Iᵀ g`` (on the padded lattice); ``gx, gy = -Δt g ∂I[q]/∂x``, the
    cotangent of U at the field's points (:func:`spread` takes it to the components)."""
    ib, fb = _buffers(1, 1, g.shape[1])
    for i in range(g.shape[0]):
        _sl_vjp_row(i, g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, ib[0], fb[0])


@_jit
def _sl_jvp_row(i, out, dq, du, dv, q, u, v, shift, avg, geo, c, with_q, with_u, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb, 4)
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    if with_u:
        _velocity_row(i, du, dv, shift, avg, fb, 6)
    for j in range(out.shape[1]):
        i0, i1, t0, d0, j0, j1, t1, d1 = _stencil(ib, fb, 0, j)
        total = 0.0
        if with_q:
            total = _bilinear(dq, i0, i1, t0, j0, j1, t1)
        if with_u:
            sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
            total = total + sx * (-c * fb[6, j]) + sy * (-c * fb[7, j])
        out[i, j] = total


@_jit
def sl_jvp(dq, du, dv, q, u, v, shift, avg, geo, shape0, shape1, c, with_q, with_u):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)`` (``du``, ``dv``: the
    padded velocity tangent)."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(1, 1, shape1)
    for i in range(shape0):
        _sl_jvp_row(i, out, dq, du, dv, q, u, v, shift, avg, geo, c, with_q, with_u, ib[0], fb[0])
    return out


def _axis_table(s, n, periodic):
    """:func:`_locate` for an array of coordinates: (lower, upper, fraction)."""
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
        from . import interpolation as interp
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


def usable_array(a) -> bool:
    """A 2-D numpy float array and numba on."""
    return type(a) is onp.ndarray and a.ndim == 2 and a.dtype.kind == "f" and available()


@_jit
def _pad_edges(q, out, rules, pad0, pad1, homogeneous):
    """The ghost layers of :func:`pad` (the interior is already copied into ``out``)."""
    n0, n1 = q.shape
    o1 = 1 if pad1 else 0
    w = 0.0 if homogeneous else 1.0
    if pad0:
        for j in range(n1):
            out[0, j + o1] = rules[0] * q[0, j] + w * rules[1]
            out[n0 + 1, j + o1] = rules[2] * q[n0 - 1, j] + w * rules[3]
    if pad1:
        for i in range(out.shape[0]):
            out[i, 0] = rules[4] * out[i, 1] + w * rules[5]
            out[i, n1 + 1] = rules[6] * out[i, n1] + w * rules[7]


@_jit
def pad(q, rules, pad0, pad1, homogeneous):
    """``q`` with a ghost layer on the padded axes, ``ghost = a·edge + b`` (``rules`` =
    [a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1]; b dropped if
    ``homogeneous``): axis 0 first, then axis 1 over the padded rows, as
    ``stencils.pad`` applied axis by axis."""
    n0, n1 = q.shape
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    out = onp.empty((n0 + 2 * o0, n1 + 2 * o1), dtype=q.dtype)
    for i in range(n0):
        out[i + o0, o1:o1 + n1] = q[i]
    _pad_edges(q, out, rules, pad0, pad1, homogeneous)
    return out


@_jit
def _pad_transpose_edges(g, out, rules, pad0, pad1):
    """The ghost cotangents of :func:`pad_transpose` (interior already copied)."""
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    n0, n1 = out.shape
    if pad1:
        for i in range(n0):
            out[i, 0] += rules[4] * g[i + o0, 0]
            out[i, n1 - 1] += rules[6] * g[i + o0, n1 + 1]
    if pad0:
        for j in range(n1):
            lo, hi = g[0, j + o1], g[n0 + 1, j + o1]
            if pad1:  # the corner ghosts went through the axis-1 rule first
                if j == 0:
                    lo += rules[4] * g[0, 0]
                    hi += rules[4] * g[n0 + 1, 0]
                if j == n1 - 1:
                    lo += rules[6] * g[0, n1 + 1]
                    hi += rules[6] * g[n0 + 1, n1 + 1]
            out[0, j] += rules[0] * lo
            out[n0 - 1, j] += rules[2] * hi


@_jit
def pad_transpose(g, rules, pad0, pad1):
    """Adjoint of :func:`pad` (its linear part): ghosts' cotangents go back to the edges
    times a, axis 1 first."""
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    n0, n1 = g.shape[0] - 2 * o0, g.shape[1] - 2 * o1
    out = onp.empty((n0, n1), dtype=g.dtype)
    for i in range(n0):
        out[i] = g[i + o0, o1:o1 + n1]
    _pad_transpose_edges(g, out, rules, pad0, pad1)
    return out


@_pjit
def pad_parallel(q, rules, pad0, pad1, homogeneous):
    n0, n1 = q.shape
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    out = onp.empty((n0 + 2 * o0, n1 + 2 * o1), dtype=q.dtype)
    for i in numba.prange(n0):
        out[i + o0, o1:o1 + n1] = q[i]
    _pad_edges(q, out, rules, pad0, pad1, homogeneous)
    return out


@_pjit
def pad_transpose_parallel(g, rules, pad0, pad1):
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    n0, n1 = g.shape[0] - 2 * o0, g.shape[1] - 2 * o1
    out = onp.empty((n0, n1), dtype=g.dtype)
    for i in numba.prange(n0):
        out[i] = g[i + o0, o1:o1 + n1]
    _pad_transpose_edges(g, out, rules, pad0, pad1)
    return out


def padded(q, rules, pad0, pad1, homogeneous):
    """:func:`pad`, on several threads for large arrays."""
    return (pad_parallel if parallel(q.size, 65536) else pad)(q, rules, pad0, pad1, homogeneous)


def padded_transpose(g, rules, pad0, pad1):
    """:func:`pad_transpose`, on several threads for large arrays."""
    return (pad_transpose_parallel if parallel(g.size, 65536) else pad_transpose)(g, rules, pad0, pad1)


def usable(q, velocity, domain, backtrace) -> bool:
    """Whether the fused advection kernels apply: numpy arrays of one dtype, 2-D or 3-D,
    Euler backtrace, numba on (in 3-D: no JVP kernel)."""
    if not (backtrace == "euler" and type(q) is onp.ndarray and available()):
        return False
    for u in velocity:
        if type(u) is not onp.ndarray or u.dtype != q.dtype:
            return False
    return domain.ndim in (2, 3)


@_jit
def _extremes(a, i0, i1, j0, j1):
    """(lo, k_lo, hi, k_hi): min and max of the 4 corners and which (first, in the
    order 00, 01, 10, 11), as numpy's argmin/argmax choose."""
    c0, c1, c2, c3 = a[i0, j0], a[i0, j1], a[i1, j0], a[i1, j1]
    lo, klo, hi, khi = c0, 0, c0, 0
    if c1 < lo:
        lo, klo = c1, 1
    if c2 < lo:
        lo, klo = c2, 2
    if c3 < lo:
        lo, klo = c3, 3
    if c1 > hi:
        hi, khi = c1, 1
    if c2 > hi:
        hi, khi = c2, 2
    if c3 > hi:
        hi, khi = c3, 3
    return lo, klo, hi, khi


@_jit
def _corner(k, i0, i1, j0, j1):
    return (i0 if k < 2 else i1), (j0 if k % 2 == 0 else j1)


@_jit
def _mc_correct_row(i, out, q, qp, q1, q1p, u, v, shift, avg, geo, c, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb, 8)  # one sample for both traces
    _departures(i, fb[8], fb[9], geo, -c, q1p.shape, ib, fb, 0)  # x + Δt U: q⁰ from q¹
    _departures(i, fb[8], fb[9], geo, c, qp.shape, ib, fb, 4)  # x - Δt U: the clamp bounds
    for j in range(q1.shape[1]):
        i0, i1, t0, _, j0, j1, t1, _ = _stencil(ib, fb, 0, j)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, i0, i1, t0, j0, j1, t1))
        i0, i1, _, _, j0, j1, _, _ = _stencil(ib, fb, 4, j)
        lo, _, hi, _ = _extremes(qp, i0, i1, j0, j1)
        out[i, j] = lo if corrected < lo else (hi if corrected > hi else corrected)


@_jit
def mc_correct(q, qp, q1, q1p, u, v, shift, avg, geo, c):
    """MacCormack's second pass: ``clamp(q¹ + (q - q⁰)/2)`` with ``q⁰ = I[q¹](x + Δt U)``,
    bounds from the corners of ``I[q]`` at ``x - Δt U``."""
    out = onp.empty_like(q1)
    ib, fb = _buffers(1, 2, q1.shape[1])
    for i in range(q1.shape[0]):
        _mc_correct_row(i, out, q, qp, q1, q1p, u, v, shift, avg, geo, c, ib[0], fb[0])
    return out


@_jit
def _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, shift, avg, geo, c, adj_c, adj_qp, adj_q1p, gx, gy, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb, 8)
    _departures(i, fb[8], fb[9], geo, -c, q1p.shape, ib, fb, 0)
    _departures(i, fb[8], fb[9], geo, c, qp.shape, ib, fb, 4)
    for j in range(g.shape[1]):
        b0, b1, tb0, db0, c0, c1, tb1, db1 = _stencil(ib, fb, 0, j)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, b0, b1, tb0, c0, c1, tb1))
        i0, i1, _, _, j0, j1, _, _ = _stencil(ib, fb, 4, j)
        lo, klo, hi, khi = _extremes(qp, i0, i1, j0, j1)
        gij = g[i, j]
        gx[i, j] = 0.0
        gy[i, j] = 0.0
        if corrected < lo:
            a, b = _corner(klo, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        elif corrected > hi:
            a, b = _corner(khi, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        else:
            adj_c[i, j] = gij
            adj_q0 = -0.5 * gij
            sx, sy = _bilinear_slope(q1p, b0, b1, tb0, db0, c0, c1, tb1, db1)
            gx[i, j] = c * (adj_q0 * sx)
            gy[i, j] = c * (adj_q0 * sy)
            _spread(adj_q1p, adj_q0, b0, b1, tb0, c0, c1, tb1)


@_jit
def mc_correct_vjp(g, q, qp, q1, q1p, u, v, shift, avg, geo, c, adj_c, adj_qp, adj_q1p, gx, gy):
    """The VJP of :func:`mc_correct`, added into ``adj_*``: with respect to ``q`` (direct,
    ``adj_c``, and through the clamp bounds, on the padded lattice) and ``q¹`` (direct, and
    on the padded lattice through ``q⁰``); ``gx, gy``: the cotangent of U at the field's
    points (through the backward departure points)."""
    ib, fb = _buffers(1, 2, g.shape[1])
    for i in range(g.shape[0]):
        _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, shift, avg, geo, c, adj_c, adj_qp, adj_q1p, gx, gy, ib[0], fb[0])


# -- 3-D kernels ---------------------------------------------------------------------
#
# The same passes on 3-D lattices, planes of axis 0 in parallel (no JVP kernel): a
# component's two indices along axes 0 / 1 / 2 come from the tables ``vrow``, ``vcol``,
# ``vdep``, averaged where ``avg`` says.

@_jit
def _average_3d(a, i, i1, j, j1, k, k1, avg0, avg1, avg2):
    """``a`` at a lattice point of another lattice: the mean of up to 8 samples."""
    total = 0.0
    n = 0
    for di in range(2 if avg0 else 1):
        ii = i1 if di else i
        for dj in range(2 if avg1 else 1):
            jj = j1 if dj else j
            for dk in range(2 if avg2 else 1):
                total += a[ii, jj, k1 if dk else k]
                n += 1
    return total / n


@_jit
def _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg):
    return (_average_3d(u, vrow[0, i], vrow[1, i], vcol[0, j], vcol[1, j], vdep[0, k], vdep[1, k],
                        avg[0], avg[1], avg[2]),
            _average_3d(v, vrow[2, i], vrow[3, i], vcol[2, j], vcol[3, j], vdep[2, k], vdep[3, k],
                        avg[3], avg[4], avg[5]),
            _average_3d(w, vrow[4, i], vrow[5, i], vcol[4, j], vcol[5, j], vdep[4, k], vdep[5, k],
                        avg[6], avg[7], avg[8]))


@_jit
def _trilinear(a, i0, i1, t0, j0, j1, t1, k0, k1, t2):
    """``Σ_k w_k a[corner_k]`` with the trilinear weights of fractions (t0, t1, t2)."""
    return ((1 - t0) * ((1 - t1) * ((1 - t2) * a[i0, j0, k0] + t2 * a[i0, j0, k1])
                        + t1 * ((1 - t2) * a[i0, j1, k0] + t2 * a[i0, j1, k1]))
            + t0 * ((1 - t1) * ((1 - t2) * a[i1, j0, k0] + t2 * a[i1, j0, k1])
                    + t1 * ((1 - t2) * a[i1, j1, k0] + t2 * a[i1, j1, k1])))


@_jit
def _cell_3d(q, s0, s1, s2, geo):
    """Trilinear stencil of the padded field ``q`` at lattice coordinates (s0, s1, s2)."""
    i0, i1, t0, d0 = _locate(s0, q.shape[0], geo[3] > 0)
    j0, j1, t1, d1 = _locate(s1, q.shape[1], geo[4] > 0)
    k0, k1, t2, d2 = _locate(s2, q.shape[2], geo[5] > 0)
    return i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2


@_jit
def _sl_forward_plane(i, out, q, u, v, w, vrow, vcol, vdep, avg, geo, c):
    for j in range(out.shape[1]):
        for k in range(out.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(q, i + geo[0] - c * ux, j + geo[1] - c * vy,
                                                                   k + geo[2] - c * wz, geo)
            out[i, j, k] = _trilinear(q, i0, i1, t0, j0, j1, t1, k0, k1, t2)


@_pjit
def sl_forward_3d(q, u, v, w, vrow, vcol, vdep, avg, geo, shape, c):
    """:func:`sl_forward` on a 3-D lattice (planes of axis 0 in parallel)."""
    out = onp.empty(shape, dtype=q.dtype)
    for i in numba.prange(shape[0]):
        _sl_forward_plane(numba.int64(i), out, q, u, v, w, vrow, vcol, vdep, avg, geo, c)
    return out


@_jit
def _mc_correct_plane(i, out, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c):
    for j in range(q1.shape[1]):
        for k in range(q1.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)  # one sample for both traces
            s0, s1, s2 = i + geo[0], j + geo[1], k + geo[2]
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(q1p, s0 + c * ux, s1 + c * vy, s2 + c * wz, geo)
            corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - _trilinear(q1p, i0, i1, t0, j0, j1, t1, k0, k1, t2))
            i0, i1, _, _, j0, j1, _, _, k0, k1, _, _ = _cell_3d(qp, s0 - c * ux, s1 - c * vy, s2 - c * wz, geo)
            lo, _, hi, _ = _extremes_3d(qp, i0, i1, j0, j1, k0, k1)
            out[i, j, k] = lo if corrected < lo else (hi if corrected > hi else corrected)


@_pjit
def mc_correct_3d(q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c):
    """:func:`mc_correct` on a 3-D lattice (planes of axis 0 in parallel)."""
    out = onp.empty_like(q1)
    for i in numba.prange(q1.shape[0]):
        _mc_correct_plane(numba.int64(i), out, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c)
    return out


@_jit
def _spread_3d(out, g, i0, i1, t0, j0, j1, t1, k0, k1, t2):
    """Transpose of :func:`_trilinear`: add ``g`` times the weights into ``out``."""
    for ii, wi in ((i0, 1 - t0), (i1, t0)):
        for jj, wj in ((j0, 1 - t1), (j1, t1)):
            wij = wi * wj * g
            out[ii, jj, k0] += wij * (1 - t2)
            out[ii, jj, k1] += wij * t2


@_jit
def _trilinear_slope(a, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2):
    """``(∂/∂s0, ∂/∂s1, ∂/∂s2)`` of the trilinear interpolant in lattice units."""
    a000, a001, a010, a011 = a[i0, j0, k0], a[i0, j0, k1], a[i0, j1, k0], a[i0, j1, k1]
    a100, a101, a110, a111 = a[i1, j0, k0], a[i1, j0, k1], a[i1, j1, k0], a[i1, j1, k1]
    s0 = d0 * ((1 - t1) * ((1 - t2) * (a100 - a000) + t2 * (a101 - a001))
               + t1 * ((1 - t2) * (a110 - a010) + t2 * (a111 - a011)))
    s1 = d1 * ((1 - t0) * ((1 - t2) * (a010 - a000) + t2 * (a011 - a001))
               + t0 * ((1 - t2) * (a110 - a100) + t2 * (a111 - a101)))
    s2 = d2 * ((1 - t0) * ((1 - t1) * (a001 - a000) + t1 * (a011 - a010))
               + t0 * ((1 - t1) * (a101 - a100) + t1 * (a111 - a110)))
    return s0, s1, s2


@_jit
def _spread_average_3d(out, g, i, i1, j, j1, k, k1, avg0, avg1, avg2):
    """Transpose of :func:`_average_3d`."""
    n = (2 if avg0 else 1) * (2 if avg1 else 1) * (2 if avg2 else 1)
    w = g / n
    for di in range(2 if avg0 else 1):
        ii = i1 if di else i
        for dj in range(2 if avg1 else 1):
            jj = j1 if dj else j
            for dk in range(2 if avg2 else 1):
                out[ii, jj, k1 if dk else k] += w


@_jit
def _spread_velocity_3d(adj_u, adj_v, adj_w, gx, gy, gz, i, j, k, vrow, vcol, vdep, avg):
    """Transpose of :func:`_velocity_at_3d`."""
    _spread_average_3d(adj_u, gx, vrow[0, i], vrow[1, i], vcol[0, j], vcol[1, j], vdep[0, k], vdep[1, k],
                       avg[0], avg[1], avg[2])
    _spread_average_3d(adj_v, gy, vrow[2, i], vrow[3, i], vcol[2, j], vcol[3, j], vdep[2, k], vdep[3, k],
                       avg[3], avg[4], avg[5])
    _spread_average_3d(adj_w, gz, vrow[4, i], vrow[5, i], vcol[4, j], vcol[5, j], vdep[4, k], vdep[5, k],
                       avg[6], avg[7], avg[8])


@_jit
def _sl_vjp_plane(i, g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w):
    for j in range(g.shape[1]):
        for k in range(g.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)
            i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = _cell_3d(
                q, i + geo[0] - c * ux, j + geo[1] - c * vy, k + geo[2] - c * wz, geo)
            gijk = g[i, j, k]
            _spread_3d(adj_q, gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
            sx, sy, sz = _trilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            _spread_velocity_3d(adj_u, adj_v, adj_w, -c * (gijk * sx), -c * (gijk * sy), -c * (gijk * sz),
                                i, j, k, vrow, vcol, vdep, avg)


@_jit
def sl_vjp_3d(g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w):
    """:func:`sl_vjp` on a 3-D lattice."""
    for i in range(g.shape[0]):
        _sl_vjp_plane(i, g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w)


@_jit
def _extremes_3d(a, i0, i1, j0, j1, k0, k1):
    """:func:`_extremes` over the 8 corners, in the order 000, 001, 010, ..., 111."""
    lo = hi = a[i0, j0, k0]
    klo = khi = 0
    n = 0
    for ii in (i0, i1):
        for jj in (j0, j1):
            for kk in (k0, k1):
                x = a[ii, jj, kk]
                if x < lo:
                    lo, klo = x, n
                if x > hi:
                    hi, khi = x, n
                n += 1
    return lo, klo, hi, khi


@_jit
def _mc_vjp_plane(i, g, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_c, adj_qp, adj_q1p,
                  adj_u, adj_v, adj_w):
    for j in range(g.shape[1]):
        for k in range(g.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)  # one sample for both traces
            s0, s1, s2 = i + geo[0], j + geo[1], k + geo[2]
            b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2 = _cell_3d(q1p, s0 + c * ux, s1 + c * vy,
                                                                          s2 + c * wz, geo)
            corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - _trilinear(q1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2))
            i0, i1, _, _, j0, j1, _, _, k0, k1, _, _ = _cell_3d(qp, s0 - c * ux, s1 - c * vy, s2 - c * wz, geo)
            lo, klo, hi, khi = _extremes_3d(qp, i0, i1, j0, j1, k0, k1)
            gijk = g[i, j, k]
            if corrected < lo or corrected > hi:  # the bound's corner takes the cotangent
                n = klo if corrected < lo else khi
                adj_qp[i1 if n & 4 else i0, j1 if n & 2 else j0, k1 if n & 1 else k0] += gijk
            else:
                adj_c[i, j, k] = gijk
                adj_q0 = -0.5 * gijk
                _spread_3d(adj_q1p, adj_q0, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2)
                sx, sy, sz = _trilinear_slope(q1p, b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2)
                _spread_velocity_3d(adj_u, adj_v, adj_w, c * (adj_q0 * sx), c * (adj_q0 * sy), c * (adj_q0 * sz),
                                    i, j, k, vrow, vcol, vdep, avg)


@_jit
def mc_correct_vjp_3d(g, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_c, adj_qp, adj_q1p,
                      adj_u, adj_v, adj_w):
    """:func:`mc_correct_vjp` on a 3-D lattice."""
    for i in range(g.shape[0]):
        _mc_vjp_plane(i, g, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_c, adj_qp, adj_q1p,
                      adj_u, adj_v, adj_w)


# -- parallel versions: rows (3-D: planes) split over threads --------------------------
#
# Forward passes write only their own point. The VJPs scatter into rows within
# ``reach`` of the point's row (``reach`` bounds |Δt U| / h plus the stencil), so each
# thread's rows are one big block and a strip of 2·reach + 1 rows (:func:`row_blocks`):
# the big blocks never write the same rows and run in parallel, then the strips do.
# 2-D passes split the rows into ``parts`` blocks (one per thread), each with its own
# row buffers for :func:`_departures`.

@_pjit
def spread_parallel(gx, gy, shift, avg, adj_u, adj_v):
    wu, wv = _weight(adj_u, avg[0], avg[1]), _weight(adj_v, avg[2], avg[3])
    for r in numba.prange(max(adj_u.shape[0], adj_v.shape[0])):
        if r < adj_u.shape[0]:
            _spread_row(r, adj_u, gx, shift[0], shift[1], avg[0], avg[1], wu)
        if r < adj_v.shape[0]:
            _spread_row(r, adj_v, gy, shift[2], shift[3], avg[2], avg[3], wv)


@_pjit
def sl_forward_parallel(q, u, v, shift, avg, geo, shape0, shape1, c, parts):
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(parts, 1, shape1)
    for b in numba.prange(parts):
        for i in range(b * shape0 // parts, (b + 1) * shape0 // parts):
            _sl_forward_row(i, out, q, u, v, shift, avg, geo, c, ib[b], fb[b])
    return out


@_pjit
def sl_jvp_parallel(dq, du, dv, q, u, v, shift, avg, geo, shape0, shape1, c, with_q, with_u, parts):
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(parts, 1, shape1)
    for b in numba.prange(parts):
        for i in range(b * shape0 // parts, (b + 1) * shape0 // parts):
            _sl_jvp_row(i, out, dq, du, dv, q, u, v, shift, avg, geo, c, with_q, with_u, ib[b], fb[b])
    return out


@_pjit
def sl_vjp_parallel(g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, blocks):
    ib, fb = _buffers(blocks.shape[1], 1, g.shape[1])
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _sl_vjp_row(i, g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, ib[b], fb[b])


@_pjit
def mc_correct_parallel(q, qp, q1, q1p, u, v, shift, avg, geo, c, parts):
    out = onp.empty_like(q1)
    ib, fb = _buffers(parts, 2, q1.shape[1])
    for b in numba.prange(parts):
        for i in range(b * q1.shape[0] // parts, (b + 1) * q1.shape[0] // parts):
            _mc_correct_row(i, out, q, qp, q1, q1p, u, v, shift, avg, geo, c, ib[b], fb[b])
    return out


@_pjit
def mc_correct_vjp_parallel(g, q, qp, q1, q1p, u, v, shift, avg, geo, c, adj_c, adj_qp, adj_q1p, gx, gy, blocks):
    ib, fb = _buffers(blocks.shape[1], 2, g.shape[1])
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, shift, avg, geo, c, adj_c, adj_qp, adj_q1p, gx, gy, ib[b],
                            fb[b])


@_pjit
def sl_vjp_3d_parallel(g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w, blocks):
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _sl_vjp_plane(i, g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w)


@_pjit
def mc_correct_vjp_3d_parallel(g, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_c, adj_qp, adj_q1p,
                               adj_u, adj_v, adj_w, blocks):
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _mc_vjp_plane(i, g, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_c, adj_qp,
                              adj_q1p, adj_u, adj_v, adj_w)


_threads = {}


def threads() -> int:
    """numba's thread count, read once (asking costs a microsecond per kernel call).

    The first time there are several, BLAS is limited to one thread: between parallel
    kernels numba's OpenMP threads spin, and a threaded BLAS call then fights them for
    the cores (a 65536-element ``vdot`` after a parallel kernel took 8 ms instead of
    7 µs on 2 cores)."""
    n = _threads.get("n")
    if n is None:
        n = _threads["n"] = numba.get_num_threads() if numba is not None else 1
        if n > 1:
            _single_threaded_blas()
    return n


def _single_threaded_blas():
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a dependency; tolerate its absence
        return
    _threads["blas"] = threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def parallel(cells: int, minimum: int = 2048) -> bool:
    """Whether to run a kernel over ``cells`` points on several threads (below
    ``minimum`` starting the threads costs more than it saves)."""
    return cells >= minimum and threads() > 1


def reach(padded, c):
    """How many rows away from its point's row a VJP may scatter: ``|Δt U| / h`` plus the
    stencil (``c = Δt/h``; ``padded``: the velocity components); None if the velocity is
    not finite or the grid too small for parallel kernels."""
    if not parallel(padded[0].size):
        return None
    top = max(max(float(u.max()), -float(u.min())) for u in padded)  # no temporaries
    return int(math.ceil(abs(c) * top)) + 3 if math.isfinite(top) else None


def row_blocks(shape, rows):
    """Row ranges ``blocks[colour, thread] = (start, stop)`` for a parallel VJP over points
    of ``shape`` that scatters at most ``rows`` (see :func:`reach`) rows away, or None when
    the rows are too few to split (or ``rows`` is None). Colour 0 is one big block per
    thread, colour 1 the strips of 2·rows + 1 rows between them: blocks of one colour are
    more than 2·rows apart and never write the same rows; each colour runs in parallel,
    one after the other. Cached per (rows of points, ``rows``); read-only."""
    n0 = shape[0]
    if rows is None or not parallel(math.prod(shape)):
        return None
    key = (n0, rows)
    if key not in _blocks:
        _blocks[key] = _row_blocks(n0, rows)
    return _blocks[key]


_blocks = {}


def _row_blocks(n0, rows):
    workers = threads()
    strip = 2 * rows + 1
    if n0 < workers * 3 * strip:
        return None
    cuts = [round(k * n0 / workers) for k in range(workers + 1)]  # strip k ends at cuts[k]
    blocks = onp.empty((2, workers, 2), dtype=onp.int64)
    for k in range(workers):
        blocks[0, k] = cuts[k], cuts[k + 1] - strip
        blocks[1, k] = cuts[k + 1] - strip, cuts[k + 1]
    return blocks


# -- choosing the serial or parallel version -------------------------------------------

def semi_lagrangian(qp, padded, lay, shape, c):
    """The semi-Lagrangian forward pass (``padded``: the padded velocity components)."""
    if qp.ndim == 3:
        return sl_forward_3d(qp, *padded, *lay.tables, shape, c)
    args = (qp, *padded, lay.shift, lay.avg, lay.geo, shape[0], shape[1], c)
    return sl_forward_parallel(*args, threads()) if parallel(shape[0] * shape[1]) else sl_forward(*args)


def semi_lagrangian_jvp(dq, du, dv, qp, up, vp, lay, shape, c, with_q, with_u):
    """2-D only; ``du``, ``dv``, ``up``, ``vp``: the padded velocity tangent and velocity."""
    args = (dq, du, dv, qp, up, vp, lay.shift, lay.avg, lay.geo, shape[0], shape[1], c, with_q, with_u)
    return sl_jvp_parallel(*args, threads()) if parallel(shape[0] * shape[1]) else sl_jvp(*args)


def maccormack(q, qp, q1, q1p, padded, lay, c):
    if q.ndim == 3:
        return mc_correct_3d(q, qp, q1, q1p, *padded, *lay.tables, c)
    args = (q, qp, q1, q1p, *padded, lay.shift, lay.avg, lay.geo, c)
    return mc_correct_parallel(*args, threads()) if parallel(q.size) else mc_correct(*args)


def _spread_into(adj, gx, gy, lay):
    kernel = spread_parallel if parallel(gx.size) else spread
    kernel(gx, gy, lay.shift, lay.avg, *adj)


def semi_lagrangian_vjp(g, qp, padded, lay, c, adj_qp, adj, blocks):
    """Add the semi-Lagrangian VJP of cotangent ``g`` into the padded adjoints (``adj``:
    one per velocity component; ``blocks`` from :func:`row_blocks`: parallel, or None)."""
    rest = () if blocks is None else (blocks,)
    if qp.ndim == 3:
        kernel = sl_vjp_3d if blocks is None else sl_vjp_3d_parallel
        kernel(g, qp, *padded, *lay.tables, c, adj_qp, *adj, *rest)
        return
    gx, gy = onp.empty_like(g), onp.empty_like(g)
    kernel = sl_vjp if blocks is None else sl_vjp_parallel
    kernel(g, qp, *padded, lay.shift, lay.avg, lay.geo, c, adj_qp, gx, gy, *rest)
    _spread_into(adj, gx, gy, lay)


def maccormack_vjp(g, q, qp, q1, q1p, padded, lay, c, adj_qp, adj_q1p, adj, blocks):
    """Add the VJP of MacCormack's second pass into the padded adjoints; returns the
    cotangent of ``q¹ + (q - q⁰)/2`` where the clamp is inactive."""
    adj_c = onp.zeros_like(g)
    rest = () if blocks is None else (blocks,)
    if q.ndim == 3:
        kernel = mc_correct_vjp_3d if blocks is None else mc_correct_vjp_3d_parallel
        kernel(g, q, qp, q1, q1p, *padded, *lay.tables, c, adj_c, adj_qp, adj_q1p, *adj, *rest)
        return adj_c
    gx, gy = onp.empty_like(g), onp.empty_like(g)
    kernel = mc_correct_vjp if blocks is None else mc_correct_vjp_parallel
    kernel(g, q, qp, q1, q1p, *padded, lay.shift, lay.avg, lay.geo, c, adj_c, adj_qp, adj_q1p, gx, gy, *rest)
    _spread_into(adj, gx, gy, lay)
    return adj_c
