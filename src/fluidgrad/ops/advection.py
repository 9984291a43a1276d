"""Semi-Lagrangian and MacCormack advection on the MAC grid, differentiable with respect
to the advected field **and** the velocity.

Semi-Lagrangian: ``q'(x) = I[q](x - Δt U(x))`` where ``U`` samples the MAC velocity at
the lattice point ``x`` and ``I`` interpolates ``q`` multilinearly. Its adjoints:

* ``adj_q = Iᵀ g`` - scatter-add with the same weights;
* ``adj_u_d = S_dᵀ (-Δt g ∂I[q]/∂x_d)`` - the interpolant's slope at the departure
  point, sent back through the velocity sampling ``S_d``.

MacCormack (Selle et al. 2008): ``q¹ = SL(q, Δt)``, ``q⁰ = SL(q¹, -Δt)``,
``q' = clamp(q¹ + (q - q⁰)/2, min, max)`` with min/max over the corners used by ``q¹``;
the clamp routes the cotangent to ``q¹ + (q - q⁰)/2`` where it is inactive, else to the
corner that set the bound. Departure points and weights are recomputed in the backward
pass from the stored velocity (cheap) instead of being kept on the tape.

``location`` is 'center' for cell-centred scalars or the axis of a velocity component.
"""

from __future__ import annotations

from ..ad.core import Primitive
from ..backend import xp_of
from . import interpolation as interp


def _velocity_stencils(domain, location, like):
    """Stencils that sample each velocity component at the lattice points (cached)."""
    key = ("velocity-stencils", location, xp_of(like).__name__, str(like.dtype))
    cached = domain._cache.get(key)
    if cached is None:
        points = interp.sample_points(domain, location, like)
        cached = tuple(interp.stencil(interp.padded_lattice(domain, d), points) for d in range(domain.ndim))
        domain._cache[key] = cached
    return cached


def _sample_velocity(velocity, domain, location, homogeneous=False):
    """``U(x)`` at the lattice points of ``location``: one array per component."""
    sts = _velocity_stencils(domain, location, velocity[0])
    return [interp.gather(interp.pad_field(u, domain, d, homogeneous), st)
            for d, (u, st) in enumerate(zip(velocity, sts))]


def _sample_velocity_transpose(adj_points, domain, location, like):
    sts = _velocity_stencils(domain, location, like)
    return tuple(interp.pad_field_transpose(
        interp.scatter(a, st, interp.padded_lattice(domain, d).shape), domain, d)
        for d, (a, st) in enumerate(zip(adj_points, sts)))


def _trace(velocity, domain, location, dt):
    """Stencil of the field's padded lattice at the departure points ``x - Δt U(x)``."""
    points = interp.sample_points(domain, location, velocity[0])
    u = _sample_velocity(velocity, domain, location)
    departure = tuple(x - dt * ud for x, ud in zip(points, u))
    return interp.stencil(interp.padded_lattice(domain, location), departure)


# -- semi-Lagrangian -------------------------------------------------------------------


def _semi_lagrangian(q, velocity, *, dt, domain, location="center"):
    """``q'(x) = I[q](x - Δt U(x))``."""
    st = _trace(velocity, domain, location, dt)
    return interp.gather(interp.pad_field(q, domain, location), st)


semi_lagrangian = Primitive(_semi_lagrangian, "semi_lagrangian", register=True)


@semi_lagrangian.defvjp_all(needs=(0, 1))
def _semi_lagrangian_vjp(g, ans, q, velocity, *, dt, domain, location="center"):
    """``adj_q = Iᵀ g``; ``adj_u_d = S_dᵀ(-Δt g ∂I[q]/∂x_d)``."""
    st = _trace(velocity, domain, location, dt)
    padded_shape = interp.padded_lattice(domain, location).shape
    adj_q = interp.pad_field_transpose(interp.scatter(g, st, padded_shape), domain, location)
    slopes = interp.slope(interp.pad_field(q, domain, location), st)
    adj_u = _sample_velocity_transpose([-dt * g * s for s in slopes], domain, location, g)
    return adj_q, adj_u


