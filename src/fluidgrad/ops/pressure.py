"""Pressure projection: make the velocity divergence-free, differentiated implicitly.

With ``M`` the open-face mask, ``c`` the prescribed velocity on closed faces (walls,
inflow, obstacles), ``D`` the divergence and ``G`` the pressure gradient::

    u_b = M u + c,   p = L⁺ D u_b  (L = D M G),   u' = u_b - M G p

``L`` is symmetric, so the VJP is one more solve of the same kind (never unrolled)::

    adj_rhs = L⁺ (adj_p - Gᵀ M adj_u'),   adj_u = M (adj_u' + Dᵀ adj_rhs)

On the open faces (homogeneous boundary values) the projection is symmetric and
idempotent. Solvers: ``fft`` (periodic box), ``dct`` (any box without obstacles, by
fast transforms), ``cg`` (preconditioned conjugate gradients), ``multigrid`` (V-cycles),
``jacobi`` (a fixed number of sweeps: a fixed symmetric map, fast and approximate),
``auto`` (the fastest exact one).
"""

from __future__ import annotations

import dataclasses

import numpy as onp

from ..ad.core import Primitive
from ..backend import xp_of
from ..errors import InputError, SolveError, UnknownNameError
from . import fused_projection, gpu, linear_solvers, spectral, stencils
from .dispatch import Kernel

SOLVERS = ("auto", "fft", "dct", "cg", "multigrid", "jacobi")


@dataclasses.dataclass(frozen=True)
class PressureSolve:
    """Settings of the pressure solve and of its adjoint (``adjoint_tolerance``).

    ``tolerance`` bounds ``max |∇·u|`` after projection (absolute, but never below
    64 ε max|∇·u₀| of the field's float type; iterative solves run in float64); the adjoint solve stops
    at ``adjoint_tolerance`` relative to its right-hand side (default: ``tolerance``; never
    below 64 ε).
    """

    solver: str = "auto"
    tolerance: float = 1e-6
    adjoint_tolerance: float | None = None
    max_iterations: int = 10_000
    iterations: int = 50  # jacobi sweeps
    preconditioner: str = "multigrid"

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise UnknownNameError("solver", self.solver, SOLVERS, key="pressure.solver")
        if not self.tolerance > 0:
            raise InputError(f"must be positive (got {self.tolerance})", key="pressure.tolerance")

    def resolved(self, domain) -> str:
        """The concrete solver for ``domain`` ('auto' chooses; impossible choices raise)."""
        fast_ok = not domain.has_obstacles
        if self.solver == "auto":
            return "dct" if fast_ok else "cg"
        if self.solver in ("fft", "dct") and not fast_ok:
            raise InputError(f"{self.solver!r} cannot handle obstacles; use cg, multigrid or auto",
                             key="pressure.solver")
        if self.solver == "fft" and not all(domain.boundaries.periodic_axes):
            raise InputError("'fft' needs a periodic box; use dct or auto", key="pressure.solver")
        return self.solver


def poisson_operator(domain, like):
    """The pressure Laplacian ``L = D M G`` of ``domain`` as a PoissonOperator (cached)."""
    xp = xp_of(like)
    key = ("poisson-operator", xp.__name__, like.dtype)
    op = domain._cache.get(key)
    if op is None:
        conductances = tuple(domain.array("pressure_conductances", like, d) for d in range(domain.ndim))
        op = linear_solvers.PoissonOperator(conductances, domain.dx, xp.asarray(domain.fluid))
        domain._cache[key] = op
    return op


def solve_pressure(domain, b, settings: PressureSolve, adjoint=False):
    """``p = L⁺ b`` with the solver of ``settings`` (the adjoint tolerance if ``adjoint``)."""
    solver = settings.resolved(domain)
    if solver in ("fft", "dct"):
        return spectral.solve(domain, b)
    if solver == "jacobi":
        return linear_solvers.solve_jacobi(poisson_operator(domain, b), b, settings.iterations)[0]
    # Krylov and multigrid iterations stagnate near 10-30 ε max|b| in float32 (worse on
    # finer grids): iterate in float64 and hand back the field's own dtype
    wide = b.astype(onp.float64, copy=False)
    op = poisson_operator(domain, wide)
    eps = float(onp.finfo(b.dtype).eps)
    which = "adjoint pressure" if adjoint else "pressure"
    b_max = float(xp_of(b).abs(b).max())
    if not onp.isfinite(b_max):
        raise SolveError(f"{which} solve ({solver}) diverged: its right-hand side is not finite")
    if adjoint:
        tol = settings.adjoint_tolerance if settings.adjoint_tolerance is not None else settings.tolerance
        kwargs = dict(tolerance=max(tol, 64 * eps), relative=True)
    else:
        # no float type resolves a divergence below its own precision times |b|
        floor = 64 * eps * b_max
        kwargs = dict(tolerance=max(settings.tolerance, floor), relative=False)
    if solver == "cg":
        p, info = linear_solvers.solve_cg(op, wide, max_iterations=settings.max_iterations,
                                          preconditioner=settings.preconditioner, **kwargs)
    else:
        p, info = linear_solvers.solve_multigrid(op, wide, max_iterations=settings.max_iterations, **kwargs)
    if not info.converged:
        how = {"diverged": "diverged", "stalled": f"stalled ({linear_solvers.STALL_ITERATIONS} iterations "
               f"without halving the residual; right-hand side max {b_max:.3g})"}
        raise SolveError(f"{which} solve ({solver}) {how.get(info.reason, 'did not converge')}: residual "
                         f"{info.residual:.3g} after {info.iterations} iterations")
    return p.astype(b.dtype, copy=False)


