"""Fused CPU kernels (numba) for the hottest primitives: 2-D semi-Lagrangian advection
(forward, VJP, JVP) and MacCormack advection (forward, VJP) with the Euler backtrace,
and Jacobi sweeps.

One pass over the lattice points does what the array-API reference in
:mod:`~fluidgrad.ops.advection` does with some thirty whole-array temporaries: sample
the velocity at the point, trace back, interpolate. The arithmetic is the reference's,
in the same order, so results agree to round-off; the reference stays the oracle
(tests compare the two to 1e-12 in float64). Fields arrive already padded with their
ghost layers (:func:`~fluidgrad.ops.interpolation.pad_field`); a lattice is described by
its padded shape, its offset and whether it is periodic, per axis.

Used for numpy arrays whenever numba is importable (``FLUIDGRAD_NUMBA=0`` turns it
off): 3-6x faster forward and 3-4x faster VJP than the reference at 128² and 512²
(``scripts/bench_kernels.py``). Compiled kernels are cached on disk, so only the first
process pays the compilation (a few seconds).
"""

from __future__ import annotations

import math
import os

import numpy as onp

try:  # numba is optional
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None


def available() -> bool:
    """On when numba is installed, unless ``FLUIDGRAD_NUMBA=0``."""
    return numba is not None and os.environ.get("FLUIDGRAD_NUMBA", "1") != "0"


def _jit(fun):
    """Compiled, cached on disk; no Python division checks; helpers inlined."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(fun)


@_jit
def _axis(x, n, offset, periodic, h):
    """Lower/upper index, fraction and d(fraction)/ds of coordinate ``x`` on one axis."""
    s = x / h - offset
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
    t = sc - i0
    return i0, i0 + 1, t, 1.0 if (s >= 0.0 and s <= n - 1.0) else 0.0


@_jit
def _sample(a, x, y, off0, off1, per0, per1, h):
    """Bilinear interpolation of the padded lattice array ``a`` at (x, y)."""
    i0, i1, t0, _ = _axis(x, a.shape[0], off0, per0, h)
    j0, j1, t1, _ = _axis(y, a.shape[1], off1, per1, h)
    return ((1 - t0) * (1 - t1) * a[i0, j0] + (1 - t0) * t1 * a[i0, j1]
            + t0 * (1 - t1) * a[i1, j0] + t0 * t1 * a[i1, j1])


@_jit
def _slope(a, x, y, off0, off1, per0, per1, h):
    """``(∂/∂x, ∂/∂y)`` of the bilinear interpolant of ``a`` at (x, y)."""
    i0, i1, t0, d0 = _axis(x, a.shape[0], off0, per0, h)
    j0, j1, t1, d1 = _axis(y, a.shape[1], off1, per1, h)
    sx = ((-1.0 / h * d0 * (1 - t1)) * a[i0, j0] + (-1.0 / h * d0 * t1) * a[i0, j1]
          + (1.0 / h * d0 * (1 - t1)) * a[i1, j0] + (1.0 / h * d0 * t1) * a[i1, j1])
    sy = ((-1.0 / h * d1 * (1 - t0)) * a[i0, j0] + (1.0 / h * d1 * (1 - t0)) * a[i0, j1]
          + (-1.0 / h * d1 * t0) * a[i1, j0] + (1.0 / h * d1 * t0) * a[i1, j1])
    return sx, sy


@_jit
def _scatter(out, g, x, y, off0, off1, per0, per1, h):
    """Transpose of :func:`_sample`: add ``g`` times the weights into ``out``."""
    i0, i1, t0, _ = _axis(x, out.shape[0], off0, per0, h)
    j0, j1, t1, _ = _axis(y, out.shape[1], off1, per1, h)
    out[i0, j0] += (1 - t0) * (1 - t1) * g
    out[i0, j1] += (1 - t0) * t1 * g
    out[i1, j0] += t0 * (1 - t1) * g
    out[i1, j1] += t0 * t1 * g


@_jit
def _point_velocity(i, j, geo, u, v, h):
    """The lattice point (i, j) of the field and the velocity sampled there."""
    x = (i + geo[0]) * h
    y = (j + geo[1]) * h
    ux = _sample(u, x, y, geo[4], geo[5], geo[6] > 0, geo[7] > 0, h)
    vy = _sample(v, x, y, geo[8], geo[9], geo[10] > 0, geo[11] > 0, h)
    return x, y, ux, vy


@_jit
def _departure(i, j, geo, u, v, dt, h):
    """The lattice point (i, j) of the field and its Euler departure point."""
    x, y, ux, vy = _point_velocity(i, j, geo, u, v, h)
    return x, y, x - dt * ux, y - dt * vy


@_jit
def sl_forward(q, u, v, geo, shape0, shape1, dt, h):
    """``q'(x) = I[q](x - Δt U(x))`` at every lattice point of the field."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in range(shape0):
        _sl_forward_row(i, out, q, u, v, geo, dt, h)
    return out


