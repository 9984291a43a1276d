"""Viscosity (diffusion) of a field at cell centres or of a velocity component, with
the field's own boundary rules; differentiable in the field and in the viscosity ν.

* explicit: ``q' = q + νΔt Δq``;
* implicit (backward Euler, unconditionally stable): ``(I - νΔt Δ) q' = q``, solved
  exactly by fast transforms (every boundary rule along an axis is separable). The
  operator is symmetric, so the VJP in ``q`` is the same solve; in ν:
  ``∂q'/∂ν = Δt (I - νΔt Δ)⁻¹ Δq'``.

A moving wall makes Δ affine (``Δq = A q + b``); tangents and adjoints use ``A``.

Obstacles are no-slip walls for the velocity (:class:`ObstacleWalls`): faces touching a
solid cell hold the obstacle's velocity ``c``, and a face whose neighbour across the
axis of another component lies in the obstacle sees the mirror ghost ``2c - u`` (the
wall on the cell face between them). The operator stays symmetric; the implicit solve is
preconditioned conjugate gradients with the obstacle-free fast solve as preconditioner.
"""

from __future__ import annotations

import numpy as onp

from ..ad.core import Primitive
from ..backend import xp_of
from ..errors import SolveError
from . import spectral, stencils


class ObstacleWalls:
    """The no-slip obstacle walls of velocity component ``d``: ``open`` (faces touching
    no solid cell), ``fixed`` (the obstacle velocity on the others), and per face the
    number ``count`` and sum ``mirror`` of the fixed values of its neighbours along the
    other axes, so that ``Δ_obs q = M [Δ(M q + c) + (mirror - count·q) / h²]``.
    ``own`` counts the fixed neighbours along axis ``d`` itself. With ``body`` (a cell
    mask) the counts see only the faces that touch it (one obstacle's share)."""

    def __init__(self, domain, d, body=None):
        left, right = domain._neighbour_cells(domain.solid, d)
        vl, vr = domain._neighbour_cells(domain._solid_velocity[d], d)
        closed = left | right
        fixed = onp.where(right, vr, onp.where(left, vl, 0.0))
        if body is not None:
            bl, br = domain._neighbour_cells(body, d)
            touching, fixed_of = bl | br, onp.where(bl | br, fixed, 0.0)
        else:
            touching, fixed_of = closed, fixed
        count, mirror, own = (onp.zeros(closed.shape) for _ in range(3))
        for a in range(domain.ndim):
            for shift in (1, -1):
                neighbour = _shifted(touching, a, shift, domain.periodic(a))
                if a == d:
                    own += neighbour
                else:
                    count += neighbour
                    mirror += _shifted(fixed_of, a, shift, domain.periodic(a)) * neighbour
        self.open, self.fixed, self.count, self.mirror, self.own = (~closed).astype(float), fixed, count, mirror, own
        # the diagonal of h² Δ_obs on open faces: -2 per axis, -1 per mirrored neighbour, and a
        # box face's ghost rule (ghost = a·edge) adding a at the edge
        diagonal = -2.0 * domain.ndim - count
        for a in range(domain.ndim):
            if not domain.periodic(a):
                for side, index in ((0, 0), (1, -1)):
                    stencils._take(diagonal, a, index)[...] += stencils.velocity_rule(domain, d, a, side)[0]
        self.diagonal = diagonal

    def apply_homogeneous(self, x, nudt, domain):
        """``(I - νΔt Δ_obs) x`` for ``x`` zero on the closed faces (the PCG's vectors):
        ``x - (νΔt / h²) M (Σ neighbours + diagonal · x)``, in a few array operations."""
        xp = xp_of(x)
        total = self.diagonal * x
        for a in range(domain.ndim):
            if domain.periodic(a):
                total += xp.roll(x, 1, a) + xp.roll(x, -1, a)
            else:
                n = x.shape[a]
                stencils._take(total, a, slice(1, n))[...] += stencils._take(x, a, slice(0, n - 1))
                stencils._take(total, a, slice(0, n - 1))[...] += stencils._take(x, a, slice(1, n))
        return x - (nudt / domain.dx ** 2) * (self.open * total)

    @classmethod
    def of(cls, domain, d, like):
        """The walls of component ``d`` as arrays of ``like``'s module and dtype (cached)."""
        key = ("obstacle-walls", d, xp_of(like).__name__, like.dtype)
        out = domain._cache.get(key)
        if out is None:
            walls = cls(domain, d)
            xp = xp_of(like)
            for name in ("open", "fixed", "count", "mirror", "diagonal"):
                setattr(walls, name, xp.asarray(getattr(walls, name), dtype=like.dtype))
            out = domain._cache[key] = walls
        return out


