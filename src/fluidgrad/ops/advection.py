"""Semi-Lagrangian and MacCormack advection on the MAC grid, differentiable with respect
to the advected field **and** the velocity.

Semi-Lagrangian: ``q'(x) = I[q](x_d)`` where ``I`` interpolates ``q`` multilinearly and
the departure point is ``x_d = x - Δt U(x)`` (``backtrace='euler'``, the default) or
``x - Δt U(x - Δt/2 U(x))`` (``'rk2'``); ``U`` samples the MAC velocity. Its adjoints:

* ``adj_q = Iᵀ g`` - scatter-add with the same weights;
* ``adj_x_d = g ∂I[q]/∂x`` - the interpolant's slope at the departure point, sent back
  to the velocity through the two velocity samplings (:meth:`Backtrace.transpose`).

MacCormack (Selle et al. 2008) with a continuous limiter: ``q¹ = SL(q, Δt)``,
``q⁰ = SL(q¹, -Δt)``, ``q' = clamp(q¹ + (q - q⁰)/2, I[m](x_d), I[M](x_d))``, where
``m``/``M`` are the min/max of ``q`` over each sample's 3ᵈ neighbours
(:class:`~.limiter.NodalBounds`) interpolated with the weights of ``q¹``. Clamping to the corners
of the departure cell (Selle et al.) jumps when ``x_d`` crosses a cell face; these bounds
move continuously with ``x_d`` and contain the corner bounds (``I[m] ≤ min corners ≤
q¹ ≤ max corners ≤ I[M]``), so the result is continuous and piecewise smooth in ``q`` and
``U``, never outside the range of the 4ᵈ samples around ``x_d``, and second order where
the limiter is inactive. At ties the derivative follows :func:`~.limiter.clamp_shares`.
Departure points and weights are recomputed in the backward pass from the stored
velocity (cheap) instead of being kept on the tape.

``location`` is 'center' for cell-centred scalars or the axis of a velocity component.

Every rule below is a :class:`~.dispatch.Kernel`: the array-API reference here, the fused
implementation from :mod:`.fused_advection`. The schemes are listed once, in
:data:`SCHEMES` (add one with :func:`register_scheme`).
"""

from __future__ import annotations

import dataclasses

from ..ad.core import Primitive
from ..backend import xp_of
from ..errors import UnknownNameError, unknown
from . import fused_advection as fused
from . import gpu
from . import interpolation as interp
from .dispatch import Kernel
from .limiter import NodalBounds, clamp_shares


def _velocity_stencils(domain, location, like):
    """Stencils that sample each velocity component at the lattice points (cached)."""
    key = ("velocity-stencils", location, xp_of(like).__name__, like.dtype)
    cached = domain._cache.get(key)
    if cached is None:
        lattices = [interp.padded_lattice(domain, d) for d in range(domain.ndim)]
        cached = tuple(interp.stencil(lat, interp.lattice_points(domain, location, lat, like)) for lat in lattices)
        domain._cache[key] = cached
    return cached


class Backtrace:
    """Departure points ``x_d`` of the lattice points ``x``, by Euler or the midpoint rule::

        euler:  x_d = x - Δt U(x)
        rk2:    m = x - (Δt/2) U(x),   x_d = x - Δt U(m)

    ``U(x)`` is sampled by fixed (cached) stencils, ``U(m)`` by stencils at ``m``. Keeps
    what the tangent and the adjoint of ``x_d`` with respect to the velocity need. Points
    are in index units of the field's padded lattice, ``s_d = s - (Δt/h) U`` (as the
    fused kernels compute them)."""

    def __init__(self, velocity, domain, location, dt, order="euler"):
        if order not in BACKTRACES:
            raise UnknownNameError("backtrace", order, BACKTRACES)
        self.domain, self.location, self.dt, self.order = domain, location, dt, order
        lattice = interp.padded_lattice(domain, location)
        points = interp.lattice_points(domain, location, lattice, velocity[0])
        c = dt / domain.dx
        self.start = _velocity_stencils(domain, location, velocity[0])
        padded = interp.pad_velocity(velocity, domain)
        u = [interp.gather(p, st) for p, st in zip(padded, self.start)]
        if order == "rk2":
            mid = tuple(x - 0.5 * c * ud for x, ud in zip(points, u))
            self.mid = []
            for d in range(domain.ndim):
                lat = interp.padded_lattice(domain, d)
                self.mid.append(interp.stencil(lat, tuple(m + (o - lo) for m, o, lo in
                                                          zip(mid, lattice.offset, lat.offset))))
            u = [interp.gather(p, st) for p, st in zip(padded, self.mid)]
            self.mid_slopes = [interp.slope(p, st) for p, st in zip(padded, self.mid)]  # ∂U_d/∂x_e
        self.stencil = interp.stencil(lattice, tuple(x - c * ud for x, ud in zip(points, u)))

    def tangent(self, dot_velocity):
        """``dx_d`` (one array per axis) for a velocity tangent."""
        padded = interp.pad_velocity(dot_velocity, self.domain, homogeneous=True)
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


