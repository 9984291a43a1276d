"""Direct Poisson solves on an obstacle-free box by fast orthonormal transforms.

Along each axis the pressure Laplacian's eigenvectors depend only on the two faces'
pressure rules, so one separable transform diagonalizes it:

| faces (low, high)        | transform | eigenvalue h²λ_k               |
|--------------------------|-----------|--------------------------------|
| periodic                 | FFT       | -4 sin²(πk/n)                  |
| Neumann, Neumann         | DCT-II    | -4 sin²(πk/2n)                 |
| Dirichlet, Dirichlet     | DST-II    | -4 sin²(π(k+1)/2n)             |
| Neumann, Dirichlet       | DCT-IV    | -4 sin²(π(2k+1)/4n)            |
| Dirichlet, Neumann       | DST-IV    | -4 sin²(π(2k+1)/4n)            |

Walls and inflow faces are Neumann, outflow faces Dirichlet (p = 0 on the face). The
transforms are orthonormal, so ``p = Qᵀ Λ⁺ Q b`` is a symmetric map; the zero eigenvalue
of an all-Neumann/periodic box is dropped (the mean-zero pseudo-inverse solution).
"""

from __future__ import annotations

import math

import numpy as onp

from ..backend import cupyx, is_cupy_array, xp_of


def _fft_module(x):
    if is_cupy_array(x):
        fft = cupyx().scipy.fft
    else:
        import scipy.fft as fft
    return fft


#: the axis kind of a periodic axis (its transform is the FFT)
PERIODIC = "periodic"


def axis_kinds(domain, location="pressure"):
    """Per axis: 'periodic', or the pair of face letters (low, high), 'N' (Neumann) or
    'D' (Dirichlet), for the pressure or for a field at ``location`` ('center' or a
    velocity component), read from the boundary kind table."""
    kinds = []
    for axis in range(domain.ndim):
        if domain.periodic(axis):
            kinds.append(PERIODIC)
            continue
        kinds.append("".join(domain.boundaries.rule(axis, side).letter(location, axis) for side in (0, 1)))
    return tuple(kinds)


_REAL_TRANSFORMS = {"NN": ("dct", 2), "DD": ("dst", 2), "ND": ("dct", 4), "DN": ("dst", 4)}


