"""Fused CPU kernels (numba) for the pressure solve: damped Jacobi sweeps (2-D), the
Poisson operator ``L x``, red-black Gauss-Seidel smoothing and the multigrid transfers
(2-D and 3-D), and the 2-D stencil passes around a projection (divergence with mean
removal, pressure gradient, and their transposes).

Same arithmetic as the array-API reference (``linear_solvers``, ``pressure``), which stays
the oracle: tests compare the two to 1e-12 in float64. Used by those modules for numpy
arrays when :func:`fluidgrad.ops.fused.available`.
"""

from __future__ import annotations

import numpy as onp

from .fused import _jit, _pjit, numba, parallel, threads


# -- damped Jacobi, L x and red-black Gauss-Seidel on the 2-D grid ----------------------

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
def _neighbours(i, n, periodic):
    """Indices below and above ``i`` on an axis of ``n`` cells (wrapped, or clamped: the
    coefficient of a missing neighbour is 0)."""
    return (i - 1 if i > 0 else (n - 1 if periodic else 0)), (i + 1 if i < n - 1 else (0 if periodic else n - 1))


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
            im, ip = _neighbours(i, b.shape[0], True)
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


# -- their parallel versions (rows of the grid over threads) ---------------------------

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
def jacobi_sweeps_uniform_blocked(b, x0, k, sweeps, omega, blocks):
    """:func:`jacobi_sweeps_uniform` in one parallel region: each of ``blocks`` row blocks
    is swept on its own, over a halo of ``sweeps`` rows it recomputes (the halo shrinks
    by a row per sweep), so no thread waits for another between sweeps; every cell gets
    the serial arithmetic, hence the same values."""
    n0, n1 = b.shape
    k1, k2, k3, k4, k5, w = k[1], k[2], k[3], k[4], k[5], k.dtype.type(omega) * k[0]
    w0 = b.dtype.type(omega) * k[0]
    out = onp.empty_like(b)
    for block in numba.prange(blocks):
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
                x[r] = x0[g]
        for s in range(sweeps):
            for r in range(s + 1, rows - s - 1):
                _jacobi_row_uniform(x[r], x[r - 1], x[r + 1], b[(first + r) % n0], y[r], k1, k2, k3, k4, k5, w)
            x, y = y, x
        out[start:stop] = x[sweeps:sweeps + stop - start]
    return out


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
        a_lo, a_hi, edge = 1.0, 1.0, False  # a bounded end face: a ghost pressure a·p_edge
        if not per0 and i == 0:
            im, a_lo, edge = 0, rules[0], True
        elif not per0 and i == n0:
            a_hi, edge = rules[1], True
        _minus_gradient_row(out_u[i], ub[i], p[im], p[ic], a_lo, a_hi, edge, mu[i], inv_h, plain)
        if i < n0:
            _minus_gradient_along_row(out_v[i], vb[i], p[i], mv[i], per1, rules[2], rules[3], inv_h, plain)
    return out_u, out_v, p


@_jit
def _minus_gradient_row(out, base, p_lo, p_hi, a_lo, a_hi, edge, m, inv_h, plain):
    """Faces between the cell rows ``p_lo`` and ``p_hi``: ``base − (p_hi − p_lo)/h`` where
    open (the pressures times ``a`` at a bounded end)."""
    for j in range(out.shape[0]):
        d = ((a_hi * p_hi[j] - a_lo * p_lo[j]) if edge else (p_hi[j] - p_lo[j])) * inv_h
        out[j] = base[j] - (d if plain or m[j] else 0.0)


@_jit
def _minus_gradient_along_row(out, base, p, m, periodic, a_lo, a_hi, inv_h, plain):
    """The faces along a row of cells ``p`` (face j between cells j − 1 and j; the
    inner ones without a branch)."""
    n1 = p.shape[0]
    for j in range(1, n1):
        d = (p[j] - p[j - 1]) * inv_h
        out[j] = base[j] - (d if plain or m[j] else 0.0)
    d = ((p[0] - p[n1 - 1]) if periodic else (p[0] - a_lo * p[0])) * inv_h
    out[0] = base[0] - (d if plain or m[0] else 0.0)
    if not periodic:
        d = (a_hi * p[n1 - 1] - p[n1 - 1]) * inv_h
        out[n1] = base[n1] - (d if plain or m[n1] else 0.0)


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
        _divergence_transpose_row(adj_u[i], gu[i], r[i - 1 if i > 0 else n0 - 1], r[min(i, n0 - 1)],
                                  i > 0 or per0, i < n0, mu[i], inv_h, plain)
        if i < n0:
            _divergence_transpose_along_row(adj_v[i], gv[i], r[i], mv[i], per1, inv_h, plain)
    return adj_u, adj_v


@_jit
def _divergence_transpose_row(out, g, r_left, r_right, has_left, has_right, m, inv_h, plain):
    """Faces between the cell rows ``r_left`` and ``r_right`` (either may be missing at a
    bounded end): ``g + (r_left − r_right)/h`` where open, else 0."""
    for j in range(out.shape[0]):
        left = r_left[j] if has_left else 0.0
        right = r_right[j] if has_right else 0.0
        out[j] = g[j] + (left - right) * inv_h if plain or m[j] else 0.0


@_jit
def _divergence_transpose_along_row(out, g, r, m, periodic, inv_h, plain):
    n1 = r.shape[0]
    for j in range(1, n1):
        out[j] = g[j] + (r[j - 1] - r[j]) * inv_h if plain or m[j] else 0.0
    out[0] = g[0] + ((r[n1 - 1] if periodic else 0.0) - r[0]) * inv_h if plain or m[0] else 0.0
    if not periodic:
        out[n1] = g[n1] + (r[n1 - 1] - 0.0) * inv_h if plain or m[n1] else 0.0


# -- the 3-D Poisson operator and red-black Gauss-Seidel (planes of axis 0 in parallel) --

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


# -- multigrid transfers (2-D; 3-D with planes in parallel) -----------------------------
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
    if len(coefficients) == 1:
        if parallel(b.size, 8192) and b.shape[0] >= 4 * threads() * max(sweeps, 1):  # halos < half the work
            return jacobi_sweeps_uniform_blocked(b, x0, coefficients[0], sweeps, omega, threads())
        return jacobi_sweeps_uniform(b, x0, coefficients[0], sweeps, omega)
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
