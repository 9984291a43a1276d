"""GPU kernels (numba-cuda), 2-D and 3-D (``_3d``): ghost-layer padding and its transpose,
semi-Lagrangian advection forward, VJP and JVP, MacCormack's nodal bounds and limited
correction (forward, VJP and JVP), the pressure projection's stencil passes (the
right-hand side, the gradient subtraction, and their transposes for the VJP), the Poisson
operator ``L x``, damped-Jacobi sweeps, red-black Gauss-Seidel half-sweeps and the
multigrid transfers (one axis a launch), one thread per output point.

They mirror the fused CPU kernels (:mod:`.fused_padding`, :mod:`.fused_advection_2d`,
``_3d``, :mod:`.fused_projection`, :mod:`.fused_limiter`, :mod:`.fused_poisson`) point by
point (where a CPU kernel is 2-D only, the 3-D kernel follows the reference's formulas),
with the same arithmetic: the interpolation helpers, the projection's face weight, the
limiter's clamp and nodal bounds, the trilinear interpolant and its slope, the Poisson
neighbours, ``L x`` in 3-D and the Jacobi update are the CPU kernels' own
source (their ``py_func``) compiled as CUDA device functions by :func:`_device`, so the
two cannot drift apart. The advection VJPs' scatters
(the transpose of the interpolation, of the velocity sampling and of the nodal bounds)
are atomic adds, race-free whatever the departure points.
Scalars (and tuples of scalars: the 3-D layout) only besides the arrays (no host arrays
per launch: a host array argument would be copied to the device and back, with a
synchronisation, at every launch).

Runs on the CPU in numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba
starts): the same source, each thread a Python thread, host (numpy) arrays in place of
device arrays; the ``gpu_sim`` tests compare it there with the array-API reference.
Imported only when a GPU kernel runs (:mod:`.gpu`).
"""

from __future__ import annotations

import types

from numba import config, cuda

from . import fused_advection_2d as k2
from . import fused_advection_3d as k3
from . import fused_lattice, fused_limiter, fused_poisson, fused_projection

#: threads per block, 2-D and 3-D: 16×16 and 8×8×4 (in the simulator, where each thread
#: is a Python thread, 8×8 and 8×8×4, cut down to the shape: no idle threads)
BLOCKS = {2: (8, 8), 3: (8, 8, 4)} if config.ENABLE_CUDASIM else {2: (16, 16), 3: (8, 8, 4)}


