"""Fused CPU kernels (numba) for the hottest 2-D primitives: semi-Lagrangian advection
(forward, VJP, JVP), MacCormack advection (forward, VJP) with the Euler backtrace, damped
Jacobi sweeps, the stencil passes around a pressure solve, and ghost-layer padding.

One pass over the lattice points does what the array-API reference does with whole-array
temporaries: sample the velocity at the point (on a MAC grid a mean of 1, 2 or 4 samples,
tabulated in a :class:`Layout`), trace back, interpolate. The arithmetic is the
reference's, so results agree to round-off; the reference stays the oracle (tests compare
the two to 1e-12 in float64). Advected fields arrive padded with their ghost layers.
VJP kernels add into adjoint buffers the caller provides (so both velocity components
can share one set).

Used for numpy arrays whenever numba is importable (``FLUIDGRAD_NUMBA=0`` at import
turns it off); kernels over 2048 points or more run in parallel over rows. Compiled
kernels are cached on disk, so only the first process pays the compilation.
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
    axis of ``n`` samples (periodic: wrapped; bounded: clamped to the end samples)."""
    if periodic:
        f = math.floor(s)
        t = s - f
        i0 = int(f)  # wrap by branches: an integer division per axis would dominate
        while i0 < 0:
            i0 += n
        while i0 >= n:
            i0 -= n
        i1 = i0 + 1
        if i1 == n:
            i1 = 0
        return i0, i1, t, 1.0
    if n == 1:
        return 0, 0, 0.0, 0.0
    sc = min(max(s, 0.0), n - 1.0)
    i0 = min(int(math.floor(sc)), n - 2)
    return i0, i0 + 1, sc - i0, 1.0 if (s >= 0.0 and s <= n - 1.0) else 0.0


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
def _average(a, i, i1, j, j1, avg0, avg1):
    """``a`` at a lattice point of another lattice of the MAC grid: the mean of the
    1, 2 or 4 nearest samples (bilinear weights ½ along the axes where ``avg``)."""
    x = a[i, j]
    if avg0:
        x += a[i1, j]
        if avg1:
            return 0.25 * (x + a[i, j1] + a[i1, j1])
        return 0.5 * x
    if avg1:
        return 0.5 * (x + a[i, j1])
    return x


@_jit
def _spread_average(out, g, i, i1, j, j1, avg0, avg1):
    """Transpose of :func:`_average`."""
    w = g * (0.5 if avg0 else 1.0) * (0.5 if avg1 else 1.0)
    out[i, j] += w
    if avg0:
        out[i1, j] += w
        if avg1:
            out[i, j1] += w
            out[i1, j1] += w
    elif avg1:
        out[i, j1] += w


@_jit
def _velocity_at(r, j, u, v, vcol, avg):
    """Both velocity components at lattice point (i, j); ``r`` = ``vrow[:, i]``."""
    ux = _average(u, r[0], r[1], vcol[0, j], vcol[1, j], avg[0], avg[1])
    vy = _average(v, r[2], r[3], vcol[2, j], vcol[3, j], avg[2], avg[3])
    return ux, vy


@_jit
def _spread_velocity(adj_u, adj_v, gx, gy, r, j, vcol, avg):
    """Transpose of :func:`_velocity_at`."""
    _spread_average(adj_u, gx, r[0], r[1], vcol[0, j], vcol[1, j], avg[0], avg[1])
    _spread_average(adj_v, gy, r[2], r[3], vcol[2, j], vcol[3, j], avg[2], avg[3])


@_jit
def _row(vrow, i):
    return vrow[0, i], vrow[1, i], vrow[2, i], vrow[3, i]


@_jit
def _cell(q, s0, s1, geo):
    """Bilinear stencil of the padded field ``q`` at lattice coordinates (s0, s1)."""
    i0, i1, t0, d0 = _locate(s0, q.shape[0], geo[2] > 0)
    j0, j1, t1, d1 = _locate(s1, q.shape[1], geo[3] > 0)
    return i0, i1, t0, d0, j0, j1, t1, d1


@_jit
def _sl_forward_row(i, out, q, u, v, vrow, vcol, avg, geo, c):
    s0 = i + geo[0]
    r = _row(vrow, i)
    for j in range(out.shape[1]):
        ux, vy = _velocity_at(r, j, u, v, vcol, avg)
        i0, i1, t0, _, j0, j1, t1, _ = _cell(q, s0 - c * ux, j + geo[1] - c * vy, geo)
        out[i, j] = _bilinear(q, i0, i1, t0, j0, j1, t1)


