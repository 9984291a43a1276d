"""The variable-coefficient cell-centred Poisson operator of the pressure solve:

``(L p)_c = (1/h²) Σ_d [w_d[c+½e_d](p[c+e_d] − p[c]) − w_d[c−½e_d](p[c] − p[c−e_d])]``

with face weights ``w`` (0 closed, 1 open, 2 open Dirichlet boundary face, outside value 0).
``L`` is symmetric negative semi-definite. Its kernels (``L x``, damped-Jacobi sweeps) have
an array-API reference and a fused implementation (:mod:`.fused_poisson`), chosen by
:mod:`.dispatch`. The solvers are in :mod:`.linear_solvers` and :mod:`.multigrid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as _np

from fluidgrad.backend import xp_of
from fluidgrad.errors import InputError

from . import fused_poisson, gpu
from .dispatch import Kernel


@dataclass(frozen=True)
class SolveInfo:
    """How a solve ended: iterations done, max-norm residual on fluid cells, success, and
    ``reason`` for a failure: ``"diverged"``, ``"stalled"`` (see :class:`Watch`) or ``""``."""
    iterations: int
    residual: float
    converged: bool
    reason: str = ""


DIVERGENCE_FACTOR = 1e8   # a residual this many times the initial one: diverged
STALL_ITERATIONS = 1000   # iterations without halving the residual: stalled


class Watch:
    """Ends a failing iterative solve early instead of at ``max_iterations``:
    ``check(it, res)`` says ``"diverged"`` once ``res`` is not finite or exceeds
    ``DIVERGENCE_FACTOR`` × the initial residual, ``"stalled"`` once ``STALL_ITERATIONS``
    iterations have not halved it (round-off stagnation, e.g. on a blown-up field)."""

    def __init__(self, initial):
        self.initial, self.anchor, self.anchor_it = initial, initial, 0

    def check(self, it, res):
        if not math.isfinite(res) or res > DIVERGENCE_FACTOR * self.initial:
            return "diverged"
        if res <= 0.5 * self.anchor:
            self.anchor, self.anchor_it = res, it
        elif it - self.anchor_it >= STALL_ITERATIONS:
            return "stalled"
        return ""


def _along(axis: int, ndim: int, sl) -> tuple:
    """An index tuple taking ``sl`` along ``axis`` of the last ``ndim`` axes (batch dims ok)."""
    return (Ellipsis,) + (slice(None),) * axis + (sl,) + (slice(None),) * (ndim - 1 - axis)


class PoissonOperator:
    """The cell-centred operator L above, on a grid of ``shape`` and spacing ``h``.

    ``conductances[d]`` is face-shaped along axis ``d`` (``n_d`` faces if the axis is periodic,
    ``n_d + 1`` if not; face ``k`` lies between cells ``k−1`` and ``k``). Faces touching solid
    cells (``fluid`` False) are closed here whatever their given weight.
    """

    def __init__(self, conductances, h, fluid=None):
        xp = xp_of(*conductances)
        conductances = tuple(xp.asarray(w) for w in conductances)
        self.ndim = ndim = len(conductances)
        if ndim < 2:
            raise InputError("PoissonOperator needs 2 or 3 axes")
        if fluid is not None:
            fluid = xp.asarray(fluid, dtype=bool)
            shape = tuple(fluid.shape)
        else:
            shape = tuple(conductances[(d + 1) % ndim].shape[d] for d in range(ndim))
        self.shape, self.h = shape, float(h)
        self.size = math.prod(shape)
        periodic = []
        for d, w in enumerate(conductances):
            expect = list(shape)
            if tuple(w.shape) == tuple(expect):
                periodic.append(True)
                continue
            expect[d] += 1
            if tuple(w.shape) != tuple(expect):
                raise InputError(f"conductances[{d}] has shape {tuple(w.shape)}; expected "
                                 f"{tuple(shape)} (periodic) or {tuple(expect)}")
            periodic.append(False)
        self.periodic = tuple(periodic)
        dtype = conductances[0].dtype
        if dtype.kind != "f":
            dtype = xp.float64
        self.all_fluid = fluid is None or bool(xp.all(fluid))
        self.fluid = xp.ones(shape, dtype=bool) if fluid is None else fluid
        self.conductances = tuple(self._close_solid_faces(w.astype(dtype), d)
                                  for d, w in enumerate(conductances))
        self.singular = not any(
            bool(xp.any(w[_along(d, ndim, 0)] > 0)) or bool(xp.any(w[_along(d, ndim, -1)] > 0))
            for d, w in enumerate(self.conductances) if not self.periodic[d])
        self.n_fluid = int(xp.sum(self.fluid))
        self._xp = xp
        self._coefficients = {}   # dtype -> (diagonal, [per-axis off-diagonal weights])
        self._aux = {}            # per-dtype caches (inverse diagonal, masks, dense inverse, ...)
        self._coarse = None
        self._hierarchy = None

    def _close_solid_faces(self, w, d):
        """``w`` with every face next to a solid cell set to 0."""
        if self.all_fluid:
            return w
        xp, f = xp_of(w), self.fluid
        if self.periodic[d]:
            open_ = f & xp.roll(f, 1, axis=d)
        else:
            pad_shape = list(self.shape)
            pad_shape[d] = 1
            pad = xp.ones(tuple(pad_shape), dtype=bool)
            open_ = xp.concatenate([pad, f], axis=d) & xp.concatenate([f, pad], axis=d)
        return xp.where(open_, w, xp.zeros_like(w))

    # ----------------------------------------------------------------- coefficients
    def _coef(self, dtype):
        """(diag(L), per-axis off-diagonal face weights / h²) in ``dtype``, cached."""
        key = _np.dtype(dtype).str
        if key not in self._coefficients:
            xp, s = self._xp, 1.0 / (self.h * self.h)
            diag = xp.zeros(self.shape, dtype=dtype)
            offs = []
            for d, w in enumerate(self.conductances):
                w = w.astype(dtype) * s
                if self.periodic[d]:
                    lo, hi = w, xp.roll(w, -1, axis=d)
                    offs.append((lo, hi))
                else:
                    lo = w[_along(d, self.ndim, slice(0, -1))]
                    hi = w[_along(d, self.ndim, slice(1, None))]
                    offs.append(w[_along(d, self.ndim, slice(1, -1))])
                diag = diag - lo - hi
            self._coefficients[key] = (diag, offs)
        return self._coefficients[key]

    def _cached(self, name, dtype, make):
        """A per-dtype cached derived array."""
        key = (name, _np.dtype(dtype).str)
        if key not in self._aux:
            self._aux[key] = make(dtype)
        return self._aux[key]

    def _inv_diag(self, dtype):
        """1 / diag(L) where the diagonal is nonzero, 0 elsewhere (solid or isolated cells)."""
        def make(dtype):
            xp, diag = self._xp, self._coef(dtype)[0]
            nonzero = diag != 0
            return xp.where(nonzero, 1 / xp.where(nonzero, diag, xp.ones_like(diag)),
                            xp.zeros_like(diag))
        return self._cached("inv_diag", dtype, make)

    def _fluid_mask(self, dtype):
        """The fluid mask as 1.0 / 0.0 in ``dtype``."""
        return self._cached("fluid", dtype, lambda dt: self.fluid.astype(dt))

    # ----------------------------------------------------------------- public operations
    def apply(self, p):
        """``L p`` (zero on solid cells); ``p`` may carry leading batch axes."""
        return poisson_apply(self, p)

    def _apply_reference(self, p):
        xp, nd = xp_of(p), self.ndim
        diag, offs = self._coef(p.dtype)
        out = diag * p
        for d, off in enumerate(offs):
            if self.periodic[d]:
                lo, hi = off
                out = out + lo * xp.roll(p, 1, axis=d - nd) + hi * xp.roll(p, -1, axis=d - nd)
            else:
                head, tail = _along(d, nd, slice(0, -1)), _along(d, nd, slice(1, None))
                out[head] += off * p[tail]
                out[tail] += off * p[head]
        return out

    def diagonal(self):
        """``diag(L)`` (≤ 0; 0 on solid cells), in the conductances' dtype, cached."""
        return self._coef(self.conductances[0].dtype)[0]

    def remove_mean(self, x):
        """``x − mean_fluid(x)`` on fluid cells, 0 on solid cells; ``x`` itself if not singular."""
        if not self.singular:
            return x
        xp, f = xp_of(x), self._fluid_mask(x.dtype)
        mean = xp.sum(x * f) / self.n_fluid
        return (x - mean) * f

    def coarsen(self):
        """The operator on the grid coarsened 2× (H = 2h, averaged face weights), or None."""
        if any(n % 2 or n < 4 for n in self.shape):
            return None
        if self._coarse is None:
            xp, nd = self._xp, self.ndim
            coarse = []
            for d, w in enumerate(self.conductances):
                w = w[_along(d, nd, slice(0, None, 2))]       # fine faces on coarse faces
                for e in range(nd):
                    if e != d:                                 # average the 2 fine faces
                        shp = list(w.shape)
                        w = xp.mean(xp.reshape(w, tuple(shp[:e] + [shp[e] // 2, 2] + shp[e + 1:])),
                                    axis=e + 1)
                coarse.append(w)
            fluid = None
            if not self.all_fluid:
                f = self.fluid
                for e in range(nd):
                    shp = list(f.shape)
                    f = xp.any(xp.reshape(f, tuple(shp[:e] + [shp[e] // 2, 2] + shp[e + 1:])),
                               axis=e + 1)
                fluid = f
            self._coarse = PoissonOperator(coarse, 2 * self.h, fluid)
        return self._coarse


# --------------------------------------------------------------------------- helpers
#: Iterations between the convergence checks of the iterative solvers (CG, multigrid V-cycles),
#: by the name of the arrays' module. A check reads the residual's max-norm on the host — on
#: a GPU a synchronisation that drains the queue of launches — so on cupy the iterations
#: between checks queue without waiting (a solve may run up to k − 1 iterations past the
#: tolerance, which only makes it more accurate); numpy checks every iteration (nothing to
#: wait for, and the fewest iterations). Change it here, or pass ``check_every`` to
#: :func:`~.linear_solvers.solve_cg` / :func:`~.multigrid.solve_multigrid`.
CHECK_EVERY = {"numpy": 1, "cupy": 8}


def check_interval(x) -> int:
    """:data:`CHECK_EVERY` for the array ``x``'s module (1 for a module not listed)."""
    return CHECK_EVERY.get(xp_of(x).__name__, 1)


def _max_abs(x) -> float:
    """max |x| as a Python float (a host synchronisation on GPUs)."""
    return float(xp_of(x).max(xp_of(x).abs(x))) if x.size else 0.0


def _prepare_rhs(op, b):
    """``b`` with solid cells zeroed and, if ``op`` is singular, the fluid mean removed."""
    if op.singular:
        return op.remove_mean(b)
    return b if op.all_fluid else b * op._fluid_mask(b.dtype)


def _initial_guess(op, b, x0):
    """Zero, or ``x0`` restricted to fluid cells (mean-free if singular), in ``b``'s dtype."""
    xp = xp_of(b)
    if x0 is None:
        return xp.zeros_like(b)
    x = xp.asarray(x0).astype(b.dtype)
    if op.singular:
        return op.remove_mean(x)
    return x if op.all_fluid else x * op._fluid_mask(b.dtype)


def _threshold(b, tolerance, relative) -> float:
    """The max-norm residual at which a solve stops."""
    return tolerance * _max_abs(b) if relative else tolerance


def _jacobi_sweeps_reference(op, b, x, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)``; ``x = None`` means from zero."""
    inv_d = op._inv_diag(b.dtype)
    for _ in range(sweeps):
        x = omega * inv_d * b if x is None else x + omega * inv_d * (b - op.apply(x))
    return x if x is not None else xp_of(b).zeros_like(b)




poisson_apply = Kernel("poisson.apply", PoissonOperator._apply_reference)
poisson_apply.implementation("gpu", gpu.supports_poisson)(gpu.poisson_apply)
poisson_apply.implementation("fused", fused_poisson.supports)(fused_poisson.apply)

jacobi_sweeps = Kernel("poisson.jacobi", _jacobi_sweeps_reference)
jacobi_sweeps.implementation("gpu", gpu.supports_jacobi)(gpu.jacobi_sweeps)


@jacobi_sweeps.implementation("fused", lambda op, b, x, sweeps, omega: sweeps > 0
                              and fused_poisson.supports(op, b, ndims=(2,)))
def _jacobi_sweeps_fused(op, b, x, sweeps, omega):
    """All sweeps in one compiled loop (the same arithmetic per cell)."""
    return fused_poisson.jacobi(op, b, x, sweeps - (x is None), omega)
