"""Fused 3-D advection kernels (numba): semi-Lagrangian forward and VJP and MacCormack's
second pass with its VJP on 3-D MAC grids (no JVP kernel), planes of axis 0 over threads.

The same passes as :mod:`.fused_advection_2d`, done per point: a velocity component's
two indices along axes 0 / 1 / 2 come from the :class:`~.fused_lattice.Layout` tables
``vrow``, ``vcol``, ``vdep``, averaged where ``avg`` says. Forward passes always run in
parallel; the VJPs are compiled serial and parallel (:func:`~.compiled.twin`).
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, row, numba, pjit, prange, twin
from .fused_lattice import below, locate
from .fused_limiter import clamp_shares


@jit
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


@jit
def _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg):
    return (_average_3d(u, vrow[0, i], vrow[1, i], vcol[0, j], vcol[1, j], vdep[0, k], vdep[1, k],
                        avg[0], avg[1], avg[2]),
            _average_3d(v, vrow[2, i], vrow[3, i], vcol[2, j], vcol[3, j], vdep[2, k], vdep[3, k],
                        avg[3], avg[4], avg[5]),
            _average_3d(w, vrow[4, i], vrow[5, i], vcol[4, j], vcol[5, j], vdep[4, k], vdep[5, k],
                        avg[6], avg[7], avg[8]))


@jit
def _trilinear(a, i0, i1, t0, j0, j1, t1, k0, k1, t2):
    """``Σ_k w_k a[corner_k]`` with the trilinear weights of fractions (t0, t1, t2)."""
    return ((1 - t0) * ((1 - t1) * ((1 - t2) * a[i0, j0, k0] + t2 * a[i0, j0, k1])
                        + t1 * ((1 - t2) * a[i0, j1, k0] + t2 * a[i0, j1, k1]))
            + t0 * ((1 - t1) * ((1 - t2) * a[i1, j0, k0] + t2 * a[i1, j0, k1])
                    + t1 * ((1 - t2) * a[i1, j1, k0] + t2 * a[i1, j1, k1])))


@jit
def _cell_3d(q, s0, s1, s2, geo):
    """Trilinear stencil of the padded field ``q`` at lattice coordinates (s0, s1, s2)."""
    i0, i1, t0, d0 = locate(s0, q.shape[0], geo[3] > 0)
    j0, j1, t1, d1 = locate(s1, q.shape[1], geo[4] > 0)
    k0, k1, t2, d2 = locate(s2, q.shape[2], geo[5] > 0)
    return i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2


@row
def _sl_forward_plane(i, out, q, u, v, w, vrow, vcol, vdep, avg, geo, c):
    for j in range(out.shape[1]):
        for k in range(out.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(q, i + geo[0] - c * ux, j + geo[1] - c * vy,
                                                                   k + geo[2] - c * wz, geo)
            out[i, j, k] = _trilinear(q, i0, i1, t0, j0, j1, t1, k0, k1, t2)


@pjit
def sl_forward_3d(q, u, v, w, vrow, vcol, vdep, avg, geo, shape, c):
    """``q'(x) = I[q](x - Δt U(x))`` on a 3-D lattice (planes of axis 0 in parallel)."""
    out = onp.empty(shape, dtype=q.dtype)
    for i in prange(shape[0]):
        _sl_forward_plane(numba.int64(i), out, q, u, v, w, vrow, vcol, vdep, avg, geo, c)
    return out


@row
def _mc_correct_plane(i, out, q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol):
    for j in range(q1.shape[1]):
        for k in range(q1.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)  # one sample for both traces
            s0, s1, s2 = i + geo[0], j + geo[1], k + geo[2]
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(q1p, s0 + c * ux, s1 + c * vy, s2 + c * wz, geo)
            corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - _trilinear(q1p, i0, i1, t0, j0, j1, t1, k0, k1, t2))
            i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = _cell_3d(lo, s0 - c * ux, s1 - c * vy, s2 - c * wz, geo)
            out[i, j, k] = clamp_shares(corrected, _trilinear(lo, i0, i1, t0, j0, j1, t1, k0, k1, t2),
                                        _trilinear(hi, i0, i1, t0, j0, j1, t1, k0, k1, t2), tol)[0]


@pjit
def mc_correct_3d(q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol):
    """MacCormack's second pass (as the 2-D ``mc_correct``) on a 3-D lattice (planes of axis 0 in parallel)."""
    out = onp.empty_like(q1)
    for i in prange(q1.shape[0]):
        _mc_correct_plane(numba.int64(i), out, q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol)
    return out


@jit
def _spread_3d(out, g, i0, i1, t0, j0, j1, t1, k0, k1, t2):
    """Transpose of :func:`_trilinear`: add ``g`` times the weights into ``out``."""
    for ii, wi in ((i0, 1 - t0), (i1, t0)):
        for jj, wj in ((j0, 1 - t1), (j1, t1)):
            wij = wi * wj * g
            out[ii, jj, k0] += wij * (1 - t2)
            out[ii, jj, k1] += wij * t2


@row
def _trilinear_slope(a, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2):
    """``(∂/∂s0, ∂/∂s1, ∂/∂s2)`` of the trilinear interpolant in lattice units (``d`` zero
    where the coordinate was clamped); on an inner sample the mean of the one-sided slopes."""
    s0 = _axis_slope_3d(a, 0, i0, i1, t0, d0, j0, j1, t1, k0, k1, t2) if d0 != 0.0 else 0.0
    s1 = _axis_slope_3d(a, 1, j0, j1, t1, d1, i0, i1, t0, k0, k1, t2) if d1 != 0.0 else 0.0
    s2 = _axis_slope_3d(a, 2, k0, k1, t2, d2, i0, i1, t0, j0, j1, t1) if d2 != 0.0 else 0.0
    return s0, s1, s2