def _eigenvalues_1d(kind, n, h, rfft_last=False):
    if kind == PERIODIC:
        k = onp.arange(n // 2 + 1 if rfft_last else n)
        return -4.0 / h ** 2 * onp.sin(math.pi * k / n) ** 2
    k = onp.arange(n)
    if kind == "NN":
        return -4.0 / h ** 2 * onp.sin(math.pi * k / (2 * n)) ** 2
    if kind == "DD":
        return -4.0 / h ** 2 * onp.sin(math.pi * (k + 1) / (2 * n)) ** 2
    return -4.0 / h ** 2 * onp.sin(math.pi * (2 * k + 1) / (4 * n)) ** 2


_EIGENVALUES: dict = {}


def eigenvalues(kinds, shape, h, like):
    """The Laplacian's eigenvalues on the transformed grid (cached per dtype/backend)."""
    xp = xp_of(like)
    key = (kinds, tuple(shape), h, xp.__name__, like.dtype)
    lam = _EIGENVALUES.get(key)
    if lam is None:
        periodic = [a for a, k in enumerate(kinds) if k == PERIODIC]
        last = periodic[-1] if periodic else None
        total = 0.0
        for axis, kind in enumerate(kinds):
            ev = _eigenvalues_1d(kind, shape[axis], h, rfft_last=(axis == last))
            dims = [1] * len(kinds)
            dims[axis] = ev.size
            total = total + ev.reshape(dims)
        lam = xp.asarray(onp.asarray(total, dtype=like.dtype))
        _EIGENVALUES[key] = lam
    return lam


def type4(x, axis, sine=False):
    """Orthonormal DCT-IV (or DST-IV) along ``axis`` from one complex FFT of length 2N:
    ``X_k = √(2/N) Re/−Im[e^{-iπ(2k+1)/4N} Σ_n x_n e^{-iπn/2N} e^{-2πi nk/2N}]``.
    For backends whose FFT module lacks type 4 (cupy); both are their own inverse."""
    xp = xp_of(x)
    n = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = n
    k = xp.arange(n, dtype=onp.float64).reshape(shape)
    pre = xp.exp(-1j * math.pi * k / (2 * n))
    post = xp.exp(-1j * math.pi * (2 * k + 1) / (4 * n))
    spectrum = xp.fft.fft(x * pre, n=2 * n, axis=axis)
    head = xp.take(spectrum, xp.arange(n), axis=axis) * post
    out = -head.imag if sine else head.real
    return (out * math.sqrt(2.0 / n)).astype(x.dtype, copy=False)


def _real_transform(x, kind, axis, inverse):
    fft = _fft_module(x)
    name, kind_type = _REAL_TRANSFORMS[kind]
    if kind_type == 4 and not _HAS_TYPE4.get(fft.__name__, True):
        return type4(x, axis, sine=(name == "dst"))
    return getattr(fft, ("i" if inverse else "") + name)(x, type=kind_type, axis=axis, norm="ortho")


#: FFT modules without DCT/DST type 4 (cupyx.scipy.fft supports types 2 and 3 only)
_HAS_TYPE4 = {"cupyx.scipy.fft": False}


def _forward(x, kinds):
    fft = _fft_module(x)
    for axis, kind in enumerate(kinds):
        if kind != PERIODIC:
            x = _real_transform(x, kind, axis, inverse=False)
    periodic = tuple(a for a, k in enumerate(kinds) if k == PERIODIC)
    return fft.rfftn(x, axes=periodic, norm="ortho") if periodic else x


def _inverse(x, kinds, shape):
    fft = _fft_module(x)
    periodic = tuple(a for a, k in enumerate(kinds) if k == PERIODIC)
    if periodic:
        x = fft.irfftn(x, s=[shape[a] for a in periodic], axes=periodic, norm="ortho")
    for axis, kind in reversed(list(enumerate(kinds))):
        if kind != PERIODIC:
            x = _real_transform(x, kind, axis, inverse=True)
    return x


def apply_spectral(b, kinds, h, multiplier):
    """``Qᵀ m(Λ) Q b`` for the Laplacian with per-axis ``kinds``; ``multiplier(λ)``."""
    lam = eigenvalues(kinds, b.shape, h, b)
    return _inverse(_forward(b, kinds) * multiplier(lam), kinds, b.shape).astype(b.dtype, copy=False)


def _pseudo_inverse(lam):
    xp = xp_of(lam)
    small = 1e-9 * float(xp.max(xp.abs(lam))) if lam.size else 0.0
    return xp.where(xp.abs(lam) > small, 1.0 / xp.where(lam == 0, 1, lam), 0).astype(lam.dtype)


_PSEUDO_INVERSES: dict = {}


def solve(domain, b):
    """``p = L⁺ b`` for the pressure Laplacian of an obstacle-free ``domain``."""
    kinds = axis_kinds(domain)
    key = (kinds, b.shape, domain.dx, xp_of(b).__name__, b.dtype)
    multiplier = _PSEUDO_INVERSES.get(key)  # 1/λ (0 for the null space), cached as λ is
    if multiplier is None:
        multiplier = _PSEUDO_INVERSES[key] = _pseudo_inverse(eigenvalues(kinds, b.shape, domain.dx, b))
    return _inverse(_forward(b, kinds) * multiplier, kinds, b.shape).astype(b.dtype, copy=False)


def solve_shifted(b, kinds, h, alpha, beta):
    """``x = (α I + β L)⁻¹ b`` (``α + βλ`` must not vanish: e.g. α = 1, β = -νΔt)."""
    return apply_spectral(b, kinds, h, lambda lam: 1.0 / (alpha + beta * lam))
