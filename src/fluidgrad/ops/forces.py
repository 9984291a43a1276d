"""Body forces on the MAC velocity: buoyancy, vorticity confinement, control forces.

* buoyancy: ``f_d = b_d ρ`` with the density averaged onto the faces of axis d;
  linear in ρ and in the buoyancy vector ``b`` (both differentiable);
* vorticity confinement (Fedkiw et al. 2001): ``f = ε h (N × ω)``,
  ``N = ∇|ω| / |∇|ω||`` - nonlinear; one primitive with a hand-written VJP (its JVP
  pushes tangents through the composition);
* a control force is added as ``u + Δt f``.
"""

from __future__ import annotations

import functools

from .. import numpy as fnp
from ..ad.core import Primitive, zeros_like_value
from ..ad.transforms import jvp
from ..ad.tree import tree_map
from ..backend import xp_of
from . import stencils
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


def _along(d, ndim, sl):
    index = [slice(None)] * ndim
    index[d] = sl
    return tuple(index)


def _central_gradient_transpose(gs, domain):
    """Adjoint of :func:`_central_gradient`: the cell cotangent of the per-axis ``gs``."""
    nd, out = domain.ndim, None
    for d, g in enumerate(gs):
        g = g / (2 * domain.dx)
        xp = xp_of(g)
        shape = list(g.shape)
        shape[d] += 2
        padded = xp.zeros(tuple(shape), dtype=g.dtype)
        padded[_along(d, nd, slice(2, None))] += g
        padded[_along(d, nd, slice(None, -2))] -= g
        inner = padded[_along(d, nd, slice(1, -1))]
        first, last = padded[_along(d, nd, slice(0, 1))], padded[_along(d, nd, slice(-1, None))]
        if domain.periodic(d):  # the ghost below is the last cell, the one above the first
            first, last = last, first
        inner[_along(d, nd, slice(0, 1))] += first
        inner[_along(d, nd, slice(-1, None))] += last
        if out is None:
            out = inner
        else:
            out += inner
    return out


_TINY = 1e-12


def _confinement_parts(velocity, domain):
    """``(ω, |ω|, η = ∇|ω|, |η|, N = η / |η|)`` (ω a tuple of 1 or 3 fields)."""
    omega = vorticity(velocity, domain=domain)
    omega = (omega,) if domain.ndim == 2 else omega
    magnitude = fnp.sqrt(sum(w * w for w in omega) + _TINY)
    eta = _central_gradient(magnitude, domain)
    norm = fnp.sqrt(sum(e * e for e in eta) + _TINY)
    return omega, magnitude, eta, norm, [e / norm for e in eta]


def _cross(n, omega):
    """``N × ω`` at cell centres (in 2-D ω is normal to the plane)."""
    if len(n) == 2:
        return n[1] * omega[0], -(n[0] * omega[0])
    (nx, ny, nz), (wx, wy, wz) = n, omega
    return ny * wz - nz * wy, nz * wx - nx * wz, nx * wy - ny * wx


def _confinement(velocity, epsilon, *, domain):
    """``ε h (N × ω)`` on the faces, with ``N = ∇|ω| / |∇|ω||``."""
    omega, _, _, _, n = _confinement_parts(velocity, domain)
    scale = epsilon * domain.dx
    return tuple(center_to_face(scale * f, domain=domain, axis=d) for d, f in enumerate(_cross(n, omega)))


vorticity_confinement = Primitive(_confinement, "vorticity_confinement", register=True)


@vorticity_confinement.defvjp_all(needs=(0, 1))
def _confinement_vjp(g, ans, velocity, epsilon, *, domain):
    """By hand, backwards through the forward's steps (recomputed without a tape): the
    face cotangents to the centres, through ``N × ω``, the normalization ``η/|η|``, the
    central gradient and ``|ω|``, to ω and the velocity. Each step overwrites the arrays
    it no longer needs (the VJP of a 2-D step keeps ~8 cell fields alive, not ~20: it
    sets the gradient's peak memory)."""
    omega, magnitude, eta, norm, n = _confinement_parts(velocity, domain)
    del eta
    g_c = [stencils._center_to_face_transpose(gd, None, domain=domain, axis=d) for d, gd in enumerate(g)]
    xp, scale = xp_of(g_c[0]), epsilon * domain.dx
    if domain.ndim == 2:  # N × ω = (N_y ω, -N_x ω): g_ω = ε h (N_y g_x - N_x g_y), g_N = ε h ω (-g_y, g_x)
        w = n[1] * g_c[0]
        w -= n[0] * g_c[1]
        adj_epsilon = domain.dx * xp.sum(omega[0] * w)
        w *= scale
        g_omega = [w]
        scaled = scale * omega[0]
        g_c[0] *= scaled
        g_c[1] *= scaled
        g_n = [xp.negative(g_c[1], out=g_c[1]), g_c[0]]
        del scaled
    else:  # d(N × ω) = dN × ω + N × dω: g_N = ω × g, g_ω = g × N
        adj_epsilon = domain.dx * sum(xp.sum(gc * f) for gc, f in zip(g_c, _cross(n, omega)))
        g_n = [scale * f for f in _cross(omega, g_c)]
        g_omega = [scale * f for f in _cross(g_c, n)]
    del g_c
    radial = g_n[0] * n[0]
    for gn, nn in zip(g_n[1:], n[1:]):
        radial += gn * nn
    for gn, nn in zip(g_n, n):  # g_η = (g_N - N (g_N · N)) / |η|, in place of g_N
        gn -= nn * radial
        gn /= norm
    del radial, n, norm
    g_magnitude = _central_gradient_transpose(g_n, domain)
    del g_n
    for gw, w in zip(g_omega, omega):  # g_ω += g_|ω| ω / |ω|
        term = g_magnitude * w
        term /= magnitude
        gw += term
        del term
    del g_magnitude, magnitude, omega
    adj_u = stencils._vorticity_transpose(g_omega[0] if domain.ndim == 2 else tuple(g_omega), velocity,
                                          domain=domain)
    return adj_u, adj_epsilon


@vorticity_confinement.defjvp_all
def _confinement_jvp(dots, ans, velocity, epsilon, *, domain):
    tangents = [tree_map(zeros_like_value, a) if d is None else d for d, a in zip(dots, (velocity, epsilon))]
    return jvp(functools.partial(_confinement, domain=domain), (velocity, epsilon), tangents)[1]


def apply_force(velocity, force, dt):
    """``u + Δt f`` componentwise."""
    return tuple(u + dt * f for u, f in zip(velocity, force))
