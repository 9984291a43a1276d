"""Fused 2-D advection kernels (numba): semi-Lagrangian forward, VJP and JVP and
MacCormack's second pass with its VJP, Euler backtrace, on the MAC grid.

The kernels do what the array-API reference (:mod:`.advection`) does with whole-array
temporaries, row by row in passes over per-thread row buffers: the velocity at the row's
points (on a MAC grid the mean of 1, 2 or 4 samples, laid out by a
:class:`~.fused_lattice.Layout`), then the row's departure points (both vectorized), then
the gathers and scatter-adds per point. The arithmetic is the reference's, so results
agree to round-off; the reference stays the oracle. Advected fields arrive padded with
their ghost layers; VJP kernels add into adjoint buffers the caller provides (so all
velocity cotangents of a step can share one set). Each kernel is written once and
compiled serial and parallel (:func:`~.compiled.twin`): forward passes split the rows
into ``parts`` blocks, VJPs into the ``blocks`` of :func:`~.compiled.row_blocks`.
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, row, prange, twin
from .fused_lattice import below, locate
from .fused_limiter import clamp_shares


@jit
def _bilinear(a, i0, i1, t0, j0, j1, t1):
    """``Σ_k w_k a[corner_k]`` with the bilinear weights of fractions (t0, t1)."""
    return ((1 - t0) * (1 - t1) * a[i0, j0] + (1 - t0) * t1 * a[i0, j1]
            + t0 * (1 - t1) * a[i1, j0] + t0 * t1 * a[i1, j1])


@jit
def _bilinear_slope(a, i0, i1, t0, d0, j0, j1, t1, d1):
    """``(∂/∂s0, ∂/∂s1)`` of the bilinear interpolant in lattice units (``d`` zero where
    the coordinate was clamped); on an inner sample the mean of the one-sided slopes."""
    a00, a01, a10, a11 = a[i0, j0], a[i0, j1], a[i1, j0], a[i1, j1]
    s0 = (1 - t1) * (a10 - a00) + t1 * (a11 - a01)
    if t0 == 0.0 and d0 == 1.0:
        m = below(i0, a.shape[0])
        s0 = 0.5 * (s0 + (1 - t1) * (a00 - a[m, j0]) + t1 * (a01 - a[m, j1]))
    s1 = (1 - t0) * (a01 - a00) + t0 * (a11 - a10)
    if t1 == 0.0 and d1 == 1.0:
        m = below(j0, a.shape[1])
        s1 = 0.5 * (s1 + (1 - t0) * (a00 - a[i0, m]) + t0 * (a10 - a[i1, m]))
    return d0 * s0, d1 * s1


@jit
def _spread(out, g, i0, i1, t0, j0, j1, t1):
    """Transpose of :func:`_bilinear`: add ``g`` times the weights into ``out``."""
    out[i0, j0] += (1 - t0) * (1 - t1) * g
    out[i0, j1] += (1 - t0) * t1 * g
    out[i1, j0] += t0 * (1 - t1) * g
    out[i1, j1] += t0 * t1 * g


@jit
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


@jit
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


@jit
def _weight(like, avg0, avg1):
    """The weight 1, ½ or ¼ of the transposed averaging, in the precision of ``like``
    (a float32 adjoint is spread in float32)."""
    w = onp.empty(1, dtype=like.dtype)
    w[0] = (0.5 if avg0 else 1.0) * (0.5 if avg1 else 1.0)
    return w[0]


@row
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


@row
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


@row
def _velocity_row(i, u, v, shift, avg, ux, uy):
    """U at the points of the field's row ``i`` from the padded components into the row
    buffers ``ux``, ``uy``. (Rows, not a buffer and a constant index: a constant argument
    of a compiled call is typed as its literal value, one compilation per value.)"""
    _sample_row(ux, u, i, shift[0], shift[1], avg[0], avg[1])
    _sample_row(uy, v, i, shift[2], shift[3], avg[2], avg[3])


@twin()
def spread(gx, gy, shift, avg, adj_u, adj_v):
    """Transpose of the velocity sampling (:func:`_velocity_row` over all rows):
    ``adj_u += Sₓᵀ gx``, ``adj_v += S_yᵀ gy``."""
    wu, wv = _weight(adj_u, avg[0], avg[1]), _weight(adj_v, avg[2], avg[3])
    for r in prange(max(adj_u.shape[0], adj_v.shape[0])):
        if r < adj_u.shape[0]:
            _spread_row(r, adj_u, gx, shift[0], shift[1], avg[0], avg[1], wu)
        if r < adj_v.shape[0]:
            _spread_row(r, adj_v, gy, shift[2], shift[3], avg[2], avg[3], wv)


@row
def _locate_row(base, step, c, vel, n, periodic, lo, hi, frac, slope):
    """:func:`locate` for a row of points at lattice coordinates ``base + step·j - c·vel[j]``
    into row buffers; the loop vectorizes."""
    for j in range(vel.shape[0]):
        lo[j], hi[j], frac[j], slope[j] = locate(base + step * j - c * vel[j], n, periodic)


@jit
def _departures(i, ux, vy, geo, c, shape, ib, fb, k):
    """Bilinear stencils, on a padded lattice of ``shape``, of the departure points
    ``x - c·U`` of row ``i`` (``ux``, ``vy``: U at its points): ``ib[k:k+4]`` = i0, i1,
    j0, j1 and ``fb[k:k+4]`` = t0, d0, t1, d1 per point (fractions and their slopes, as
    :func:`locate`)."""
    _locate_row(i + geo[0], 0.0, c, ux, shape[0], geo[2] > 0, ib[k], ib[k + 1], fb[k], fb[k + 1])
    _locate_row(geo[1], 1.0, c, vy, shape[1], geo[3] > 0, ib[k + 2], ib[k + 3], fb[k + 2], fb[k + 3])


@jit
def _buffers(parts, traces, m):
    """Row buffers, ``parts`` sets (one per thread) over ``m`` points: ``traces`` stencils
    of :func:`_departures` (integer rows ``4k..4k+3``, float rows ``4k..4k+3``), then the
    velocity and a velocity tangent (float rows ``4·traces`` to ``4·traces + 3``)."""
    return onp.empty((parts, 4 * traces, m), dtype=onp.int64), onp.empty((parts, 4 * traces + 4, m))


@jit
def _stencil(ib, fb, k, j):
    """Point ``j``'s stencil from the buffers: i0, i1, t0, d0, j0, j1, t1, d1."""
    return ib[k, j], ib[k + 1, j], fb[k, j], fb[k + 1, j], ib[k + 2, j], ib[k + 3, j], fb[k + 2, j], fb[k + 3, j]