def launch(kernel, shape):
    """``kernel[grid, block]`` covering the 2-D or 3-D ``shape`` with one thread per point."""
    block = BLOCKS[len(shape)]
    if config.ENABLE_CUDASIM:
        block = tuple(min(n, b) for n, b in zip(shape, block))
    grid = tuple((n + b - 1) // b for n, b in zip(shape, block))
    return kernel[grid, block]


def _device(cpu_kernel, **callees):
    """The CPU kernel's Python source as a CUDA device function (``callees``: the device
    forms of the kernels it calls, by the names its source uses)."""
    fun = cpu_kernel.py_func
    scope = dict(fun.__globals__, **callees)
    return cuda.jit(device=True)(types.FunctionType(fun.__code__, scope, fun.__name__, fun.__defaults__))


locate = _device(fused_lattice.locate)
below = _device(fused_lattice.below)
bilinear = _device(k2._bilinear)
bilinear_slope = _device(k2._bilinear_slope, below=below)


@cuda.jit(device=True)
def spread(out, g, i0, i1, t0, j0, j1, t1):
    """Transpose of :func:`bilinear`, atomically: ``out[corner_k] += w_k g``."""
    cuda.atomic.add(out, (i0, j0), (1 - t0) * (1 - t1) * g)
    cuda.atomic.add(out, (i0, j1), (1 - t0) * t1 * g)
    cuda.atomic.add(out, (i1, j0), t0 * (1 - t1) * g)
    cuda.atomic.add(out, (i1, j1), t0 * t1 * g)


@cuda.jit(device=True)
def sample(a, i, j, s0, s1, avg0, avg1):
    """A padded velocity component at the field's point (i, j): the mean of its samples at
    rows ``(i + s0) mod p₀`` [and the next] and columns ``(j + s1) mod p₁`` [and the next]
    (``fused_advection_2d._sample_row``, one point)."""
    r0 = (i + s0) % a.shape[0]
    r1 = (i + s0 + 1) % a.shape[0] if avg0 else r0
    c0 = (j + s1) % a.shape[1]
    c1 = (j + s1 + 1) % a.shape[1] if avg1 else c0
    return 0.25 * ((a[r0, c0] + a[r0, c1]) + (a[r1, c0] + a[r1, c1]))


@cuda.jit(device=True)
def sample_transpose(adj, g, i, j, s0, s1, avg0, avg1, w):
    """Transpose of :func:`sample`, atomically (``w``: 1, ½ or ¼)."""
    for k0 in range(2 if avg0 else 1):
        for k1 in range(2 if avg1 else 1):
            cuda.atomic.add(adj, ((i + s0 + k0) % adj.shape[0], (j + s1 + k1) % adj.shape[1]), w * g)


@cuda.jit(device=True)
def departure(i, j, ux, vy, g0, g1, n0, n1, p0, p1, c):
    """The bilinear stencil (i0, i1, t0, d0, j0, j1, t1, d1) of ``x - c·U`` on a padded
    lattice of (n0, n1) (``fused_advection_2d._departures``, one point)."""
    i0, i1, t0, d0 = locate((i + g0) + 0.0 - c * ux, n0, p0)
    j0, j1, t1, d1 = locate((g1 + 1.0 * j) - c * vy, n1, p1)
    return i0, i1, t0, d0, j0, j1, t1, d1


# -- padding --------------------------------------------------------------------------------

@cuda.jit(device=True)
def _padded_row(q, i, j, r0, b0, r2, b2, pad0, w):
    """Row ``i`` of the padded field at the interior column ``j`` (axis 0's ghosts)."""
    n0 = q.shape[0]
    if not pad0:
        return q[i, j]
    if i == 0:
        return r0 * q[0, j] + w * b0
    if i == n0 + 1:
        return r2 * q[n0 - 1, j] + w * b2
    return q[i - 1, j]


@cuda.jit
def pad(q, out, r0, b0, r2, b2, r4, b4, r6, b6, pad0, pad1, homogeneous):
    """``out`` = ``q`` with the ghost layers ``a·edge + b`` (``fused_padding.pad``): axis 0
    first, then axis 1 over the padded rows."""
    i, j = cuda.grid(2)
    if i >= out.shape[0] or j >= out.shape[1]:
        return
    n1 = q.shape[1]
    w = 0.0 if homogeneous else 1.0
    if not pad1:
        out[i, j] = _padded_row(q, i, j, r0, b0, r2, b2, pad0, w)
    elif j == 0:
        out[i, j] = r4 * _padded_row(q, i, 0, r0, b0, r2, b2, pad0, w) + w * b4
    elif j == n1 + 1:
        out[i, j] = r6 * _padded_row(q, i, n1 - 1, r0, b0, r2, b2, pad0, w) + w * b6
    else:
        out[i, j] = _padded_row(q, i, j - 1, r0, b0, r2, b2, pad0, w)


@cuda.jit
def pad_transpose(g, out, r0, r2, r4, r6, pad0, pad1):
    """Adjoint of :func:`pad` (``fused_padding.pad_transpose``): each edge point gathers
    its ghosts' cotangents times a, axis 1 first."""
    i, j = cuda.grid(2)
    n0, n1 = out.shape
    if i >= n0 or j >= n1:
        return
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    v = g[i + o0, j + o1]
    if pad1:
        if j == 0:
            v += r4 * g[i + o0, 0]
        if j == n1 - 1:
            v += r6 * g[i + o0, n1 + 1]
    if pad0:
        for edge in range(2):
            if (edge == 0 and i == 0) or (edge == 1 and i == n0 - 1):
                row = 0 if edge == 0 else n0 + 1
                ghost = g[row, j + o1]
                if pad1:  # the corner ghosts went through the axis-1 rule first
                    if j == 0:
                        ghost += r4 * g[row, 0]
                    if j == n1 - 1:
                        ghost += r6 * g[row, n1 + 1]
                v += (r0 if edge == 0 else r2) * ghost
    out[i, j] = v


@cuda.jit(device=True)
def _ghost(v, at_lo, at_hi, a_lo, b_lo, a_hi, b_hi, w):
    """``v`` through one axis' ghost rule: ``a·v + b`` at a ghost, ``v`` inside."""
    if at_lo:
        return a_lo * v + w * b_lo
    if at_hi:
        return a_hi * v + w * b_hi
    return v


@cuda.jit
def pad_3d(q, out, r0, b0, r2, b2, r4, b4, r6, b6, r8, b8, r10, b10, pad0, pad1, pad2, homogeneous):
    """The 3-D :func:`pad`: a padded point is its nearest interior sample through the ghost
    rule of each axis where it is a ghost, axis 0 first (as ``stencils.pad`` axis by axis)."""
    i, j, k = cuda.grid(3)
    if i >= out.shape[0] or j >= out.shape[1] or k >= out.shape[2]:
        return
    n0, n1, n2 = q.shape
    o0, o1, o2 = (1 if pad0 else 0), (1 if pad1 else 0), (1 if pad2 else 0)
    w = 0.0 if homogeneous else 1.0
    v = q[min(max(i - o0, 0), n0 - 1), min(max(j - o1, 0), n1 - 1), min(max(k - o2, 0), n2 - 1)]
    v = _ghost(v, pad0 and i == 0, pad0 and i == n0 + 1, r0, b0, r2, b2, w)
    v = _ghost(v, pad1 and j == 0, pad1 and j == n1 + 1, r4, b4, r6, b6, w)
    out[i, j, k] = _ghost(v, pad2 and k == 0, pad2 and k == n2 + 1, r8, b8, r10, b10, w)


@cuda.jit(device=True)
def _gather_axis2(g, p0, p1, k, n2, pad2, r8, r10):
    """Axis 2 of :func:`pad_3d_transpose` at the padded (p0, p1): the interior point and
    the ghosts that copy it, times a."""
    o2 = 1 if pad2 else 0
    v = g[p0, p1, k + o2]
    if pad2:
        if k == 0:
            v += r8 * g[p0, p1, 0]
        if k == n2 - 1:
            v += r10 * g[p0, p1, n2 + 1]
    return v


@cuda.jit(device=True)
def _gather_axis1(g, p0, j, k, n1, n2, pad1, pad2, r4, r6, r8, r10):
    o1 = 1 if pad1 else 0
    v = _gather_axis2(g, p0, j + o1, k, n2, pad2, r8, r10)
    if pad1:
        if j == 0:
            v += r4 * _gather_axis2(g, p0, 0, k, n2, pad2, r8, r10)
        if j == n1 - 1:
            v += r6 * _gather_axis2(g, p0, n1 + 1, k, n2, pad2, r8, r10)
    return v


@cuda.jit
def pad_3d_transpose(g, out, r0, r2, r4, r6, r8, r10, pad0, pad1, pad2):
    """Adjoint of :func:`pad_3d`: each edge point gathers its ghosts' cotangents times a,
    axis 2 first (as ``stencils.pad_transpose`` axis by axis, in reverse)."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = out.shape
    if i >= n0 or j >= n1 or k >= n2:
        return
    o0 = 1 if pad0 else 0
    v = _gather_axis1(g, i + o0, j, k, n1, n2, pad1, pad2, r4, r6, r8, r10)
    if pad0:
        if i == 0:
            v += r0 * _gather_axis1(g, 0, j, k, n1, n2, pad1, pad2, r4, r6, r8, r10)
        if i == n0 - 1:
            v += r2 * _gather_axis1(g, n0 + 1, j, k, n1, n2, pad1, pad2, r4, r6, r8, r10)
    out[i, j, k] = v


# -- semi-Lagrangian: forward, VJP, JVP ------------------------------------------------------

@cuda.jit
def sl_forward(out, q, u, v, s0, s1, s2, s3, a0, a1, a2, a3, g0, g1, p0, p1, c):
    """``q'(x) = I[q](x - Δt U(x))`` at the field's point (``c = Δt/h``; ``q``, ``u``,
    ``v`` padded; shifts ``s``, averaging flags ``a``, offsets ``g`` and periodic flags
    ``p`` of the field's :class:`~.fused_lattice.Layout`)."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        i0, i1, t0, _, j0, j1, t1, _ = departure(i, j, ux, vy, g0, g1, q.shape[0], q.shape[1], p0, p1, c)
        out[i, j] = bilinear(q, i0, i1, t0, j0, j1, t1)


@cuda.jit
def sl_vjp(g, q, u, v, s0, s1, s2, s3, a0, a1, a2, a3, g0, g1, p0, p1, c, adj_q, adj_u, adj_v, wu, wv):
    """``adj_q += Iᵀ g`` and ``adj_U += Sᵀ(-Δt g ∂I[q]/∂x)`` on the padded lattices, by
    atomic adds (``wu``, ``wv``: the weights of the velocity samplings' transposes)."""
    i, j = cuda.grid(2)
    if i < g.shape[0] and j < g.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        i0, i1, t0, d0, j0, j1, t1, d1 = departure(i, j, ux, vy, g0, g1, q.shape[0], q.shape[1], p0, p1, c)
        gij = g[i, j]
        sx, sy = bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
        spread(adj_q, gij, i0, i1, t0, j0, j1, t1)
        sample_transpose(adj_u, -c * (gij * sx), i, j, s0, s1, a0, a1, wu)
        sample_transpose(adj_v, -c * (gij * sy), i, j, s2, s3, a2, a3, wv)


@cuda.jit
def sl_jvp(out, dq, du, dv, q, u, v, s0, s1, s2, s3, a0, a1, a2, a3, g0, g1, p0, p1, c, with_q, with_u):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)`` (``dq``, ``du``, ``dv``:
    the padded tangents; those not ``with_*`` are not read)."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        i0, i1, t0, d0, j0, j1, t1, d1 = departure(i, j, ux, vy, g0, g1, q.shape[0], q.shape[1], p0, p1, c)
        total = 0.0
        if with_q:
            total = bilinear(dq, i0, i1, t0, j0, j1, t1)
        if with_u:
            sx, sy = bilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1)
            total = total + sx * (-c * sample(du, i, j, s0, s1, a0, a1)) + sy * (-c * sample(dv, i, j, s2, s3, a2, a3))
        out[i, j] = total


# -- pressure projection: the stencil passes around the solve -------------------------------
#
# The passes of :mod:`.fused_projection` one point each, same arithmetic: ``u`` has n0
# faces along axis 0 on a periodic axis and n0 + 1 on a bounded one (so the shapes say
# which); ghost pressures beyond a bounded face are ``a·p_edge`` (``r0``..``r3`` =
# a_lo0, a_hi0, a_lo1, a_hi1). Each launch covers (u.shape[0], v.shape[1]), the union of
# the two components' lattices and the cells'.

face_weight = _device(fused_projection._face_weight)


@cuda.jit(device=True)
def _masked(u, m, c, i, j):
    return (u[i, j] if m[i, j] else 0.0) + c[i, j]


@cuda.jit
def projection_rhs(u, v, mu, mv, cu, cv, inv_h, plain, ub, vb, b):
    """``u_b = M u + c`` (both components; not written if ``plain``: u itself) and
    ``b = D u_b`` (``fused_projection.projection_rhs``)."""
    i, j = cuda.grid(2)
    n0, n1 = b.shape
    if not plain:
        if i < u.shape[0] and j < u.shape[1]:
            ub[i, j] = _masked(u, mu, cu, i, j)
        if i < v.shape[0] and j < v.shape[1]:
            vb[i, j] = _masked(v, mv, cv, i, j)
    if i < n0 and j < n1:
        ip = i + 1 if i + 1 < u.shape[0] else 0
        jp = j + 1 if j + 1 < v.shape[1] else 0
        if plain:
            b[i, j] = (u[ip, j] - u[i, j]) * inv_h + (v[i, jp] - v[i, j]) * inv_h
        else:
            b[i, j] = ((_masked(u, mu, cu, ip, j) - _masked(u, mu, cu, i, j)) * inv_h
                       + (_masked(v, mv, cv, i, jp) - _masked(v, mv, cv, i, j)) * inv_h)