@semi_lagrangian.defjvp_all
def _semi_lagrangian_jvp(dots, ans, q, velocity, *, dt, domain, location="center"):
    """``dot_q' = I dot_q + Σ_d ∂I[q]/∂x_d · (-Δt S_d dot_u_d)``."""
    dot_q, dot_u = dots
    st = _trace(velocity, domain, location, dt)
    out = None
    if dot_q is not None:
        out = interp.gather(interp.pad_field(dot_q, domain, location, homogeneous=True), st)
    if dot_u is not None:
        slopes = interp.slope(interp.pad_field(q, domain, location), st)
        du = _sample_velocity(dot_u, domain, location, homogeneous=True)
        for s, d in zip(slopes, du):
            out = -dt * s * d if out is None else out - dt * s * d
    return out


# -- MacCormack ------------------------------------------------------------------------


class _MacCormackPass:
    """Everything the MacCormack forward computes, kept for its VJP and JVP."""

    def __init__(self, q, velocity, dt, domain, location):
        self.domain, self.location, self.dt = domain, location, dt
        self.forward = _trace(velocity, domain, location, dt)
        self.backward = _trace(velocity, domain, location, -dt)
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


def _maccormack(q, velocity, *, dt, domain, location="center"):
    """``clamp(q¹ + (q - q⁰)/2)`` with ``q¹ = SL(q, Δt)``, ``q⁰ = SL(q¹, -Δt)``."""
    return _MacCormackPass(q, velocity, dt, domain, location).result()


maccormack = Primitive(_maccormack, "maccormack", register=True)


@maccormack.defvjp_all(needs=(0, 1))
def _maccormack_vjp(g, ans, q, velocity, *, dt, domain, location="center"):
    mc = _MacCormackPass(q, velocity, dt, domain, location)
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
    adj_points = [dt * adj_q0 * s for s in interp.slope(mc.q1_padded, mc.backward)]
    # q1 = SL(q, dt)
    adj_q_padded = adj_q_padded + interp.scatter(adj_q1, mc.forward, lattice.shape)
    for k, s in enumerate(interp.slope(mc.q_padded, mc.forward)):
        adj_points[k] = adj_points[k] - dt * adj_q1 * s
    adj_q = interp.pad_field_transpose(adj_q_padded, domain, location) + 0.5 * adj_c
    adj_u = _sample_velocity_transpose(adj_points, domain, location, g)
    return adj_q, adj_u


@maccormack.defjvp_all
def _maccormack_jvp(dots, ans, q, velocity, *, dt, domain, location="center"):
    mc = _MacCormackPass(q, velocity, dt, domain, location)
    xp = xp_of(q)
    dot_q, dot_u = dots
    if dot_q is None:
        dot_q = xp.zeros_like(q)
    dot_q_padded = interp.pad_field(dot_q, domain, location, homogeneous=True)
    dot_q1 = interp.gather(dot_q_padded, mc.forward)
    du = None
    if dot_u is not None:
        du = _sample_velocity(dot_u, domain, location, homogeneous=True)
        for s, d in zip(interp.slope(mc.q_padded, mc.forward), du):
            dot_q1 = dot_q1 - dt * s * d
    dot_q0 = interp.gather(interp.pad_field(dot_q1, domain, location, homogeneous=True), mc.backward)
    if du is not None:
        for s, d in zip(interp.slope(mc.q1_padded, mc.backward), du):
            dot_q0 = dot_q0 + dt * s * d
    dot_c = dot_q1 + 0.5 * (dot_q - dot_q0)
    flat = dot_q_padded.reshape(-1)
    dot_lo = xp.take(flat, mc.corner_index(mc.arg_lo))
    dot_hi = xp.take(flat, mc.corner_index(mc.arg_hi))
    return xp.where(mc.below, dot_lo, xp.where(mc.above, dot_hi, dot_c))


SCHEMES = {"semi_lagrangian": semi_lagrangian, "maccormack": maccormack}


def advect(q, velocity, *, dt, domain, location="center", scheme="maccormack"):
    """Advect the field ``q`` (at ``location``) by ``velocity`` over ``dt``."""
    return SCHEMES[scheme](q, velocity, dt=dt, domain=domain, location=location)


def advect_velocity(velocity, *, dt, domain, scheme="maccormack"):
    """Self-advection of the MAC velocity: each component advected by the whole field."""
    return tuple(SCHEMES[scheme](u, velocity, dt=dt, domain=domain, location=d)
                 for d, u in enumerate(velocity))