@row
def _sl_forward_row(i, out, q, u, v, shift, avg, geo, c, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb[4], fb[5])
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    for j in range(out.shape[1]):
        i0, i1, t0, _, j0, j1, t1, _ = _stencil(ib, fb, 0, j)
        out[i, j] = _bilinear(q, i0, i1, t0, j0, j1, t1)


@twin()
def sl_forward(q, u, v, shift, avg, geo, shape0, shape1, c, parts):
    """``q'(x) = I[q](x - Δt U(x))`` at every lattice point of the field (``c = Δt/h``;
    ``u``, ``v``: the padded components; ``shift``, ``avg``, ``geo``: the field's
    :class:`Layout`), rows in ``parts`` blocks."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(parts, 1, shape1)
    for b in prange(parts):
        for i in range(b * shape0 // parts, (b + 1) * shape0 // parts):
            _sl_forward_row(i, out, q, u, v, shift, avg, geo, c, ib[b], fb[b])
    return out


@row
def _sl_vjp_row(i, g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb[4], fb[5])
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    for j in range(g.shape[1]):
        i0, i1, t0, d0, j0, j1, t1, d1 = _stencil(ib, fb, 0, j)
        gij = g[i, j]
        sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
        gx[i, j] = -c * (gij * sx)
        gy[i, j] = -c * (gij * sy)
        _spread(adj_q, gij, i0, i1, t0, j0, j1, t1)


@twin()
def sl_vjp(g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, blocks):
    """``adj_q += Iᵀ g`` (on the padded lattice); ``gx, gy = -Δt g ∂I[q]/∂x``, the
    cotangent of U at the field's points (:func:`spread` takes it to the components);
    rows in the ``blocks`` of :func:`~.compiled.row_blocks`."""
    ib, fb = _buffers(blocks.shape[1], 1, g.shape[1])
    for colour in range(2):
        for b in prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _sl_vjp_row(i, g, q, u, v, shift, avg, geo, c, adj_q, gx, gy, ib[b], fb[b])


@row
def _sl_jvp_row(i, out, dq, du, dv, q, u, v, shift, avg, geo, c, with_q, with_u, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb[4], fb[5])
    _departures(i, fb[4], fb[5], geo, c, q.shape, ib, fb, 0)
    if with_u:
        _velocity_row(i, du, dv, shift, avg, fb[6], fb[7])
    for j in range(out.shape[1]):
        i0, i1, t0, d0, j0, j1, t1, d1 = _stencil(ib, fb, 0, j)
        total = 0.0
        if with_q:
            total = _bilinear(dq, i0, i1, t0, j0, j1, t1)
        if with_u:
            sx, sy = _bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
            total = total + sx * (-c * fb[6, j]) + sy * (-c * fb[7, j])
        out[i, j] = total


@twin()
def sl_jvp(dq, du, dv, q, u, v, shift, avg, geo, shape0, shape1, c, with_q, with_u, parts):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)`` (``du``, ``dv``: the
    padded velocity tangent)."""
    out = onp.empty((shape0, shape1), dtype=q.dtype)
    ib, fb = _buffers(parts, 1, shape1)
    for b in prange(parts):
        for i in range(b * shape0 // parts, (b + 1) * shape0 // parts):
            _sl_jvp_row(i, out, dq, du, dv, q, u, v, shift, avg, geo, c, with_q, with_u, ib[b], fb[b])
    return out



@row
def _mc_correct_row(i, out, q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb[8], fb[9])  # one sample for both traces
    _departures(i, fb[8], fb[9], geo, -c, q1p.shape, ib, fb, 0)  # x + Δt U: q⁰ from q¹
    _departures(i, fb[8], fb[9], geo, c, lo.shape, ib, fb, 4)  # x - Δt U: the bounds
    for j in range(q1.shape[1]):
        i0, i1, t0, _, j0, j1, t1, _ = _stencil(ib, fb, 0, j)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, i0, i1, t0, j0, j1, t1))
        i0, i1, t0, _, j0, j1, t1, _ = _stencil(ib, fb, 4, j)
        out[i, j] = clamp_shares(corrected, _bilinear(lo, i0, i1, t0, j0, j1, t1),
                                 _bilinear(hi, i0, i1, t0, j0, j1, t1), tol)[0]


