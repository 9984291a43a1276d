"""The fused implementation of the advection kernels: schemes written as passes of the
compiled 2-D and 3-D kernels, on fields padded with their ghost layers.

:data:`SCHEMES` lists the schemes that have fused kernels (name -> forward, VJP); a
scheme missing here runs its reference on every path. :func:`supports` is the
implementation's half of the dispatch rule (:mod:`.dispatch`): numpy arrays of one
float dtype on a 2-D or 3-D grid, the Euler backtrace, a scheme in the table.
"""

from __future__ import annotations

import numpy as onp

from . import compiled
from . import fused_advection_2d as k2
from . import fused_advection_3d as k3
from . import fused_limiter as lim
from . import interpolation as interp
from .fused_lattice import Layout
from .limiter import tie_tolerance


def supports(scheme, arrays, domain, backtrace) -> bool:
    """Whether the fused kernels advect ``arrays`` (fields, cotangents and velocity)."""
    if scheme not in SCHEMES or backtrace != "euler" or domain.ndim not in (2, 3):
        return False
    dtype = arrays[0].dtype
    return dtype.kind == "f" and all(type(a) is onp.ndarray and a.dtype == dtype for a in arrays)


# -- the passes, 2-D or 3-D --------------------------------------------------------------

def _semi_lagrangian_pass(qp, padded, lay, shape, c):
    """``I[q](x - Δt U)`` on the field's lattice (``padded``: the padded velocity)."""
    if qp.ndim == 3:
        return k3.sl_forward_3d(qp, *padded, *lay.tables, shape, c)
    kernel, parts = k2.sl_forward.split(shape[0] * shape[1])
    return kernel(qp, *padded, lay.shift, lay.avg, lay.geo, shape[0], shape[1], c, parts)


def _nodal_bounds(qp, lay):
    """``(m, M)`` of :class:`~.limiter.NodalBounds` on the padded lattice."""
    periodic = tuple(bool(p) for p in lay.geo[qp.ndim:])
    if qp.ndim == 3:
        return lim.nodal_bounds_3d(qp, *periodic)
    return lim.nodal_bounds.pick(qp.size)(qp, *periodic)


def _nodal_bounds_vjp(qp, lo, hi, adj_lo, adj_hi, adj_qp, lay):
    periodic = tuple(bool(p) for p in lay.geo[qp.ndim:])
    tol = tie_tolerance(qp.dtype)
    if qp.ndim == 3:
        lim.nodal_bounds_vjp_3d(qp, lo, hi, adj_lo, adj_hi, adj_qp, *periodic, tol)
    else:
        lim.nodal_bounds_vjp(qp, lo, hi, adj_lo, adj_hi, adj_qp, *periodic, tol)


def _maccormack_pass(q, qp, q1, q1p, padded, lay, c):
    """The limited correction ``clamp(q¹ + (q - q⁰)/2, I[m], I[M])``."""
    lo, hi = _nodal_bounds(qp, lay)
    if q.ndim == 3:
        return k3.mc_correct_3d(q, q1, q1p, lo, hi, *padded, *lay.tables, c, tie_tolerance(q.dtype))
    kernel, parts = k2.mc_correct.split(q.size)
    return kernel(q, q1, q1p, lo, hi, *padded, lay.shift, lay.avg, lay.geo, c, tie_tolerance(q.dtype), parts)


def _spread(adj, gx, gy, lay):
    k2.spread.pick(gx.size)(gx, gy, lay.shift, lay.avg, *adj)


def _semi_lagrangian_pass_vjp(g, qp, padded, lay, c, adj_qp, adj, blocks):
    """Add the VJP of :func:`_semi_lagrangian_pass` into the padded adjoints (``adj``: one
    per velocity component)."""
    if qp.ndim == 3:
        k3.sl_vjp_3d.for_blocks(blocks)(g, qp, *padded, *lay.tables, c, adj_qp, *adj, blocks)
        return
    gx, gy = onp.empty_like(g), onp.empty_like(g)
    k2.sl_vjp.for_blocks(blocks)(g, qp, *padded, lay.shift, lay.avg, lay.geo, c, adj_qp, gx, gy, blocks)
    _spread(adj, gx, gy, lay)


def _maccormack_pass_vjp(g, q, qp, q1, q1p, padded, lay, c, adj_qp, adj_q1p, adj, blocks):
    """Add the VJP of :func:`_maccormack_pass` into the padded adjoints; returns the
    cotangent of ``q¹ + (q - q⁰)/2``."""
    lo, hi = _nodal_bounds(qp, lay)
    tol = tie_tolerance(q.dtype)
    adj_c, adj_lo, adj_hi = onp.empty_like(g), onp.zeros_like(qp), onp.zeros_like(qp)
    if q.ndim == 3:
        k3.mc_correct_vjp_3d.for_blocks(blocks)(g, q, q1, q1p, lo, hi, *padded, *lay.tables, c, tol, adj_c, adj_lo,
                                                adj_hi, adj_q1p, *adj, blocks)
    else:
        gx, gy = onp.empty_like(g), onp.empty_like(g)
        k2.mc_correct_vjp.for_blocks(blocks)(g, q, q1, q1p, lo, hi, *padded, lay.shift, lay.avg, lay.geo, c, tol,
                                             adj_c, adj_lo, adj_hi, adj_q1p, gx, gy, blocks)
        _spread(adj, gx, gy, lay)
    _nodal_bounds_vjp(qp, lo, hi, adj_lo, adj_hi, adj_qp, lay)
    return adj_c