@_jit
def _sl_forward_row(i, out, q, u, v, geo, dt, h):
    for j in range(out.shape[1]):
        _, _, xd, yd = _departure(i, j, geo, u, v, dt, h)
        out[i, j] = _sample(q, xd, yd, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)


@_jit
def sl_vjp(g, q, u, v, geo, dt, h):
    """``adj_q = Iᵀ g``; ``adj_u = Sᵀ(-Δt g ∂I[q]/∂x)`` (all on the padded lattices)."""
    adj_q = onp.zeros_like(q)
    adj_u = onp.zeros_like(u)
    adj_v = onp.zeros_like(v)
    for i in range(g.shape[0]):
        _sl_vjp_row(i, g, q, u, v, geo, dt, h, adj_q, adj_u, adj_v)
    return adj_q, adj_u, adj_v


@_jit
def _sl_vjp_row(i, g, q, u, v, geo, dt, h, adj_q, adj_u, adj_v):
    for j in range(g.shape[1]):
        x, y, xd, yd = _departure(i, j, geo, u, v, dt, h)
        gij = g[i, j]
        _scatter(adj_q, gij, xd, yd, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        sx, sy = _slope(q, xd, yd, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        _scatter(adj_u, -dt * (gij * sx), x, y, geo[4], geo[5], geo[6] > 0, geo[7] > 0, h)
        _scatter(adj_v, -dt * (gij * sy), x, y, geo[8], geo[9], geo[10] > 0, geo[11] > 0, h)


@_jit
def sl_jvp(dq, du, dv, q, u, v, geo, shape0, shape1, dt, h, with_q, with_u):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)``."""
    out = onp.zeros((shape0, shape1), dtype=q.dtype)
    for i in range(shape0):
        for j in range(shape1):
            x, y, xd, yd = _departure(i, j, geo, u, v, dt, h)
            total = 0.0
            if with_q:
                total = _sample(dq, xd, yd, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
            if with_u:
                sx, sy = _slope(q, xd, yd, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
                dux = _sample(du, x, y, geo[4], geo[5], geo[6] > 0, geo[7] > 0, h)
                dvy = _sample(dv, x, y, geo[8], geo[9], geo[10] > 0, geo[11] > 0, h)
                total = total + sx * (-dt * dux) + sy * (-dt * dvy)
            out[i, j] = total
    return out


def geometry(domain, location):
    """Offsets and periodicity of the field's and the velocity's lattices, as one array:
    [field offset (unpadded) ×2, field offset (padded) ×2, u offsets ×2, u periodic ×2,
    v offsets ×2, v periodic ×2, field periodic ×2]."""
    from . import interpolation as interp
    field = interp.field_lattice(domain, location)
    padded = interp.padded_lattice(domain, location)
    lu = interp.padded_lattice(domain, 0)
    lv = interp.padded_lattice(domain, 1)
    return onp.array([*field.offset, *padded.offset, *lu.offset, *map(float, lu.periodic),
                      *lv.offset, *map(float, lv.periodic), *map(float, padded.periodic)])


def usable(q, velocity, domain, backtrace) -> bool:
    """Whether the fused kernel applies: numpy arrays, 2-D, Euler backtrace, numba on."""
    return (available() and domain.ndim == 2 and backtrace == "euler"
            and type(q) is onp.ndarray and all(type(u) is onp.ndarray for u in velocity)
            and q.dtype == velocity[0].dtype == velocity[1].dtype)


@_jit
def jacobi_sweeps(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)`` for the 2-D five-point
    operator ``(L x)_ij = d x_ij + cxm x_{i-1,j} + cxp x_{i+1,j} + cym x_{i,j-1} + cyp x_{i,j+1}``
    (neighbours wrap on periodic axes; coefficients are 0 where there is none)."""
    n0, n1 = b.shape
    x = x0.copy()
    y = onp.empty_like(x)
    for _ in range(sweeps):
        for i in range(n0):
            im = i - 1 if i > 0 else (n0 - 1 if per0 else 0)
            ip = i + 1 if i < n0 - 1 else (0 if per0 else n0 - 1)
            for j in range(n1):
                jm = j - 1 if j > 0 else (n1 - 1 if per1 else 0)
                jp = j + 1 if j < n1 - 1 else (0 if per1 else n1 - 1)
                lx = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
                      + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])
                y[i, j] = x[i, j] + omega * inv_diag[i, j] * (b[i, j] - lx)
        x, y = y, x
    return x