@cuda.jit
def projection_finish(p, ub, vb, mu, mv, inv_h, r0, r1, r2, r3, plain, out_u, out_v):
    """``u' = u_b − M G p`` (``fused_projection.projection_finish``)."""
    i, j = cuda.grid(2)
    n0, n1 = p.shape
    per0, per1 = ub.shape[0] == n0, vb.shape[1] == n1
    if i < ub.shape[0] and j < ub.shape[1]:
        im, ic = (i - 1 if i > 0 else n0 - 1), min(i, n0 - 1)
        a_lo, a_hi, edge = 1.0, 1.0, False  # a bounded end face: a ghost pressure a·p_edge
        if not per0 and i == 0:
            im, a_lo, edge = 0, r0, True
        elif not per0 and i == n0:
            a_hi, edge = r1, True
        d = ((a_hi * p[ic, j] - a_lo * p[im, j]) if edge else (p[ic, j] - p[im, j])) * inv_h
        out_u[i, j] = ub[i, j] - (d if plain or mu[i, j] else 0.0)
    if i < vb.shape[0] and j < vb.shape[1]:
        if j == 0:
            d = ((p[i, 0] - p[i, n1 - 1]) if per1 else (p[i, 0] - r2 * p[i, 0])) * inv_h
        elif j == n1:
            d = (r3 * p[i, n1 - 1] - p[i, n1 - 1]) * inv_h
        else:
            d = (p[i, j] - p[i, j - 1]) * inv_h
        out_v[i, j] = vb[i, j] - (d if plain or mv[i, j] else 0.0)


@cuda.jit
def projection_vjp_rhs(gu, gv, gp, mu, mv, inv_h, r0, r1, r2, r3, plain, rhs):
    """``g_p − Gᵀ M g_u`` (``fused_projection.projection_vjp_rhs``): cell i takes +w from
    face i and −w from face i + 1, and the ghost terms."""
    i, j = cuda.grid(2)
    n0, n1 = gp.shape
    if i < n0 and j < n1:
        per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
        ip = i + 1 if i + 1 < gu.shape[0] else 0
        jp = j + 1 if j + 1 < gv.shape[1] else 0
        gt = (face_weight(gu, mu, i, j, inv_h, plain) - face_weight(gu, mu, ip, j, inv_h, plain)
              + face_weight(gv, mv, i, j, inv_h, plain) - face_weight(gv, mv, i, jp, inv_h, plain))
        if not per0:
            if i == 0:
                gt -= r0 * face_weight(gu, mu, 0, j, inv_h, plain)
            if i == n0 - 1:
                gt += r1 * face_weight(gu, mu, n0, j, inv_h, plain)
        if not per1:
            if j == 0:
                gt -= r2 * face_weight(gv, mv, i, 0, inv_h, plain)
            if j == n1 - 1:
                gt += r3 * face_weight(gv, mv, i, n1, inv_h, plain)
        rhs[i, j] = gp[i, j] - gt


@cuda.jit
def projection_vjp_finish(r, gu, gv, mu, mv, inv_h, plain, adj_u, adj_v):
    """``M (g_u + Dᵀ r)`` (``fused_projection.projection_vjp_finish``): face i is +1/h for
    cell i − 1 and −1/h for cell i (either missing at a bounded end)."""
    i, j = cuda.grid(2)
    n0, n1 = r.shape
    per0, per1 = gu.shape[0] == n0, gv.shape[1] == n1
    if i < gu.shape[0] and j < gu.shape[1]:
        left = r[i - 1 if i > 0 else n0 - 1, j] if (i > 0 or per0) else 0.0
        right = r[min(i, n0 - 1), j] if i < n0 else 0.0
        adj_u[i, j] = gu[i, j] + (left - right) * inv_h if plain or mu[i, j] else 0.0
    if i < gv.shape[0] and j < gv.shape[1]:
        left = r[i, j - 1] if j > 0 else (r[i, n1 - 1] if per1 else 0.0)
        right = r[i, j] if j < n1 else 0.0
        adj_v[i, j] = gv[i, j] + (left - right) * inv_h if plain or mv[i, j] else 0.0


# -- MacCormack: nodal bounds, the limited correction, their VJPs -------------------------

neighbour = _device(fused_limiter.neighbour)
near = _device(fused_limiter.near)
clamp_shares = _device(fused_limiter.clamp_shares, near=near)
point_bounds = _device(fused_limiter.point_bounds, neighbour=neighbour)


@cuda.jit
def nodal_bounds(qp, lo, hi, periodic0, periodic1):
    """``m``, ``M``: the min and max of the padded field over each sample's 3×3
    neighbours (``fused_limiter.nodal_bounds``, one point)."""
    i, j = cuda.grid(2)
    if i < qp.shape[0] and j < qp.shape[1]:
        lo[i, j], hi[i, j] = point_bounds(qp, i, j, periodic0, periodic1)


@cuda.jit
def mc_correct(out, q, q1, q1p, lo, hi, u, v, s0, s1, s2, s3, a0, a1, a2, a3, g0, g1, p0, p1, c, tol):
    """MacCormack's second pass (``fused_advection_2d.mc_correct``): ``clamp(q¹ + (q -
    q⁰)/2, I[m], I[M])`` with ``q⁰ = I[q¹](x + Δt U)`` and the nodal bounds interpolated
    at ``x - Δt U`` (``c = Δt/h``; the field's layout as in :func:`sl_forward`)."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        i0, i1, t0, _, j0, j1, t1, _ = departure(i, j, ux, vy, g0, g1, q1p.shape[0], q1p.shape[1], p0, p1, -c)
        corrected = q1[i, j] + 0.5 * (q[i, j] - bilinear(q1p, i0, i1, t0, j0, j1, t1))
        i0, i1, t0, _, j0, j1, t1, _ = departure(i, j, ux, vy, g0, g1, lo.shape[0], lo.shape[1], p0, p1, c)
        out[i, j] = clamp_shares(corrected, bilinear(lo, i0, i1, t0, j0, j1, t1),
                                 bilinear(hi, i0, i1, t0, j0, j1, t1), tol)[0]


@cuda.jit
def mc_correct_vjp(g, q, q1, q1p, lo, hi, u, v, s0, s1, s2, s3, a0, a1, a2, a3, g0, g1, p0, p1, c, tol,
                   adj_c, adj_lo, adj_hi, adj_q1p, adj_u, adj_v, wu, wv):
    """The VJP of :func:`mc_correct` (``fused_advection_2d.mc_correct_vjp``): ``adj_c`` =
    the cotangent of ``q¹ + (q - q⁰)/2``; atomically added into the padded adjoints of the
    bounds, of ``q¹`` (through ``q⁰``) and of U (through the backward departure points and
    the bounds' slopes at the forward ones; ``wu``, ``wv`` as in :func:`sl_vjp`)."""
    i, j = cuda.grid(2)
    if i < g.shape[0] and j < g.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        b0, b1, tb0, db0, c0, c1, tb1, db1 = departure(i, j, ux, vy, g0, g1, q1p.shape[0], q1p.shape[1], p0, p1, -c)
        corrected = q1[i, j] + 0.5 * (q[i, j] - bilinear(q1p, b0, b1, tb0, c0, c1, tb1))
        i0, i1, t0, d0, j0, j1, t1, d1 = departure(i, j, ux, vy, g0, g1, lo.shape[0], lo.shape[1], p0, p1, c)
        _, s_c, s_lo, s_hi = clamp_shares(corrected, bilinear(lo, i0, i1, t0, j0, j1, t1),
                                          bilinear(hi, i0, i1, t0, j0, j1, t1), tol)
        gij = g[i, j]
        sx, sy = 0.0, 0.0
        if s_lo != 0.0:
            spread(adj_lo, s_lo * gij, i0, i1, t0, j0, j1, t1)
            lx, ly = bilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1)
            sx, sy = sx - s_lo * lx, sy - s_lo * ly
        if s_hi != 0.0:
            spread(adj_hi, s_hi * gij, i0, i1, t0, j0, j1, t1)
            hx, hy = bilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1)
            sx, sy = sx - s_hi * hx, sy - s_hi * hy
        adj_c[i, j] = s_c * gij
        if s_c != 0.0:
            bx, by = bilinear_slope(q1p, b0, b1, tb0, db0, c0, c1, tb1, db1)
            spread(adj_q1p, -0.5 * (s_c * gij), b0, b1, tb0, c0, c1, tb1)
            sx, sy = sx - 0.5 * s_c * bx, sy - 0.5 * s_c * by
        sample_transpose(adj_u, c * (gij * sx), i, j, s0, s1, a0, a1, wu)
        sample_transpose(adj_v, c * (gij * sy), i, j, s2, s3, a2, a3, wv)


