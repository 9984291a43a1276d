"""Finite-difference stencils on the MAC grid: divergence, gradient, Laplacian,
vorticity, and averaging between cell centres and faces.

Each kernel is one primitive with a hand-written transpose (its VJP). They are built
from three 1-D building blocks along an axis, each with its transpose beside it:

* ``pad``: one ghost layer per bounded side, ``ghost = a·edge + b`` (the boundary rule);
* ``forward_difference``: ``y_i = x_{i+1} - x_i`` (bounded: n-1 values; periodic: n);
* ``pair_sum``: ``y_i = x_{i+1} + x_i`` (same shapes as the difference).

Kernels that use a moving wall's velocity in a ghost rule are affine: their tangent
and adjoint use the homogeneous part (b = 0).
"""

from __future__ import annotations

from ..ad.core import Primitive
from ..backend import xp_of

# -- 1-D building blocks ---------------------------------------------------------


def _take(x, axis, sl):
    index = [slice(None)] * x.ndim
    index[axis] = sl
    return x[tuple(index)]


def pad(x, axis, lo, hi, homogeneous=False):
    """``[a_lo·x_0 + b_lo, x, a_hi·x_{n-1} + b_hi]`` along ``axis``; ``lo``/``hi`` = (a, b)."""
    xp = xp_of(x)
    first, last = _take(x, axis, slice(0, 1)), _take(x, axis, slice(-1, None))
    ghost_lo = lo[0] * first + (0 if homogeneous else lo[1])
    ghost_hi = hi[0] * last + (0 if homogeneous else hi[1])
    return xp.concatenate([ghost_lo, x, ghost_hi], axis=axis)


def pad_transpose(g, axis, lo, hi):
    """Adjoint of :func:`pad`: the ghosts' cotangents go back to the edges (times a)."""
    inner = _take(g, axis, slice(1, -1)).copy()
    _take(inner, axis, slice(0, 1))[...] += lo[0] * _take(g, axis, slice(0, 1))
    _take(inner, axis, slice(-1, None))[...] += hi[0] * _take(g, axis, slice(-1, None))
    return inner


def forward_difference(x, axis, periodic):
    """``y_i = x_{i+1} - x_i``; periodic wraps (n values), bounded gives n - 1."""
    if periodic:
        return xp_of(x).roll(x, -1, axis) - x
    return _take(x, axis, slice(1, None)) - _take(x, axis, slice(None, -1))


def forward_difference_transpose(g, axis, periodic):
    """``adj_x_j = g_{j-1} - g_j`` (missing terms are zero when bounded)."""
    xp = xp_of(g)
    if periodic:
        return xp.roll(g, 1, axis) - g
    zero = xp.zeros_like(_take(g, axis, slice(0, 1)))
    return xp.concatenate([zero, g], axis) - xp.concatenate([g, zero], axis)


def pair_sum(x, axis, periodic):
    """``y_i = x_{i+1} + x_i``; periodic wraps (n values), bounded gives n - 1."""
    if periodic:
        return xp_of(x).roll(x, -1, axis) + x
    return _take(x, axis, slice(1, None)) + _take(x, axis, slice(None, -1))


def pair_sum_transpose(g, axis, periodic):
    """``adj_x_j = g_{j-1} + g_j``."""
    xp = xp_of(g)
    if periodic:
        return xp.roll(g, 1, axis) + g
    zero = xp.zeros_like(_take(g, axis, slice(0, 1)))
    return xp.concatenate([zero, g], axis) + xp.concatenate([g, zero], axis)


# -- boundary rules -----------------------------------------------------------------
# Each is ``(a, b)`` with ``ghost = a·edge + b``, read from the boundary kind table
# (:data:`fluidgrad.boundaries.RULES`) through ``Boundaries.ghost``.

NEUMANN = (1.0, 0.0)   # ghost = edge: zero gradient across the face
DIRICHLET0 = (-1.0, 0.0)  # ghost = -edge: zero on the face


def pressure_rule(domain, axis, side):
    """Outflow faces hold p = 0; walls and inflow have zero normal pressure gradient."""
    return domain.boundaries.ghost("pressure", axis, side)


def velocity_rule(domain, component, axis, side):
    """Ghost rule of velocity component ``component`` across face (axis, side)."""
    return domain.boundaries.ghost(component, axis, side)