def _open_mask(domain, like):
    return tuple(domain.array("open_faces", like[d], d) for d in range(domain.ndim))


class _Fused:
    """The fused implementation of the projection: the 2-D stencil passes around the solve
    as compiled kernels (:mod:`.fused_projection`):
    one pass builds the right-hand side, one applies the gradient. With the Jacobi
    solver they also do what :func:`~.linear_solvers.solve_jacobi` does around its
    sweeps (fluid mask, mean removal)."""

    def __init__(self, domain, settings, like):
        self.solver = settings.resolved(domain)
        self.jacobi = self.solver == "jacobi"
        self.op = op = poisson_operator(domain, like)
        self.mask = _open_mask(domain, (like, like))
        self.fixed = tuple(domain.array("fixed_velocity", like, d) for d in range(2))
        self.fluid = (op._fluid_mask(like.dtype), op.singular, op.all_fluid, op.n_fluid)
        self.rules = onp.array([stencils.pressure_rule(domain, d, side)[0]
                                for d in range(2) for side in range(2)])
        self.plain = bool(all(m.all() for m in self.mask) and not any(c.any() for c in self.fixed))

    @staticmethod
    def supports(domain, *arrays) -> bool:
        return (domain.ndim == 2 and all(type(a) is onp.ndarray for a in arrays)
                and arrays[0].dtype == arrays[1].dtype)

    def solve(self, domain, b, settings, adjoint=False):
        if self.jacobi:
            return linear_solvers.jacobi_sweeps(self.op, b, settings.iterations)
        return solve_pressure(domain, b, settings, adjoint)

    def _solve_prepared(self, domain, b, settings, adjoint=False):
        """The solve between the two passes; with Jacobi, what solve_jacobi does around its
        sweeps (:func:`~.fused_projection.prepare`, compiled only for Jacobi runs)."""
        if not self.jacobi:
            return self.solve(domain, b, settings, adjoint)
        fl, singular, _, n_fluid = self.fluid
        fused_projection.prepare(b, *self.fluid)
        p = self.solve(domain, b, settings, adjoint)
        if singular:
            fused_projection.prepare(p, fl, True, False, n_fluid)
        return p

    def project(self, velocity, domain, settings, fixed=None):
        plain = self.plain and fixed is None
        fixed = self.fixed if fixed is None else tuple(onp.ascontiguousarray(c) for c in fixed)
        ub, vb, b = fused_projection.projection_rhs(*velocity, *self.mask, *fixed, domain.dx, plain)
        p = self._solve_prepared(domain, b, settings)
        u, v, p = fused_projection.projection_finish(p, ub, vb, *self.mask, domain.dx, self.rules, plain)
        return (u, v), p

    def vjp(self, g_u, g_p, domain, settings):
        g_u = tuple(onp.ascontiguousarray(g) for g in g_u)
        rhs = fused_projection.projection_vjp_rhs(*g_u, onp.ascontiguousarray(g_p), *self.mask, domain.dx,
                                               self.rules, self.plain)
        r = self._solve_prepared(domain, rhs, settings, adjoint=True)
        return fused_projection.projection_vjp_finish(r, *g_u, *self.mask, domain.dx, self.plain)

    @classmethod
    def of(cls, domain, settings, like):
        key = ("fused-projection", settings, like.dtype)
        out = domain._cache.get(key)
        if out is None:
            out = domain._cache[key] = cls(domain, settings, like)
        return out


def _projection(velocity, domain, settings, homogeneous=False, fixed=None):
    """``(u', p)`` from the formulas above; ``homogeneous`` drops the prescribed values,
    ``fixed`` replaces them."""
    mask = _open_mask(domain, velocity)
    if homogeneous and fixed is None:
        u_b = tuple(m * u for m, u in zip(mask, velocity))
    else:
        if fixed is None:
            fixed = tuple(domain.array("fixed_velocity", velocity[d], d) for d in range(domain.ndim))
        u_b = tuple(m * u + c for m, u, c in zip(mask, velocity, fixed))
    p = solve_pressure(domain, stencils._divergence(u_b, domain=domain), settings)
    grad = stencils._gradient(p, domain=domain)
    return tuple(u - m * g for u, m, g in zip(u_b, mask, grad)), p


