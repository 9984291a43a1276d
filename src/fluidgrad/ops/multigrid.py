"""Geometric multigrid for the Poisson operator (:mod:`.poisson`): the hierarchy of coarser
operators, boundary- and obstacle-aware transfers, red-black Gauss-Seidel (or damped
Jacobi) smoothing, a direct (dense or sparse LU) or Chebyshev coarsest solve, the
symmetric V-cycle and V-cycles as a solver. The V-cycle from zero is a fixed symmetric
linear map of ``b``, so it serves as a CG preconditioner and transposes itself in
reverse-mode AD. The smoothers and transfers are kernels with a fused implementation
(:mod:`.dispatch`).
"""

from __future__ import annotations

import math

import numpy as _np

from fluidgrad.backend import xp_of

from . import fused_poisson, gpu
from .dispatch import Kernel
from .poisson import (SolveInfo, Watch, _along, _initial_guess, _max_abs, _prepare_rhs, _threshold,
                      check_interval, jacobi_sweeps)

# Multigrid settings: coarsen while a level has more than MAX_COARSE_CELLS cells; the coarsest
# level is solved by a dense (pseudo-)inverse if it has at most MAX_DENSE_CELLS cells, else (sizes
# that stop halving early, e.g. 250×150 -> 125×75) by a sparse LU on numpy arrays (SPARSE_COARSE)
# or by Chebyshev-accelerated Jacobi of a degree fixed per operator that reduces the error by
# about COARSE_REDUCTION.
MAX_COARSE_CELLS = 256
MAX_DENSE_CELLS = 2048
COARSE_REDUCTION = 1e-3
COARSE_MAX_DEGREE = 1000
SPARSE_COARSE = True                 # numpy: a sparse LU coarsest solve above MAX_DENSE_CELLS,
MAX_SPARSE_CELLS = {2: 100_000, 3: 10_000}  # up to these sizes: 2-D 313×319, factors 67 MB in 0.8 s,
#                                             a solve 19 ms (Chebyshev 734 ms); 3-D 21×21×23, 30 MB,
#                                             10 ms (17); the LU's fill grows fast in 3-D
SMOOTHER = "rbgs"                    # "rbgs" (red-black Gauss-Seidel) or "jacobi" (damped)
SMOOTHING_SWEEPS = 2                 # smoothing sweeps before and after the coarse correction
SMOOTHING_OMEGA = {2: 0.8, 3: 6 / 7}  # Jacobi damping per dimension (< 1 keeps the cycle SPD)


def _smoothing_omega(op) -> float:
    return SMOOTHING_OMEGA.get(op.ndim, 0.8)


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


def _prolong_reference(fine, coarse, e):
    """Bilinear (boundary- and obstacle-aware) interpolation of coarse ``e`` to ``fine``."""
    xp = xp_of(e)
    for d, (a_lo, b_lo, a_hi, b_hi) in enumerate(_transfer_weights(coarse, e.dtype)):
        lo = a_lo * e + b_lo * xp.roll(e, 1, axis=d)
        hi = a_hi * e + b_hi * xp.roll(e, -1, axis=d)
        shp = list(e.shape)
        shp[d] *= 2
        e = xp.reshape(xp.stack([lo, hi], axis=d + 1), tuple(shp))
    return e if fine.all_fluid else e * fine._fluid_mask(e.dtype)


def _restrict_reference(fine, coarse, r):
    """The exact transpose of :func:`_prolong` divided by 2^ndim (a weighted average)."""
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


def _sparse_factor(op):
    """The sparse LU factors (SuperLU) of ``A = −L`` on ``op``'s grid, made definite: the
    identity on inactive (solid or enclosed) cells, and on one cell of each connected part
    of the fluid that has no Dirichlet face (its constants are L's null space). Cached."""
    def make(dtype):
        import scipy.sparse as sp
        from scipy.sparse.csgraph import connected_components
        from scipy.sparse.linalg import splu
        diag, offs = op._coef(_np.float64)
        index = _np.arange(op.size).reshape(op.shape)
        rows, cols, values = [], [], []
        for d, off in enumerate(offs):
            if op.periodic[d]:
                for weights, shift in zip(off, (1, -1)):      # L[c, c∓e_d] = w of the face between
                    rows.append(index.ravel()), cols.append(_np.roll(index, shift, axis=d).ravel())
                    values.append(_np.asarray(weights).ravel())
            else:
                head, tail = index[_along(d, op.ndim, slice(0, -1))], index[_along(d, op.ndim, slice(1, None))]
                rows += [head.ravel(), tail.ravel()]
                cols += [tail.ravel(), head.ravel()]
                values += [_np.asarray(off).ravel()] * 2
        rows, cols, values = _np.concatenate(rows), _np.concatenate(cols), _np.concatenate(values)
        offdiag = sp.csr_matrix((-values, (rows, cols)), shape=(op.size, op.size))
        diagonal = -_np.asarray(diag).ravel()
        active = diagonal > 0
        pinned = ~active
        parts, label = connected_components(offdiag != 0, directed=False)
        row_sums = diagonal + _np.asarray(offdiag.sum(axis=1)).ravel()  # > 0 next to a Dirichlet face
        dirichlet = _np.bincount(label, weights=active & (row_sums > 1e-12 * diagonal.max(initial=1.0)),
                                 minlength=parts) > 0
        has_fluid = _np.bincount(label, weights=active, minlength=parts) > 0
        first = _np.unique(label, return_index=True)[1]  # a cell of each part (an active one if any)
        pinned[first[has_fluid & ~dirichlet]] = True
        keep = (~pinned).astype(_np.float64)
        matrix = sp.diags(keep) @ offdiag @ sp.diags(keep) + sp.diags(_np.where(keep > 0, diagonal, 1.0))
        return splu(sp.csc_matrix(matrix), permc_spec="MMD_AT_PLUS_A"), keep
    return op._cached("sparse-lu", _np.float64, make)