def _shifted(a, axis, shift, periodic):
    """``a`` moved so that entry ``i`` holds ``a[i + shift]`` along ``axis`` (0 past the ends
    of a bounded axis, where the box's own ghost rule applies)."""
    if periodic:
        return onp.roll(a, -shift, axis)
    out = onp.zeros_like(a)
    n = a.shape[axis]
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    src[axis], dst[axis] = (slice(1, None), slice(0, n - 1)) if shift == 1 else (slice(0, n - 1), slice(1, None))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _walls(domain, location, like):
    """The :class:`ObstacleWalls` of a velocity component, or None (no obstacle, a scalar)."""
    if not isinstance(location, int) or not domain.has_obstacles:
        return None
    return ObstacleWalls.of(domain, location, like)


def _lap(q, domain, location, homogeneous=False):
    walls = _walls(domain, location, q)
    if walls is None:
        return stencils._laplacian(q, domain=domain, location=location, homogeneous=homogeneous)
    m = walls.open
    inner = m * q if homogeneous else m * q + walls.fixed
    out = stencils._laplacian(inner, domain=domain, location=location, homogeneous=homogeneous)
    wall = -walls.count * q if homogeneous else walls.mirror - walls.count * q
    return m * (out + wall / domain.dx ** 2)


def _lap_transpose(g, domain, location):
    walls = _walls(domain, location, g)
    if walls is None:
        return stencils._laplacian_transpose(g, None, domain=domain, location=location)
    m = walls.open
    out = stencils._laplacian_transpose(m * g, None, domain=domain, location=location)
    return m * out - m * walls.count * g / domain.dx ** 2


def _nu_adjoint(value, nu, like):
    """The adjoint of ν as the same kind of value as ν (array of ``like``'s dtype, or float)."""
    return value.astype(like.dtype) if hasattr(nu, "dtype") else float(value)


def _vdot(a, b):
    return (a * b).sum()


# -- explicit ------------------------------------------------------------------------


def _explicit_diffusion(q, nu, *, dt, domain, location="center"):
    """``q + νΔt Δq``."""
    return q + (nu * dt) * _lap(q, domain, location)


explicit_diffusion = Primitive(_explicit_diffusion, "explicit_diffusion", register=True)


@explicit_diffusion.defvjp_all(needs=(0, 1))
def _explicit_vjp(g, ans, q, nu, *, dt, domain, location="center"):
    """``adj_q = g + νΔt Aᵀ g``; ``adj_ν = Δt ⟨g, Δq⟩``."""
    adj_q = g + (nu * dt) * _lap_transpose(g, domain, location)
    return adj_q, _nu_adjoint(dt * _vdot(g, _lap(q, domain, location)), nu, g)


@explicit_diffusion.defjvp_all
def _explicit_jvp(dots, ans, q, nu, *, dt, domain, location="center"):
    dot_q, dot_nu = dots
    out = None
    if dot_q is not None:
        out = dot_q + (nu * dt) * _lap(dot_q, domain, location, homogeneous=True)
    if dot_nu is not None:
        term = (dot_nu * dt) * _lap(q, domain, location)
        out = term if out is None else out + term
    return out


# -- implicit ------------------------------------------------------------------------


def _solve(b, nu, dt, domain, location):
    """``(I - νΔt A)⁻¹ b`` (with obstacles: on the open faces, ``M (I - νΔt A)⁻¹ M b``)."""
    kinds = spectral.axis_kinds(domain, location)
    walls = _walls(domain, location, b)
    if walls is None:
        return spectral.solve_shifted(b, kinds, domain.dx, 1.0, -float(nu) * dt)
    return _solve_walls(b, float(nu) * dt, domain, location, walls, kinds)