def _project_reference(velocity, *, domain, solve=PressureSolve()):
    """The divergence-free part of ``velocity`` and the pressure ``p`` that removed the rest."""
    return _projection(velocity, domain, solve)


def _adjoint_faces(g, domain, solve):
    """``(M, w)``: the open-face masks and ``w = g_u + Dᵀ L⁺ (g_p - Gᵀ M g_u)``, the adjoint of
    ``u_b`` (one adjoint solve)."""
    g_u, g_p = g
    mask = _open_mask(domain, g_u)
    masked = tuple(m * gu for m, gu in zip(mask, g_u))
    rhs = g_p - stencils._gradient_transpose(masked, None, domain=domain)
    adj_rhs = solve_pressure(domain, rhs, solve, adjoint=True)
    back = stencils._divergence_transpose(adj_rhs, None, domain=domain)
    return mask, tuple(gu + b for gu, b in zip(g_u, back))


def _project_vjp_reference(g, ans, velocity, *, domain, solve=PressureSolve()):
    """``adj_u = M (g_u + Dᵀ L⁺ (g_p - Gᵀ M g_u))``: one adjoint solve."""
    mask, w = _adjoint_faces(g, domain, solve)
    return (tuple(m * a for m, a in zip(mask, w)),)


def _fused_supports(velocity, *, domain, solve=PressureSolve()):
    return _Fused.supports(domain, *velocity)


def _fused_project(velocity, *, domain, solve=PressureSolve()):
    return _Fused.of(domain, solve, velocity[0]).project(velocity, domain, solve)


def _fused_vjp_supports(g, ans, velocity, *, domain, solve=PressureSolve()):
    return _Fused.supports(domain, *g[0], g[1])


def _fused_project_vjp(g, ans, velocity, *, domain, solve=PressureSolve()):
    return (_Fused.of(domain, solve, g[1]).vjp(*g, domain, solve),)


project_forward = Kernel("project", _project_reference)
project_forward.implementation("fused", _fused_supports)(_fused_project)
project_vjp = Kernel("project.vjp", _project_vjp_reference)
project_vjp.implementation("fused", _fused_vjp_supports)(_fused_project_vjp)
project_forward.implementation("gpu", gpu.supports_projection)(gpu.project)
project_vjp.implementation("gpu", gpu.supports_projection_vjp)(gpu.project_vjp)

project = Primitive(project_forward, "project", register=True)
project.defvjp_all(needs=())(project_vjp)


def _project_jvp_reference(dots, ans, velocity, *, domain, solve=PressureSolve()):
    """Linear in the open faces: the homogeneous projection of the tangent."""
    return _projection(dots[0], domain, solve, homogeneous=True)


project_jvp = Kernel("project.jvp", _project_jvp_reference)
project_jvp.implementation("gpu", gpu.supports_projection_jvp)(gpu.project_jvp)
project.defjvp_all(project_jvp)


# -- with the closed faces' values as an input (an inflow profile) --------------------


def _project_fixed_reference(velocity, fixed, *, domain, solve=PressureSolve()):
    """:func:`project` with the closed faces' values ``c = fixed`` (face arrays) given."""
    return _projection(velocity, domain, solve, fixed=fixed)


def _fused_fixed_supports(velocity, fixed, *, domain, solve=PressureSolve()):
    return _Fused.supports(domain, *velocity, *fixed)


def _fused_project_fixed(velocity, fixed, *, domain, solve=PressureSolve()):
    return _Fused.of(domain, solve, velocity[0]).project(velocity, domain, solve, fixed)


project_fixed_forward = Kernel("project_fixed", _project_fixed_reference)
project_fixed_forward.implementation("fused", _fused_fixed_supports)(_fused_project_fixed)
project_fixed = Primitive(project_fixed_forward, "project_fixed", register=True)


@project_fixed.defvjp_all(needs=())
def _project_fixed_vjp(g, ans, velocity, fixed, *, domain, solve=PressureSolve()):
    """``adj_u = M w``, ``adj_c = w`` (``u_b = M u + c``; ``w`` as in :func:`_adjoint_faces`)."""
    mask, w = _adjoint_faces(g, domain, solve)
    return tuple(m * a for m, a in zip(mask, w)), w


@project_fixed.defjvp_all
def _project_fixed_jvp(dots, ans, velocity, fixed, *, domain, solve=PressureSolve()):
    """Affine in ``(u, c)``: the projection of the tangents, ``dot_c`` on the closed faces."""
    dot_u, dot_c = dots
    zeros = lambda like: tuple(0 * x for x in like)  # noqa: E731
    dot_u = zeros(ans[0]) if dot_u is None else dot_u
    return _projection(dot_u, domain, solve, homogeneous=True, fixed=dot_c)


def make_incompressible(velocity, *, domain, solve=PressureSolve()):
    """The projected velocity alone (drop the pressure)."""
    return project(velocity, domain=domain, solve=solve)[0]
