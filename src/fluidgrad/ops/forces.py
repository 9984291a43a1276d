"""Body forces on the MAC velocity: buoyancy, vorticity confinement, control forces.

* buoyancy: ``f_d = b_d ρ`` with the density averaged onto the faces of axis d;
  linear in ρ and in the buoyancy vector ``b`` (both differentiable);
* vorticity confinement (Fedkiw et al. 2001): ``f = ε h (N × ω)``,
  ``N = ∇|ω| / |∇|ω||`` - nonlinear; one primitive whose derivatives re-run its
  differentiable composition (exact, one tape node);
* a control force is added as ``u + Δt f``.
"""

from __future__ import annotations

from .. import numpy as fnp
from ..ad.transforms import recomputing_primitive
from .stencils import center_to_face, vorticity


def buoyancy(density, strength, *, domain):
    """Face force ``b_d · avg_d(ρ)`` for each axis d; ``strength`` = the vector b."""
    return tuple(strength[d] * center_to_face(density, domain=domain, axis=d)
                 for d in range(domain.ndim))


def _central_gradient(q, domain):
    """``∇q`` at cell centres by central differences (zero-gradient at bounded faces)."""
    out = []
    for d in range(domain.ndim):
        widths = [(0, 0)] * domain.ndim
        widths[d] = (1, 1)
        padded = fnp.pad(q, widths, "wrap" if domain.periodic(d) else "edge")
        hi = [slice(None)] * domain.ndim
        lo = [slice(None)] * domain.ndim
        hi[d], lo[d] = slice(2, None), slice(None, -2)
        out.append((padded[tuple(hi)] - padded[tuple(lo)]) / (2 * domain.dx))
    return out


def _confinement(velocity, epsilon, *, domain):
    """``ε h (N × ω)`` on the faces, with ``N = ∇|ω| / |∇|ω||``."""
    omega = vorticity(velocity, domain=domain)
    tiny = 1e-12
    if domain.ndim == 2:
        magnitude = fnp.sqrt(omega * omega + tiny)
    else:
        magnitude = fnp.sqrt(sum(w * w for w in omega) + tiny)
    eta = _central_gradient(magnitude, domain)
    norm = fnp.sqrt(sum(e * e for e in eta) + tiny)
    n = [e / norm for e in eta]
    scale = epsilon * domain.dx
    if domain.ndim == 2:
        centre_force = (scale * n[1] * omega, -scale * n[0] * omega)
    else:
        wx, wy, wz = omega
        centre_force = (scale * (n[1] * wz - n[2] * wy), scale * (n[2] * wx - n[0] * wz),
                        scale * (n[0] * wy - n[1] * wx))
    return tuple(center_to_face(f, domain=domain, axis=d) for d, f in enumerate(centre_force))


vorticity_confinement = recomputing_primitive(_confinement, "vorticity_confinement", register=True)


def apply_force(velocity, force, dt):
    """``u + Δt f`` componentwise."""
    return tuple(u + dt * f for u, f in zip(velocity, force))