@_jit
def sl_forward(q, u, v, vrow, vcol, avg, geo, shape0, shape1, c):
    """``q'(x) = I[q](x - Δt U(x))`` at every lattice point of the field (``c = Δt/h``)."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in range(shape0):
        _sl_forward_row(i, out, q, u, v, vrow, vcol, avg, geo, c)
    return out


@_jit
def _sl_vjp_row(i, g, q, u, v, vrow, vcol, avg, geo, c, adj_q, adj_u, adj_v):
    s0 = i + geo[0]
    r = _row(vrow, i)
    for j in range(g.shape[1]):
        ux, vy = _velocity_at(r, j, u, v, vcol, avg)
        i0, i1, t0, d0, j0, j1, t1, d1 = _cell(q, s0 - c * ux, j + geo[1] - c * vy, geo)
        gij = g[i, j]
        _spread(adj_q, gij, i0, i1, t0, j0, j1, t1)
        sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
        _spread_velocity(adj_u, adj_v, -c * (gij * sx), -c * (gij * sy), r, j, vcol, avg)


@_jit
def sl_vjp(g, q, u, v, vrow, vcol, avg, geo, c, adj_q, adj_u, adj_v):
    """``adj_q += Iᵀ g``; ``adj_u += Sᵀ(-Δt g ∂I[q]/∂x)`` (all on the padded lattices;
    ``adj_q`` may be ``adj_u`` or ``adj_v`` when q is a velocity component)."""
    for i in range(g.shape[0]):
        _sl_vjp_row(i, g, q, u, v, vrow, vcol, avg, geo, c, adj_q, adj_u, adj_v)


@_jit
def _sl_jvp_row(i, out, dq, du, dv, q, u, v, vrow, vcol, avg, geo, c, with_q, with_u):
    s0 = i + geo[0]
    r = _row(vrow, i)
    for j in range(out.shape[1]):
        ux, vy = _velocity_at(r, j, u, v, vcol, avg)
        i0, i1, t0, d0, j0, j1, t1, d1 = _cell(q, s0 - c * ux, j + geo[1] - c * vy, geo)
        total = 0.0
        if with_q:
            total = _bilinear(dq, i0, i1, t0, j0, j1, t1)
        if with_u:
            sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
            dux, dvy = _velocity_at(r, j, du, dv, vcol, avg)
            total = total + sx * (-c * dux) + sy * (-c * dvy)
        out[i, j] = total


@_jit
def sl_jvp(dq, du, dv, q, u, v, vrow, vcol, avg, geo, shape0, shape1, c, with_q, with_u):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)``."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in range(shape0):
        _sl_jvp_row(i, out, dq, du, dv, q, u, v, vrow, vcol, avg, geo, c, with_q, with_u)
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
    padded lattice. In 2-D the tables are ``vrow``, ``vcol``; in 3-D also ``vdep``."""

    def __init__(self, domain, location):
        from . import interpolation as interp
        nd = domain.ndim
        field = interp.field_lattice(domain, location)
        padded = interp.padded_lattice(domain, location)
        tables = [onp.zeros((2 * nd, n), dtype=onp.int64) for n in field.shape]
        self.avg = onp.zeros(nd * nd, dtype=onp.bool_)
        for comp in range(nd):
            lat = interp.padded_lattice(domain, comp)
            for a in range(nd):
                s = onp.arange(field.shape[a]) + (field.offset[a] - lat.offset[a])
                lo, hi, t = _axis_table(s, lat.shape[a], lat.periodic[a])
                if not (onp.all(t == t[0]) and t[0] in (0.0, 0.5)):
                    raise AssertionError("velocity samples are not MAC-staggered")  # pragma: no cover
                tables[a][2 * comp], tables[a][2 * comp + 1] = lo, hi
                self.avg[nd * comp + a] = t[0] == 0.5
        self.axes = tables
        self.vrow, self.vcol = tables[:2]
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
def _jacobi_point(i, j, im, ip, jm, jp, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, omega):
    lx = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
          + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])
    y[i, j] = x[i, j] + omega * inv_diag[i, j] * (b[i, j] - lx)


@_jit
def _jacobi_row(i, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, omega):
    """One damped-Jacobi update of row ``i`` from ``x`` into ``y``; the inner columns
    have no branches (so they vectorize), the two edge columns wrap or clamp."""
    n0, n1 = b.shape
    im = i - 1 if i > 0 else (n0 - 1 if per0 else 0)
    ip = i + 1 if i < n0 - 1 else (0 if per0 else n0 - 1)
    for j in range(1, n1 - 1):
        _jacobi_point(i, j, im, ip, j - 1, j + 1, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, omega)
    last = n1 - 1
    _jacobi_point(i, 0, im, ip, last if per1 else 0, min(1, last), x, y, b, inv_diag, diag,
                  cxm, cxp, cym, cyp, omega)
    if last > 0:
        _jacobi_point(i, last, im, ip, last - 1, 0 if per1 else last, x, y, b, inv_diag, diag,
                      cxm, cxp, cym, cyp, omega)


@_jit
def _jacobi_row_uniform(x, xm, xp, b, y, k1, k2, k3, k4, k5, w):
    """:func:`_jacobi_row` on a periodic box with uniform coefficients (``w`` = ω/d), on
    row views (row ``x``, its neighbours ``xm``, ``xp``): nothing but the field is read
    from memory, and the inner columns vectorize."""
    n1 = b.shape[0]
    for j in range(1, n1 - 1):
        y[j] = x[j] + w * (b[j] - (k1 * x[j] + k2 * xm[j] + k3 * xp[j] + k4 * x[j - 1] + k5 * x[j + 1]))
    for j in (0, n1 - 1):
        jm = j - 1 if j > 0 else n1 - 1
        jp = j + 1 if j < n1 - 1 else 0
        y[j] = x[j] + w * (b[j] - (k1 * x[j] + k2 * xm[j] + k3 * xp[j] + k4 * x[jm] + k5 * x[jp]))


@_jit
def _neighbour_rows(i, n0):
    return (i - 1 if i > 0 else n0 - 1), (i + 1 if i < n0 - 1 else 0)


@_jit
def _start(b, x0, inv_diag, omega):
    """The iterate after the first sweep from zero, ``ω D⁻¹ b``, if ``x0`` is None
    (``inv_diag`` of shape (1, 1) for uniform coefficients)."""
    if x0 is not None:
        return x0.copy()
    x = onp.empty_like(b)
    uniform, w = inv_diag.shape[0] == 1, b.dtype.type(omega)  # ω in the field's precision, as numpy
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            x[i, j] = w * (inv_diag[0, 0] if uniform else inv_diag[i, j]) * b[i, j]
    return x


@_jit
def jacobi_sweeps_uniform(b, x0, k, sweeps, omega):
    """:func:`jacobi_sweeps` for uniform coefficients (see :func:`jacobi_coefficients`)."""
    x = _start(b, x0, k[:1].reshape((1, 1)), omega)
    y = onp.empty_like(x)
    k1, k2, k3, k4, k5, w = k[1], k[2], k[3], k[4], k[5], k.dtype.type(omega) * k[0]
    for _ in range(sweeps):
        for i in range(b.shape[0]):
            im, ip = _neighbour_rows(i, b.shape[0])
            _jacobi_row_uniform(x[i], x[im], x[ip], b[i], y[i], k1, k2, k3, k4, k5, w)
        x, y = y, x
    return x