# -- the fused implementations, per scheme --------------------------------------------------
#
# Each takes the arguments of the rule it implements; ``_fused_supports`` is its half of
# the dispatch rule.

def _fused_supports(scheme, rule="forward", ndims=(2, 3), kind="fused"):
    """Whether the ``kind`` kernels (fused or gpu) of ``scheme`` take a ``rule`` call's arguments."""
    def supports(*args, dt, domain, location="center", backtrace="euler"):
        if domain.ndim not in ndims:
            return False
        if rule == "forward":
            q, velocity = args
            arrays = (q, *velocity)
        elif rule == "vjp":
            g, _, q, velocity = args
            arrays = (q, g, *velocity)
        else:
            (dot_q, dot_u), _, q, velocity = args
            arrays = (q, *velocity, *(d for d in (dot_q, *(dot_u or ())) if d is not None))
        if kind == "gpu":
            return gpu.supports(arrays, domain, backtrace)
        return fused.supports(scheme, arrays, domain, backtrace)
    return supports


def _fused_forward(scheme):
    def forward(q, velocity, *, dt, domain, location="center", backtrace="euler"):
        return fused.advect(scheme, (q,), velocity, dt, domain, location, with_velocity=False)[0][0]
    return forward


def _fused_vjp(scheme):
    def vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
        (adj_q,), adj_u = fused.advect_vjp(scheme, [(g, q, location)], (), velocity, dt, domain)
        return adj_q, adj_u
    return vjp


# -- semi-Lagrangian -------------------------------------------------------------------