def _coarse_solve(op, b):
    """Accurate fixed symmetric linear solve on the coarsest level: dense, or, for sizes
    that stop halving above MAX_DENSE_CELLS (e.g. 41·2^k cells across), a sparse LU on
    numpy arrays (a 220×41 level: ~1 ms where Chebyshev took up to 1000 sweeps) and
    Chebyshev on others."""
    xp = xp_of(b)
    if op.size <= MAX_DENSE_CELLS:
        return xp.reshape(_dense_inverse(op, b.dtype) @ xp.reshape(b, (-1,)), op.shape)
    if xp is _np and SPARSE_COARSE and op.size <= MAX_SPARSE_CELLS.get(op.ndim, 0):
        lu, keep = _sparse_factor(op)
        x = keep * lu.solve(keep * op.remove_mean(b).astype(_np.float64).reshape(-1))
        return -op.remove_mean(x.reshape(op.shape)).astype(b.dtype)
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


def _gauss_seidel_reference(op, b, x, sweeps, reverse):
    """Red-black Gauss-Seidel half-sweeps (red then black, or black then red if ``reverse``)."""
    masks = _colour_masks(op, b.dtype)
    order = (masks[1], masks[0]) if reverse else masks
    for _ in range(sweeps):
        for m in order:
            x = m * b if x is None else x + m * (b - op.apply(x))
    return x


def _gauss_seidel_supports(op, b, x, sweeps, reverse) -> bool:
    """In place on a true 2-colouring (no odd periodic axis), numpy arrays of one dtype."""
    return (sweeps > 0 and fused_poisson.supports(op, b)
            and (x is None or (type(x) is _np.ndarray and x.dtype == b.dtype))
            and not any(p and n % 2 for p, n in zip(op.periodic, op.shape)))


_prolong = Kernel("multigrid.prolong", _prolong_reference)
_prolong.implementation("fused", lambda fine, coarse, e: fused_poisson.supports(coarse, e))(
    lambda fine, coarse, e: fused_poisson.prolong_any(e, *_fused_transfer(fine, coarse, e)))
_restrict = Kernel("multigrid.restrict", _restrict_reference)
_restrict.implementation("fused", lambda fine, coarse, r: fused_poisson.supports(fine, r))(
    lambda fine, coarse, r: fused_poisson.restrict_any(r, *_fused_transfer(fine, coarse, r)))
_prolong.implementation("gpu", gpu.supports_transfer)(gpu.prolong)
_restrict.implementation("gpu", gpu.supports_transfer)(gpu.restrict)
_gauss_seidel = Kernel("multigrid.red_black", _gauss_seidel_reference)
_gauss_seidel.implementation("gpu", gpu.supports_red_black)(gpu.red_black)
_gauss_seidel.implementation("fused", _gauss_seidel_supports)(fused_poisson.red_black)


def _smooth(op, b, x, post):
    """The V-cycle smoother; the post-smoother is the adjoint of the pre-smoother."""
    if SMOOTHER == "jacobi":
        return jacobi_sweeps(op, b, x, SMOOTHING_SWEEPS, _smoothing_omega(op))
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


def solve_multigrid(op, b, tolerance=1e-6, max_iterations=200, relative=False, x0=None, check_every=None):
    """Solve ``L p = b`` by V-cycles ``p += V(b − L p)`` until max|b − L p| ≤ tolerance,
    checked every ``check_every`` cycles (default: :data:`~.poisson.CHECK_EVERY` for
    ``b``'s array module; a check is a host synchronisation on GPUs); a diverging or
    stalled solve (:class:`~.poisson.Watch`) stops there, not converged."""
    check_every = check_interval(b) if check_every is None else int(check_every)
    with _np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught by the watch
        b = _prepare_rhs(op, b)
        threshold = _threshold(b, tolerance, relative)
        p = _initial_guess(op, b, x0)
        hierarchy = _hierarchy(op)
        it, watch, reason = 0, None, ""
        while True:
            r = b - op.apply(p)
            if it % check_every == 0 or it >= max_iterations:
                res = _max_abs(r)
                watch = watch or Watch(res)
                reason = watch.check(it, res)
                if res <= threshold or it >= max_iterations or reason:
                    break
            p = p + v_cycle(op, r, hierarchy)
            it += 1
    return p, SolveInfo(it, res, res <= threshold and not reason, reason)
