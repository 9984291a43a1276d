"""Viscosity (diffusion) of a field at cell centres or of a velocity component, with
the field's own boundary rules; differentiable in the field and in the viscosity ν.

* explicit: ``q' = q + νΔt Δq``;
* implicit (backward Euler, unconditionally stable): ``(I - νΔt Δ) q' = q``, solved
  exactly by fast transforms (every boundary rule along an axis is separable). The
  operator is symmetric, so the VJP in ``q`` is the same solve; in ν:
  ``∂q'/∂ν = Δt (I - νΔt Δ)⁻¹ Δq'``.

A moving wall makes Δ affine (``Δq = A q + b``); tangents and adjoints use ``A``.
Obstacles are ignored here: the projection that follows resets their faces.
"""

from __future__ import annotations

from ..ad.core import Primitive
from . import spectral, stencils


def _lap(q, domain, location, homogeneous=False):
    return stencils._laplacian(q, domain=domain, location=location, homogeneous=homogeneous)


def _lap_transpose(g, domain, location):
    return stencils._laplacian_transpose(g, None, domain=domain, location=location)


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
    """``(I - νΔt A)⁻¹ b``."""
    kinds = spectral.axis_kinds(domain, location)
    return spectral.solve_shifted(b, kinds, domain.dx, 1.0, -float(nu) * dt)


def _implicit_diffusion(q, nu, *, dt, domain, location="center"):
    """``q'`` with ``(I - νΔt Δ) q' = q`` (the wall constants move to the right side)."""
    constant = _lap(q * 0, domain, location)  # b, the affine part of Δ
    return _solve(q + (nu * dt) * constant, nu, dt, domain, location)


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