@_jit
def jacobi_sweeps(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)`` for the 2-D five-point
    operator ``(L x)_ij = d x_ij + cxm x_{i-1,j} + cxp x_{i+1,j} + cym x_{i,j-1} + cyp x_{i,j+1}``
    (neighbours wrap on periodic axes; coefficients are 0 where there is none), from
    ``x0`` or, if None, from the first sweep from zero."""
    x = _start(b, x0, inv_diag, omega)
    y = onp.empty_like(x)
    for _ in range(sweeps):
        for i in range(b.shape[0]):
            _jacobi_row(i, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, omega)
        x, y = y, x
    return x


def neighbour_coefficients(op, dtype):
    """``(inv_diag, diag, lo₀, hi₀, lo₁, hi₁[, lo₂, hi₂])`` of a 2-D or 3-D PoissonOperator as
    C-contiguous cell arrays (``lo_d``/``hi_d``: the weight of the neighbour below/above
    along axis d, 0 where there is none), cached on the operator."""
    key = ("fused-neighbour-arrays", onp.dtype(dtype))
    cached = op._aux.get(key)
    if cached is None:
        diag, offs = op._coef(dtype)
        out = [op._inv_diag(dtype), diag]
        for d in range(op.ndim):
            if op.periodic[d]:
                lo, hi = offs[d]
            else:
                lo = onp.zeros(op.shape, dtype=dtype)
                hi = onp.zeros(op.shape, dtype=dtype)
                inner, lower = [slice(None)] * op.ndim, [slice(None)] * op.ndim
                inner[d], lower[d] = slice(1, None), slice(None, -1)
                lo[tuple(inner)], hi[tuple(lower)] = offs[d], offs[d]
            out += [lo, hi]
        cached = op._aux[key] = tuple(onp.ascontiguousarray(a) for a in out)
    return cached


def jacobi_coefficients(op, dtype):
    """:func:`neighbour_coefficients`, or 6 numbers when every one is uniform (a periodic
    box: see :func:`jacobi_sweeps_uniform`); cached on the operator."""
    key = ("fused-neighbours", onp.dtype(dtype))
    cached = op._aux.get(key)
    if cached is None:
        out = neighbour_coefficients(op, dtype)
        if all((a == a.flat[0]).all() for a in out):
            out = (onp.array([a.flat[0] for a in out], dtype=dtype),)
        cached = op._aux[key] = out
    return cached


@_jit
def _apply_row(i, x, out, diag, cxm, cxp, cym, cyp, per0, per1):
    """Row ``i`` of ``L x`` (the five-point operator of :func:`jacobi_sweeps`)."""
    n0, n1 = x.shape
    im = i - 1 if i > 0 else (n0 - 1 if per0 else 0)
    ip = i + 1 if i < n0 - 1 else (0 if per0 else n0 - 1)
    for j in range(n1):
        jm = j - 1 if j > 0 else (n1 - 1 if per1 else 0)
        jp = j + 1 if j < n1 - 1 else (0 if per1 else n1 - 1)
        out[i, j] = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
                     + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])


@_jit
def poisson_apply(x, diag, cxm, cxp, cym, cyp, per0, per1):
    """``L x`` for the 2-D five-point operator (coefficients as in :func:`jacobi_sweeps`)."""
    out = onp.empty_like(x)
    for i in range(x.shape[0]):
        _apply_row(i, x, out, diag, cxm, cxp, cym, cyp, per0, per1)
    return out


@_jit
def _gauss_seidel_row(i, colour, x, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1):
    """Update the cells of ``colour`` ((i + j) % 2) in row ``i`` in place."""
    n0, n1 = x.shape
    im = i - 1 if i > 0 else (n0 - 1 if per0 else 0)
    ip = i + 1 if i < n0 - 1 else (0 if per0 else n0 - 1)
    for j in range((colour + i) % 2, n1, 2):
        jm = j - 1 if j > 0 else (n1 - 1 if per1 else 0)
        jp = j + 1 if j < n1 - 1 else (0 if per1 else n1 - 1)
        lx = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
              + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])
        x[i, j] = x[i, j] + inv_diag[i, j] * (b[i, j] - lx)


@_jit
def gauss_seidel(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, reverse):
    """``sweeps`` red-black Gauss-Seidel sweeps ``x_c += D⁻¹ (b − L x)_c`` over the cells of
    colour c = (i + j) % 2, colour 0 first (1 first if ``reverse``), from ``x0`` (None:
    zero)."""
    x = onp.zeros_like(b) if x0 is None else x0.copy()
    for _ in range(sweeps):
        for half in range(2):
            colour = half if not reverse else 1 - half
            for i in range(b.shape[0]):
                _gauss_seidel_row(i, colour, x, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1)
    return x


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
def _mc_correct_row(i, out, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c):
    s0 = i + geo[0]
    r = _row(vrow, i)
    for j in range(q1.shape[1]):
        ux, vy = _velocity_at(r, j, u, v, vcol, avg)  # one sample for both traces
        s1 = j + geo[1]
        i0, i1, t0, _, j0, j1, t1, _ = _cell(q1p, s0 + c * ux, s1 + c * vy, geo)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, i0, i1, t0, j0, j1, t1))
        i0, i1, _, _, j0, j1, _, _ = _cell(qp, s0 - c * ux, s1 - c * vy, geo)
        lo, _, hi, _ = _extremes(qp, i0, i1, j0, j1)
        out[i, j] = lo if corrected < lo else (hi if corrected > hi else corrected)


@_jit
def mc_correct(q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c):
    """MacCormack's second pass: ``clamp(q¹ + (q - q⁰)/2)`` with ``q⁰ = I[q¹](x + Δt U)``,
    bounds from the corners of ``I[q]`` at ``x - Δt U``."""
    out = onp.empty_like(q1)
    for i in range(q1.shape[0]):
        _mc_correct_row(i, out, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c)
    return out


@_jit
def _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c, adj_c, adj_qp, adj_q1p, adj_u, adj_v):
    s0 = i + geo[0]
    r = _row(vrow, i)
    for j in range(g.shape[1]):
        ux, vy = _velocity_at(r, j, u, v, vcol, avg)  # one sample for both traces
        s1 = j + geo[1]
        b0, b1, tb0, db0, c0, c1, tb1, db1 = _cell(q1p, s0 + c * ux, s1 + c * vy, geo)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, b0, b1, tb0, c0, c1, tb1))
        i0, i1, _, _, j0, j1, _, _ = _cell(qp, s0 - c * ux, s1 - c * vy, geo)
        lo, klo, hi, khi = _extremes(qp, i0, i1, j0, j1)
        gij = g[i, j]
        if corrected < lo:
            a, b = _corner(klo, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        elif corrected > hi:
            a, b = _corner(khi, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        else:
            adj_c[i, j] = gij
            adj_q0 = -0.5 * gij
            _spread(adj_q1p, adj_q0, b0, b1, tb0, c0, c1, tb1)
            sx, sy = _bilinear_slope(q1p, b0, b1, tb0, db0, c0, c1, tb1, db1)
            _spread_velocity(adj_u, adj_v, c * (adj_q0 * sx), c * (adj_q0 * sy), r, j, vcol, avg)


@_jit
def mc_correct_vjp(g, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c, adj_c, adj_qp, adj_q1p, adj_u, adj_v):
    """The VJP of :func:`mc_correct`, added into ``adj_*``: with respect to ``q`` (direct,
    ``adj_c``, and through the clamp bounds, on the padded lattice), ``q¹`` (direct, and on
    the padded lattice through ``q⁰``) and the velocity (through the backward departure
    points)."""
    for i in range(g.shape[0]):
        _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c, adj_c, adj_qp, adj_q1p, adj_u, adj_v)


# -- 3-D forward kernels -------------------------------------------------------------
#
# The same passes on 3-D lattices (forward only: the 3-D VJPs run on the array-API
# reference). ``r`` / ``t`` / ``z`` are a component's two indices along axes 0 / 1 / 2
# (tables ``vrow``, ``vcol``, ``vdep``), averaged where ``avg`` says.

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
def _corner_bounds(a, i0, i1, j0, j1, k0, k1):
    """min and max of the 8 corners."""
    lo = hi = a[i0, j0, k0]
    for ii in (i0, i1):
        for jj in (j0, j1):
            for kk in (k0, k1):
                x = a[ii, jj, kk]
                lo = x if x < lo else lo
                hi = x if x > hi else hi
    return lo, hi


@_jit
def _mc_correct_plane(i, out, q, qp, q1, q1p, u, v, w, vrow, vcol, vdep, avg, geo, c):
    for j in range(q1.shape[1]):
        for k in range(q1.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)  # one sample for both traces
            s0, s1, s2 = i + geo[0], j + geo[1], k + geo[2]
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(q1p, s0 + c * ux, s1 + c * vy, s2 + c * wz, geo)
            corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - _trilinear(q1p, i0, i1, t0, j0, j1, t1, k0, k1, t2))
            i0, i1, _, _, j0, j1, _, _, k0, k1, _, _ = _cell_3d(qp, s0 - c * ux, s1 - c * vy, s2 - c * wz, geo)
            lo, hi = _corner_bounds(qp, i0, i1, j0, j1, k0, k1)
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


# -- parallel versions: rows split over threads -------------------------------------
#
# Forward passes write only their own point. The VJPs scatter into rows within
# ``reach`` of the point's row (``reach`` bounds |Δt U| / h plus the stencil), so the
# rows are cut into blocks wider than 2·reach and coloured alternately: blocks of one
# colour never write the same rows and run in parallel, then the other colour runs.

@_pjit
def sl_forward_parallel(q, u, v, vrow, vcol, avg, geo, shape0, shape1, c):
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in numba.prange(shape0):
        _sl_forward_row(i, out, q, u, v, vrow, vcol, avg, geo, c)
    return out


@_pjit
def sl_jvp_parallel(dq, du, dv, q, u, v, vrow, vcol, avg, geo, shape0, shape1, c, with_q, with_u):
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in numba.prange(shape0):
        _sl_jvp_row(i, out, dq, du, dv, q, u, v, vrow, vcol, avg, geo, c, with_q, with_u)
    return out


@_pjit
def sl_vjp_parallel(g, q, u, v, vrow, vcol, avg, geo, c, adj_q, adj_u, adj_v, blocks):
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _sl_vjp_row(i, g, q, u, v, vrow, vcol, avg, geo, c, adj_q, adj_u, adj_v)


@_pjit
def mc_correct_parallel(q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c):
    out = onp.empty_like(q1)
    for i in numba.prange(q1.shape[0]):
        _mc_correct_row(i, out, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c)
    return out


@_pjit
def mc_correct_vjp_parallel(g, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c, adj_c, adj_qp, adj_q1p,
                            adj_u, adj_v, blocks):
    for colour in range(2):
        for b in numba.prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, vrow, vcol, avg, geo, c,
                            adj_c, adj_qp, adj_q1p, adj_u, adj_v)


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


@_pjit
def jacobi_sweeps_parallel(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, omega):
    x = _start(b, x0, inv_diag, omega)
    y = onp.empty_like(x)
    for k in range(sweeps):
        src, dst = (x, y) if k % 2 == 0 else (y, x)
        for i in numba.prange(b.shape[0]):
            _jacobi_row(i, src, dst, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, omega)
    return y if sweeps % 2 else x


@_pjit
def jacobi_sweeps_uniform_parallel(b, x0, k, sweeps, omega):
    x = _start(b, x0, k[:1].reshape((1, 1)), omega)
    y = onp.empty_like(x)
    k1, k2, k3, k4, k5, w = k[1], k[2], k[3], k[4], k[5], k.dtype.type(omega) * k[0]
    for s in range(sweeps):
        src, dst = (x, y) if s % 2 == 0 else (y, x)
        for row in numba.prange(b.shape[0]):
            i = numba.int64(row)  # a signed index (parallel loops count unsigned)
            im, ip = _neighbour_rows(i, b.shape[0])
            _jacobi_row_uniform(src[i], src[im], src[ip], b[i], dst[i], k1, k2, k3, k4, k5, w)
    return y if sweeps % 2 else x


@_pjit
def poisson_apply_parallel(x, diag, cxm, cxp, cym, cyp, per0, per1):
    out = onp.empty_like(x)
    for row in numba.prange(x.shape[0]):
        _apply_row(numba.int64(row), x, out, diag, cxm, cxp, cym, cyp, per0, per1)
    return out


@_pjit
def gauss_seidel_parallel(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, reverse):
    x = onp.zeros_like(b) if x0 is None else x0.copy()
    for _ in range(sweeps):
        for half in range(2):  # cells of one colour read only the other: rows run in parallel
            colour = half if not reverse else 1 - half
            for row in numba.prange(b.shape[0]):
                _gauss_seidel_row(numba.int64(row), colour, x, b, inv_diag, diag, cxm, cxp, cym, cyp,
                                  per0, per1)
    return x


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
    one after the other."""
    n0 = shape[0]
    if rows is None or not parallel(math.prod(shape)):
        return None
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


