"""Iterative solvers for the variable-coefficient cell-centred Poisson operator.

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

import math
from dataclasses import dataclass

import numpy as _np

from fluidgrad.backend import xp_of

from . import fused, fused_poisson

__all__ = ["PoissonOperator", "SolveInfo", "solve_cg", "solve_jacobi", "solve_multigrid",
           "v_cycle"]

# Multigrid settings: coarsen while a level has more than MAX_COARSE_CELLS cells; the coarsest
# level is solved by a dense (pseudo-)inverse if it has at most MAX_DENSE_CELLS cells, else (sizes
# that stop halving early, e.g. 250×150 -> 125×75) by Chebyshev-accelerated Jacobi of a degree
# fixed per operator that reduces the error by about COARSE_REDUCTION.
MAX_COARSE_CELLS = 256
MAX_DENSE_CELLS = 2048
COARSE_REDUCTION = 1e-3
COARSE_MAX_DEGREE = 1000
SMOOTHER = "rbgs"                    # "rbgs" (red-black Gauss-Seidel) or "jacobi" (damped)
SMOOTHING_SWEEPS = 2                 # smoothing sweeps before and after the coarse correction
SMOOTHING_OMEGA = {2: 0.8, 3: 6 / 7}  # Jacobi damping per dimension (< 1 keeps the cycle SPD)


@dataclass(frozen=True)
class SolveInfo:
    """How a solve ended: iterations done, max-norm residual on fluid cells, and success."""
    iterations: int
    residual: float
    converged: bool


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
            raise ValueError("PoissonOperator needs 2 or 3 axes")
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
                raise ValueError(f"conductances[{d}] has shape {tuple(w.shape)}; expected "
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
        if _fused(self, p):
            return fused_poisson.apply(self, p)
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


def _fused(op, a, ndims=(2, 3)) -> bool:
    """Whether the compiled kernels apply: a numpy float array of the operator's shape (no
    batch axes), ``op.ndim`` in ``ndims``, numba on."""
    return (op.ndim in ndims and type(a) is _np.ndarray and a.ndim == op.ndim and a.dtype.kind == "f"
            and fused.available())


def _jacobi_sweeps(op, b, x, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)``; ``x = None`` means from zero."""
    inv_d = op._inv_diag(b.dtype)
    if sweeps > 0 and _fused(op, b, (2,)):  # all sweeps in one compiled loop (same arithmetic per cell)
        return fused_poisson.jacobi(op, b, x, sweeps - (x is None), omega)
    for _ in range(sweeps):
        x = omega * inv_d * b if x is None else x + omega * inv_d * (b - op.apply(x))
    return x if x is not None else xp_of(b).zeros_like(b)


def _smoothing_omega(op) -> float:
    return SMOOTHING_OMEGA.get(op.ndim, 0.8)


# --------------------------------------------------------------------------- jacobi
def jacobi_sweeps(op, b, iterations, omega=2 / 3):
    """The sweeps of :func:`solve_jacobi` alone, for a right-hand side already prepared."""
    return _jacobi_sweeps(op, b, None, int(iterations), omega)


def solve_jacobi(op, b, iterations, omega=2 / 3, tolerance=1e-6):
    """``iterations`` damped-Jacobi sweeps from 0: a fixed symmetric linear map ``b ↦ p ≈ L⁺b``.

    ``tolerance`` only sets ``SolveInfo.converged`` (max|b − L p| ≤ tolerance).
    """
    b = _prepare_rhs(op, b)
    p = op.remove_mean(_jacobi_sweeps(op, b, None, int(iterations), omega))
    res = _max_abs(b - op.apply(p))
    return p, SolveInfo(int(iterations), res, res <= tolerance)


# --------------------------------------------------------------------------- multigrid
def _hierarchy(op):
    """The cached list of coarser operators used by the V-cycle (possibly empty)."""
    if op._hierarchy is None:
        levels, cur = [], op
        while cur.size > MAX_COARSE_CELLS:
            cur = cur.coarsen()
            if cur is None:
                break
            levels.append(cur)
        op._hierarchy = levels
    return op._hierarchy