def neighbour_coefficients(op, dtype):
    """``(cxm, cxp, cym, cyp)`` of a 2-D PoissonOperator as cell arrays (cached on it)."""
    key = ("fused-neighbours", onp.dtype(dtype).str)
    cached = op._aux.get(key)
    if cached is None:
        _, offs = op._coef(dtype)
        out = []
        for d in range(2):
            if op.periodic[d]:
                lo, hi = offs[d]
            else:
                lo = onp.zeros(op.shape, dtype=dtype)
                hi = onp.zeros(op.shape, dtype=dtype)
                if d == 0:
                    lo[1:], hi[:-1] = offs[d], offs[d]
                else:
                    lo[:, 1:], hi[:, :-1] = offs[d], offs[d]
            out += [onp.ascontiguousarray(lo), onp.ascontiguousarray(hi)]
        cached = op._aux[key] = tuple(out)
    return cached


@_jit
def _corners(a, x, y, off0, off1, per0, per1, h):
    """Row and column indices of the bilinear stencil's corners at (x, y)."""
    i0, i1, _, _ = _axis(x, a.shape[0], off0, per0, h)
    j0, j1, _, _ = _axis(y, a.shape[1], off1, per1, h)
    return i0, i1, j0, j1


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
def mc_correct(q, qp, q1, q1p, u, v, geo, dt, h):
    """MacCormack's second pass: ``clamp(q¹ + (q - q⁰)/2)`` with ``q⁰ = I[q¹](x + Δt U)``,
    bounds from the corners of ``I[q]`` at ``x - Δt U``."""
    out = onp.empty_like(q1)
    for i in range(q1.shape[0]):
        _mc_correct_row(i, out, q, qp, q1, q1p, u, v, geo, dt, h)
    return out