# -- pressure projection on the 2-D MAC grid ------------------------------------------
#
# The stencil work around a pressure solve, one parallel pass each (see ops.pressure for
# the formulas), every value computed where it is stored: u has n0 faces along axis 0 on
# a periodic axis (face n0 is face 0) and n0 + 1 on a bounded one, so the shapes say
# which; ghost pressures beyond a bounded face are ``a·p_edge`` (``rules`` = [a_lo0,
# a_hi0, a_lo1, a_hi1]). ``prepare`` applies what solve_jacobi does to its right-hand
# side (fluid mask, mean removal if ``singular``), ``finish`` what it does to its result.

@_pjit
def _prepare(b, fluid, singular, all_fluid, n_fluid, total=None):
    """``b`` masked to the fluid cells (in place), and mean-free over them if ``singular``
    (``total``: Σ b over the fluid cells, if the caller has it)."""
    if singular:
        if total is None:
            total = 0.0
            for i in numba.prange(b.shape[0]):
                for j in range(b.shape[1]):
                    total += b[i, j] * fluid[i, j]
        mean = total / n_fluid
        for i in numba.prange(b.shape[0]):
            for j in range(b.shape[1]):
                b[i, j] = (b[i, j] - mean) * fluid[i, j]
    elif not all_fluid:
        for i in numba.prange(b.shape[0]):
            for j in range(b.shape[1]):
                b[i, j] = b[i, j] * fluid[i, j]