@cuda.jit
def nodal_bounds_vjp(qp, lo, hi, adj_lo, adj_hi, adj_qp, periodic0, periodic1, tol):
    """Add the transpose of :func:`nodal_bounds` into ``adj_qp``, atomically
    (``fused_limiter.nodal_bounds_vjp``): each bound's cotangent shared equally by the
    neighbours that attain it (to ``tol``, relative)."""
    i, j = cuda.grid(2)
    n0, n1 = qp.shape
    if i < n0 and j < n1:
        for which in range(2):
            a = adj_lo[i, j] if which == 0 else adj_hi[i, j]
            bound = lo[i, j] if which == 0 else hi[i, j]
            if a != 0.0:
                count = 0
                for second in range(2):
                    for di in range(-1, 2):
                        ii = neighbour(i + di, n0, periodic0)
                        for dj in range(-1, 2):
                            jj = neighbour(j + dj, n1, periodic1)
                            if ii >= 0 and jj >= 0 and near(qp[ii, jj], bound, tol):
                                if second:
                                    cuda.atomic.add(adj_qp, (ii, jj), a / count)
                                else:
                                    count += 1


@cuda.jit
def nodal_bounds_jvp(qp, dqp, lo, hi, dlo, dhi, periodic0, periodic1, tol):
    """The tangents of :func:`nodal_bounds` (``NodalBounds.tangent``, one point): each
    bound's the mean of ``dqp`` over the neighbours that attain it (to ``tol``, relative)."""
    i, j = cuda.grid(2)
    n0, n1 = qp.shape
    if i < n0 and j < n1:
        for which in range(2):
            bound = lo[i, j] if which == 0 else hi[i, j]
            total, count = 0.0, 0
            for di in range(-1, 2):
                ii = neighbour(i + di, n0, periodic0)
                for dj in range(-1, 2):
                    jj = neighbour(j + dj, n1, periodic1)
                    if ii >= 0 and jj >= 0 and near(qp[ii, jj], bound, tol):
                        total += dqp[ii, jj]
                        count += 1
            if which == 0:
                dlo[i, j] = total / count
            else:
                dhi[i, j] = total / count


@cuda.jit
def mc_correct_jvp(out, q, dq, q1, dq1, q1p, dq1p, lo, hi, dlo, dhi, u, v, du, dv, s0, s1, s2, s3, a0, a1, a2, a3,
                   g0, g1, p0, p1, c, tol, with_u):
    """The JVP of :func:`mc_correct`: ``s_c (dot_q¹ + (dot_q − dot_q⁰)/2) + s_lo dot_lo +
    s_hi dot_hi``, with ``dot_q⁰ = I[dot_q¹](x + Δt U) + ∂I[q¹]/∂x · Δt S dot_u`` and the
    bounds' tangents ``I[dot_m](x − Δt U) − ∂I[m]/∂x · Δt S dot_u`` (``dq1p``, ``dlo``,
    ``dhi``: padded; ``du``, ``dv`` read only ``with_u``)."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        ux, vy = sample(u, i, j, s0, s1, a0, a1), sample(v, i, j, s2, s3, a2, a3)
        b0, b1, tb0, db0, c0, c1, tb1, db1 = departure(i, j, ux, vy, g0, g1, q1p.shape[0], q1p.shape[1], p0, p1, -c)
        corrected = q1[i, j] + 0.5 * (q[i, j] - bilinear(q1p, b0, b1, tb0, c0, c1, tb1))
        i0, i1, t0, d0, j0, j1, t1, d1 = departure(i, j, ux, vy, g0, g1, lo.shape[0], lo.shape[1], p0, p1, c)
        _, s_c, s_lo, s_hi = clamp_shares(corrected, bilinear(lo, i0, i1, t0, j0, j1, t1),
                                          bilinear(hi, i0, i1, t0, j0, j1, t1), tol)
        dot_lo = bilinear(dlo, i0, i1, t0, j0, j1, t1)
        dot_hi = bilinear(dhi, i0, i1, t0, j0, j1, t1)
        dot_q0 = bilinear(dq1p, b0, b1, tb0, c0, c1, tb1)
        if with_u:
            dx, dy = -c * sample(du, i, j, s0, s1, a0, a1), -c * sample(dv, i, j, s2, s3, a2, a3)
            lx, ly = bilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1)
            hx, hy = bilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1)
            bx, by = bilinear_slope(q1p, b0, b1, tb0, db0, c0, c1, tb1, db1)
            dot_lo = dot_lo + lx * dx + ly * dy
            dot_hi = dot_hi + hx * dx + hy * dy
            dot_q0 = dot_q0 - bx * dx - by * dy
        dot_c = dq1[i, j] + 0.5 * (dq[i, j] - dot_q0)
        out[i, j] = s_c * dot_c + s_lo * dot_lo + s_hi * dot_hi


# -- the Poisson operator: L x and damped-Jacobi sweeps (2-D) ------------------------------
#
# The five-point operator of :mod:`.fused_poisson` (``(L x)_ij = d x_ij + cxm x_{i-1,j} +
# cxp x_{i+1,j} + cym x_{i,j-1} + cyp x_{i,j+1}``, neighbours wrapped on periodic axes and
# clamped on bounded ones, where their coefficient is 0), one thread per cell; the Jacobi
# update is ``fused_poisson._jacobi_point`` itself.

neighbours = _device(fused_poisson._neighbours)
jacobi_point = _device(fused_poisson._jacobi_point)


@cuda.jit
def poisson_apply(x, diag, cxm, cxp, cym, cyp, per0, per1, out):
    """``out = L x`` (``fused_poisson._apply_row``, one cell)."""
    i, j = cuda.grid(2)
    n0, n1 = x.shape
    if i < n0 and j < n1:
        im, ip = neighbours(i, n0, per0)
        jm, jp = neighbours(j, n1, per1)
        out[i, j] = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
                     + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])


@cuda.jit
def jacobi_start(b, inv_diag, omega, x):
    """The first sweep from zero, ``x = ω D⁻¹ b`` (``fused_poisson._start``)."""
    i, j = cuda.grid(2)
    if i < b.shape[0] and j < b.shape[1]:
        x[i, j] = omega * inv_diag[i, j] * b[i, j]


@cuda.jit
def jacobi_sweep(x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, omega):
    """One damped-Jacobi sweep ``y = x + ω D⁻¹ (b − L x)`` (``fused_poisson._jacobi_row``,
    one cell)."""
    i, j = cuda.grid(2)
    n0, n1 = b.shape
    if i < n0 and j < n1:
        im, ip = neighbours(i, n0, per0)
        jm, jp = neighbours(j, n1, per1)
        jacobi_point(i, j, im, ip, jm, jp, x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, omega)


@cuda.jit
def gauss_seidel_colour(x, b, inv_diag, diag, cxm, cxp, cym, cyp, per0, per1, colour):
    """Half a red-black Gauss-Seidel sweep in place: ``x_c += D⁻¹ (b − L x)_c`` on the
    cells of ``colour`` = (i + j) % 2 (``fused_poisson._gauss_seidel_row``, one cell); they
    read only cells of the other colour, so no thread reads what another writes."""
    i, j = cuda.grid(2)
    n0, n1 = x.shape
    if i < n0 and j < n1 and (i + j) % 2 == colour:
        im, ip = neighbours(i, n0, per0)
        jm, jp = neighbours(j, n1, per1)
        lx = (diag[i, j] * x[i, j] + cxm[i, j] * x[im, j] + cxp[i, j] * x[ip, j]
              + cym[i, j] * x[i, jm] + cyp[i, j] * x[i, jp])
        x[i, j] = x[i, j] + inv_diag[i, j] * (b[i, j] - lx)


# -- the 3-D Poisson operator: L x, damped-Jacobi sweeps, red-black Gauss-Seidel ----------
#
# The seven-point operator of :mod:`.fused_poisson` (``fused_poisson._apply_3d_at``
# compiled as a device function), one thread per cell.

apply_3d_at = _device(fused_poisson._apply_3d_at)


@cuda.jit(device=True)
def _cell_neighbours_3d(i, j, k, n0, n1, n2, per0, per1, per2):
    im, ip = neighbours(i, n0, per0)
    jm, jp = neighbours(j, n1, per1)
    km, kp = neighbours(k, n2, per2)
    return im, ip, jm, jp, km, kp


@cuda.jit
def poisson_apply_3d(x, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2, out):
    """``out = L x`` (``fused_poisson.poisson_apply_3d``, one cell)."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = x.shape
    if i < n0 and j < n1 and k < n2:
        im, ip, jm, jp, km, kp = _cell_neighbours_3d(i, j, k, n0, n1, n2, per0, per1, per2)
        out[i, j, k] = apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)