def _transfer_weights(coarse, dtype):
    """Per axis, the 1-D bilinear prolongation weights (a_lo, b_lo, a_hi, b_hi) of ``coarse``.

    Fine child 2I = a_lo·e[I] + b_lo·e[I−1] and child 2I+1 = a_hi·e[I] + b_hi·e[I+1]; a
    neighbour enters with weight ¼·min(w, 1) of the coarse face between them (walls and solid
    neighbours reflect: weight 1 on e[I]); a Dirichlet boundary face (w = 2) gives ½·e[I].
    Arrays are repeated 2× along the axes before ``d`` (already fine when axis d is done).
    """
    def make(dtype):
        xp, nd, out = coarse._xp, coarse.ndim, []
        for d, w in enumerate(coarse.conductances):
            w = w.astype(dtype)
            beta = 0.25 * xp.minimum(w, 1.0)
            a = 1.0 - beta
            if coarse.periodic[d]:
                a_lo, b_lo = a, beta
                a_hi, b_hi = xp.roll(a, -1, axis=d), xp.roll(beta, -1, axis=d)
            else:
                n = w.shape[d]
                k = xp.reshape(xp.arange(n), tuple(n if e == d else 1 for e in range(nd)))
                edge = (k == 0) | (k == n - 1)
                beta = xp.where(edge, xp.zeros_like(w), beta)
                a = xp.where(edge, 1.0 - 0.5 * xp.minimum(0.5 * w, 1.0), a)
                lo, hi = _along(d, nd, slice(0, -1)), _along(d, nd, slice(1, None))
                a_lo, b_lo, a_hi, b_hi = a[lo], beta[lo], a[hi], beta[hi]
            ws = []
            for arr in (a_lo, b_lo, a_hi, b_hi):
                for e in range(d):
                    arr = xp.repeat(arr, 2, axis=e)
                ws.append(arr)
            out.append(tuple(ws))
        return out
    return coarse._cached("transfer", dtype, make)


def _fused_transfer(fine, coarse, a):
    """The arguments of the compiled 2-D transfers after the array (cached per dtype)."""
    def make(dtype):
        weights = [_np.ascontiguousarray(w) for axis in _transfer_weights(coarse, dtype) for w in axis]
        return (*weights, _np.ascontiguousarray(fine._fluid_mask(dtype)), fine.all_fluid)
    return coarse._cached("fused-transfer", a.dtype, make)


def _prolong(fine, coarse, e):
    """Bilinear (boundary- and obstacle-aware) interpolation of coarse ``e`` to ``fine``."""
    if _fused(coarse, e):
        kernel = fused_poisson.prolong_3d if e.ndim == 3 else fused_poisson.prolong
        return kernel(e, *_fused_transfer(fine, coarse, e))
    xp = xp_of(e)
    for d, (a_lo, b_lo, a_hi, b_hi) in enumerate(_transfer_weights(coarse, e.dtype)):
        lo = a_lo * e + b_lo * xp.roll(e, 1, axis=d)
        hi = a_hi * e + b_hi * xp.roll(e, -1, axis=d)
        shp = list(e.shape)
        shp[d] *= 2
        e = xp.reshape(xp.stack([lo, hi], axis=d + 1), tuple(shp))
    return e if fine.all_fluid else e * fine._fluid_mask(e.dtype)