@_jit
def _masked(u, m, c, i, j, plain):
    """``M u + c`` at face (i, j); ``u`` itself if ``plain`` (all faces open, no fixed values)."""
    if plain:
        return u[i, j]
    return (u[i, j] if m[i, j] else 0.0) + c[i, j]


@_pjit
def projection_rhs(u, v, mu, mv, cu, cv, h, prepare, fluid, singular, all_fluid, n_fluid, plain):
    """``u_b = M u + c`` (both components; ``u`` itself if ``plain``) and ``b = D u_b``,
    prepared if ``prepare``."""
    n0, n1 = v.shape[0], u.shape[1]
    inv_h = 1.0 / h
    ub = u if plain else onp.empty_like(u)
    vb = v if plain else onp.empty_like(v)
    b = onp.empty((n0, n1), dtype=u.dtype)
    total = 0.0
    for row in numba.prange(u.shape[0]):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        if not plain:
            for j in range(n1):
                ub[i, j] = _masked(u, mu, cu, i, j, plain)
            if i < n0:
                for j in range(v.shape[1]):
                    vb[i, j] = _masked(v, mv, cv, i, j, plain)
        if i < n0:  # from u and v (row i + 1 of u_b may not be written yet)
            ip = i + 1 if i + 1 < u.shape[0] else 0
            for j in range(n1):
                jp = j + 1 if j + 1 < v.shape[1] else 0
                bij = ((_masked(u, mu, cu, ip, j, plain) - _masked(u, mu, cu, i, j, plain)) * inv_h
                       + (_masked(v, mv, cv, i, jp, plain) - _masked(v, mv, cv, i, j, plain)) * inv_h)
                b[i, j] = bij
                total += bij * fluid[i, j]
    if prepare:
        _prepare(b, fluid, singular, all_fluid, n_fluid, total)
    return ub, vb, b


@_pjit
def projection_finish(p, ub, vb, mu, mv, h, rules, finish, fluid, singular, n_fluid, plain):
    """``u' = u_b − M G p`` (p made mean-free over the fluid first if ``finish`` and
    ``singular``); returns (u', v', p)."""
    n0, n1 = p.shape
    inv_h = 1.0 / h
    if finish and singular:
        _prepare(p, fluid, True, False, n_fluid)
    out_u = onp.empty_like(ub)
    out_v = onp.empty_like(vb)
    per0, per1 = ub.shape[0] == n0, vb.shape[1] == n1
    for row in numba.prange(ub.shape[0]):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        im, ic = (i - 1 if i > 0 else n0 - 1), min(i, n0 - 1)
        for j in range(n1):
            lo, hi = _pressure_pair(p[im, j], p[ic, j], i, n0, per0, rules[0], rules[1])
            out_u[i, j] = ub[i, j] - ((hi - lo) * inv_h if plain or mu[i, j] else 0.0)
        if i < n0:
            for j in range(vb.shape[1]):
                lo, hi = _pressure_pair(p[i, j - 1 if j > 0 else n1 - 1], p[i, min(j, n1 - 1)], j, n1, per1,
                                        rules[2], rules[3])
                out_v[i, j] = vb[i, j] - ((hi - lo) * inv_h if plain or mv[i, j] else 0.0)
    return out_u, out_v, p