@cuda.jit
def jacobi_start_3d(b, inv_diag, omega, x):
    """The first sweep from zero, ``x = ω D⁻¹ b``."""
    i, j, k = cuda.grid(3)
    if i < b.shape[0] and j < b.shape[1] and k < b.shape[2]:
        x[i, j, k] = omega * inv_diag[i, j, k] * b[i, j, k]


@cuda.jit
def jacobi_sweep_3d(x, y, b, inv_diag, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2, omega):
    """One damped-Jacobi sweep ``y = x + ω D⁻¹ (b − L x)``, one cell."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = b.shape
    if i < n0 and j < n1 and k < n2:
        im, ip, jm, jp, km, kp = _cell_neighbours_3d(i, j, k, n0, n1, n2, per0, per1, per2)
        lx = apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
        y[i, j, k] = x[i, j, k] + omega * inv_diag[i, j, k] * (b[i, j, k] - lx)


@cuda.jit
def gauss_seidel_colour_3d(x, b, inv_diag, diag, cxm, cxp, cym, cyp, czm, czp, per0, per1, per2, colour):
    """Half a red-black Gauss-Seidel sweep in place on the cells of ``colour`` = (i + j +
    k) % 2 (``fused_poisson.gauss_seidel_3d``, one cell)."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = x.shape
    if i < n0 and j < n1 and k < n2 and (i + j + k) % 2 == colour:
        im, ip, jm, jp, km, kp = _cell_neighbours_3d(i, j, k, n0, n1, n2, per0, per1, per2)
        lx = apply_3d_at(x, i, j, k, im, ip, jm, jp, km, kp, diag, cxm, cxp, cym, cyp, czm, czp)
        x[i, j, k] = x[i, j, k] + inv_diag[i, j, k] * (b[i, j, k] - lx)


# -- 3-D advection: semi-Lagrangian forward, VJP, JVP; MacCormack's bounds and correction --
#
# As in 2-D, one thread per point of the field's lattice; the trilinear interpolant and its
# slope are ``fused_advection_3d``'s (``_trilinear``, ``_trilinear_slope``), the nodal
# bounds ``fused_limiter.point_bounds_3d``. ``lay`` = (shift, avg, offset, periodic): the
# field's :class:`~.fused_lattice.Layout` as tuples (9 shifts, 9 averaging flags, then per
# axis the offset and whether it is periodic).

trilinear = _device(k3._trilinear)
_at = _device(k3._at)
_axis_slope_3d = _device(k3._axis_slope_3d, _at=_at, below=below)
trilinear_slope = _device(k3._trilinear_slope, _axis_slope_3d=_axis_slope_3d)
point_bounds_3d = _device(fused_limiter.point_bounds_3d, neighbour=neighbour)


@cuda.jit(device=True)
def spread_3d(out, g, i0, i1, t0, j0, j1, t1, k0, k1, t2):
    """Transpose of :func:`trilinear`, atomically: ``out[corner] += w g``."""
    for a in range(2):
        ii, wi = (i1, t0) if a else (i0, 1 - t0)
        for b in range(2):
            jj, wj = (j1, t1) if b else (j0, 1 - t1)
            wij = wi * wj * g
            cuda.atomic.add(out, (ii, jj, k0), wij * (1 - t2))
            cuda.atomic.add(out, (ii, jj, k1), wij * t2)


@cuda.jit(device=True)
def sample_3d(a, i, j, k, s0, s1, s2, avg0, avg1, avg2):
    """A padded velocity component at the field's point (i, j, k): the mean of its samples
    at ``(i + s0) mod p₀`` [and the next] along each axis (a sample not averaged over
    counts twice, so the eighth of the sum is exactly the 1-, 2-, 4- or 8-point mean)."""
    r0 = (i + s0) % a.shape[0]
    r1 = (i + s0 + 1) % a.shape[0] if avg0 else r0
    c0 = (j + s1) % a.shape[1]
    c1 = (j + s1 + 1) % a.shape[1] if avg1 else c0
    d0 = (k + s2) % a.shape[2]
    d1 = (k + s2 + 1) % a.shape[2] if avg2 else d0
    return 0.125 * (((a[r0, c0, d0] + a[r0, c0, d1]) + (a[r0, c1, d0] + a[r0, c1, d1]))
                    + ((a[r1, c0, d0] + a[r1, c0, d1]) + (a[r1, c1, d0] + a[r1, c1, d1])))


@cuda.jit(device=True)
def sample_transpose_3d(adj, g, i, j, k, s0, s1, s2, avg0, avg1, avg2, w):
    """Transpose of :func:`sample_3d`, atomically (``w``: 1, ½, ¼ or ⅛)."""
    for k0 in range(2 if avg0 else 1):
        for k1 in range(2 if avg1 else 1):
            for k2 in range(2 if avg2 else 1):
                cuda.atomic.add(adj, ((i + s0 + k0) % adj.shape[0], (j + s1 + k1) % adj.shape[1],
                                      (k + s2 + k2) % adj.shape[2]), w * g)


@cuda.jit(device=True)
def velocity_3d(u, v, w, i, j, k, lay):
    """U at the field's point (i, j, k) from the padded components."""
    sh, av = lay[0], lay[1]
    return (sample_3d(u, i, j, k, sh[0], sh[1], sh[2], av[0], av[1], av[2]),
            sample_3d(v, i, j, k, sh[3], sh[4], sh[5], av[3], av[4], av[5]),
            sample_3d(w, i, j, k, sh[6], sh[7], sh[8], av[6], av[7], av[8]))


@cuda.jit(device=True)
def velocity_transpose_3d(adj_u, adj_v, adj_w, gx, gy, gz, i, j, k, lay, wu, wv, ww):
    """Transpose of :func:`velocity_3d`, atomically."""
    sh, av = lay[0], lay[1]
    sample_transpose_3d(adj_u, gx, i, j, k, sh[0], sh[1], sh[2], av[0], av[1], av[2], wu)
    sample_transpose_3d(adj_v, gy, i, j, k, sh[3], sh[4], sh[5], av[3], av[4], av[5], wv)
    sample_transpose_3d(adj_w, gz, i, j, k, sh[6], sh[7], sh[8], av[6], av[7], av[8], ww)


@cuda.jit(device=True)
def departure_3d(i, j, k, ux, vy, wz, lay, shape, c):
    """The trilinear stencil (i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2) of ``x − c·U``
    on a padded lattice of ``shape`` (``fused_advection_3d._cell_3d``)."""
    off, per = lay[2], lay[3]
    i0, i1, t0, d0 = locate(i + off[0] - c * ux, shape[0], per[0])
    j0, j1, t1, d1 = locate(j + off[1] - c * vy, shape[1], per[1])
    k0, k1, t2, d2 = locate(k + off[2] - c * wz, shape[2], per[2])
    return i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2