@jit
def _at(a, axis, m, p, q):
    """``a`` at index ``m`` along ``axis`` and ``p``, ``q`` along the other two, in order."""
    if axis == 0:
        return a[m, p, q]
    if axis == 1:
        return a[p, m, q]
    return a[p, q, m]


@jit
def _axis_slope_3d(a, axis, m0, m1, tm, dm, p0, p1, tp, q0, q1, tq):
    """``dm · ∂/∂s_axis`` of the trilinear interpolant: the difference of the bilinear
    interpolants in the two planes ``m0``, ``m1`` across ``axis``, or of ``m1`` and the
    plane below ``m0`` (halved) on an inner sample."""
    def plane(m):
        return ((1 - tp) * ((1 - tq) * _at(a, axis, m, p0, q0) + tq * _at(a, axis, m, p0, q1))
                + tp * ((1 - tq) * _at(a, axis, m, p1, q0) + tq * _at(a, axis, m, p1, q1)))
    lower = plane(m0)
    out = plane(m1) - lower
    if tm == 0.0 and dm == 1.0:
        out = 0.5 * (out + lower - plane(below(m0, a.shape[axis])))
    return dm * out


@jit
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


@jit
def _spread_velocity_3d(adj_u, adj_v, adj_w, gx, gy, gz, i, j, k, vrow, vcol, vdep, avg):
    """Transpose of :func:`_velocity_at_3d`."""
    _spread_average_3d(adj_u, gx, vrow[0, i], vrow[1, i], vcol[0, j], vcol[1, j], vdep[0, k], vdep[1, k],
                       avg[0], avg[1], avg[2])
    _spread_average_3d(adj_v, gy, vrow[2, i], vrow[3, i], vcol[2, j], vcol[3, j], vdep[2, k], vdep[3, k],
                       avg[3], avg[4], avg[5])
    _spread_average_3d(adj_w, gz, vrow[4, i], vrow[5, i], vcol[4, j], vcol[5, j], vdep[4, k], vdep[5, k],
                       avg[6], avg[7], avg[8])


@row
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


@twin()
def sl_vjp_3d(g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w, blocks):
    """``adj_q += Iᵀ g`` and the velocity cotangent ``-Δt g ∂I[q]/∂x`` sent back through
    the sampling into ``adj_u, adj_v, adj_w``; planes in the ``blocks`` of
    :func:`~.compiled.row_blocks`."""
    for colour in range(2):
        for b in prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _sl_vjp_plane(i, g, q, u, v, w, vrow, vcol, vdep, avg, geo, c, adj_q, adj_u, adj_v, adj_w)


@row
def _mc_vjp_plane(i, g, q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol, adj_c, adj_lo, adj_hi,
                  adj_q1p, adj_u, adj_v, adj_w):
    for j in range(g.shape[1]):
        for k in range(g.shape[2]):
            ux, vy, wz = _velocity_at_3d(i, j, k, u, v, w, vrow, vcol, vdep, avg)  # one sample for both traces
            s0, s1, s2 = i + geo[0], j + geo[1], k + geo[2]
            b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2 = _cell_3d(q1p, s0 + c * ux, s1 + c * vy,
                                                                          s2 + c * wz, geo)
            corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - _trilinear(q1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2))
            i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = _cell_3d(lo, s0 - c * ux, s1 - c * vy, s2 - c * wz,
                                                                      geo)
            _, s_c, s_lo, s_hi = clamp_shares(corrected, _trilinear(lo, i0, i1, t0, j0, j1, t1, k0, k1, t2),
                                              _trilinear(hi, i0, i1, t0, j0, j1, t1, k0, k1, t2), tol)
            gijk = g[i, j, k]
            sx, sy, sz = 0.0, 0.0, 0.0
            if s_lo != 0.0:
                _spread_3d(adj_lo, s_lo * gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
                lx, ly, lz = _trilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
                sx, sy, sz = sx - s_lo * lx, sy - s_lo * ly, sz - s_lo * lz
            if s_hi != 0.0:
                _spread_3d(adj_hi, s_hi * gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
                hx, hy, hz = _trilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
                sx, sy, sz = sx - s_hi * hx, sy - s_hi * hy, sz - s_hi * hz
            adj_c[i, j, k] = s_c * gijk
            if s_c != 0.0:
                _spread_3d(adj_q1p, -0.5 * (s_c * gijk), b0, b1, tb0, e0, e1, tb1, f0, f1, tb2)
                bx, by, bz = _trilinear_slope(q1p, b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2)
                sx, sy, sz = sx - 0.5 * s_c * bx, sy - 0.5 * s_c * by, sz - 0.5 * s_c * bz
            _spread_velocity_3d(adj_u, adj_v, adj_w, c * (gijk * sx), c * (gijk * sy), c * (gijk * sz),
                                i, j, k, vrow, vcol, vdep, avg)


@twin()
def mc_correct_vjp_3d(g, q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol, adj_c, adj_lo, adj_hi,
                      adj_q1p, adj_u, adj_v, adj_w, blocks):
    """The VJP of :func:`mc_correct_3d` (as the 2-D ``mc_correct_vjp``)."""
    for colour in range(2):
        for b in prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _mc_vjp_plane(i, g, q, q1, q1p, lo, hi, u, v, w, vrow, vcol, vdep, avg, geo, c, tol, adj_c, adj_lo,
                              adj_hi, adj_q1p, adj_u, adj_v, adj_w)