@twin()
def mc_correct(q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, parts):
    """MacCormack's second pass: ``clamp(q¹ + (q - q⁰)/2, I[m], I[M])`` with
    ``q⁰ = I[q¹](x + Δt U)`` and the nodal bounds ``lo``, ``hi`` (:func:`~.fused_limiter.nodal_bounds`)
    interpolated at ``x - Δt U``."""
    out = onp.empty_like(q1)
    ib, fb = _buffers(parts, 2, q1.shape[1])
    for b in prange(parts):
        for i in range(b * q1.shape[0] // parts, (b + 1) * q1.shape[0] // parts):
            _mc_correct_row(i, out, q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, ib[b], fb[b])
    return out


@row
def _mc_vjp_row(i, g, q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, adj_c, adj_lo, adj_hi, adj_q1p, gx,
                gy, ib, fb):
    _velocity_row(i, u, v, shift, avg, fb[8], fb[9])
    _departures(i, fb[8], fb[9], geo, -c, q1p.shape, ib, fb, 0)
    _departures(i, fb[8], fb[9], geo, c, lo.shape, ib, fb, 4)
    for j in range(g.shape[1]):
        b0, b1, tb0, db0, c0, c1, tb1, db1 = _stencil(ib, fb, 0, j)
        corrected = q1[i, j] + 0.5 * (q[i, j] - _bilinear(q1p, b0, b1, tb0, c0, c1, tb1))
        i0, i1, t0, d0, j0, j1, t1, d1 = _stencil(ib, fb, 4, j)
        _, s_c, s_lo, s_hi = clamp_shares(corrected, _bilinear(lo, i0, i1, t0, j0, j1, t1),
                                          _bilinear(hi, i0, i1, t0, j0, j1, t1), tol)
        gij = g[i, j]
        sx, sy = 0.0, 0.0
        if s_lo != 0.0:
            _spread(adj_lo, s_lo * gij, i0, i1, t0, j0, j1, t1)
            lx, ly = _bilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1)
            sx, sy = sx - s_lo * lx, sy - s_lo * ly
        if s_hi != 0.0:
            _spread(adj_hi, s_hi * gij, i0, i1, t0, j0, j1, t1)
            hx, hy = _bilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1)
            sx, sy = sx - s_hi * hx, sy - s_hi * hy
        adj_c[i, j] = s_c * gij
        if s_c != 0.0:
            adj_q0 = -0.5 * (s_c * gij)
            bx, by = _bilinear_slope(q1p, b0, b1, tb0, db0, c0, c1, tb1, db1)
            _spread(adj_q1p, adj_q0, b0, b1, tb0, c0, c1, tb1)
            sx, sy = sx - 0.5 * s_c * bx, sy - 0.5 * s_c * by
        gx[i, j] = c * (gij * sx)
        gy[i, j] = c * (gij * sy)


@twin()
def mc_correct_vjp(g, q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, adj_c, adj_lo, adj_hi, adj_q1p, gx,
                   gy, blocks):
    """The VJP of :func:`mc_correct`: ``adj_c`` = the cotangent of ``q¹ + (q - q⁰)/2``;
    added into the padded adjoints of the bounds (``adj_lo``, ``adj_hi``) and of ``q¹``
    (through ``q⁰``); ``gx, gy``: the cotangent of U at the field's points (through the
    backward departure points and the bounds' slopes at the forward ones)."""
    ib, fb = _buffers(blocks.shape[1], 2, g.shape[1])
    for colour in range(2):
        for b in prange(blocks.shape[1]):
            for i in range(blocks[colour, b, 0], blocks[colour, b, 1]):
                _mc_vjp_row(i, g, q, q1, q1p, lo, hi, u, v, shift, avg, geo, c, tol, adj_c, adj_lo, adj_hi,
                            adj_q1p, gx, gy, ib[b], fb[b])
