"""Fused 2-D stencil passes around a pressure projection (numba): the right-hand side
``b = D (M u + c)`` (with what the Jacobi solver does to it), the pressure-gradient
update ``u' = u_b - M G p``, and the transposes of both for the VJP; the compiled form
of :mod:`.pressure`'s reference formulas, one parallel pass each.
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, row, numba, pjit, prange


# -- pressure projection on the 2-D MAC grid ------------------------------------------
#
# The stencil work around a pressure solve, one parallel pass each (see ops.pressure for
# the formulas), every value computed where it is stored: u has n0 faces along axis 0 on
# a periodic axis (face n0 is face 0) and n0 + 1 on a bounded one, so the shapes say
# which; ghost pressures beyond a bounded face are ``a·p_edge`` (``rules`` = [a_lo0,
# a_hi0, a_lo1, a_hi1]). :func:`prepare` does what solve_jacobi does to its right-hand
# side and to its result (fluid mask, mean removal if ``singular``); the Jacobi
# projection calls it between the passes, so a run with another solver never compiles it.

@pjit
def prepare(b, fluid, singular, all_fluid, n_fluid):
    """``b`` masked to the fluid cells (in place), and mean-free over them if ``singular``."""
    if not singular and all_fluid:
        return
    mean = 0.0
    if singular:
        total = 0.0
        for i in prange(b.shape[0]):
            for j in range(b.shape[1]):
                total += b[i, j] * fluid[i, j]
        mean = total / n_fluid
    for i in prange(b.shape[0]):  # (b - 0) * fluid is b * fluid, exactly
        for j in range(b.shape[1]):
            b[i, j] = (b[i, j] - mean) * fluid[i, j]


@pjit
def projection_rhs(u, v, mu, mv, cu, cv, h, plain):
    """``u_b = M u + c`` (both components; ``u`` itself if ``plain``) and ``b = D u_b``."""
    n0, n1 = v.shape[0], u.shape[1]
    inv_h = 1.0 / h
    ub = u if plain else onp.empty_like(u)
    vb = v if plain else onp.empty_like(v)
    b = onp.empty((n0, n1), dtype=u.dtype)
    for row in prange(u.shape[0]):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        if not plain:
            _masked_row(ub[i], u[i], mu[i], cu[i])
            if i < n0:
                _masked_row(vb[i], v[i], mv[i], cv[i])
        if i < n0:  # from u and v (row i + 1 of u_b may not be written yet)
            ip = i + 1 if i + 1 < u.shape[0] else 0
            _divergence_row(b[i], u[i], u[ip], mu[i], mu[ip], cu[i], cu[ip], v[i], mv[i], cv[i], inv_h, plain)
    return ub, vb, b


@row
def _masked_row(out, u, m, c):
    """``M u + c`` along a row of faces."""
    for j in range(out.shape[0]):
        out[j] = (u[j] if m[j] else 0.0) + c[j]


@row
def _divergence_row(out, u_lo, u_hi, m_lo, m_hi, c_lo, c_hi, v, mv, cv, inv_h, plain):
    """``D (M u + c)`` along row i of cells (``u_lo``, ``u_hi``: the face rows i and
    i + 1; ``v``: row i of the other component; ``u`` itself where ``plain``)."""
    for j in range(out.shape[0]):
        jp = j + 1 if j + 1 < v.shape[0] else 0
        if plain:
            out[j] = (u_hi[j] - u_lo[j]) * inv_h + (v[jp] - v[j]) * inv_h
        else:
            out[j] = ((((u_hi[j] if m_hi[j] else 0.0) + c_hi[j]) - ((u_lo[j] if m_lo[j] else 0.0) + c_lo[j])) * inv_h
                      + (((v[jp] if mv[jp] else 0.0) + cv[jp]) - ((v[j] if mv[j] else 0.0) + cv[j])) * inv_h)


@pjit
def projection_finish(p, ub, vb, mu, mv, h, rules, plain):
    """``u' = u_b − M G p``; returns (u', v', p)."""
    n0, n1 = p.shape
    inv_h = 1.0 / h
    out_u = onp.empty_like(ub)
    out_v = onp.empty_like(vb)
    per0, per1 = ub.shape[0] == n0, vb.shape[1] == n1
    for row in prange(ub.shape[0]):
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


@row
def _minus_gradient_row(out, base, p_lo, p_hi, a_lo, a_hi, edge, m, inv_h, plain):
    """Faces between the cell rows ``p_lo`` and ``p_hi``: ``base − (p_hi − p_lo)/h`` where
    open (the pressures times ``a`` at a bounded end)."""
    for j in range(out.shape[0]):
        d = ((a_hi * p_hi[j] - a_lo * p_lo[j]) if edge else (p_hi[j] - p_lo[j])) * inv_h
        out[j] = base[j] - (d if plain or m[j] else 0.0)


@row
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


@jit
def _face_weight(g, m, i, j, inv_h, plain):
    return g[i, j] * inv_h if plain or m[i, j] else 0.0


@pjit
def projection_vjp_rhs(gu, gv, gp, mu, mv, h, rules, plain):
    """``g_p − Gᵀ M g_u``: cell i takes +w from face i (its low face, where it is the
    high side) and −w from face i + 1, and the ghost terms."""
    n0, n1 = gp.shape
    inv_h = 1.0 / h
    per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
    rhs = onp.empty_like(gp)
    for row in prange(n0):
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
            rhs[i, j] = gp[i, j] - gt
    return rhs


@pjit
def projection_vjp_finish(r, gu, gv, mu, mv, h, plain):
    """``M (g_u + Dᵀ r)``: face i is +1/h for cell i − 1 and −1/h for cell i."""
    n0, n1 = r.shape
    inv_h = 1.0 / h
    per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
    adj_u = onp.empty_like(gu)
    adj_v = onp.empty_like(gv)
    for row in prange(gu.shape[0]):
        i = numba.int64(row)  # a signed index (parallel loops count unsigned)
        _divergence_transpose_row(adj_u[i], gu[i], r[i - 1 if i > 0 else n0 - 1], r[min(i, n0 - 1)],
                                  i > 0 or per0, i < n0, mu[i], inv_h, plain)
        if i < n0:
            _divergence_transpose_along_row(adj_v[i], gv[i], r[i], mv[i], per1, inv_h, plain)
    return adj_u, adj_v


@row
def _divergence_transpose_row(out, g, r_left, r_right, has_left, has_right, m, inv_h, plain):
    """Faces between the cell rows ``r_left`` and ``r_right`` (either may be missing at a
    bounded end): ``g + (r_left − r_right)/h`` where open, else 0."""
    for j in range(out.shape[0]):
        left = r_left[j] if has_left else 0.0
        right = r_right[j] if has_right else 0.0
        out[j] = g[j] + (left - right) * inv_h if plain or m[j] else 0.0


@row
def _divergence_transpose_along_row(out, g, r, m, periodic, inv_h, plain):
    n1 = r.shape[0]
    for j in range(1, n1):
        out[j] = g[j] + (r[j - 1] - r[j]) * inv_h if plain or m[j] else 0.0
    out[0] = g[0] + ((r[n1 - 1] if periodic else 0.0) - r[0]) * inv_h if plain or m[0] else 0.0
    if not periodic:
        out[n1] = g[n1] + (r[n1 - 1] - 0.0) * inv_h if plain or m[n1] else 0.0
