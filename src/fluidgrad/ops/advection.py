"""Semi-Lagrangian and MacCormack advection on the MAC grid, differentiable with respect
to the advected field **and** the velocity.

Semi-Lagrangian: ``q'(x) = I[q](x_d)`` where ``I`` interpolates ``q`` multilinearly and
the departure point is ``x_d = x - Δt U(x)`` (``backtrace='euler'``, the default) or
``x - Δt U(x - Δt/2 U(x))`` (``'rk2'``); ``U`` samples the MAC velocity. Its adjoints:

* ``adj_q = Iᵀ g`` - scatter-add with the same weights;
* ``adj_x_d = g ∂I[q]/∂x`` - the interpolant's slope at the departure point, sent back
  to the velocity through the two velocity samplings (:meth:`Backtrace.transpose`).

MacCormack (Selle et al. 2008): ``q¹ = SL(q, Δt)``, ``q⁰ = SL(q¹, -Δt)``,
``q' = clamp(q¹ + (q - q⁰)/2, min, max)`` with min/max over the corners used by ``q¹``;
the clamp routes the cotangent to ``q¹ + (q - q⁰)/2`` where it is inactive, else to the
corner that set the bound. Departure points and weights are recomputed in the backward
pass from the stored velocity (cheap) instead of being kept on the tape.

``location`` is 'center' for cell-centred scalars or the axis of a velocity component.
"""

from __future__ import annotations

import numpy as onp

from ..ad.core import Primitive
from ..backend import xp_of
from . import fused
from . import interpolation as interp


def _velocity_stencils(domain, location, like):
    """Stencils that sample each velocity component at the lattice points (cached)."""
    key = ("velocity-stencils", location, xp_of(like).__name__, like.dtype)
    cached = domain._cache.get(key)
    if cached is None:
        points = interp.sample_points(domain, location, like)
        cached = tuple(interp.stencil(interp.padded_lattice(domain, d), points) for d in range(domain.ndim))
        domain._cache[key] = cached
    return cached


def _padded_velocity(velocity, domain, homogeneous=False):
    return [interp.pad_field(u, domain, d, homogeneous) for d, u in enumerate(velocity)]


class Backtrace:
    """Departure points ``x_d`` of the lattice points ``x``, by Euler or the midpoint rule::

        euler:  x_d = x - Δt U(x)
        rk2:    m = x - (Δt/2) U(x),   x_d = x - Δt U(m)

    ``U(x)`` is sampled by fixed (cached) stencils, ``U(m)`` by stencils at ``m``. Keeps
    what the tangent and the adjoint of ``x_d`` with respect to the velocity need."""

    def __init__(self, velocity, domain, location, dt, order="euler"):
        if order not in BACKTRACES:
            raise ValueError(f"unknown backtrace {order!r} (expected one of {', '.join(BACKTRACES)})")
        self.domain, self.location, self.dt, self.order = domain, location, dt, order
        points = interp.sample_points(domain, location, velocity[0])
        self.start = _velocity_stencils(domain, location, velocity[0])
        padded = _padded_velocity(velocity, domain)
        u = [interp.gather(p, st) for p, st in zip(padded, self.start)]
        if order == "rk2":
            mid = tuple(x - 0.5 * dt * ud for x, ud in zip(points, u))
            self.mid = tuple(interp.stencil(interp.padded_lattice(domain, d), mid) for d in range(domain.ndim))
            u = [interp.gather(p, st) for p, st in zip(padded, self.mid)]
            self.mid_slopes = [interp.slope(p, st) for p, st in zip(padded, self.mid)]  # ∂U_d/∂x_e
        departure = tuple(x - dt * ud for x, ud in zip(points, u))
        self.stencil = interp.stencil(interp.padded_lattice(domain, location), departure)

    def tangent(self, dot_velocity):
        """``dx_d`` (one array per axis) for a velocity tangent."""
        padded = _padded_velocity(dot_velocity, self.domain, homogeneous=True)
        du = [interp.gather(p, st) for p, st in zip(padded, self.start)]
        if self.order == "euler":
            return [-self.dt * d for d in du]
        dm = [-0.5 * self.dt * d for d in du]
        dx = []
        for d, (p, st) in enumerate(zip(padded, self.mid)):
            du_mid = interp.gather(p, st)
            for e, s in enumerate(self.mid_slopes[d]):
                du_mid = du_mid + s * dm[e]
            dx.append(-self.dt * du_mid)
        return dx

    def transpose(self, adj_departure, like):
        """The velocity cotangent from the cotangent of the departure points."""
        domain = self.domain
        adj_u = [-self.dt * a for a in adj_departure]
        if self.order == "rk2":
            adj_mid = [None] * domain.ndim
            for d in range(domain.ndim):
                for e, s in enumerate(self.mid_slopes[d]):
                    term = adj_u[d] * s
                    adj_mid[e] = term if adj_mid[e] is None else adj_mid[e] + term
            adj_start = [-0.5 * self.dt * a for a in adj_mid]
        out = []
        for d in range(domain.ndim):
            shape = interp.padded_lattice(domain, d).shape
            if self.order == "rk2":
                total = interp.scatter(adj_u[d], self.mid[d], shape) + interp.scatter(adj_start[d], self.start[d], shape)
            else:
                total = interp.scatter(adj_u[d], self.start[d], shape)
            out.append(interp.pad_field_transpose(total, domain, d))
        return tuple(out)