#: relative residual of the obstacle walls' implicit solve, per float type
WALL_TOLERANCE = {4: 1e-6, 8: 1e-12}


#: above this νΔt/h², the walls' solve is preconditioned by the obstacle-free fast solve
#: (a few iterations whatever νΔt); below it, by the diagonal (cheaper, as few iterations)
SPECTRAL_PRECONDITIONER_ABOVE = 0.5


def _solve_walls(b, nudt, domain, location, walls, kinds):
    """PCG on ``(I - νΔt Δ_obs) x = M b`` over the open faces, to :data:`WALL_TOLERANCE` of
    max |b|; preconditioned by ``M (I - νΔt Δ)⁻¹ M`` (the obstacle-free solve) or, for a
    small νΔt/h², by the inverse diagonal."""
    xp = xp_of(b)
    m = walls.open
    ratio = nudt / domain.dx ** 2

    def apply(x):
        return walls.apply_homogeneous(x, nudt, domain)

    if ratio > SPECTRAL_PRECONDITIONER_ABOVE:
        def precondition(r):
            return m * spectral.solve_shifted(r, kinds, domain.dx, 1.0, -nudt)
    else:
        inverse_diagonal = m / (1.0 + ratio * (2 * domain.ndim + walls.count))

        def precondition(r):
            return inverse_diagonal * r

    rhs = m * b
    threshold = WALL_TOLERANCE.get(b.dtype.itemsize, 1e-12) * float(xp.abs(rhs).max())
    x = precondition(rhs)
    r = rhs - apply(x)
    direction = rz = None
    for _ in range(200):
        if float(xp.abs(r).max()) <= threshold:
            return x
        z = precondition(r)
        rz_new = float(xp.vdot(r, z))
        direction = z if direction is None else z + (rz_new / rz) * direction
        rz = rz_new
        ad = apply(direction)
        alpha = rz / float(xp.vdot(direction, ad))
        x = x + alpha * direction
        r = r - alpha * ad
    if float(xp.abs(r).max()) <= threshold:
        return x
    raise SolveError(f"the viscous solve at the obstacle walls did not converge in 200 iterations "
                     f"(residual {float(xp.abs(r).max()):.3g}, asked {threshold:.3g})")


def _implicit_diffusion(q, nu, *, dt, domain, location="center"):
    """``q'`` with ``(I - νΔt Δ) q' = q`` (the wall constants move to the right side;
    faces at an obstacle keep its velocity)."""
    constant = _lap(q * 0, domain, location)  # b, the affine part of Δ
    out = _solve(q + (nu * dt) * constant, nu, dt, domain, location)
    walls = _walls(domain, location, q)
    return out if walls is None else out + (1 - walls.open) * walls.fixed


implicit_diffusion = Primitive(_implicit_diffusion, "implicit_diffusion", register=True)


@implicit_diffusion.defvjp_all(needs=(1, "ans"))
def _implicit_vjp(g, ans, q, nu, *, dt, domain, location="center"):
    """``adj_q = (I - νΔt A)⁻¹ g``; ``adj_ν = Δt ⟨adj_q, Δq'⟩``."""
    adj_q = _solve(g, nu, dt, domain, location)
    return adj_q, _nu_adjoint(dt * _vdot(adj_q, _lap(ans, domain, location)), nu, g)


@implicit_diffusion.defjvp_all
def _implicit_jvp(dots, ans, q, nu, *, dt, domain, location="center"):
    dot_q, dot_nu = dots
    rhs = None
    if dot_q is not None:
        rhs = dot_q
    if dot_nu is not None:
        term = (dot_nu * dt) * _lap(ans, domain, location)
        rhs = term if rhs is None else rhs + term
    return _solve(rhs, nu, dt, domain, location)


def diffuse_velocity(velocity, nu, *, dt, domain, implicit=True):
    """Viscosity on every MAC velocity component (each with its own wall rules)."""
    kernel = implicit_diffusion if implicit else explicit_diffusion
    return tuple(kernel(u, nu, dt=dt, domain=domain, location=d) for d, u in enumerate(velocity))
