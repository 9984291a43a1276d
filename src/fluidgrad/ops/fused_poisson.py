"""Fused CPU kernels (numba) for the Poisson solvers: damped Jacobi sweeps (2-D), the
Poisson operator ``L x``, red-black Gauss-Seidel smoothing and the multigrid transfers
(2-D and 3-D). The 2-D kernels are written once and compiled serial and parallel
(:func:`~.compiled.twin`); the 3-D ones run planes of axis 0 in parallel.

Same arithmetic as the array-API reference (``linear_solvers``, ``pressure``), which stays
the oracle: tests compare the two to 1e-12 in float64. Used by those modules for numpy
arrays, chosen by the dispatch rule (:mod:`.dispatch`).
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, row, numba, parallel, pjit, prange, threads, twin


# -- damped Jacobi, L x and red-black Gauss-Seidel on the 2-D grid ----------------------

@jit
def _jacobi_point(i, j, im, ip, jm, jp, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, omega):
    lx = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
          + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])
    y[i, j] = x[i, j] + omega * inv_diag[i, j] * (b[i, j] - lx)


@row
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


@row
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


@jit
def _neighbours(i, n, periodic):
    """Indices below and above ``i`` on an axis of ``n`` cells (wrapped, or clamped: the
    coefficient of a missing neighbour is 0)."""
    return (i - 1 if i > 0 else (n - 1 if periodic else 0)), (i + 1 if i < n - 1 else (0 if periodic else n - 1))


@jit
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


@jit
def jacobi_sweeps_uniform(b, x0, k, sweeps, omega):
    """:func:`jacobi_sweeps` for uniform coefficients (see :func:`jacobi_coefficients`)."""
    x = _start(b, x0, k[:1].reshape((1, 1)), omega)
    y = onp.empty_like(x)
    k1, k2, k3, k4, k5, w = k[1], k[2], k[3], k[4], k[5], k.dtype.type(omega) * k[0]
    for _ in range(sweeps):
        for i in range(b.shape[0]):
            im, ip = _neighbours(i, b.shape[0], True)
            _jacobi_row_uniform(x[i], x[im], x[ip], b[i], y[i], k1, k2, k3, k4, k5, w)
        x, y = y, x
    return x


@twin(8192)
def jacobi_sweeps(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)`` for the 2-D five-point
    operator ``(L x)_ij = d x_ij + cxm x_{i-1,j} + cxp x_{i+1,j} + cym x_{i,j-1} + cyp x_{i,j+1}``
    (neighbours wrap on periodic axes; coefficients are 0 where there is none), from
    ``x0`` or, if None, from the first sweep from zero; rows over threads."""
    x = _start(b, x0, inv_diag, omega)
    y = onp.empty_like(x)
    for k in range(sweeps):
        src, dst = (x, y) if k % 2 == 0 else (y, x)
        for i in prange(b.shape[0]):
            _jacobi_row(i, src, dst, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, omega)
    return y if sweeps % 2 else x


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


@row
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


@twin(65536)
def poisson_apply(x, diag, cxm, cxp, cym, cyp, per0, per1):
    """``L x`` for the 2-D five-point operator (coefficients as in :func:`jacobi_sweeps`)."""
    out = onp.empty_like(x)
    for row in prange(x.shape[0]):
        _apply_row(numba.int64(row), x, out, diag, cxm, cxp, cym, cyp, per0, per1)
    return out


@row
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


@twin(65536)
def gauss_seidel(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, sweeps, reverse):
    """``sweeps`` red-black Gauss-Seidel sweeps ``x_c += D⁻¹ (b − L x)_c`` over the cells of
    colour c = (i + j) % 2, colour 0 first (1 first if ``reverse``), from ``x0`` (None:
    zero); cells of one colour read only the other, so rows run in parallel."""
    x = onp.zeros_like(b) if x0 is None else x0.copy()
    for _ in range(sweeps):
        for half in range(2):
            colour = half if not reverse else 1 - half
            for row in prange(b.shape[0]):
                _gauss_seidel_row(numba.int64(row), colour, x, b, inv_diag, diag, cxm, cxp, cym, cyp,
                                  per0, per1)
    return x


