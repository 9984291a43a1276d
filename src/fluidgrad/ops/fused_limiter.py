"""MacCormack's limiter for the fused kernels (numba), as :mod:`.limiter` is for the
reference: the nodal bounds (min and max over each sample's 3ᵈ neighbours of the padded
field, 2-D and 3-D) with their transposes, and the clamp with its derivative's shares.
The advection passes (:mod:`.fused_advection_2d`, ``_3d``) interpolate the bounds at the
departure points and call :func:`clamp_shares` per point.
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, numba, pjit, prange, row, twin


@jit
def neighbour(i, n, periodic):
    """Index ``i`` of an axis of ``n`` samples: wrapped on a periodic axis, -1 beyond the
    ends of a bounded one."""
    if i >= 0 and i < n:
        return i
    if periodic:
        return i % n
    return -1


@twin()
def nodal_bounds(qp, periodic0, periodic1):
    """``m``, ``M``: the min and max of the padded field over each sample's 3×3
    neighbours (the reference's :class:`~.limiter.NodalBounds`)."""
    lo, hi = onp.empty_like(qp), onp.empty_like(qp)
    for i in prange(qp.shape[0]):
        _bounds_row(qp, numba.int64(i), lo[i], hi[i], periodic0, periodic1)  # a signed row index
    return lo, hi


@jit
def point_bounds(qp, i, j, periodic0, periodic1):
    """``(m, M)`` at sample (i, j): the min and max of ``qp`` over its 3×3 neighbours (the
    GPU kernel compiles this same source)."""
    n0, n1 = qp.shape
    a = b = qp[i, j]
    for di in range(-1, 2):
        ii = neighbour(i + di, n0, periodic0)
        for dj in range(-1, 2):
            jj = neighbour(j + dj, n1, periodic1)
            if ii >= 0 and jj >= 0:
                x = qp[ii, jj]
                a = x if x < a else a
                b = x if x > b else b
    return a, b


@row
def _bounds_row(qp, i, lo, hi, periodic0, periodic1):
    """Row ``i`` of :func:`nodal_bounds` into ``lo``, ``hi``."""
    for j in range(qp.shape[1]):
        lo[j], hi[j] = point_bounds(qp, i, j, periodic0, periodic1)


@jit
def _spread_bound(qp, bound, adj, out, periodic0, periodic1, tol):
    """Add ``adj[i, j]``, shared equally by the neighbours of (i, j) that attain
    ``bound[i, j]``, into ``out``; only where ``adj`` is not zero (the limiter is active
    at few points, so this serial pass costs about a read per sample)."""
    n0, n1 = qp.shape
    for i in range(n0):
        for j in range(n1):
            a = adj[i, j]
            if a == 0.0:
                continue
            count = 0
            for second in range(2):
                for di in range(-1, 2):
                    ii = neighbour(i + di, n0, periodic0)
                    for dj in range(-1, 2):
                        jj = neighbour(j + dj, n1, periodic1)
                        if ii >= 0 and jj >= 0 and near(qp[ii, jj], bound[i, j], tol):
                            if second:
                                out[ii, jj] += a / count
                            else:
                                count += 1


@jit
def nodal_bounds_vjp(qp, lo, hi, adj_lo, adj_hi, adj_qp, periodic0, periodic1, tol):
    """Add the transpose of :func:`nodal_bounds` applied to ``adj_lo``, ``adj_hi`` into
    ``adj_qp``: each bound's cotangent shared equally by the samples that attain it
    (to ``tol``, relative)."""
    _spread_bound(qp, lo, adj_lo, adj_qp, periodic0, periodic1, tol)
    _spread_bound(qp, hi, adj_hi, adj_qp, periodic0, periodic1, tol)


@jit
def near(a, b, tol):
    """``|a - b| ≤ tol · max(|a|, |b|)``, the reference's ``near``."""
    return abs(a - b) <= tol * max(abs(a), abs(b))


@jit
def clamp_shares(c, lo, hi, tol):
    """``min(max(c, lo), hi)`` and the shares of its derivative among (c, lo, hi), as the
    reference's ``clamp_shares``: all to the active argument, ½ each where ``c`` ties one
    bound, all to ``c`` where it ties both (ties to ``tol``, relative)."""
    r = min(max(c, lo), hi)
    at_lo, at_hi = near(c, lo, tol), near(c, hi, tol)
    if at_lo and at_hi:
        return r, 1.0, 0.0, 0.0
    if at_lo:
        return r, 0.5, 0.5, 0.0
    if at_hi:
        return r, 0.5, 0.0, 0.5
    if c < lo:
        return r, 0.0, 1.0, 0.0
    if c > hi:
        return r, 0.0, 0.0, 1.0
    if c > lo and c < hi:
        return r, 1.0, 0.0, 0.0
    return r, 0.0, 0.0, 0.0  # NaN


@jit
def point_bounds_3d(qp, i, j, k, periodic0, periodic1, periodic2):
    """``(m, M)`` at sample (i, j, k): the min and max of ``qp`` over its 3×3×3 neighbours
    (the GPU kernel compiles this same source)."""
    n0, n1, n2 = qp.shape
    a = b = qp[i, j, k]
    for di in range(-1, 2):
        ii = neighbour(i + di, n0, periodic0)
        for dj in range(-1, 2):
            jj = neighbour(j + dj, n1, periodic1)
            for dk in range(-1, 2):
                kk = neighbour(k + dk, n2, periodic2)
                if ii >= 0 and jj >= 0 and kk >= 0:
                    x = qp[ii, jj, kk]
                    a = x if x < a else a
                    b = x if x > b else b
    return a, b


@pjit
def nodal_bounds_3d(qp, periodic0, periodic1, periodic2):
    """``m``, ``M``: the min and max of the padded field over each sample's 3×3×3 neighbours."""
    n0, n1, n2 = qp.shape
    lo, hi = onp.empty_like(qp), onp.empty_like(qp)
    for i in prange(n0):
        for j in range(n1):
            for k in range(n2):
                lo[i, j, k], hi[i, j, k] = point_bounds_3d(qp, numba.int64(i), j, k, periodic0, periodic1, periodic2)
    return lo, hi


@jit
def _spread_bound_3d(qp, bound, adj, out, periodic0, periodic1, periodic2, tol):
    """The 3-D ``_spread_bound``: ``adj`` shared by the neighbours that attain ``bound``."""
    n0, n1, n2 = qp.shape
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                a = adj[i, j, k]
                if a == 0.0:
                    continue
                count = 0
                for second in range(2):
                    for di in range(-1, 2):
                        ii = neighbour(i + di, n0, periodic0)
                        for dj in range(-1, 2):
                            jj = neighbour(j + dj, n1, periodic1)
                            for dk in range(-1, 2):
                                kk = neighbour(k + dk, n2, periodic2)
                                if ii >= 0 and jj >= 0 and kk >= 0 and near(qp[ii, jj, kk], bound[i, j, k], tol):
                                    if second:
                                        out[ii, jj, kk] += a / count
                                    else:
                                        count += 1


@jit
def nodal_bounds_vjp_3d(qp, lo, hi, adj_lo, adj_hi, adj_qp, periodic0, periodic1, periodic2, tol):
    """Add the transpose of :func:`nodal_bounds_3d` applied to ``adj_lo``, ``adj_hi`` into ``adj_qp``."""
    _spread_bound_3d(qp, lo, adj_lo, adj_qp, periodic0, periodic1, periodic2, tol)
    _spread_bound_3d(qp, hi, adj_hi, adj_qp, periodic0, periodic1, periodic2, tol)