@cuda.jit
def sl_forward_3d(out, q, u, v, w, lay, c):
    """``q'(x) = I[q](x − Δt U(x))`` at the field's point (``c = Δt/h``; ``q``, ``u``,
    ``v``, ``w`` padded)."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = departure_3d(i, j, k, ux, vy, wz, lay, q.shape, c)
        out[i, j, k] = trilinear(q, i0, i1, t0, j0, j1, t1, k0, k1, t2)


@cuda.jit
def sl_vjp_3d(g, q, u, v, w, lay, c, adj_q, adj_u, adj_v, adj_w, wu, wv, ww):
    """``adj_q += Iᵀ g`` and ``adj_U += Sᵀ(−Δt g ∂I[q]/∂x)`` on the padded lattices, by
    atomic adds."""
    i, j, k = cuda.grid(3)
    if i < g.shape[0] and j < g.shape[1] and k < g.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = departure_3d(i, j, k, ux, vy, wz, lay, q.shape, c)
        gijk = g[i, j, k]
        spread_3d(adj_q, gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
        sx, sy, sz = trilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
        velocity_transpose_3d(adj_u, adj_v, adj_w, -c * (gijk * sx), -c * (gijk * sy), -c * (gijk * sz),
                              i, j, k, lay, wu, wv, ww)


@cuda.jit
def sl_jvp_3d(out, dq, du, dv, dw, q, u, v, w, lay, c, with_q, with_u):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (−Δt S_a dot_u_a)`` (padded tangents; those
    not ``with_*`` are not read)."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = departure_3d(i, j, k, ux, vy, wz, lay, q.shape, c)
        total = 0.0
        if with_q:
            total = trilinear(dq, i0, i1, t0, j0, j1, t1, k0, k1, t2)
        if with_u:
            sx, sy, sz = trilinear_slope(q, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            dux, dvy, dwz = velocity_3d(du, dv, dw, i, j, k, lay)
            total = total + sx * (-c * dux) + sy * (-c * dvy) + sz * (-c * dwz)
        out[i, j, k] = total


@cuda.jit
def nodal_bounds_3d(qp, lo, hi, periodic0, periodic1, periodic2):
    """``m``, ``M`` over each sample's 3×3×3 neighbours (``fused_limiter.point_bounds_3d``)."""
    i, j, k = cuda.grid(3)
    if i < qp.shape[0] and j < qp.shape[1] and k < qp.shape[2]:
        lo[i, j, k], hi[i, j, k] = point_bounds_3d(qp, i, j, k, periodic0, periodic1, periodic2)


@cuda.jit
def nodal_bounds_vjp_3d(qp, lo, hi, adj_lo, adj_hi, adj_qp, periodic0, periodic1, periodic2, tol):
    """Add the transpose of :func:`nodal_bounds_3d` into ``adj_qp``, atomically
    (``fused_limiter.nodal_bounds_vjp_3d``): each bound's cotangent shared equally by the
    neighbours that attain it."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = qp.shape
    if i < n0 and j < n1 and k < n2:
        for which in range(2):
            a = adj_lo[i, j, k] if which == 0 else adj_hi[i, j, k]
            bound = lo[i, j, k] if which == 0 else hi[i, j, k]
            if a != 0.0:
                count = 0
                for second in range(2):
                    for di in range(-1, 2):
                        ii = neighbour(i + di, n0, periodic0)
                        for dj in range(-1, 2):
                            jj = neighbour(j + dj, n1, periodic1)
                            for dk in range(-1, 2):
                                kk = neighbour(k + dk, n2, periodic2)
                                if ii >= 0 and jj >= 0 and kk >= 0 and near(qp[ii, jj, kk], bound, tol):
                                    if second:
                                        cuda.atomic.add(adj_qp, (ii, jj, kk), a / count)
                                    else:
                                        count += 1


@cuda.jit
def nodal_bounds_jvp_3d(qp, dqp, lo, hi, dlo, dhi, periodic0, periodic1, periodic2, tol):
    """The tangents of :func:`nodal_bounds_3d`: each bound's the mean of ``dqp`` over the
    neighbours that attain it (``NodalBounds.tangent``, one point)."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = qp.shape
    if i < n0 and j < n1 and k < n2:
        for which in range(2):
            bound = lo[i, j, k] if which == 0 else hi[i, j, k]
            total, count = 0.0, 0
            for di in range(-1, 2):
                ii = neighbour(i + di, n0, periodic0)
                for dj in range(-1, 2):
                    jj = neighbour(j + dj, n1, periodic1)
                    for dk in range(-1, 2):
                        kk = neighbour(k + dk, n2, periodic2)
                        if ii >= 0 and jj >= 0 and kk >= 0 and near(qp[ii, jj, kk], bound, tol):
                            total += dqp[ii, jj, kk]
                            count += 1
            if which == 0:
                dlo[i, j, k] = total / count
            else:
                dhi[i, j, k] = total / count