@_jit
def _mc_correct_row(i, out, q, qp, q1, q1p, u, v, geo, dt, h):
    for j in range(q1.shape[1]):
        x, y, ux, vy = _point_velocity(i, j, geo, u, v, h)  # one sample for both traces
        xf, yf, xb, yb = x - dt * ux, y - dt * vy, x + dt * ux, y + dt * vy
        q0 = _sample(q1p, xb, yb, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        c = q1[i, j] + 0.5 * (q[i, j] - q0)
        i0, i1, j0, j1 = _corners(qp, xf, yf, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        lo, _, hi, _ = _extremes(qp, i0, i1, j0, j1)
        out[i, j] = lo if c < lo else (hi if c > hi else c)


@_jit
def mc_correct_vjp(g, q, qp, q1, q1p, u, v, geo, dt, h):
    """The VJP of :func:`mc_correct` with respect to ``q`` (direct and through the clamp
    bounds, on the padded lattice), ``q¹`` (direct, and on the padded lattice through
    ``q⁰``) and the velocity (through the backward departure points)."""
    adj_c = onp.zeros_like(g)
    adj_qp = onp.zeros_like(qp)
    adj_q1p = onp.zeros_like(q1p)
    adj_u = onp.zeros_like(u)
    adj_v = onp.zeros_like(v)
    for i in range(g.shape[0]):
        _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, geo, dt, h, adj_c, adj_qp, adj_q1p, adj_u, adj_v)
    return adj_c, adj_qp, adj_q1p, adj_u, adj_v


@_jit
def _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, geo, dt, h, adj_c, adj_qp, adj_q1p, adj_u, adj_v):
    for j in range(g.shape[1]):
        x, y, ux, vy = _point_velocity(i, j, geo, u, v, h)  # one sample for both traces
        xf, yf, xb, yb = x - dt * ux, y - dt * vy, x + dt * ux, y + dt * vy
        q0 = _sample(q1p, xb, yb, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        c = q1[i, j] + 0.5 * (q[i, j] - q0)
        i0, i1, j0, j1 = _corners(qp, xf, yf, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
        lo, klo, hi, khi = _extremes(qp, i0, i1, j0, j1)
        gij = g[i, j]
        if c < lo:
            a, b = _corner(klo, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        elif c > hi:
            a, b = _corner(khi, i0, i1, j0, j1)
            adj_qp[a, b] += gij
        else:
            adj_c[i, j] = gij
            adj_q0 = -0.5 * gij
            _scatter(adj_q1p, adj_q0, xb, yb, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
            sx, sy = _slope(q1p, xb, yb, geo[2], geo[3], geo[12] > 0, geo[13] > 0, h)
            _scatter(adj_u, dt * (adj_q0 * sx), x, y, geo[4], geo[5], geo[6] > 0, geo[7] > 0, h)
            _scatter(adj_v, dt * (adj_q0 * sy), x, y, geo[8], geo[9], geo[10] > 0, geo[11] > 0, h)


# -- parallel versions: rows split over threads -------------------------------------
#
# Forward passes write only their own point. The VJPs scatter into rows within
# ``reach`` of the point's row (``reach`` bounds |Δt U| / h plus the stencil), so the
# rows are cut into blocks wider than 2·reach and coloured alternately: blocks of one
# colour never write the same rows and run in parallel, then the other colour runs.

def _pjit(fun):
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(fun)


@_pjit
def sl_forward_parallel(q, u, v, geo, shape0, shape1, dt, h):
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    for i in numba.prange(shape0):
        _sl_forward_row(i, out, q, u, v, geo, dt, h)
    return out


@_pjit
def sl_vjp_parallel(g, q, u, v, geo, dt, h, block):
    adj_q = onp.zeros_like(q)
    adj_u = onp.zeros_like(u)
    adj_v = onp.zeros_like(v)
    n0 = g.shape[0]
    blocks = n0 // block
    for colour in range(2):
        for b in numba.prange(blocks // 2):
            k = 2 * b + colour
            stop = n0 if k == blocks - 1 else (k + 1) * block
            for i in range(k * block, stop):
                _sl_vjp_row(i, g, q, u, v, geo, dt, h, adj_q, adj_u, adj_v)
    return adj_q, adj_u, adj_v


@_pjit
def mc_correct_parallel(q, qp, q1, q1p, u, v, geo, dt, h):
    out = onp.empty_like(q1)
    for i in numba.prange(q1.shape[0]):
        _mc_correct_row(i, out, q, qp, q1, q1p, u, v, geo, dt, h)
    return out


@_pjit
def mc_correct_vjp_parallel(g, q, qp, q1, q1p, u, v, geo, dt, h, block):
    adj_c = onp.zeros_like(g)
    adj_qp = onp.zeros_like(qp)
    adj_q1p = onp.zeros_like(q1p)
    adj_u = onp.zeros_like(u)
    adj_v = onp.zeros_like(v)
    n0 = g.shape[0]
    blocks = n0 // block
    for colour in range(2):
        for b in numba.prange(blocks // 2):
            k = 2 * b + colour
            stop = n0 if k == blocks - 1 else (k + 1) * block
            for i in range(k * block, stop):
                _mc_vjp_row(i, g, q, qp, q1, q1p, u, v, geo, dt, h, adj_c, adj_qp, adj_q1p, adj_u, adj_v)
    return adj_c, adj_qp, adj_q1p, adj_u, adj_v


def threads() -> int:
    return numba.get_num_threads() if numba is not None else 1


def row_blocks(n0, u, v, dt, h):
    """Width of the row blocks for a parallel VJP (an even number of blocks wider than
    twice the reach of any scatter), or 0 when the rows are too few to split."""
    reach = int(math.ceil(abs(dt) * max(float(onp.abs(u).max()), float(onp.abs(v).max())) / h)) + 3
    blocks = n0 // (2 * reach + 1)
    blocks -= blocks % 2
    if threads() < 2 or blocks < 4:
        return 0
    return n0 // blocks