@pjit
def jacobi_sweeps_uniform_blocked(b, x0, k, sweeps, omega, blocks):
    """:func:`jacobi_sweeps_uniform` in one parallel region: each of ``blocks`` row blocks
    is swept on its own, over a halo of ``sweeps`` rows it recomputes (the halo shrinks
    by a row per sweep), so no thread waits for another between sweeps; every cell gets
    the serial arithmetic, hence the same values."""
    n0, n1 = b.shape
    k1, k2, k3, k4, k5, w = k[1], k[2], k[3], k[4], k[5], k.dtype.type(omega) * k[0]
    w0 = b.dtype.type(omega) * k[0]
    out = onp.empty_like(b)
    for block in prange(blocks):
        start, stop = (numba.int64(block) * n0) // blocks, ((numba.int64(block) + 1) * n0) // blocks
        first, rows = start - sweeps, stop - start + 2 * sweeps  # buffer row r is grid row first + r
        x = onp.empty((rows, n1), dtype=b.dtype)
        y = onp.empty((rows, n1), dtype=b.dtype)
        for r in range(rows):
            g = (first + r) % n0
            if x0 is None:
                for j in range(n1):
                    x[r, j] = w0 * b[g, j]
            else:
                for j in range(n1):  # element-wise: slice copies compile numba's shape checks (seconds)
                    x[r, j] = x0[g, j]
        for s in range(sweeps):
            for r in range(s + 1, rows - s - 1):
                _jacobi_row_uniform(x[r], x[r - 1], x[r + 1], b[(first + r) % n0], y[r], k1, k2, k3, k4, k5, w)
            x, y = y, x
        for r in range(stop - start):
            for j in range(n1):
                out[start + r, j] = x[sweeps + r, j]
    return out


# -- the 3-D Poisson operator and red-black Gauss-Seidel (planes of axis 0 in parallel) --

@jit
def _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp):
    return (diag[i, j, k] * x[i, j, k] + cxm[i, j, k] * x[im, j, k] + cxp[i, j, k] * x[ip, j, k]
            + cym[i, j, k] * x[i, jm, k] + cyp[i, j, k] * x[i, jp, k]
            + czm[i, j, k] * x[i, j, km] + czp[i, j, k] * x[i, j, kp])


@pjit
def poisson_apply_3d(x, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2):
    """``L x`` for the 3-D seven-point operator."""
    n0, n1, n2 = x.shape
    out = onp.empty_like(x)
    for row in prange(n0):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        im, ip = _neighbours(i, n0, per0)
        for j in range(n1):
            jm, jp = _neighbours(j, n1, per1)
            for k in range(n2):
                km, kp = _neighbours(k, n2, per2)
                out[i, j, k] = _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
    return out


@pjit
def gauss_seidel_3d(b, x0, inv_diag, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2, sweeps, reverse):
    """:func:`gauss_seidel` on a 3-D grid: colour (i + j + k) % 2."""
    n0, n1, n2 = b.shape
    x = onp.zeros_like(b) if x0 is None else x0.copy()
    for _ in range(sweeps):
        for half in range(2):  # cells of one colour read only the other: planes run in parallel
            colour = half if not reverse else 1 - half
            for row in prange(n0):
                i = numba.int64(row)
                im, ip = _neighbours(i, n0, per0)
                for j in range(n1):
                    jm, jp = _neighbours(j, n1, per1)
                    for k in range((colour + i + j) % 2, n2, 2):
                        km, kp = _neighbours(k, n2, per2)
                        lx = _apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
                        x[i, j, k] = x[i, j, k] + inv_diag[i, j, k] * (b[i, j, k] - lx)
    return x


# -- multigrid transfers (2-D; 3-D with planes in parallel) -----------------------------
#
# ``weights`` = the 8 arrays (a_lo, b_lo, a_hi, b_hi) of axis 0 (coarse shape) then of
# axis 1 (fine rows × coarse columns) of ``multigrid._transfer_weights``: fine cell
# 2k takes a_lo·e_k + b_lo·e_{k-1}, fine cell 2k+1 takes a_hi·e_k + b_hi·e_{k+1}
# (neighbours wrap; the weights are 0 where a bounded axis ends).

@jit
def _wrap(k, n):
    return k + n if k < 0 else (k - n if k >= n else k)


@jit
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


@jit
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