def cell_rule(domain, location, axis, side):
    """Ghost rule for a field at ``location`` ('center' = scalars, or a face axis)."""
    return domain.boundaries.ghost(location, axis, side)


def _periodic_or_pad(x, domain, axis, location, homogeneous):
    if domain.periodic(axis):
        return x
    return pad(x, axis, cell_rule(domain, location, axis, 0), cell_rule(domain, location, axis, 1),
               homogeneous)


def _periodic_or_pad_transpose(g, domain, axis, location):
    if domain.periodic(axis):
        return g
    return pad_transpose(g, axis, cell_rule(domain, location, axis, 0), cell_rule(domain, location, axis, 1))


# -- divergence and gradient ----------------------------------------------------------


def _divergence(velocity, *, domain):
    """``div u = Σ_d (u_d[i+1] - u_d[i]) / h`` at cell centres."""
    h = domain.dx
    total = None
    for d, u in enumerate(velocity):
        term = forward_difference(u, d, domain.periodic(d)) / h
        total = term if total is None else total + term
    return total


divergence = Primitive(_divergence, "divergence", linear=True, register=True)


@divergence.deftranspose
def _divergence_transpose(g, velocity, *, domain):
    """``adj_u_d = Dᵀ g``: the negative gradient of g, without boundary rules."""
    h = domain.dx
    return tuple(forward_difference_transpose(g, d, domain.periodic(d)) / h for d in range(domain.ndim))


def _gradient_component(p, domain, d):
    if domain.periodic(d):
        return (p - xp_of(p).roll(p, 1, d)) / domain.dx
    padded = pad(p, d, pressure_rule(domain, d, 0), pressure_rule(domain, d, 1))
    return forward_difference(padded, d, False) / domain.dx


def _gradient(p, *, domain):
    """``(∇p)_d = (p[i] - p[i-1]) / h`` on the faces; ghosts from the pressure rules
    (zero normal gradient at walls and inflow, p = 0 on outflow faces)."""
    return tuple(_gradient_component(p, domain, d) for d in range(domain.ndim))


gradient = Primitive(_gradient, "gradient", linear=True, register=True)


@gradient.deftranspose
def _gradient_transpose(g, p, *, domain):
    total = None
    for d, gd in enumerate(g):
        if domain.periodic(d):
            term = (gd - xp_of(gd).roll(gd, -1, d)) / domain.dx
        else:
            term = forward_difference_transpose(gd / domain.dx, d, False)
            term = pad_transpose(term, d, pressure_rule(domain, d, 0), pressure_rule(domain, d, 1))
        total = term if total is None else total + term
    return total


# -- Laplacian ---------------------------------------------------------------------------


def _laplacian(q, *, domain, location="center", homogeneous=False):
    """``Δq = Σ_d (q[i+1] - 2q[i] + q[i-1]) / h²`` with the ghost rules of ``location``
    (scalars: zero gradient; velocity component c: its wall rules)."""
    h2 = domain.dx ** 2
    total = None
    for d in range(domain.ndim):
        periodic = domain.periodic(d)
        padded = _periodic_or_pad(q, domain, d, location, homogeneous)
        second = forward_difference_transpose(forward_difference(padded, d, periodic), d, periodic)
        if not periodic:
            second = _take(second, d, slice(1, -1))
        term = -second / h2
        total = term if total is None else total + term
    return total


def _laplacian_transpose(g, q, *, domain, location="center", homogeneous=False):
    h2 = domain.dx ** 2
    total = None
    for d in range(domain.ndim):
        periodic = domain.periodic(d)
        gd = -g / h2
        if not periodic:
            xp = xp_of(g)
            zero = xp.zeros_like(_take(gd, d, slice(0, 1)))
            gd = xp.concatenate([zero, gd, zero], d)
        # forward_difference_transpose∘forward_difference is symmetric
        gd = forward_difference_transpose(forward_difference(gd, d, periodic), d, periodic)
        term = _periodic_or_pad_transpose(gd, domain, d, location)
        total = term if total is None else total + term
    return total


laplacian = Primitive(_laplacian, "laplacian", register=True)
laplacian.deftranspose(_laplacian_transpose)
laplacian.defjvp(lambda dot, ans, q, **kw: laplacian(dot, **{**kw, "homogeneous": True}))

# -- averaging between cells and faces ---------------------------------------------------


