"""Collocated velocity (one value of every component per cell) ↔ MAC faces: exact on a
periodic axis, second order on a bounded one.

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

On a bounded axis (walls, inflow, outflow) there is no periodic interpolant, and the
counts differ: ``n`` cell points, ``n + 1`` faces (the two on the box's faces included).
The collocated points are the cell centres ``(i + ½) h`` there, as in Mosaic's staggered
reference solvers (PhiFlow's ``CenteredGrid`` and jax-cfd's offset-½ cells on
``[0, L]``), and the map is the second-order one they use (the neighbour average),
closed at the box's faces by linear extrapolation::

    to faces:  f_k = ½ (c_{k-1} + c_k)  (0 < k < n),   f_0 = (3 c_0 - c_1) / 2,
               f_n = (3 c_{n-1} - c_{n-2}) / 2           (n = 1: f_0 = f_1 = c_0)
    back:      c_i = ½ (f_i + f_{i+1})

The boundary faces' values matter only where the face is open (an outflow); on walls and
inflow faces the first pressure projection replaces them by the prescribed velocity.
Accuracy: the round trip ``c → f → c`` is ``c_i + ¼ (c_{i-1} - 2 c_i + c_{i+1})`` inside,
i.e. ``c + (h²/4) c'' + O(h⁴)`` for a smooth field (the wavenumber-``κ`` cosine on
``[0, L]`` loses ``sin²(πκ/2n)`` of itself), and exact at the first and last cell (the
extrapolation's linear part cancels there); a field linear along the axis comes back
exactly. Both maps are linear with hand-written transposes
(:data:`centers_to_faces_bounded`, :data:`faces_to_centers_bounded`). The vector maps
below use the exact shift along periodic axes and this one along bounded axes.
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


# -- bounded axes ------------------------------------------------------------------------


def _first(x, axis):
    """``x`` with ``axis`` moved first (a view), and the array module."""
    xp = xp_of(x)
    return xp, xp.moveaxis(x, axis, 0)


def _centers_to_faces_bounded(c, *, axis):
    """``f = A c`` (``n`` cells → ``n + 1`` faces): neighbour averages inside, linear
    extrapolation onto the two boundary faces."""
    xp, cf = _first(c, axis)
    n = cf.shape[0]
    f = xp.empty((n + 1,) + cf.shape[1:], dtype=c.dtype)
    if n == 1:
        f[0] = f[1] = cf[0]
    else:
        f[1:n] = 0.5 * (cf[:-1] + cf[1:])
        f[0] = 1.5 * cf[0] - 0.5 * cf[1]
        f[n] = 1.5 * cf[n - 1] - 0.5 * cf[n - 2]
    return xp.moveaxis(f, 0, axis)


def _centers_to_faces_bounded_transpose(g, *, axis):
    """``Aᵀ g`` (``n + 1`` faces → ``n`` cells)."""
    xp, gf = _first(g, axis)
    n = gf.shape[0] - 1
    out = xp.zeros((n,) + gf.shape[1:], dtype=g.dtype)
    if n == 1:
        out[0] = gf[0] + gf[1]
    else:
        out[:-1] += 0.5 * gf[1:n]
        out[1:] += 0.5 * gf[1:n]
        out[0] += 1.5 * gf[0]
        out[1] -= 0.5 * gf[0]
        out[n - 1] += 1.5 * gf[n]
        out[n - 2] -= 0.5 * gf[n]
    return xp.moveaxis(out, 0, axis)


def _faces_to_centers_bounded(f, *, axis):
    """``c = B f`` (``n + 1`` faces → ``n`` cells): the average of each cell's two faces."""
    xp, ff = _first(f, axis)
    return xp.moveaxis(0.5 * (ff[:-1] + ff[1:]), 0, axis)


def _faces_to_centers_bounded_transpose(g, *, axis):
    """``Bᵀ g`` (``n`` cells → ``n + 1`` faces)."""
    xp, gf = _first(g, axis)
    n = gf.shape[0]
    out = xp.zeros((n + 1,) + gf.shape[1:], dtype=g.dtype)
    out[:-1] += 0.5 * gf
    out[1:] += 0.5 * gf
    return xp.moveaxis(out, 0, axis)


centers_to_faces_bounded = Primitive(_centers_to_faces_bounded, "centers_to_faces_bounded", linear=True,
                                     register=True)
faces_to_centers_bounded = Primitive(_faces_to_centers_bounded, "faces_to_centers_bounded", linear=True,
                                     register=True)


@centers_to_faces_bounded.deftranspose
def _centers_to_faces_bounded_vjp(g, c, *, axis):
    return _centers_to_faces_bounded_transpose(g, axis=axis)


@faces_to_centers_bounded.deftranspose
def _faces_to_centers_bounded_vjp(g, f, *, axis):
    return _faces_to_centers_bounded_transpose(g, axis=axis)


# -- velocity fields -----------------------------------------------------------------------


def collocated_to_mac(components, domain):
    """MAC face arrays (a tuple, one per axis) from cell-point velocity components
    ``components[d]`` (each of the grid's shape): component ``d`` is moved to the faces
    normal to axis ``d`` by the exact half-cell shift if that axis is periodic, else by
    the second-order bounded map (``n + 1`` faces)."""
    if len(components) != domain.ndim:
        raise InputError(f"collocated_to_mac: expected {domain.ndim} components, got {len(components)}")
    return tuple(centers_to_faces(c, axis=d) if domain.periodic(d) else centers_to_faces_bounded(c, axis=d)
                 for d, c in enumerate(components))


def mac_to_collocated(velocity, domain):
    """Cell-point velocity components from MAC face arrays: the inverse of
    :func:`collocated_to_mac` along periodic axes, the face average along bounded ones."""
    if len(velocity) != domain.ndim:
        raise InputError(f"mac_to_collocated: expected {domain.ndim} face arrays, got {len(velocity)}")
    return tuple(faces_to_centers(u, axis=d) if domain.periodic(d) else faces_to_centers_bounded(u, axis=d)
                 for d, u in enumerate(velocity))


__all__ = ["centers_to_faces", "centers_to_faces_bounded", "collocated_to_mac", "faces_to_centers",
           "faces_to_centers_bounded", "mac_to_collocated"]
