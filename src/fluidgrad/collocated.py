"""Collocated velocity (one value of every component per cell) ↔ MAC faces, exact on a
periodic box.

Frameworks such as Mosaic give a velocity sampled at the cell points; fluidgrad keeps
component ``d`` on the faces normal to axis ``d``, half a cell below the cell centre
(face ``k`` lies between cells ``k - 1`` and ``k``). Averaging two neighbours there and
back multiplies the wavenumber-``κ`` mode by ``cos²(πκ/n)``: a round trip loses
``sin²(π/n)`` of even the smoothest mode, at every resolution.

Here the face value is the band-limited (trigonometric) interpolant of the cell values
along axis ``d``, evaluated half a cell down; going back is the opposite shift. In
Fourier along that axis (``κ`` the signed wavenumber, ``n`` cells)::

    to faces:    f̂_κ = e^{-iπκ/n} ĉ_κ         back:   ĉ_κ = e^{+iπκ/n} f̂_κ

For even ``n`` the Nyquist mode ``κ = n/2`` (the checkerboard ``(-1)^i``) has no real
half-cell shift: its symmetric interpolant ``cos(πx/h)`` vanishes half a cell away. Both
maps pass it through unchanged (multiplier 1), a real and invertible choice. Every
multiplier has modulus one and the real-signal symmetry, so each map is real and
orthogonal: its inverse is its transpose, and the two maps are each other's VJP. The
maps are linear, so each is its own JVP.
"""

from __future__ import annotations

import math

from .ad.core import Primitive
from .backend import xp_of
from .errors import InputError


def _shift_multiplier(xp, n, sign, dtype):
    """``e^{sign·iπκ/n}`` for the rfft wavenumbers ``κ = 0 … n//2`` (Nyquist: 1)."""
    kappa = xp.arange(n // 2 + 1, dtype=dtype)
    m = xp.exp((sign * 1j * math.pi / n) * kappa)
    if n % 2 == 0:
        m[-1] = 1.0
    return m


def _half_cell_shift(x, axis, sign):
    """``x`` shifted by ``sign`` half a cell along ``axis`` (band-limited, periodic)."""
    xp = xp_of(x)
    n = x.shape[axis]
    if n == 1:
        return x.copy()
    real = xp.float32 if x.dtype == xp.float32 else xp.float64
    m = _shift_multiplier(xp, n, sign, real)
    shape = [1] * x.ndim
    shape[axis] = m.shape[0]
    spectrum = xp.fft.rfft(x, axis=axis) * m.reshape(shape)
    return xp.fft.irfft(spectrum, n=n, axis=axis).astype(x.dtype, copy=False)


def _centers_to_faces(c, *, axis):
    """``f = S_axis c``: the band-limited interpolant of ``c`` half a cell down
    (``f̂_κ = e^{-iπκ/n} ĉ_κ``, Nyquist kept)."""
    return _half_cell_shift(c, axis, -1.0)


def _faces_to_centers(f, *, axis):
    """``c = S_axis⁻¹ f = S_axisᵀ f``: the opposite half-cell shift
    (``ĉ_κ = e^{+iπκ/n} f̂_κ``, Nyquist kept)."""
    return _half_cell_shift(f, axis, +1.0)


centers_to_faces = Primitive(_centers_to_faces, "centers_to_faces", linear=True, register=True)
faces_to_centers = Primitive(_faces_to_centers, "faces_to_centers", linear=True, register=True)


@centers_to_faces.deftranspose
def _centers_to_faces_vjp(g, c, *, axis):
    """``adj_c = Sᵀ g = S⁻¹ g`` (S is orthogonal)."""
    return _half_cell_shift(g, axis, +1.0)


@faces_to_centers.deftranspose
def _faces_to_centers_vjp(g, f, *, axis):
    """``adj_f = S g`` (the transpose of ``S⁻¹ = Sᵀ`` is ``S``)."""
    return _half_cell_shift(g, axis, -1.0)


def _check_periodic(domain, what):
    if not domain.all_periodic:
        raise InputError(f"{what}: the exact collocated ↔ MAC map needs a periodic box "
                         f"(axes periodic: {list(domain.periodic_axes)})")


def collocated_to_mac(components, domain):
    """MAC face arrays (a tuple, one per axis) from cell-point velocity components
    ``components[d]`` (each of the grid's shape), on an all-periodic ``domain``."""
    _check_periodic(domain, "collocated_to_mac")
    if len(components) != domain.ndim:
        raise InputError(f"collocated_to_mac: expected {domain.ndim} components, got {len(components)}")
    return tuple(centers_to_faces(c, axis=d) for d, c in enumerate(components))


def mac_to_collocated(velocity, domain):
    """Cell-point velocity components from MAC face arrays: the inverse of
    :func:`collocated_to_mac`."""
    _check_periodic(domain, "mac_to_collocated")
    if len(velocity) != domain.ndim:
        raise InputError(f"mac_to_collocated: expected {domain.ndim} face arrays, got {len(velocity)}")
    return tuple(faces_to_centers(u, axis=d) for d, u in enumerate(velocity))


__all__ = ["centers_to_faces", "collocated_to_mac", "faces_to_centers", "mac_to_collocated"]