def _restrict(fine, coarse, r):
    """The exact transpose of :func:`_prolong` divided by 2^ndim (a weighted average)."""
    if _fused(fine, r):
        kernel = fused_poisson.restrict_3d if r.ndim == 3 else fused_poisson.restrict
        return kernel(r, *_fused_transfer(fine, coarse, r))
    xp, nd = xp_of(r), coarse.ndim
    if not fine.all_fluid:
        r = r * fine._fluid_mask(r.dtype)
    weights = _transfer_weights(coarse, r.dtype)
    for d in reversed(range(nd)):
        a_lo, b_lo, a_hi, b_hi = weights[d]
        shp = list(r.shape)
        r = xp.reshape(r, tuple(shp[:d] + [shp[d] // 2, 2] + shp[d + 1:]))
        lo, hi = r[_along(d + 1, nd + 1, 0)], r[_along(d + 1, nd + 1, 1)]
        b_lo_lo, b_hi_hi = b_lo * lo, b_hi * hi
        r = a_lo * lo + a_hi * hi + xp.roll(b_lo_lo, -1, axis=d) + xp.roll(b_hi_hi, 1, axis=d)
    return r * (0.5 ** nd)


def _dense_inverse(op, dtype):
    """The dense matrix of ``b ↦ L⁺ b`` on ``op``'s grid (symmetric), cached per dtype."""
    def make(dtype):
        xp, n = op._xp, op.size
        if ("dense", "f8") in op._aux:
            return op._aux[("dense", "f8")].astype(dtype)
        mat = xp.empty((n, n), dtype=xp.float64)
        eye = xp.eye(n, dtype=xp.float64)
        for start in range(0, n, 512):                 # columns of L, chunked
            cols = xp.reshape(eye[start:start + 512], (-1,) + op.shape)
            mat[start:start + 512] = xp.reshape(op.apply(cols), (cols.shape[0], n))
        a = -(mat + mat.T) / 2                          # A = −L (symmetric)
        active = xp.diagonal(a) > 0
        act = active.astype(xp.float64)
        scale = float(xp.max(xp.diagonal(a))) if bool(xp.any(active)) else 1.0
        a = a * act[:, None] * act[None, :] + xp.diag(1.0 - act)   # identity on inactive cells
        u = act / math.sqrt(max(float(xp.sum(act)), 1.0))
        if op.singular:                                 # lift the constant null space
            a = a + scale * u[:, None] * u[None, :]
        inv = xp.linalg.inv(a)
        inv = (inv + inv.T) / 2
        if op.singular:                                 # project out the constants again
            inv = inv - u[:, None] * u[None, :] / scale
        inv = -(inv * act[:, None] * act[None, :])      # L⁺ = −A⁺, zero on inactive cells
        op._aux[("dense", "f8")] = inv
        return inv.astype(dtype)
    return op._cached("dense", dtype, make)


def _chebyshev_setup(op, dtype):
    """(λ_lo, degree) for Chebyshev-accelerated Jacobi on ``op``: λ(D⁻¹A) ∈ (0, 2] (Gershgorin);
    λ_lo is half the smallest Ritz value of Jacobi-PCG (Lanczos) steps on random data."""
    def make(dtype):
        xp = op._xp
        rng = _np.random.default_rng(0)
        b = op.remove_mean(xp.asarray(rng.standard_normal(op.shape)) * op._fluid_mask(xp.float64))
        inv_d = op._inv_diag(xp.float64)
        r, d, rz, alphas, betas = b, None, None, [], []
        for _ in range(min(op.n_fluid, 2 * max(op.shape) + 20, 400)):
            z = op.remove_mean(inv_d * r)
            rz_new = float(xp.vdot(r, z))
            if rz is not None:
                betas.append(rz_new / rz)
            d = z if d is None else z + betas[-1] * d
            rz, ld = rz_new, op.apply(d)
            alphas.append(rz / float(xp.vdot(d, ld)))
            r = r - alphas[-1] * ld
            if _max_abs(r) <= 1e-10 * _max_abs(b):
                break
        m = len(alphas)
        t = _np.zeros((m, m))
        for j in range(m):
            t[j, j] = 1 / alphas[j] + (betas[j - 1] / alphas[j - 1] if j else 0.0)
            if j + 1 < m:
                t[j, j + 1] = t[j + 1, j] = math.sqrt(betas[j]) / alphas[j]
        lam_lo = 0.5 * float(_np.linalg.eigvalsh(t).min())
        rate = (math.sqrt(2 / lam_lo) - 1) / (math.sqrt(2 / lam_lo) + 1)
        degree = math.ceil(math.log(2 / COARSE_REDUCTION) / -math.log(rate))
        degree = min(COARSE_MAX_DEGREE, max(1, degree))
        return lam_lo, degree
    return op._cached("chebyshev", _np.float64, make)


def _chebyshev(op, b):
    """Fixed-degree Chebyshev-accelerated Jacobi from 0: a symmetric map q(D⁻¹L)·D⁻¹."""
    lam_lo, degree = _chebyshev_setup(op, b.dtype)
    theta, delta = (2 + lam_lo) / 2, (2 - lam_lo) / 2
    sigma, inv_d = theta / delta, op._inv_diag(b.dtype)
    rho = 1 / sigma
    r = op.remove_mean(b)
    d = (inv_d * r) / theta
    x = d
    for _ in range(degree - 1):
        r = r - op.apply(d)
        rho_new = 1 / (2 * sigma - rho)
        d = (rho_new * rho) * d + (2 * rho_new / delta) * (inv_d * r)
        x, rho = x + d, rho_new
    return op.remove_mean(x)


def _coarse_solve(op, b):
    """Accurate fixed symmetric linear solve on the coarsest level (dense, or Chebyshev)."""
    xp = xp_of(b)
    if op.size <= MAX_DENSE_CELLS:
        return xp.reshape(_dense_inverse(op, b.dtype) @ xp.reshape(b, (-1,)), op.shape)
    return _chebyshev(op, b)


def _colour_masks(op, dtype):
    """Red/black chequerboard masks times 1/diag(L) (for red-black Gauss-Seidel)."""
    def make(dtype):
        xp = op._xp
        parity = sum(xp.reshape(xp.arange(n), tuple(n if e == d else 1 for e in range(op.ndim)))
                     for d, n in enumerate(op.shape)) % 2
        inv_d = op._inv_diag(dtype)
        return (inv_d * (parity == 0).astype(dtype), inv_d * (parity == 1).astype(dtype))
    return op._cached("colours", dtype, make)


def _gauss_seidel(op, b, x, sweeps, reverse):
    """Red-black Gauss-Seidel half-sweeps (red then black, or black then red if ``reverse``)."""
    if (sweeps > 0 and _fused(op, b) and (x is None or (type(x) is _np.ndarray and x.dtype == b.dtype))
            and not any(p and n % 2 for p, n in zip(op.periodic, op.shape))):  # in place: a true 2-colouring
        return fused_poisson.red_black(op, b, x, sweeps, reverse)
    masks = _colour_masks(op, b.dtype)
    order = (masks[1], masks[0]) if reverse else masks
    for _ in range(sweeps):
        for m in order:
            x = m * b if x is None else x + m * (b - op.apply(x))
    return x


def _smooth(op, b, x, post):
    """The V-cycle smoother; the post-smoother is the adjoint of the pre-smoother."""
    if SMOOTHER == "jacobi":
        return _jacobi_sweeps(op, b, x, SMOOTHING_SWEEPS, _smoothing_omega(op))
    return _gauss_seidel(op, b, x, SMOOTHING_SWEEPS, post)


def _v_cycle(levels, i, b):
    """One V-cycle from zero on ``levels[i]`` (symmetric: adjoint smoothers before and after)."""
    op = levels[i]
    if i == len(levels) - 1:
        return _coarse_solve(op, b)
    x = _smooth(op, b, None, False)
    coarse = levels[i + 1]
    ec = _v_cycle(levels, i + 1, _restrict(op, coarse, b - op.apply(x)))
    x = x + _prolong(op, coarse, ec)
    return _smooth(op, b, x, True)


def v_cycle(op, b, hierarchy=None):
    """One symmetric V-cycle from 0: a fixed SPD-preconditioner linear map ``b ↦ p ≈ L⁺ b``."""
    levels = [op] + list(_hierarchy(op) if hierarchy is None else hierarchy)
    return op.remove_mean(_v_cycle(levels, 0, _prepare_rhs(op, b)))


def solve_multigrid(op, b, tolerance=1e-6, max_iterations=200, relative=False, x0=None):
    """Solve ``L p = b`` by V-cycles ``p += V(b − L p)`` until max|b − L p| ≤ tolerance."""
    b = _prepare_rhs(op, b)
    threshold = _threshold(b, tolerance, relative)
    p = _initial_guess(op, b, x0)
    hierarchy = _hierarchy(op)
    it = 0
    while True:
        r = b - op.apply(p)
        res = _max_abs(r)
        if res <= threshold or it >= max_iterations:
            break
        p = p + v_cycle(op, r, hierarchy)
        it += 1
    return p, SolveInfo(it, res, res <= threshold)


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
    raise ValueError(f"unknown preconditioner {kind!r}; expected None, 'jacobi' or 'multigrid'")


def solve_cg(op, b, tolerance=1e-6, max_iterations=10_000, preconditioner="multigrid", x0=None,
             relative=False, check_every=1):
    """Preconditioned CG on ``A p = −b`` (A = −L) until max|b − L p| ≤ tolerance.

    ``check_every`` iterations the residual is compared with the threshold (a host
    synchronisation on GPUs); when the recursive residual passes, the true one is checked.
    """
    xp = xp_of(b)
    b = _prepare_rhs(op, b)
    threshold = _threshold(b, tolerance, relative)
    precondition = _preconditioner(op, preconditioner, b.dtype)
    dot = lambda u, v: xp.vdot(u, v)   # noqa: E731
    x = _initial_guess(op, b, x0)
    r = b - op.apply(x) if x0 is not None else b
    res = _max_abs(r)
    it = 0
    direction, rz = None, None
    while res > threshold and it < max_iterations:
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
            if res <= threshold:                        # confirm with the true residual
                r = b - op.apply(x)
                res = _max_abs(r)
                if res > threshold:
                    direction = None                    # restart from the true residual
    x = op.remove_mean(x)
    res = _max_abs(b - op.apply(x))
    return x, SolveInfo(it, res, res <= threshold)