# -- the schemes: forward and VJP of one field --------------------------------------------
#
# forward(q, qp, padded, c, domain, location) -> q'
# vjp(g, q, qp, padded, c, domain, location, adj_qp, adj, blocks) -> direct cotangent of q
#     (or None), the rest added into the padded adjoints adj_qp and adj

def _semi_lagrangian(q, qp, padded, c, domain, location):
    return _semi_lagrangian_pass(qp, padded, Layout.of(domain, location), q.shape, c)


def _semi_lagrangian_vjp(g, q, qp, padded, c, domain, location, adj_qp, adj, blocks):
    _semi_lagrangian_pass_vjp(g, qp, padded, Layout.of(domain, location), c, adj_qp, adj, blocks)


def _maccormack(q, qp, padded, c, domain, location):
    lay = Layout.of(domain, location)
    q1 = _semi_lagrangian_pass(qp, padded, lay, q.shape, c)
    return _maccormack_pass(q, qp, q1, interp.pad_field(q1, domain, location), padded, lay, c)


def _maccormack_vjp(g, q, qp, padded, c, domain, location, adj_qp, adj, blocks):
    """Second pass (into the adjoints), then the first pass ``q¹ = SL(q)`` with the
    cotangent of q¹; returns the direct cotangent of q (``adj_c / 2``)."""
    lay = Layout.of(domain, location)
    q1 = _semi_lagrangian_pass(qp, padded, lay, q.shape, c)
    q1p = interp.pad_field(q1, domain, location)
    adj_q1p = onp.zeros_like(q1p)
    adj_c = _maccormack_pass_vjp(g, q, qp, q1, q1p, padded, lay, c, adj_qp, adj_q1p, adj, blocks)
    adj_q1 = adj_c + interp.pad_field_transpose(adj_q1p, domain, location)
    _semi_lagrangian_pass_vjp(adj_q1, qp, padded, lay, c, adj_qp, adj, blocks)
    return 0.5 * adj_c


SCHEMES = {"semi_lagrangian": (_semi_lagrangian, _semi_lagrangian_vjp),
           "maccormack": (_maccormack, _maccormack_vjp)}


# -- the kernels' fused implementations ------------------------------------------------------

def advect(scheme, scalars, velocity, dt, domain, location="center", with_velocity=True):
    """``(scalars', velocity')``: the fields ``scalars`` (at ``location``) and, if
    ``with_velocity``, the velocity itself, advected by ``velocity`` (padded once for all;
    a component's own padded field is that padding)."""
    forward = SCHEMES[scheme][0]
    padded, c = tuple(interp.pad_velocity(velocity, domain)), dt / domain.dx
    out = tuple(forward(q, interp.pad_field(q, domain, location), padded, c, domain, location) for q in scalars)
    if not with_velocity:
        return out, ()
    return out, tuple(forward(u, padded[d], padded, c, domain, d) for d, u in enumerate(velocity))


def advect_vjp(scheme, fields, g_velocity, velocity, dt, domain):
    """The VJP of advecting ``fields`` (triples of cotangent, field and location) and, if
    ``g_velocity`` is not empty, the velocity itself by ``velocity``: ``(adjoints of the
    fields, adjoint of the velocity)``. Every kernel adds its velocity cotangent into the
    same padded buffers (a component's own cotangent too)."""
    rule = SCHEMES[scheme][1]
    padded = tuple(interp.pad_velocity(velocity, domain))
    adj = tuple(onp.zeros_like(p) for p in padded)
    c = dt / domain.dx
    rows = compiled.reach(padded, c)
    adj_fields = []
    for g, q, location in fields:
        qp = interp.pad_field(q, domain, location)
        adj_qp = onp.zeros_like(qp)
        direct = rule(onp.ascontiguousarray(g), q, qp, padded, c, domain, location, adj_qp, adj,
                      compiled.row_blocks(g.shape, rows))
        adj_q = interp.pad_field_transpose(adj_qp, domain, location)
        adj_fields.append(adj_q if direct is None else adj_q + direct)
    direct = [rule(onp.ascontiguousarray(g_d), u, padded[d], padded, c, domain, d, adj[d], adj,
                   compiled.row_blocks(g_d.shape, rows))  # q's lattice is u_d's
              for d, (g_d, u) in enumerate(zip(g_velocity, velocity))] or [None] * len(adj)
    out = [interp.pad_field_transpose(a, domain, d) for d, a in enumerate(adj)]
    return tuple(adj_fields), tuple(a if x is None else a + x for a, x in zip(out, direct))


def semi_lagrangian_jvp(dot_q, dot_u, q, velocity, dt, domain, location):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)`` (2-D)."""
    qp = interp.pad_field(q, domain, location)
    up, vp = interp.pad_velocity(velocity, domain)
    lay = Layout.of(domain, location)
    dq = qp if dot_q is None else interp.pad_field(dot_q, domain, location, homogeneous=True)
    du, dv = (up, vp) if dot_u is None else interp.pad_velocity(dot_u, domain, homogeneous=True)
    kernel, parts = k2.sl_jvp.split(q.shape[0] * q.shape[1])
    return kernel(dq, du, dv, qp, up, vp, lay.shift, lay.avg, lay.geo, q.shape[0], q.shape[1], dt / domain.dx,
                  dot_q is not None, dot_u is not None, parts)