BACKTRACES = ("euler", "rk2")


# -- semi-Lagrangian -------------------------------------------------------------------


def _fused_inputs(q, velocity, domain, location):
    """Padded field, padded velocity (a tuple) and the field's :class:`fused.Layout`."""
    return (interp.pad_field(q, domain, location), tuple(_padded_velocity(velocity, domain)),
            fused.Layout.of(domain, location))


def _fused_semi_lagrangian_vjp(g, q, qp, padded, lay, c, domain, location, adj_qp, adj, blocks):
    fused.semi_lagrangian_vjp(g, qp, padded, lay, c, adj_qp, adj, blocks)


def _semi_lagrangian(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``q'(x) = I[q](x_d)`` at the departure point ``x_d`` of the lattice point ``x``."""
    if fused.usable(q, velocity, domain, backtrace):
        qp, padded, _ = _fused_inputs(q, velocity, domain, location)
        return _fused_advect("semi_lagrangian", q, qp, padded, dt / domain.dx, domain, location)
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    return interp.gather(interp.pad_field(q, domain, location), bt.stencil)


semi_lagrangian = Primitive(_semi_lagrangian, "semi_lagrangian", register=True)


@semi_lagrangian.defvjp_all(needs=(0, 1))
def _semi_lagrangian_vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``adj_q = Iᵀ g``; the departure points get ``g ∂I[q]/∂x`` and pass it to u."""
    if fused.usable(q, velocity, domain, backtrace) and g.dtype == q.dtype:
        (adj_q,), adj_u = _fused_transport_vjp("semi_lagrangian", [(g, q, location)], (), velocity, dt, domain)
        return adj_q, adj_u
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    padded_shape = interp.padded_lattice(domain, location).shape
    adj_q = interp.pad_field_transpose(interp.scatter(g, bt.stencil, padded_shape), domain, location)
    slopes = interp.slope(interp.pad_field(q, domain, location), bt.stencil)
    adj_u = bt.transpose([g * s for s in slopes], g)
    return adj_q, adj_u


@semi_lagrangian.defjvp_all
def _semi_lagrangian_jvp(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · dx_d,a``."""
    dot_q, dot_u = dots
    if domain.ndim == 2 and fused.usable(q, velocity, domain, backtrace) and all(
            d is None or type(d) is onp.ndarray for d in (dot_q, *(dot_u or ()))):
        qp, (up, vp), lay = _fused_inputs(q, velocity, domain, location)
        dq = qp if dot_q is None else interp.pad_field(dot_q, domain, location, homogeneous=True)
        du, dv = (up, vp) if dot_u is None else _padded_velocity(dot_u, domain, homogeneous=True)
        return fused.semi_lagrangian_jvp(dq, du, dv, qp, up, vp, lay, q.shape, dt / domain.dx,
                                         dot_q is not None, dot_u is not None)
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    out = None
    if dot_q is not None:
        out = interp.gather(interp.pad_field(dot_q, domain, location, homogeneous=True), bt.stencil)
    if dot_u is not None:
        slopes = interp.slope(interp.pad_field(q, domain, location), bt.stencil)
        for s, dx in zip(slopes, bt.tangent(dot_u)):
            out = s * dx if out is None else out + s * dx
    return out


# -- MacCormack ------------------------------------------------------------------------


class _MacCormackPass:
    """Everything the MacCormack forward computes, kept for its VJP and JVP."""

    def __init__(self, q, velocity, dt, domain, location, backtrace="euler"):
        self.domain, self.location, self.dt = domain, location, dt
        self.forward_trace = Backtrace(velocity, domain, location, dt, backtrace)
        self.backward_trace = Backtrace(velocity, domain, location, -dt, backtrace)
        self.forward = self.forward_trace.stencil
        self.backward = self.backward_trace.stencil
        self.q_padded = interp.pad_field(q, domain, location)
        self.q1 = interp.gather(self.q_padded, self.forward)
        self.q1_padded = interp.pad_field(self.q1, domain, location)
        q0 = interp.gather(self.q1_padded, self.backward)
        self.corrected = self.q1 + 0.5 * (q - q0)
        corners = interp.corner_values(self.q_padded, self.forward)
        xp = xp_of(q)
        self.arg_lo = xp.argmin(corners, axis=0)
        self.arg_hi = xp.argmax(corners, axis=0)
        self.lo = xp.take_along_axis(corners, self.arg_lo[None], 0)[0]
        self.hi = xp.take_along_axis(corners, self.arg_hi[None], 0)[0]
        self.below = self.corrected < self.lo
        self.above = self.corrected > self.hi

    def result(self):
        xp = xp_of(self.corrected)
        return xp.where(self.below, self.lo, xp.where(self.above, self.hi, self.corrected))

    def corner_index(self, arg):
        xp = xp_of(arg)
        return xp.take_along_axis(xp.stack(self.forward.index), arg[None], 0)[0]


def _maccormack(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``clamp(q¹ + (q - q⁰)/2)`` with ``q¹ = SL(q, Δt)``, ``q⁰ = SL(q¹, -Δt)``."""
    if fused.usable(q, velocity, domain, backtrace):
        qp, padded, _ = _fused_inputs(q, velocity, domain, location)
        return _fused_advect("maccormack", q, qp, padded, dt / domain.dx, domain, location)
    return _MacCormackPass(q, velocity, dt, domain, location, backtrace).result()


def _fused_advect(scheme, q, qp, padded, c, domain, location):
    """``q`` (padded: ``qp``) advected by the padded velocity ``padded`` with the fused
    kernels (``c = Δt/h``)."""
    lay = fused.Layout.of(domain, location)
    q1 = fused.semi_lagrangian(qp, padded, lay, q.shape, c)
    if scheme == "semi_lagrangian":
        return q1
    return fused.maccormack(q, qp, q1, interp.pad_field(q1, domain, location), padded, lay, c)


maccormack = Primitive(_maccormack, "maccormack", register=True)


def _fused_maccormack_vjp(g, q, qp, padded, lay, c, domain, location, adj_qp, adj, blocks):
    """Second pass (into the adjoints), then the first pass ``q¹ = SL(q)`` with the
    cotangent of q¹; returns the direct cotangent of q (``adj_c / 2``)."""
    q1 = fused.semi_lagrangian(qp, padded, lay, q.shape, c)
    q1p = interp.pad_field(q1, domain, location)
    adj_q1p = onp.zeros_like(q1p)
    adj_c = fused.maccormack_vjp(g, q, qp, q1, q1p, padded, lay, c, adj_qp, adj_q1p, adj, blocks)
    adj_q1 = adj_c + interp.pad_field_transpose(adj_q1p, domain, location)
    fused.semi_lagrangian_vjp(adj_q1, qp, padded, lay, c, adj_qp, adj, blocks)
    return 0.5 * adj_c


@maccormack.defvjp_all(needs=(0, 1))
def _maccormack_vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    if fused.usable(q, velocity, domain, backtrace) and g.dtype == q.dtype:
        (adj_q,), adj_u = _fused_transport_vjp("maccormack", [(g, q, location)], (), velocity, dt, domain)
        return adj_q, adj_u
    mc = _MacCormackPass(q, velocity, dt, domain, location, backtrace)
    xp = xp_of(g)
    lattice = interp.padded_lattice(domain, location)
    inside = ~(mc.below | mc.above)
    adj_c = xp.where(inside, g, 0)
    # the clamp: bounds are corner values of q
    adj_q_padded = xp.bincount(
        xp.concatenate([mc.corner_index(mc.arg_lo).reshape(-1), mc.corner_index(mc.arg_hi).reshape(-1)]),
        weights=xp.concatenate([xp.where(mc.below, g, 0).reshape(-1), xp.where(mc.above, g, 0).reshape(-1)]),
        minlength=lattice.size).astype(g.dtype, copy=False).reshape(lattice.shape)
    # q0 = SL(q1, -dt): adj_q0 = -adj_c/2
    adj_q0 = -0.5 * adj_c
    adj_q1 = adj_c + interp.pad_field_transpose(interp.scatter(adj_q0, mc.backward, lattice.shape),
                                                domain, location)
    adj_u = mc.backward_trace.transpose([adj_q0 * s for s in interp.slope(mc.q1_padded, mc.backward)], g)
    # q1 = SL(q, dt)
    adj_q_padded = adj_q_padded + interp.scatter(adj_q1, mc.forward, lattice.shape)
    adj_u_forward = mc.forward_trace.transpose([adj_q1 * s for s in interp.slope(mc.q_padded, mc.forward)], g)
    adj_q = interp.pad_field_transpose(adj_q_padded, domain, location) + 0.5 * adj_c
    return adj_q, tuple(a + b for a, b in zip(adj_u, adj_u_forward))


@maccormack.defjvp_all
def _maccormack_jvp(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    mc = _MacCormackPass(q, velocity, dt, domain, location, backtrace)
    xp = xp_of(q)
    dot_q, dot_u = dots
    if dot_q is None:
        dot_q = xp.zeros_like(q)
    dot_q_padded = interp.pad_field(dot_q, domain, location, homogeneous=True)
    dot_q1 = interp.gather(dot_q_padded, mc.forward)
    if dot_u is not None:
        for s, dx in zip(interp.slope(mc.q_padded, mc.forward), mc.forward_trace.tangent(dot_u)):
            dot_q1 = dot_q1 + s * dx
    dot_q0 = interp.gather(interp.pad_field(dot_q1, domain, location, homogeneous=True), mc.backward)
    if dot_u is not None:
        for s, dx in zip(interp.slope(mc.q1_padded, mc.backward), mc.backward_trace.tangent(dot_u)):
            dot_q0 = dot_q0 + s * dx
    dot_c = dot_q1 + 0.5 * (dot_q - dot_q0)
    flat = dot_q_padded.reshape(-1)
    dot_lo = xp.take(flat, mc.corner_index(mc.arg_lo))
    dot_hi = xp.take(flat, mc.corner_index(mc.arg_hi))
    return xp.where(mc.below, dot_lo, xp.where(mc.above, dot_hi, dot_c))


SCHEMES = {"semi_lagrangian": semi_lagrangian, "maccormack": maccormack}


def advect(q, velocity, *, dt, domain, location="center", scheme="maccormack", backtrace="euler"):
    """Advect the field ``q`` (at ``location``) by ``velocity`` over ``dt``."""
    return SCHEMES[scheme](q, velocity, dt=dt, domain=domain, location=location, backtrace=backtrace)


def _advect_velocity(velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """Self-advection of the MAC velocity: each component advected by the whole field."""
    return _advect_state((), velocity, dt=dt, domain=domain, scheme=scheme, backtrace=backtrace)[1]


#: one tape node for all components (the per-component rules, summed)
advect_velocity = Primitive(_advect_velocity, "advect_velocity", register=True)


def _advect_state(scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """The cell-centred fields ``scalars`` (a tuple) and the velocity itself, all advected
    by ``velocity``: ``(scalars', velocity')``."""
    if _fused_transport(scalars, velocity, domain, backtrace):  # the velocity padded once for all
        padded, c = tuple(_padded_velocity(velocity, domain)), dt / domain.dx
        return (tuple(_fused_advect(scheme, q, interp.pad_field(q, domain, "center"), padded, c, domain, "center")
                      for q in scalars),
                tuple(_fused_advect(scheme, u, padded[d], padded, c, domain, d) for d, u in enumerate(velocity)))
    fun = SCHEMES[scheme].fun
    return (tuple(fun(q, velocity, dt=dt, domain=domain, backtrace=backtrace) for q in scalars),
            tuple(fun(u, velocity, dt=dt, domain=domain, location=d, backtrace=backtrace)
                  for d, u in enumerate(velocity)))


#: a simulation's whole advection step as one tape node: the velocity cotangents of all
#: fields add into one set of buffers
advect_state = Primitive(_advect_state, "advect_state", register=True)


def _fused_transport_vjp(scheme, fields, g_velocity, velocity, dt, domain):
    """The fused VJP of advecting ``fields`` (pairs of cotangent, field and location) and,
    if ``g_velocity`` is not empty, the velocity itself by ``velocity``: ``(adjoints of the
    fields, adjoint of the velocity)``. Every kernel adds its velocity cotangent into the
    same padded buffers (a component's own cotangent too)."""
    rule = _fused_semi_lagrangian_vjp if scheme == "semi_lagrangian" else _fused_maccormack_vjp
    padded = tuple(_padded_velocity(velocity, domain))
    adj = tuple(onp.zeros_like(p) for p in padded)
    c = dt / domain.dx
    rows = fused.reach(padded, c)
    adj_fields = []
    for g, q, location in fields:
        qp = interp.pad_field(q, domain, location)
        adj_qp = onp.zeros_like(qp)
        direct = rule(onp.ascontiguousarray(g), q, qp, padded, fused.Layout.of(domain, location), c, domain,
                      location, adj_qp, adj, fused.row_blocks(g.shape, rows))
        adj_q = interp.pad_field_transpose(adj_qp, domain, location)
        adj_fields.append(adj_q if direct is None else adj_q + direct)
    direct = [rule(onp.ascontiguousarray(g_d), u, padded[d], padded, fused.Layout.of(domain, d), c, domain, d,
                   adj[d], adj, fused.row_blocks(g_d.shape, rows))  # q's lattice is u_d's
              for d, (g_d, u) in enumerate(zip(g_velocity, velocity))] or [None] * len(adj)
    out = [interp.pad_field_transpose(a, domain, d) for d, a in enumerate(adj)]
    return tuple(adj_fields), tuple(a if x is None else a + x for a, x in zip(out, direct))


def _fused_transport(arrays, velocity, domain, backtrace) -> bool:
    return fused.usable(velocity[0], velocity, domain, backtrace) and all(
        type(x) is onp.ndarray and x.dtype == velocity[0].dtype for x in arrays)


@advect_velocity.defvjp_all(needs=(0,))
def _advect_velocity_vjp(g, ans, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """``adj_u_c = g_c-part of component c's own VJP + Σ_d (component d's VJP w.r.t. u_c)``."""
    if _fused_transport(g, velocity, domain, backtrace):
        return (_fused_transport_vjp(scheme, (), g, velocity, dt, domain)[1],)
    prim = SCHEMES[scheme]
    total = None
    for d, (g_d, u) in enumerate(zip(g, velocity)):
        adj_q, adj_u = prim.vjp_all(g_d, None, u, velocity, dt=dt, domain=domain, location=d,
                                    backtrace=backtrace)
        adj_u = list(adj_u)
        adj_u[d] = adj_u[d] + adj_q
        total = adj_u if total is None else [a + b for a, b in zip(total, adj_u)]
    return (tuple(total),)


@advect_velocity.defjvp_all
def _advect_velocity_jvp(dots, ans, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    prim = SCHEMES[scheme]
    return tuple(prim.jvp_all((dot_u, dots[0]), None, u, velocity, dt=dt, domain=domain, location=d,
                              backtrace=backtrace)
                 for d, (u, dot_u) in enumerate(zip(velocity, dots[0])))


@advect_state.defvjp_all(needs=(0, 1))
def _advect_state_vjp(g, ans, scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    g_scalars, g_velocity = g
    if _fused_transport((*g_scalars, *scalars, *g_velocity), velocity, domain, backtrace):
        fields = [(g_q, q, "center") for g_q, q in zip(g_scalars, scalars)]
        return _fused_transport_vjp(scheme, fields, g_velocity, velocity, dt, domain)
    kw = dict(dt=dt, domain=domain, scheme=scheme, backtrace=backtrace)
    adj_velocity = list(_advect_velocity_vjp(g_velocity, None, velocity, **kw)[0])
    adj_scalars = []
    for g_q, q in zip(g_scalars, scalars):
        adj_q, adj_u = SCHEMES[scheme].vjp_all(g_q, None, q, velocity, dt=dt, domain=domain,
                                               backtrace=backtrace)
        adj_scalars.append(adj_q)
        adj_velocity = [a + b for a, b in zip(adj_velocity, adj_u)]
    return tuple(adj_scalars), tuple(adj_velocity)


@advect_state.defjvp_all
def _advect_state_jvp(dots, ans, scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    dot_scalars, dot_velocity = dots
    dot_scalars = dot_scalars if dot_scalars is not None else (None,) * len(scalars)
    prim = SCHEMES[scheme]
    out = tuple(None if dot_q is None and dot_velocity is None else
                prim.jvp_all((dot_q, dot_velocity), None, q, velocity, dt=dt, domain=domain, backtrace=backtrace)
                for q, dot_q in zip(scalars, dot_scalars))
    if dot_velocity is None:
        return out, None
    return out, _advect_velocity_jvp((dot_velocity,), None, velocity, dt=dt, domain=domain, scheme=scheme,
                                     backtrace=backtrace)