@_jit
def _pressure_pair(p_lo, p_hi, k, n, periodic, a_lo, a_hi):
    """Pressures on either side of face ``k`` of an axis of ``n`` cells, given the cell
    values ``p_lo = p[k-1]`` and ``p_hi = p[k]`` (indices clamped/wrapped by the caller)."""
    if not periodic:
        if k == 0:
            return a_lo * p_hi, p_hi
        if k == n:
            return p_lo, a_hi * p_lo
    return p_lo, p_hi


@_jit
def _face_weight(g, m, i, j, inv_h, plain):
    return g[i, j] * inv_h if plain or m[i, j] else 0.0


@_pjit
def projection_vjp_rhs(gu, gv, gp, mu, mv, h, rules, prepare, fluid, singular, all_fluid, n_fluid, plain):
    """``g_p − Gᵀ M g_u``, prepared if ``prepare``: cell i takes +w from face i (its low
    face, where it is the high side) and −w from face i + 1, and the ghost terms."""
    n0, n1 = gp.shape
    inv_h = 1.0 / h
    per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
    rhs = onp.empty_like(gp)
    total = 0.0
    for row in numba.prange(n0):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        ip = i + 1 if i + 1 < gu.shape[0] else 0
        for j in range(n1):
            jp = j + 1 if j + 1 < gv.shape[1] else 0
            gt = (_face_weight(gu, mu, i, j, inv_h, plain) - _face_weight(gu, mu, ip, j, inv_h, plain)
                  + _face_weight(gv, mv, i, j, inv_h, plain) - _face_weight(gv, mv, i, jp, inv_h, plain))
            if not per0:
                if i == 0:
                    gt -= rules[0] * _face_weight(gu, mu, 0, j, inv_h, plain)
                if i == n0 - 1:
                    gt += rules[1] * _face_weight(gu, mu, n0, j, inv_h, plain)
            if not per1:
                if j == 0:
                    gt -= rules[2] * _face_weight(gv, mv, i, 0, inv_h, plain)
                if j == n1 - 1:
                    gt += rules[3] * _face_weight(gv, mv, i, n1, inv_h, plain)
            rij = gp[i, j] - gt
            rhs[i, j] = rij
            total += rij * fluid[i, j]
    if prepare:
        _prepare(rhs, fluid, singular, all_fluid, n_fluid, total)
    return rhs


@_pjit
def projection_vjp_finish(r, gu, gv, mu, mv, h, finish, fluid, singular, n_fluid, plain):
    """``M (g_u + Dᵀ r)`` (r made mean-free over the fluid first if ``finish`` and
    ``singular``): face i is +1/h for cell i − 1 and −1/h for cell i."""
    n0, n1 = r.shape
    inv_h = 1.0 / h
    if finish and singular:
        _prepare(r, fluid, True, False, n_fluid)
    per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
    adj_u = onp.empty_like(gu)
    adj_v = onp.empty_like(gv)
    for row in numba.prange(gu.shape[0]):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        for j in range(n1):
            left = r[i - 1 if i > 0 else n0 - 1, j] if (i > 0 or per0) else 0.0
            right = r[i, j] if i < n0 else 0.0
            adj_u[i, j] = gu[i, j] + (left - right) * inv_h if plain or mu[i, j] else 0.0
        if i < n0:
            for j in range(gv.shape[1]):
                left = r[i, j - 1 if j > 0 else n1 - 1] if (j > 0 or per1) else 0.0
                right = r[i, j] if j < n1 else 0.0
                adj_v[i, j] = gv[i, j] + (left - right) * inv_h if plain or mv[i, j] else 0.0
    return adj_u, adj_v


# -- the 3-D Poisson operator and red-black Gauss-Seidel (planes of axis 0 in parallel) --

@_jit
def _neighbours(i, n, periodic):
    """Indices below and above ``i`` on an axis of ``n`` cells (wrapped, or clamped: the
    coefficient of a missing neighbour is 0)."""
    return (i - 1 if i > 0 else (n - 1 if periodic else 0)), (i + 1 if i < n - 1 else (0 if periodic else n - 1))


@_jit
def _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp):
    return (diag[i, j, k] * x[i, j, k] + cxm[i, j, k] * x[im, j, k] + cxp[i, j, k] * x[ip, j, k]
            + cym[i, j, k] * x[i, jm, k] + cyp[i, j, k] * x[i, jp, k]
            + czm[i, j, k] * x[i, j, km] + czp[i, j, k] * x[i, j, kp])


@_pjit
def poisson_apply_3d(x, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2):
    """``L x`` for the 3-D seven-point operator."""
    n0, n1, n2 = x.shape
    out = onp.empty_like(x)
    for row in numba.prange(n0):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        im, ip = _neighbours(i, n0, per0)
        for j in range(n1):
            jm, jp = _neighbours(j, n1, per1)
            for k in range(n2):
                km, kp = _neighbours(k, n2, per2)
                out[i, j, k] = _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
    return out


@_pjit
def gauss_seidel_3d(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2, sweeps, reverse):
    """:func:`gauss_seidel` on a 3-D grid: colour (i + j + k) % 2."""
    n0, n1, n2 = b.shape
    x = onp.zeros_like(b) if x0 is None else x0.copy()
    for _ in range(sweeps):
        for half in range(2):  # cells of one colour read only the other: planes run in parallel
            colour = half if not reverse else 1 - half
            for row in numba.prange(n0):
                i = numba.int64(row)
                im, ip = _neighbours(i, n0, per0)
                for j in range(n1):
                    jm, jp = _neighbours(j, n1, per1)
                    for k in range((colour + i + j) % 2, n2, 2):
                        km, kp = _neighbours(k, n2, per2)
                        lx = _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
                        x[i, j, k] = x[i, j, k] + inv_diag[i, j, k] * (b[i, j, k] - lx)
    return x