@pjit
def prolong_3d(e, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, a_lo2, b_lo2, a_hi2, b_hi2,
               fluid, all_fluid):
    """:func:`prolong` on a 3-D grid: along axis 0, then 1, then 2 (planes in parallel)."""
    c0, c1, c2 = e.shape
    p0 = onp.empty((2 * c0, c1, c2), dtype=e.dtype)
    for row in prange(c0):
        k = numba.int64(row)
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            for m in range(c2):
                p0[2 * k, j, m] = a_lo0[k, j, m] * e[k, j, m] + b_lo0[k, j, m] * e[km, j, m]
                p0[2 * k + 1, j, m] = a_hi0[k, j, m] * e[k, j, m] + b_hi0[k, j, m] * e[kp, j, m]
    p1 = onp.empty((2 * c0, 2 * c1, c2), dtype=e.dtype)
    for i in prange(2 * c0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            for m in range(c2):
                p1[i, 2 * k, m] = a_lo1[i, k, m] * p0[i, k, m] + b_lo1[i, k, m] * p0[i, km, m]
                p1[i, 2 * k + 1, m] = a_hi1[i, k, m] * p0[i, k, m] + b_hi1[i, k, m] * p0[i, kp, m]
    out = onp.empty((2 * c0, 2 * c1, 2 * c2), dtype=e.dtype)
    for i in prange(2 * c0):
        for j in range(2 * c1):
            for k in range(c2):
                km, kp = _wrap(k - 1, c2), _wrap(k + 1, c2)
                out[i, j, 2 * k] = a_lo2[i, j, k] * p1[i, j, k] + b_lo2[i, j, k] * p1[i, j, km]
                out[i, j, 2 * k + 1] = a_hi2[i, j, k] * p1[i, j, k] + b_hi2[i, j, k] * p1[i, j, kp]
                if not all_fluid:
                    out[i, j, 2 * k] *= fluid[i, j, 2 * k]
                    out[i, j, 2 * k + 1] *= fluid[i, j, 2 * k + 1]
    return out


@pjit
def restrict_3d(r, a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, b_lo1, a_hi1, b_hi1, a_lo2, b_lo2, a_hi2, b_hi2,
                fluid, all_fluid):
    """:func:`restrict` on a 3-D grid: axis 2, then 1, then 0, divided by 8."""
    f0, f1 = r.shape[0], r.shape[1]
    c0, c1, c2 = f0 // 2, f1 // 2, r.shape[2] // 2
    r2 = onp.empty((f0, f1, c2), dtype=r.dtype)
    for i in prange(f0):
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
    for i in prange(f0):
        for k in range(c1):
            km, kp = _wrap(k - 1, c1), _wrap(k + 1, c1)
            for m in range(c2):
                r1[i, k, m] = (a_lo1[i, k, m] * r2[i, 2 * k, m] + a_hi1[i, k, m] * r2[i, 2 * k + 1, m]
                               + b_lo1[i, kp, m] * r2[i, 2 * kp, m] + b_hi1[i, km, m] * r2[i, 2 * km + 1, m])
    out = onp.empty((c0, c1, c2), dtype=r.dtype)
    for row in prange(c0):
        k = numba.int64(row)
        km, kp = _wrap(k - 1, c0), _wrap(k + 1, c0)
        for j in range(c1):
            for m in range(c2):
                out[k, j, m] = 0.125 * (a_lo0[k, j, m] * r1[2 * k, j, m] + a_hi0[k, j, m] * r1[2 * k + 1, j, m]
                                        + b_lo0[kp, j, m] * r1[2 * kp, j, m] + b_hi0[km, j, m] * r1[2 * km + 1, j, m])
    return out


# -- the fused implementations of the solvers' kernels ------------------------------------

def supports(op, a, *args, ndims=(2, 3)) -> bool:
    """A numpy float array of the operator's shape (no batch axes), ``op.ndim`` in ``ndims``."""
    return op.ndim in ndims and type(a) is onp.ndarray and a.ndim == op.ndim and a.dtype.kind == "f"


def jacobi(op, b, x0, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps of the 2-D PoissonOperator ``op`` from ``x0``
    (None: after a first sweep from zero, ``ω D⁻¹ b``)."""
    coefficients = jacobi_coefficients(op, b.dtype)
    if len(coefficients) == 1:
        if parallel(b.size, 8192) and b.shape[0] >= 4 * threads() * max(sweeps, 1):  # halos < half the work
            return jacobi_sweeps_uniform_blocked(b, x0, coefficients[0], sweeps, omega, threads())
        return jacobi_sweeps_uniform(b, x0, coefficients[0], sweeps, omega)
    return jacobi_sweeps.pick(b.size)(b, x0, *coefficients, op.periodic[0], op.periodic[1], sweeps, omega)


def apply(op, x):
    """``L x`` for the 2-D or 3-D PoissonOperator ``op``."""
    kernel = poisson_apply_3d if x.ndim == 3 else poisson_apply.pick(x.size)
    return kernel(x, *neighbour_coefficients(op, x.dtype)[1:], *op.periodic)


def red_black(op, b, x0, sweeps, reverse):
    """``sweeps`` red-black Gauss-Seidel sweeps of the 2-D or 3-D PoissonOperator ``op``."""
    kernel = gauss_seidel_3d if b.ndim == 3 else gauss_seidel.pick(b.size)
    return kernel(b, x0, *neighbour_coefficients(op, b.dtype), *op.periodic, sweeps, reverse)


def prolong_any(e, *weights):
    """The 2-D or 3-D prolongation (see the transfers above)."""
    return (prolong_3d if e.ndim == 3 else prolong)(e, *weights)


def restrict_any(r, *weights):
    """The 2-D or 3-D restriction."""
    return (restrict_3d if r.ndim == 3 else restrict)(r, *weights)