def _face_to_center(velocity, *, domain):
    """``u_d`` at cell centres: ``(u_d[i] + u_d[i+1]) / 2``."""
    return tuple(0.5 * pair_sum(u, d, domain.periodic(d)) for d, u in enumerate(velocity))


face_to_center = Primitive(_face_to_center, "face_to_center", linear=True, register=True)


@face_to_center.deftranspose
def _face_to_center_transpose(g, velocity, *, domain):
    return tuple(0.5 * pair_sum_transpose(gd, d, domain.periodic(d)) for d, gd in enumerate(g))


def _center_to_face(q, *, domain, axis):
    """A cell-centred ``q`` on the faces normal to ``axis``: ``(q[i-1] + q[i]) / 2``
    (a boundary face takes its cell's value)."""
    if domain.periodic(axis):
        return 0.5 * (q + xp_of(q).roll(q, 1, axis))
    return 0.5 * pair_sum(pad(q, axis, NEUMANN, NEUMANN), axis, False)


center_to_face = Primitive(_center_to_face, "center_to_face", linear=True, register=True)


@center_to_face.deftranspose
def _center_to_face_transpose(g, q, *, domain, axis):
    if domain.periodic(axis):
        return 0.5 * (g + xp_of(g).roll(g, -1, axis))
    return pad_transpose(0.5 * pair_sum_transpose(g, axis, False), axis, NEUMANN, NEUMANN)


# -- vorticity ----------------------------------------------------------------------------


def _central_derivative(c, domain, component, axis, homogeneous):
    """``∂c/∂x_axis`` at cell centres by central differences, ``c`` = centre values of
    velocity ``component`` (ghosts from that component's wall rules)."""
    periodic = domain.periodic(axis)
    padded = _periodic_or_pad(c, domain, axis, component, homogeneous)
    if periodic:
        xp = xp_of(c)
        return (xp.roll(padded, -1, axis) - xp.roll(padded, 1, axis)) / (2 * domain.dx)
    return (_take(padded, axis, slice(2, None)) - _take(padded, axis, slice(None, -2))) / (2 * domain.dx)


def _central_derivative_transpose(g, domain, component, axis):
    xp = xp_of(g)
    g = g / (2 * domain.dx)
    if domain.periodic(axis):
        return xp.roll(g, 1, axis) - xp.roll(g, -1, axis)
    zeros = xp.zeros_like(_take(g, axis, slice(0, 2)))
    padded = xp.concatenate([zeros, g], axis) - xp.concatenate([g, zeros], axis)
    return _periodic_or_pad_transpose(padded, domain, axis, component)


_CURL_TERMS = {2: [((1, 0), (0, 1))], 3: [((2, 1), (1, 2)), ((0, 2), (2, 0)), ((1, 0), (0, 1))]}


def _vorticity(velocity, *, domain, homogeneous=False):
    """Curl of the velocity at cell centres: ``∂v/∂x - ∂u/∂y`` in 2-D (a scalar field),
    the vector ``∇ × u`` in 3-D (a tuple of three fields)."""
    centers = _face_to_center(velocity, domain=domain)
    out = []
    for (c1, a1), (c2, a2) in _CURL_TERMS[domain.ndim]:
        out.append(_central_derivative(centers[c1], domain, c1, a1, homogeneous)
                   - _central_derivative(centers[c2], domain, c2, a2, homogeneous))
    return out[0] if domain.ndim == 2 else tuple(out)


def _vorticity_transpose(g, velocity, *, domain, homogeneous=False):
    gs = (g,) if domain.ndim == 2 else g
    adj_centers = [None] * domain.ndim  # every component appears in a curl term
    for gk, ((c1, a1), (c2, a2)) in zip(gs, _CURL_TERMS[domain.ndim]):
        for c, a, sign in ((c1, a1, 1), (c2, a2, -1)):
            term = _central_derivative_transpose(gk, domain, c, a)
            if adj_centers[c] is None:
                adj_centers[c] = term if sign > 0 else xp_of(term).negative(term, out=term)
            elif sign > 0:
                adj_centers[c] += term
            else:
                adj_centers[c] -= term
            del term
    return _face_to_center_transpose(tuple(adj_centers), velocity, domain=domain)


vorticity = Primitive(_vorticity, "vorticity", register=True)
vorticity.deftranspose(_vorticity_transpose)
vorticity.defjvp(lambda dot, ans, u, **kw: vorticity(dot, **{**kw, "homogeneous": True}))