def _semi_lagrangian_reference(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``q'(x) = I[q](x_d)`` at the departure point ``x_d`` of the lattice point ``x``."""
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    return interp.gather(interp.pad_field(q, domain, location), bt.stencil)


def _semi_lagrangian_vjp_reference(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``adj_q = Iᵀ g``; the departure points get ``g ∂I[q]/∂x`` and pass it to u."""
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    padded_shape = interp.padded_lattice(domain, location).shape
    adj_q = interp.pad_field_transpose(interp.scatter(g, bt.stencil, padded_shape), domain, location)
    slopes = interp.slope(interp.pad_field(q, domain, location), bt.stencil)
    adj_u = bt.transpose([g * s for s in slopes], g)
    return adj_q, adj_u


def _semi_lagrangian_jvp_reference(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · dx_d,a``."""
    dot_q, dot_u = dots
    bt = Backtrace(velocity, domain, location, dt, backtrace)
    out = None
    if dot_q is not None:
        out = interp.gather(interp.pad_field(dot_q, domain, location, homogeneous=True), bt.stencil)
    if dot_u is not None:
        slopes = interp.slope(interp.pad_field(q, domain, location), bt.stencil)
        for s, dx in zip(slopes, bt.tangent(dot_u)):
            out = s * dx if out is None else out + s * dx
    return out


def _fused_semi_lagrangian_jvp(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    return fused.semi_lagrangian_jvp(*dots, q, velocity, dt, domain, location)


semi_lagrangian_forward = Kernel("semi_lagrangian", _semi_lagrangian_reference)
semi_lagrangian_forward.implementation("fused", _fused_supports("semi_lagrangian"))(
    _fused_forward("semi_lagrangian"))
semi_lagrangian_vjp = Kernel("semi_lagrangian.vjp", _semi_lagrangian_vjp_reference)
semi_lagrangian_vjp.implementation("fused", _fused_supports("semi_lagrangian", "vjp"))(_fused_vjp("semi_lagrangian"))
semi_lagrangian_jvp = Kernel("semi_lagrangian.jvp", _semi_lagrangian_jvp_reference)
semi_lagrangian_jvp.implementation("fused", _fused_supports("semi_lagrangian", "jvp", (2,)))(
    _fused_semi_lagrangian_jvp)
for _kernel, _rule, _fun in ((semi_lagrangian_forward, "forward", gpu.semi_lagrangian),
                             (semi_lagrangian_vjp, "vjp", gpu.semi_lagrangian_vjp),
                             (semi_lagrangian_jvp, "jvp", gpu.semi_lagrangian_jvp)):
    _kernel.implementation("gpu", _fused_supports("semi_lagrangian", _rule, kind="gpu"))(_fun)

semi_lagrangian = Primitive(semi_lagrangian_forward, "semi_lagrangian", register=True)
semi_lagrangian.defvjp_all(needs=(0, 1))(semi_lagrangian_vjp)
semi_lagrangian.defjvp_all(semi_lagrangian_jvp)


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
        self.bounds = NodalBounds(self.q_padded, interp.padded_lattice(domain, location).periodic)
        self.lo = interp.gather(self.bounds.lo, self.forward)
        self.hi = interp.gather(self.bounds.hi, self.forward)
        self.out, self.shares = clamp_shares(self.corrected, self.lo, self.hi)


def _maccormack_reference(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``clamp(q¹ + (q - q⁰)/2, I[m](x_d), I[M](x_d))`` with ``q¹ = SL(q, Δt)``,
    ``q⁰ = SL(q¹, -Δt)`` and the nodal bounds ``m``, ``M`` of :class:`NodalBounds`."""
    return _MacCormackPass(q, velocity, dt, domain, location, backtrace).out


def _maccormack_vjp_reference(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """The clamp shares ``g`` among ``q¹ + (q - q⁰)/2`` and the two bounds; the bounds
    send theirs to ``m``, ``M`` (with the weights of ``q¹``) and through their slopes to
    the forward departure points; then through ``q⁰ = SL(q¹, -Δt)`` and ``q¹ = SL(q, Δt)``."""
    mc = _MacCormackPass(q, velocity, dt, domain, location, backtrace)
    lattice = interp.padded_lattice(domain, location)
    adj_c, adj_lo, adj_hi = (share * g for share in mc.shares)
    adj_q_padded = mc.bounds.transpose(interp.scatter(adj_lo, mc.forward, lattice.shape),
                                       interp.scatter(adj_hi, mc.forward, lattice.shape))
    # q0 = SL(q1, -dt): adj_q0 = -adj_c/2
    adj_q0 = -0.5 * adj_c
    adj_q1 = adj_c + interp.pad_field_transpose(interp.scatter(adj_q0, mc.backward, lattice.shape),
                                                domain, location)
    adj_u = mc.backward_trace.transpose([adj_q0 * s for s in interp.slope(mc.q1_padded, mc.backward)], g)
    # q1 = SL(q, dt) and the bounds at the same departure points
    adj_q_padded = adj_q_padded + interp.scatter(adj_q1, mc.forward, lattice.shape)
    slopes = zip(interp.slope(mc.q_padded, mc.forward), interp.slope(mc.bounds.lo, mc.forward),
                 interp.slope(mc.bounds.hi, mc.forward))
    adj_u_forward = mc.forward_trace.transpose([adj_q1 * s + adj_lo * s_lo + adj_hi * s_hi
                                                for s, s_lo, s_hi in slopes], g)
    adj_q = interp.pad_field_transpose(adj_q_padded, domain, location) + 0.5 * adj_c
    return adj_q, tuple(a + b for a, b in zip(adj_u, adj_u_forward))


def _maccormack_jvp_reference(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """The shares of the clamp applied to the tangents of ``q¹ + (q - q⁰)/2`` and of the bounds."""
    mc = _MacCormackPass(q, velocity, dt, domain, location, backtrace)
    xp = xp_of(q)
    dot_q, dot_u = dots
    if dot_q is None:
        dot_q = xp.zeros_like(q)
    dot_q_padded = interp.pad_field(dot_q, domain, location, homogeneous=True)
    dot_m, dot_mm = mc.bounds.tangent(dot_q_padded)
    dot_q1 = interp.gather(dot_q_padded, mc.forward)
    dot_lo = interp.gather(dot_m, mc.forward)
    dot_hi = interp.gather(dot_mm, mc.forward)
    if dot_u is not None:
        dx = mc.forward_trace.tangent(dot_u)
        for a, (s, s_lo, s_hi) in enumerate(zip(interp.slope(mc.q_padded, mc.forward),
                                                interp.slope(mc.bounds.lo, mc.forward),
                                                interp.slope(mc.bounds.hi, mc.forward))):
            dot_q1 = dot_q1 + s * dx[a]
            dot_lo = dot_lo + s_lo * dx[a]
            dot_hi = dot_hi + s_hi * dx[a]
    dot_q0 = interp.gather(interp.pad_field(dot_q1, domain, location, homogeneous=True), mc.backward)
    if dot_u is not None:
        for s, dx in zip(interp.slope(mc.q1_padded, mc.backward), mc.backward_trace.tangent(dot_u)):
            dot_q0 = dot_q0 + s * dx
    dot_c = dot_q1 + 0.5 * (dot_q - dot_q0)
    share_c, share_lo, share_hi = mc.shares
    return share_c * dot_c + share_lo * dot_lo + share_hi * dot_hi


maccormack_forward = Kernel("maccormack", _maccormack_reference)
maccormack_forward.implementation("fused", _fused_supports("maccormack"))(_fused_forward("maccormack"))
maccormack_vjp = Kernel("maccormack.vjp", _maccormack_vjp_reference)
maccormack_vjp.implementation("fused", _fused_supports("maccormack", "vjp"))(_fused_vjp("maccormack"))
maccormack_jvp = Kernel("maccormack.jvp", _maccormack_jvp_reference)
maccormack_forward.implementation("gpu", _fused_supports("maccormack", "forward", kind="gpu"))(gpu.maccormack)
maccormack_vjp.implementation("gpu", _fused_supports("maccormack", "vjp", kind="gpu"))(gpu.maccormack_vjp)
maccormack_jvp.implementation("gpu", _fused_supports("maccormack", "jvp", kind="gpu"))(gpu.maccormack_jvp)

maccormack = Primitive(maccormack_forward, "maccormack", register=True)
maccormack.defvjp_all(needs=(0, 1))(maccormack_vjp)
maccormack.defjvp_all(maccormack_jvp)


# -- the table of schemes ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scheme:
    """An advection scheme: ``primitive(q, velocity, *, dt, domain, location, backtrace)``
    advects one field and carries the forward, VJP and JVP rules. Fused kernels, if the
    scheme has them, are listed under the same name in :data:`.fused_advection.SCHEMES`;
    without them it runs its own rules on every path."""
    name: str
    primitive: Primitive
    description: str


#: every advection scheme, by name: the one list the simulation, the scenario layer, the
#: tests and the docs read
SCHEMES = {}


def register_scheme(name, primitive, description) -> Scheme:
    """Add (or replace) the scheme ``name``."""
    SCHEMES[name] = out = Scheme(name, primitive, description)
    return out


def scheme_named(name) -> Scheme:
    """The scheme called ``name``; :class:`~fluidgrad.errors.UnknownNameError` if there is none."""
    return unknown("advection scheme", name, SCHEMES, key="advection")


register_scheme("maccormack", maccormack, "MacCormack (Selle et al. 2008) with a continuous limiter, second order")
register_scheme("semi_lagrangian", semi_lagrangian, "semi-Lagrangian (Stam 1999), first order, unconditionally stable")


def advect(q, velocity, *, dt, domain, location="center", scheme="maccormack", backtrace="euler"):
    """Advect the field ``q`` (at ``location``) by ``velocity`` over ``dt``."""
    return scheme_named(scheme).primitive(q, velocity, dt=dt, domain=domain, location=location,
                                          backtrace=backtrace)


# -- a whole advection step: the scalars and the velocity, one tape node ----------------------

def _advect_state_reference(scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """The cell-centred fields ``scalars`` (a tuple) and the velocity itself, all advected
    by ``velocity``: ``(scalars', velocity')``, field by field."""
    fun = scheme_named(scheme).primitive.fun
    return (tuple(fun(q, velocity, dt=dt, domain=domain, backtrace=backtrace) for q in scalars),
            tuple(fun(u, velocity, dt=dt, domain=domain, location=d, backtrace=backtrace)
                  for d, u in enumerate(velocity)))


def _advect_state_vjp_reference(g, ans, scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """Field by field: ``adj_u = Σ_fields (the field's VJP w.r.t. u)``, and each component's
    cotangent through its own VJP w.r.t. the component."""
    g_scalars, g_velocity = g
    prim = scheme_named(scheme).primitive
    kw = dict(dt=dt, domain=domain, backtrace=backtrace)
    adj_velocity = None
    for d, (g_d, u) in enumerate(zip(g_velocity, velocity)):
        adj_q, adj_u = prim.vjp_all(g_d, None, u, velocity, location=d, **kw)
        adj_u = tuple(a + adj_q if e == d else a for e, a in enumerate(adj_u))
        adj_velocity = adj_u if adj_velocity is None else tuple(a + b for a, b in zip(adj_velocity, adj_u))
    adj_scalars = []
    for g_q, q in zip(g_scalars, scalars):
        adj_q, adj_u = prim.vjp_all(g_q, None, q, velocity, **kw)
        adj_scalars.append(adj_q)
        adj_velocity = adj_u if adj_velocity is None else tuple(a + b for a, b in zip(adj_velocity, adj_u))
    return tuple(adj_scalars), adj_velocity


def _fused_state_supports(*args, dt, domain, scheme="maccormack", backtrace="euler"):
    if len(args) == 2:  # the forward
        scalars, velocity = args
        arrays = (*velocity, *scalars)
    else:
        (g_scalars, g_velocity), _, scalars, velocity = args
        arrays = (*velocity, *g_scalars, *scalars, *g_velocity)
    return fused.supports(scheme, arrays, domain, backtrace)


def _fused_state(scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    return fused.advect(scheme, scalars, velocity, dt, domain)


def _fused_state_vjp(g, ans, scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    g_scalars, g_velocity = g
    fields = [(g_q, q, "center") for g_q, q in zip(g_scalars, scalars)]
    return fused.advect_vjp(scheme, fields, g_velocity, velocity, dt, domain)


advect_state_forward = Kernel("advect_state", _advect_state_reference)
advect_state_forward.implementation("fused", _fused_state_supports)(_fused_state)
advect_state_vjp = Kernel("advect_state.vjp", _advect_state_vjp_reference)
advect_state_vjp.implementation("fused", _fused_state_supports)(_fused_state_vjp)

#: a simulation's whole advection step as one tape node: the velocity cotangents of all
#: fields add into one set of buffers
advect_state = Primitive(advect_state_forward, "advect_state", register=True)
advect_state.defvjp_all(needs=(0, 1))(advect_state_vjp)


@advect_state.defjvp_all
def _advect_state_jvp(dots, ans, scalars, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """Field by field, each through its scheme's JVP rule."""
    dot_scalars, dot_velocity = dots
    dot_scalars = dot_scalars if dot_scalars is not None else (None,) * len(scalars)
    prim = scheme_named(scheme).primitive
    kw = dict(dt=dt, domain=domain, backtrace=backtrace)
    out = tuple(None if dot_q is None and dot_velocity is None else
                prim.jvp_all((dot_q, dot_velocity), None, q, velocity, **kw)
                for q, dot_q in zip(scalars, dot_scalars))
    if dot_velocity is None:
        return out, None
    return out, tuple(prim.jvp_all((dot_u, dot_velocity), None, u, velocity, location=d, **kw)
                      for d, (u, dot_u) in enumerate(zip(velocity, dot_velocity)))


def _advect_velocity(velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """Self-advection of the MAC velocity: each component advected by the whole field."""
    return advect_state_forward((), velocity, dt=dt, domain=domain, scheme=scheme, backtrace=backtrace)[1]


#: one tape node for all components (the per-component rules, summed)
advect_velocity = Primitive(_advect_velocity, "advect_velocity", register=True)


@advect_velocity.defvjp_all(needs=(0,))
def _advect_velocity_vjp(g, ans, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    """``adj_u_c = g_c-part of component c's own VJP + Σ_d (component d's VJP w.r.t. u_c)``."""
    return (advect_state_vjp(((), g), None, (), velocity, dt=dt, domain=domain, scheme=scheme,
                             backtrace=backtrace)[1],)


@advect_velocity.defjvp_all
def _advect_velocity_jvp(dots, ans, velocity, *, dt, domain, scheme="maccormack", backtrace="euler"):
    return _advect_state_jvp(((), dots[0]), None, (), velocity, dt=dt, domain=domain, scheme=scheme,
                             backtrace=backtrace)[1]
