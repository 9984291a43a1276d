"""Iterative solvers for the variable-coefficient cell-centred Poisson operator
(:mod:`.poisson`).

``(L p)_c = (1/h²) Σ_d [w_d[c+½e_d](p[c+e_d] − p[c]) − w_d[c−½e_d](p[c] − p[c−e_d])]``

with face weights ``w`` (0 closed, 1 open, 2 open Dirichlet boundary face, outside value 0).
``L`` is symmetric negative semi-definite; every solver here is written against the array
API (``xp = xp_of(b)``) so it runs unchanged on numpy and cupy.

Solvers: preconditioned conjugate gradients (:func:`solve_cg`, preconditioned by damped
Jacobi or by one symmetric geometric-multigrid V-cycle), multigrid V-cycles as a solver
(:func:`solve_multigrid`) and a fixed number of damped-Jacobi sweeps (:func:`solve_jacobi`).
:func:`v_cycle` and :func:`solve_jacobi` are fixed *symmetric* linear maps of ``b``, so they
can be transposed in reverse-mode AD by applying them again.

For a singular operator (no open Dirichlet boundary face) every solver returns the mean-zero
(over fluid cells) solution of ``L p = b − mean(b)``: the pseudo-inverse, a symmetric map.
"""

from __future__ import annotations

import numpy as _np

from fluidgrad.backend import xp_of
from fluidgrad.errors import UnknownNameError

from .multigrid import _hierarchy, solve_multigrid, v_cycle
from .poisson import (CHECK_EVERY, STALL_ITERATIONS, PoissonOperator, SolveInfo, Watch, _initial_guess, _max_abs,
                      _prepare_rhs, _threshold, check_interval)
from .poisson import jacobi_sweeps as poisson_jacobi

__all__ = ["CHECK_EVERY", "STALL_ITERATIONS", "PoissonOperator", "SolveInfo", "Watch", "solve_cg", "solve_jacobi",
           "solve_multigrid", "v_cycle"]


def jacobi_sweeps(op, b, iterations, omega=2 / 3):
    """The sweeps of :func:`solve_jacobi` alone, for a right-hand side already prepared."""
    return poisson_jacobi(op, b, None, int(iterations), omega)


def solve_jacobi(op, b, iterations, omega=2 / 3, tolerance=1e-6):
    """``iterations`` damped-Jacobi sweeps from 0: a fixed symmetric linear map ``b ↦ p ≈ L⁺b``.

    ``tolerance`` only sets ``SolveInfo.converged`` (max|b − L p| ≤ tolerance).
    """
    b = _prepare_rhs(op, b)
    p = op.remove_mean(poisson_jacobi(op, b, None, int(iterations), omega))
    res = _max_abs(b - op.apply(p))
    return p, SolveInfo(int(iterations), res, res <= tolerance)


# --------------------------------------------------------------------------- conjugate gradients
def _safe_div(num, den):
    """``num / den`` for 0-d arrays, 0 where ``den`` is 0 (no host synchronisation)."""
    xp = xp_of(den)
    zero = den == 0
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(den), den))


def _preconditioner(op, kind, dtype):
    """``r ↦ z ≈ L⁻¹ r`` for the PCG below (negative definite, like L⁻¹)."""
    if kind is None:
        return lambda r: -r
    if kind == "jacobi":
        inv_d = op._inv_diag(dtype)
        return lambda r: op.remove_mean(inv_d * r)
    if kind == "multigrid":
        hierarchy = _hierarchy(op)
        return lambda r: v_cycle(op, r, hierarchy)
    raise UnknownNameError("preconditioner", kind, ("None", "jacobi", "multigrid"), key="pressure.preconditioner")


def solve_cg(op, b, tolerance=1e-6, max_iterations=10_000, preconditioner="multigrid", x0=None,
             relative=False, check_every=None):
    """Preconditioned CG on ``A p = −b`` (A = −L) until max|b − L p| ≤ tolerance.

    Every ``check_every`` iterations (default: :data:`~.poisson.CHECK_EVERY` for ``b``'s
    array module) the residual is compared with the threshold, a host synchronisation on
    GPUs; in between the step sizes stay 0-d device arrays (nothing waits for the device).
    When the recursive residual passes, the true one is checked. A diverging or stalled
    solve (:class:`~.poisson.Watch`) stops there, not converged.
    """
    check_every = check_interval(b) if check_every is None else int(check_every)
    with _np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught by the watch
        return _cg(op, b, tolerance, max_iterations, preconditioner, x0, relative, check_every)


def _cg(op, b, tolerance, max_iterations, preconditioner, x0, relative, check_every):
    xp = xp_of(b)
    b = _prepare_rhs(op, b)
    threshold = _threshold(b, tolerance, relative)
    precondition = _preconditioner(op, preconditioner, b.dtype)
    dot = lambda u, v: xp.vdot(u, v)   # noqa: E731
    x = _initial_guess(op, b, x0)
    r = b - op.apply(x) if x0 is not None else b
    res = _max_abs(r)
    it, watch = 0, Watch(res)
    reason, direction, rz = watch.check(0, res), None, None
    while res > threshold and it < max_iterations and not reason:
        z = precondition(r)
        rz_new = dot(r, z)
        direction = z if direction is None else z + _safe_div(rz_new, rz) * direction
        rz = rz_new
        ld = op.apply(direction)
        alpha = _safe_div(rz, dot(direction, ld))      # rᵀz and dᵀLd are both ≤ 0
        x = x + alpha * direction
        r = r - alpha * ld
        it += 1
        if it % check_every == 0 or it >= max_iterations:
            res = _max_abs(r)
            reason = watch.check(it, res)
            if res <= threshold:                        # confirm with the true residual
                r = b - op.apply(x)
                res = _max_abs(r)
                if res > threshold:
                    direction = None                    # restart from the true residual
    if reason:  # x is useless; the residual says how far it went
        return x, SolveInfo(it, res, False, reason)
    x = op.remove_mean(x)
    res = _max_abs(b - op.apply(x))
    return x, SolveInfo(it, res, res <= threshold)