@cuda.jit
def mc_correct_3d(out, q, q1, q1p, lo, hi, u, v, w, lay, c, tol):
    """MacCormack's second pass (as :func:`mc_correct`) on a 3-D lattice."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        b0, b1, tb0, _, e0, e1, tb1, _, f0, f1, tb2, _ = departure_3d(i, j, k, ux, vy, wz, lay, q1p.shape, -c)
        corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - trilinear(q1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2))
        i0, i1, t0, _, j0, j1, t1, _, k0, k1, t2, _ = departure_3d(i, j, k, ux, vy, wz, lay, lo.shape, c)
        out[i, j, k] = clamp_shares(corrected, trilinear(lo, i0, i1, t0, j0, j1, t1, k0, k1, t2),
                                    trilinear(hi, i0, i1, t0, j0, j1, t1, k0, k1, t2), tol)[0]


@cuda.jit
def mc_correct_vjp_3d(g, q, q1, q1p, lo, hi, u, v, w, lay, c, tol, adj_c, adj_lo, adj_hi, adj_q1p, adj_u, adj_v,
                      adj_w, wu, wv, ww):
    """The VJP of :func:`mc_correct_3d` (as :func:`mc_correct_vjp`)."""
    i, j, k = cuda.grid(3)
    if i < g.shape[0] and j < g.shape[1] and k < g.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2 = departure_3d(i, j, k, ux, vy, wz, lay, q1p.shape, -c)
        corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - trilinear(q1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2))
        i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = departure_3d(i, j, k, ux, vy, wz, lay, lo.shape, c)
        _, s_c, s_lo, s_hi = clamp_shares(corrected, trilinear(lo, i0, i1, t0, j0, j1, t1, k0, k1, t2),
                                          trilinear(hi, i0, i1, t0, j0, j1, t1, k0, k1, t2), tol)
        gijk = g[i, j, k]
        sx, sy, sz = 0.0, 0.0, 0.0
        if s_lo != 0.0:
            spread_3d(adj_lo, s_lo * gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
            lx, ly, lz = trilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            sx, sy, sz = sx - s_lo * lx, sy - s_lo * ly, sz - s_lo * lz
        if s_hi != 0.0:
            spread_3d(adj_hi, s_hi * gijk, i0, i1, t0, j0, j1, t1, k0, k1, t2)
            hx, hy, hz = trilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            sx, sy, sz = sx - s_hi * hx, sy - s_hi * hy, sz - s_hi * hz
        adj_c[i, j, k] = s_c * gijk
        if s_c != 0.0:
            spread_3d(adj_q1p, -0.5 * (s_c * gijk), b0, b1, tb0, e0, e1, tb1, f0, f1, tb2)
            bx, by, bz = trilinear_slope(q1p, b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2)
            sx, sy, sz = sx - 0.5 * s_c * bx, sy - 0.5 * s_c * by, sz - 0.5 * s_c * bz
        velocity_transpose_3d(adj_u, adj_v, adj_w, c * (gijk * sx), c * (gijk * sy), c * (gijk * sz),
                              i, j, k, lay, wu, wv, ww)


@cuda.jit
def mc_correct_jvp_3d(out, q, dq, q1, dq1, q1p, dq1p, lo, hi, dlo, dhi, u, v, w, du, dv, dw, lay, c, tol, with_u):
    """The JVP of :func:`mc_correct_3d` (as :func:`mc_correct_jvp`)."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        ux, vy, wz = velocity_3d(u, v, w, i, j, k, lay)
        b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2 = departure_3d(i, j, k, ux, vy, wz, lay, q1p.shape, -c)
        corrected = q1[i, j, k] + 0.5 * (q[i, j, k] - trilinear(q1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2))
        i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2 = departure_3d(i, j, k, ux, vy, wz, lay, lo.shape, c)
        _, s_c, s_lo, s_hi = clamp_shares(corrected, trilinear(lo, i0, i1, t0, j0, j1, t1, k0, k1, t2),
                                          trilinear(hi, i0, i1, t0, j0, j1, t1, k0, k1, t2), tol)
        dot_lo = trilinear(dlo, i0, i1, t0, j0, j1, t1, k0, k1, t2)
        dot_hi = trilinear(dhi, i0, i1, t0, j0, j1, t1, k0, k1, t2)
        dot_q0 = trilinear(dq1p, b0, b1, tb0, e0, e1, tb1, f0, f1, tb2)
        if with_u:
            dux, dvy, dwz = velocity_3d(du, dv, dw, i, j, k, lay)
            dx, dy, dz = -c * dux, -c * dvy, -c * dwz
            lx, ly, lz = trilinear_slope(lo, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            hx, hy, hz = trilinear_slope(hi, i0, i1, t0, d0, j0, j1, t1, d1, k0, k1, t2, d2)
            bx, by, bz = trilinear_slope(q1p, b0, b1, tb0, db0, e0, e1, tb1, db1, f0, f1, tb2, db2)
            dot_lo = dot_lo + lx * dx + ly * dy + lz * dz
            dot_hi = dot_hi + hx * dx + hy * dy + hz * dz
            dot_q0 = dot_q0 - bx * dx - by * dy - bz * dz
        dot_c = dq1[i, j, k] + 0.5 * (dq[i, j, k] - dot_q0)
        out[i, j, k] = s_c * dot_c + s_lo * dot_lo + s_hi * dot_hi


# -- 3-D pressure projection: the stencil passes around the solve --------------------------
#
# As the 2-D passes, per axis ``d`` of the three: component d has n_d faces along axis d on
# a periodic axis and n_d + 1 on a bounded one; ghost pressures beyond a bounded face are
# ``a·p_edge`` (``r0``..``r5`` = a_lo0, a_hi0, a_lo1, a_hi1, a_lo2, a_hi2). Each launch
# covers (u.shape[0], v.shape[1], w.shape[2]), the union of the components' lattices and
# the cells'.

@cuda.jit(device=True)
def _along(a, d, m, i, j, k):
    """``a`` at index ``m`` along axis ``d`` and (i, j, k) along the others."""
    if d == 0:
        return a[m, j, k]
    if d == 1:
        return a[i, m, k]
    return a[i, j, m]


@cuda.jit(device=True)
def _inside(a, i, j, k):
    return i < a.shape[0] and j < a.shape[1] and k < a.shape[2]


@cuda.jit(device=True)
def _masked_3d(u, m, c, i, j, k):
    return (u[i, j, k] if m[i, j, k] else 0.0) + c[i, j, k]


@cuda.jit(device=True)
def _open_3d(u, m, c, d, f, i, j, k, plain):
    """``(M u + c)`` of component ``u`` (axis ``d``) at face ``f`` along d."""
    if d == 0:
        return u[f, j, k] if plain else _masked_3d(u, m, c, f, j, k)
    if d == 1:
        return u[i, f, k] if plain else _masked_3d(u, m, c, i, f, k)
    return u[i, j, f] if plain else _masked_3d(u, m, c, i, j, f)


@cuda.jit(device=True)
def _difference_3d(u, m, c, d, cell, i, j, k, plain, inv_h):
    """``((M u + c)[cell + 1] − (M u + c)[cell]) / h`` along axis ``d`` (wrapping)."""
    up = cell + 1 if cell + 1 < u.shape[d] else 0
    return (_open_3d(u, m, c, d, up, i, j, k, plain) - _open_3d(u, m, c, d, cell, i, j, k, plain)) * inv_h


@cuda.jit
def projection_rhs_3d(u, v, w, mu, mv, mw, cu, cv, cw, inv_h, plain, ub, vb, wb, b):
    """``u_b = M u + c`` (every component; not written if ``plain``) and ``b = D u_b``."""
    i, j, k = cuda.grid(3)
    if not plain:
        if _inside(u, i, j, k):
            ub[i, j, k] = _masked_3d(u, mu, cu, i, j, k)
        if _inside(v, i, j, k):
            vb[i, j, k] = _masked_3d(v, mv, cv, i, j, k)
        if _inside(w, i, j, k):
            wb[i, j, k] = _masked_3d(w, mw, cw, i, j, k)
    if _inside(b, i, j, k):
        b[i, j, k] = (_difference_3d(u, mu, cu, 0, i, i, j, k, plain, inv_h)
                      + _difference_3d(v, mv, cv, 1, j, i, j, k, plain, inv_h)
                      + _difference_3d(w, mw, cw, 2, k, i, j, k, plain, inv_h))


@cuda.jit(device=True)
def _face_gradient_3d(p, d, f, i, j, k, periodic, a_lo, a_hi, inv_h):
    """``(G p)_d`` at face ``f`` along axis ``d``: ``(p[f] − p[f−1]) / h``, wrapped on a
    periodic axis, the ghosts ``a·p_edge`` beyond a bounded one."""
    n = p.shape[d]
    if periodic:
        return (_along(p, d, f, i, j, k) - _along(p, d, f - 1 if f > 0 else n - 1, i, j, k)) * inv_h
    if f == 0:
        x = _along(p, d, 0, i, j, k)
        return (x - a_lo * x) * inv_h
    if f == n:
        x = _along(p, d, n - 1, i, j, k)
        return (a_hi * x - x) * inv_h
    return (_along(p, d, f, i, j, k) - _along(p, d, f - 1, i, j, k)) * inv_h


@cuda.jit
def projection_finish_3d(p, ub, vb, wb, mu, mv, mw, inv_h, r0, r1, r2, r3, r4, r5, plain, out_u, out_v, out_w):
    """``u' = u_b − M G p``."""
    i, j, k = cuda.grid(3)
    if _inside(ub, i, j, k):
        d = _face_gradient_3d(p, 0, i, i, j, k, ub.shape[0] == p.shape[0], r0, r1, inv_h)
        out_u[i, j, k] = ub[i, j, k] - (d if plain or mu[i, j, k] else 0.0)
    if _inside(vb, i, j, k):
        d = _face_gradient_3d(p, 1, j, i, j, k, vb.shape[1] == p.shape[1], r2, r3, inv_h)
        out_v[i, j, k] = vb[i, j, k] - (d if plain or mv[i, j, k] else 0.0)
    if _inside(wb, i, j, k):
        d = _face_gradient_3d(p, 2, k, i, j, k, wb.shape[2] == p.shape[2], r4, r5, inv_h)
        out_w[i, j, k] = wb[i, j, k] - (d if plain or mw[i, j, k] else 0.0)


@cuda.jit(device=True)
def _face_weight_3d(g, m, d, f, i, j, k, inv_h, plain):
    """``(M g)_d / h`` at face ``f`` along axis ``d``."""
    if d == 0:
        return g[f, j, k] * inv_h if plain or m[f, j, k] else 0.0
    if d == 1:
        return g[i, f, k] * inv_h if plain or m[i, f, k] else 0.0
    return g[i, j, f] * inv_h if plain or m[i, j, f] else 0.0


@cuda.jit(device=True)
def _gradient_transpose_3d(g, m, d, cell, n, i, j, k, a_lo, a_hi, inv_h, plain):
    """``(Gᵀ M g)_d`` at ``cell`` along axis ``d`` (of ``n`` cells): +w from its low face,
    −w from its high face, and the ghost terms at a bounded end."""
    up = cell + 1 if cell + 1 < g.shape[d] else 0
    out = _face_weight_3d(g, m, d, cell, i, j, k, inv_h, plain) - _face_weight_3d(g, m, d, up, i, j, k, inv_h, plain)
    if g.shape[d] != n:  # bounded
        if cell == 0:
            out -= a_lo * _face_weight_3d(g, m, d, 0, i, j, k, inv_h, plain)
        if cell == n - 1:
            out += a_hi * _face_weight_3d(g, m, d, n, i, j, k, inv_h, plain)
    return out


@cuda.jit
def projection_vjp_rhs_3d(gu, gv, gw, gp, mu, mv, mw, inv_h, r0, r1, r2, r3, r4, r5, plain, rhs):
    """``g_p − Gᵀ M g_u``."""
    i, j, k = cuda.grid(3)
    n0, n1, n2 = gp.shape
    if i < n0 and j < n1 and k < n2:
        gt = (_gradient_transpose_3d(gu, mu, 0, i, n0, i, j, k, r0, r1, inv_h, plain)
              + _gradient_transpose_3d(gv, mv, 1, j, n1, i, j, k, r2, r3, inv_h, plain)
              + _gradient_transpose_3d(gw, mw, 2, k, n2, i, j, k, r4, r5, inv_h, plain))
        rhs[i, j, k] = gp[i, j, k] - gt


@cuda.jit(device=True)
def _divergence_transpose_3d(r, d, f, i, j, k, periodic):
    """``(Dᵀ r)_d · h`` at face ``f`` along axis ``d``: +r of the cell below, −r of the cell
    above (either missing at a bounded end)."""
    n = r.shape[d]
    below = _along(r, d, f - 1 if f > 0 else n - 1, i, j, k) if (f > 0 or periodic) else 0.0
    above = _along(r, d, f if f < n else n - 1, i, j, k) if f < n else 0.0
    return below - above


@cuda.jit
def projection_vjp_finish_3d(r, gu, gv, gw, mu, mv, mw, inv_h, plain, adj_u, adj_v, adj_w):
    """``M (g_u + Dᵀ r)``."""
    i, j, k = cuda.grid(3)
    if _inside(gu, i, j, k):
        t = _divergence_transpose_3d(r, 0, i, i, j, k, gu.shape[0] == r.shape[0])
        adj_u[i, j, k] = gu[i, j, k] + t * inv_h if plain or mu[i, j, k] else 0.0
    if _inside(gv, i, j, k):
        t = _divergence_transpose_3d(r, 1, j, i, j, k, gv.shape[1] == r.shape[1])
        adj_v[i, j, k] = gv[i, j, k] + t * inv_h if plain or mv[i, j, k] else 0.0
    if _inside(gw, i, j, k):
        t = _divergence_transpose_3d(r, 2, k, i, j, k, gw.shape[2] == r.shape[2])
        adj_w[i, j, k] = gw[i, j, k] + t * inv_h if plain or mw[i, j, k] else 0.0


# -- multigrid transfers: prolongation and restriction, one launch an axis ---------------
#
# ``multigrid._prolong_reference`` / ``_restrict_reference`` (and ``fused_poisson.prolong``,
# ``restrict``) axis by axis: along axis ``d`` fine cell 2K takes ``a_lo e[K] + b_lo
# e[K−1]`` and 2K+1 takes ``a_hi e[K] + b_hi e[K+1]`` (neighbours wrap; the weights are 0
# where a bounded axis ends), the restriction is the transpose. The weights of axis d have
# the shape of the coarser of the pass's two arrays.

@cuda.jit(device=True)
def _along2(a, d, m, i, j):
    """``a`` at index ``m`` along axis ``d`` and (i, j) along the other."""
    return a[m, j] if d == 0 else a[i, m]


@cuda.jit(device=True)
def _wrapped(k, n):
    return k + n if k < 0 else (k - n if k >= n else k)


@cuda.jit
def prolong_axis(e, out, a_lo, b_lo, a_hi, b_hi, d, fluid, masked):
    """``out``: ``e`` interpolated to twice its cells along axis ``d`` (times the fine fluid
    mask if ``masked``: the last axis of a prolongation that needs it)."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        f = i if d == 0 else j
        kc, n = f // 2, e.shape[d]
        ci, cj = (kc, j) if d == 0 else (i, kc)
        if f % 2 == 0:
            v = a_lo[ci, cj] * _along2(e, d, kc, i, j) + b_lo[ci, cj] * _along2(e, d, _wrapped(kc - 1, n), i, j)
        else:
            v = a_hi[ci, cj] * _along2(e, d, kc, i, j) + b_hi[ci, cj] * _along2(e, d, _wrapped(kc + 1, n), i, j)
        out[i, j] = v * fluid[i, j] if masked else v


@cuda.jit(device=True)
def _fine2(r, fluid, d, m, i, j, masked):
    """Fine ``r`` at index ``m`` along axis ``d``, masked to the fluid if ``masked``."""
    v = _along2(r, d, m, i, j)
    return v * _along2(fluid, d, m, i, j) if masked else v


@cuda.jit
def restrict_axis(r, out, a_lo, b_lo, a_hi, b_hi, d, fluid, masked, scale):
    """``out``: the transpose of :func:`prolong_axis` applied to ``r`` (``r`` masked to
    the fluid first if ``masked``: the first axis of a restriction), times ``scale``."""
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        kc, n = (i if d == 0 else j), out.shape[d]
        kp, km = _wrapped(kc + 1, n), _wrapped(kc - 1, n)
        ip, jp = (kp, j) if d == 0 else (i, kp)
        im, jm = (km, j) if d == 0 else (i, km)
        out[i, j] = scale * (a_lo[i, j] * _fine2(r, fluid, d, 2 * kc, i, j, masked)
                             + a_hi[i, j] * _fine2(r, fluid, d, 2 * kc + 1, i, j, masked)
                             + b_lo[ip, jp] * _fine2(r, fluid, d, 2 * kp, i, j, masked)
                             + b_hi[im, jm] * _fine2(r, fluid, d, 2 * km + 1, i, j, masked))


@cuda.jit(device=True)
def _index3(d, m, i, j, k):
    """(i, j, k) with the index along axis ``d`` replaced by ``m``."""
    if d == 0:
        return m, j, k
    if d == 1:
        return i, m, k
    return i, j, m


@cuda.jit
def prolong_axis_3d(e, out, a_lo, b_lo, a_hi, b_hi, d, fluid, masked):
    """:func:`prolong_axis` on a 3-D grid."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        f = i if d == 0 else (j if d == 1 else k)
        kc, n = f // 2, e.shape[d]
        c = _index3(d, kc, i, j, k)
        if f % 2 == 0:
            v = a_lo[c] * e[c] + b_lo[c] * e[_index3(d, _wrapped(kc - 1, n), i, j, k)]
        else:
            v = a_hi[c] * e[c] + b_hi[c] * e[_index3(d, _wrapped(kc + 1, n), i, j, k)]
        out[i, j, k] = v * fluid[i, j, k] if masked else v


@cuda.jit(device=True)
def _fine3(r, fluid, d, m, i, j, k, masked):
    c = _index3(d, m, i, j, k)
    return r[c] * fluid[c] if masked else r[c]


@cuda.jit
def restrict_axis_3d(r, out, a_lo, b_lo, a_hi, b_hi, d, fluid, masked, scale):
    """:func:`restrict_axis` on a 3-D grid."""
    i, j, k = cuda.grid(3)
    if i < out.shape[0] and j < out.shape[1] and k < out.shape[2]:
        kc = i if d == 0 else (j if d == 1 else k)
        n = out.shape[d]
        kp, km = _wrapped(kc + 1, n), _wrapped(kc - 1, n)
        out[i, j, k] = scale * (a_lo[i, j, k] * _fine3(r, fluid, d, 2 * kc, i, j, k, masked)
                                + a_hi[i, j, k] * _fine3(r, fluid, d, 2 * kc + 1, i, j, k, masked)
                                + b_lo[_index3(d, kp, i, j, k)] * _fine3(r, fluid, d, 2 * kp, i, j, k, masked)
                                + b_hi[_index3(d, km, i, j, k)] * _fine3(r, fluid, d, 2 * km + 1, i, j, k, masked))