# -- multigrid transfers on the 2-D grid ----------------------------------------------
#
# ``weights`` = the 8 arrays (a_lo, b_lo, a_hi, b_hi) of axis 0 (coarse shape) then of
# axis 1 (fine rows × coarse columns) of ``linear_solvers._transfer_weights``: fine cell
# 2k takes a_lo·e_k + b_lo·e_{k-1}, fine cell 2k+1 takes a_hi·e_k + b_hi·e_{k+1}
# (neighbours wrap; the weights are 0 where a bounded axis ends).

@_jit
def _wrap(k, n):
    return k + n if k < 0 else (k - n if k >= n else k)


@_jit
def prolong(e, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, fluid, all_fluid):
    """Interpolate the coarse ``e`` to the fine grid along axis 0, then axis 1 (times
    the fine fluid mask unless ``all_fluid``)."""
    c0, c1 = e.shape
    rows = onp.empty((2 * c0, c1), dtype=e.dtype)
    for k in range(c0):
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            rows[2 * k, j] = a_lo0[k, j] * e[k, j] + b_lo0[k, j] * e[km, j]
            rows[2 * k + 1, j] = a_hi0[k, j] * e[k, j] + b_hi0[k, j] * e[kp, j]
    out = onp.empty((2 * c0, 2 * c1), dtype=e.dtype)
    for i in range(2 * c0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            out[i, 2 * k] = a_lo1[i, k] * rows[i, k] + b_lo1[i, k] * rows[i, km]
            out[i, 2 * k + 1] = a_hi1[i, k] * rows[i, k] + b_hi1[i, k] * rows[i, kp]
            if not all_fluid:
                out[i, 2 * k] *= fluid[i, 2 * k]
                out[i, 2 * k + 1] *= fluid[i, 2 * k + 1]
    return out


@_jit
def restrict(r, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, fluid, all_fluid):
    """The transpose of :func:`prolong` divided by 4 (axis 1 first, then axis 0)."""
    f0, c1 = r.shape[0], r.shape[1] // 2
    c0 = f0 // 2
    cols = onp.empty((f0, c1), dtype=r.dtype)
    for i in range(f0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            lo, hi = r[i, 2 * k], r[i, 2 * k + 1]
            lo_next, hi_prev = r[i, 2 * kp], r[i, 2 * km + 1]
            if not all_fluid:
                lo, hi = lo * fluid[i, 2 * k], hi * fluid[i, 2 * k + 1]
                lo_next, hi_prev = lo_next * fluid[i, 2 * kp], hi_prev * fluid[i, 2 * km + 1]
            cols[i, k] = (a_lo1[i, k] * lo + a_hi1[i, k] * hi + b_lo1[i, kp] * lo_next
                          + b_hi1[i, km] * hi_prev)
    out = onp.empty((c0, c1), dtype=r.dtype)
    for k in range(c0):
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            out[k, j] = 0.25 * (a_lo0[k, j] * cols[2 * k, j] + a_hi0[k, j] * cols[2 * k + 1, j]
                                + b_lo0[kp, j] * cols[2 * kp, j] + b_hi0[km, j] * cols[2 * km + 1, j])
    return out


@_pjit
def prolong_3d(e, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, a_lo2, b_lo2, a_hi2, b_hi2,
               fluid, all_fluid):
    """:func:`prolong` on a 3-D grid: along axis 0, then 1, then 2 (planes in parallel)."""
    c0, c1, c2 = e.shape
    p0 = onp.empty((2 * c0, c1, c2), dtype=e.dtype)
    for row in numba.prange(c0):
        k = numba.int64(row)
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            for m in range(c2):
                p0[2 * k, j, m] = a_lo0[k, j, m] * e[k, j, m] + b_lo0[k, j, m] * e[km, j, m]
                p0[2 * k + 1, j, m] = a_hi0[k, j, m] * e[k, j, m] + b_hi0[k, j, m] * e[kp, j, m]
    p1 = onp.empty((2 * c0, 2 * c1, c2), dtype=e.dtype)
    for i in numba.prange(2 * c0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            for m in range(c2):
                p1[i, 2 * k, m] = a_lo1[i, k, m] * p0[i, k, m] + b_lo1[i, k, m] * p0[i, km, m]
                p1[i, 2 * k + 1, m] = a_hi1[i, k, m] * p0[i, k, m] + b_hi1[i, k, m] * p0[i, kp, m]
    out = onp.empty((2 * c0, 2 * c1, 2 * c2), dtype=e.dtype)
    for i in numba.prange(2 * c0):
        for j in range(2 * c1):
            for k in range(c2):
                km, kp = _wrap(k - 1, c2), _wrap(k + 1, c2)
                out[i, j, 2 * k] = a_lo2[i, j, k] * p1[i, j, k] + b_lo2[i, j, k] * p1[i, j, km]
                out[i, j, 2 * k + 1] = a_hi2[i, j, k] * p1[i, j, k] + b_hi2[i, j, k] * p1[i, j, kp]
                if not all_fluid:
                    out[i, j, 2 * k] *= fluid[i, j, 2 * k]
                    out[i, j, 2 * k + 1] *= fluid[i, j, 2 * k + 1]
    return out


@_pjit
def restrict_3d(r, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, a_lo2, b_lo2, a_hi2, b_hi2,
                fluid, all_fluid):
    """:func:`restrict` on a 3-D grid: axis 2, then 1, then 0, divided by 8."""
    f0, f1 = r.shape[0], r.shape[1]
    c0, c1, c2 = f0 // 2, f1 // 2, r.shape[2] // 2
    r2 = onp.empty((f0, f1, c2), dtype=r.dtype)
    for i in numba.prange(f0):
        for j in range(f1):
            for k in range(c2):
                km, kp = _wrap(k - 1, c2), _wrap(k + 1, c2)
                lo, hi = r[i, j, 2 * k], r[i, j, 2 * k + 1]
                lo_next, hi_prev = r[i, j, 2 * kp], r[i, j, 2 * km + 1]
                if not all_fluid:
                    lo, hi = lo * fluid[i, j, 2 * k], hi * fluid[i, j, 2 * k + 1]
                    lo_next, hi_prev = lo_next * fluid[i, j, 2 * kp], hi_prev * fluid[i, j, 2 * km + 1]
                r2[i, j, k] = (a_lo2[i, j, k] * lo + a_hi2[i, j, k] * hi + b_lo2[i, j, kp] * lo_next
                               + b_hi2[i, j, km] * hi_prev)
    r1 = onp.empty((f0, c1, c2), dtype=r.dtype)
    for i in numba.prange(f0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            for m in range(c2):
                r1[i, k, m] = (a_lo1[i, k, m] * r2[i, 2 * k, m] + a_hi1[i, k, m] * r2[i, 2 * k + 1, m]
                               + b_lo1[i, kp, m] * r2[i, 2 * kp, m] + b_hi1[i, km, m] * r2[i, 2 * km + 1, m])
    out = onp.empty((c0, c1, c2), dtype=r.dtype)
    for row in numba.prange(c0):
        k = numba.int64(row)
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            for m in range(c2):
                out[k, j, m] = 0.125 * (a_lo0[k, j, m] * r1[2 * k, j, m] + a_hi0[k, j, m] * r1[2 * k + 1, j, m]
                                        + b_lo0[kp, j, m] * r1[2 * kp, j, m] + b_hi0[km, j, m] * r1[2 * km + 1, j, m])
    return out


# -- choosing the serial or parallel version -------------------------------------------

def jacobi(op, b, x0, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps of the 2-D PoissonOperator ``op`` from ``x0``
    (None: after a first sweep from zero, ``ω D⁻¹ b``)."""
    coefficients = jacobi_coefficients(op, b.dtype)
    if len(coefficients) == 1:  # memory-bound: threads pay off only on large grids
        kernel = jacobi_sweeps_uniform_parallel if parallel(b.size, 65536) else jacobi_sweeps_uniform
        return kernel(b, x0, coefficients[0], sweeps, omega)
    kernel = jacobi_sweeps_parallel if parallel(b.size, 8192) else jacobi_sweeps
    return kernel(b, x0, *coefficients, op.periodic[0], op.periodic[1], sweeps, omega)


def apply(op, x):
    """``L x`` for the 2-D or 3-D PoissonOperator ``op``."""
    if x.ndim == 3:
        kernel = poisson_apply_3d
    else:
        kernel = poisson_apply_parallel if parallel(x.size, 65536) else poisson_apply
    return kernel(x, *neighbour_coefficients(op, x.dtype)[1:], *op.periodic)


def red_black(op, b, x0, sweeps, reverse):
    """``sweeps`` red-black Gauss-Seidel sweeps of the 2-D or 3-D PoissonOperator ``op``."""
    if b.ndim == 3:
        kernel = gauss_seidel_3d
    else:
        kernel = gauss_seidel_parallel if parallel(b.size, 65536) else gauss_seidel
    return kernel(b, x0, *neighbour_coefficients(op, b.dtype), *op.periodic, sweeps, reverse)


def semi_lagrangian(qp, padded, lay, shape, c):
    """The semi-Lagrangian forward pass (``padded``: the padded velocity components)."""
    if qp.ndim == 3:
        return sl_forward_3d(qp, *padded, *lay.tables, shape, c)
    kernel = sl_forward_parallel if parallel(shape[0] * shape[1]) else sl_forward
    return kernel(qp, *padded, *lay.tables, shape[0], shape[1], c)


def semi_lagrangian_jvp(dq, du, dv, qp, up, vp, lay, shape, c, with_q, with_u):
    kernel = sl_jvp_parallel if parallel(shape[0] * shape[1]) else sl_jvp
    return kernel(dq, du, dv, qp, up, vp, *lay.tables, shape[0], shape[1], c, with_q, with_u)


def maccormack(q, qp, q1, q1p, padded, lay, c):
    if q.ndim == 3:
        return mc_correct_3d(q, qp, q1, q1p, *padded, *lay.tables, c)
    kernel = mc_correct_parallel if parallel(q.size) else mc_correct
    return kernel(q, qp, q1, q1p, *padded, *lay.tables, c)


def semi_lagrangian_vjp(g, qp, padded, lay, c, adj_qp, adj, blocks):
    """Add the semi-Lagrangian VJP of cotangent ``g`` into the padded adjoints (``adj``:
    one per velocity component; ``blocks`` from :func:`row_blocks`: parallel, or None)."""
    if qp.ndim == 3:
        kernel = sl_vjp_3d if blocks is None else sl_vjp_3d_parallel
    else:
        kernel = sl_vjp if blocks is None else sl_vjp_parallel
    kernel(g, qp, *padded, *lay.tables, c, adj_qp, *adj, *(() if blocks is None else (blocks,)))


def maccormack_vjp(g, q, qp, q1, q1p, padded, lay, c, adj_qp, adj_q1p, adj, blocks):
    """Add the VJP of MacCormack's second pass into the padded adjoints; returns the
    cotangent of ``q¹ + (q - q⁰)/2`` where the clamp is inactive."""
    adj_c = onp.zeros_like(g)
    if q.ndim == 3:
        kernel = mc_correct_vjp_3d if blocks is None else mc_correct_vjp_3d_parallel
    else:
        kernel = mc_correct_vjp if blocks is None else mc_correct_vjp_parallel
    kernel(g, q, qp, q1, q1p, *padded, *lay.tables, c, adj_c, adj_qp, adj_q1p, *adj,
           *(() if blocks is None else (blocks,)))
    return adj_c
