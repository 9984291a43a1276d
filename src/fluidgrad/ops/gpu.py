"""The GPU implementations (kind ``gpu`` of :mod:`.dispatch`): the numba-cuda kernels of
:mod:`.gpu_kernels` launched on device arrays, outputs allocated by the arrays' own module.

:func:`supports` is their half of the dispatch rule: device arrays (they expose
``__cuda_array_interface__``: cupy's do, numpy's and the tests' strict stand-in's do not)
of one float dtype, numba-cuda installed and a device usable. The functions themselves
take any arrays numba-cuda takes, so the ``gpu_sim`` tests call them with numpy arrays in
numba's CUDA simulator, where the dispatch rule never sends them.

Kernels here, 2-D and 3-D: ghost-layer padding and its transpose; semi-Lagrangian and
MacCormack advection forward, VJP and JVP (Euler backtrace: the semi-Lagrangian pass, the
nodal bounds and the limited correction, their transposes and their tangents); the
pressure projection's stencil passes, forward (the right-hand side ``D (M u + c)``, the
gradient subtraction ``u_b − M G p``), VJP (their transposes) and JVP (the forward's passes
without the prescribed velocities), around a solve that stays the reference's
(:func:`~.pressure.solve_pressure`: its own kernels dispatch as usual); and the Poisson
solvers' kernels: ``L x``, damped-Jacobi sweeps (a launch a sweep between two device
buffers, no host synchronisation between sweeps), red-black Gauss-Seidel (two in-place
launches a sweep) and the multigrid transfers (a launch an axis). A function picks its
kernel by the arrays' rank (:func:`_of_rank`). Everything else runs its array-API
reference on cupy arrays.
"""

from __future__ import annotations

import functools
import math

from ..backend import xp_of


@functools.cache
def available() -> bool:
    """numba-cuda installed and a CUDA device (or numba's simulator) usable."""
    try:
        import numba_cuda  # noqa: F401 - the maintained CUDA target, not numba's deprecated one
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - not installed, or no driver
        return False


def supports(arrays, domain, backtrace="euler") -> bool:
    """Whether the GPU kernels take ``arrays`` on ``domain``: 2-D or 3-D, the Euler
    backtrace, device arrays of one float dtype (a kernel's own ``supports`` may narrow it)."""
    if not hasattr(arrays[0], "__cuda_array_interface__") or domain.ndim not in (2, 3) or backtrace != "euler":
        return False  # host arrays first: the rule asks on every kernel call
    dtype = arrays[0].dtype
    return (dtype.kind == "f" and all(hasattr(a, "__cuda_array_interface__") and a.dtype == dtype for a in arrays)
            and available())


def _kernels():
    from . import gpu_kernels
    return gpu_kernels


# -- padding ------------------------------------------------------------------------------

def supports_padding(q, domain, *args, **kwargs) -> bool:
    return q.ndim == domain.ndim and supports((q,), domain)


def _ghost_rules(domain, location):
    """The ghost rules ``(a, b)`` of ``location`` as [a_lo0, b_lo0, a_hi0, b_hi0, a_lo1, ...]
    and which axes are padded, as scalars (cached)."""
    key = ("gpu-ghost-rules", location)
    out = domain._cache.get(key)
    if out is None:
        from . import stencils
        rules = tuple(float(x) for d in range(domain.ndim) for side in range(2)
                      for x in stencils.cell_rule(domain, location, d, side))
        out = domain._cache[key] = (rules, tuple(not domain.periodic(d) for d in range(domain.ndim)))
    return out


def pad_field(q, domain, location, homogeneous=False):
    """:func:`~.interpolation.pad_field` on the device."""
    if domain.all_periodic:
        return q
    rules, pads = _ghost_rules(domain, location)
    out = xp_of(q).empty(tuple(n + 2 * p for n, p in zip(q.shape, pads)), dtype=q.dtype)
    k = _kernels()
    k.launch(k.pad if q.ndim == 2 else k.pad_3d, out.shape)(q, out, *rules, *pads, homogeneous)
    return out


def pad_field_transpose(g, domain, location):
    """:func:`~.interpolation.pad_field_transpose` on the device."""
    if domain.all_periodic:
        return g
    rules, pads = _ghost_rules(domain, location)
    out = xp_of(g).empty(tuple(n - 2 * p for n, p in zip(g.shape, pads)), dtype=g.dtype)
    k = _kernels()
    k.launch(k.pad_transpose if g.ndim == 2 else k.pad_3d_transpose, out.shape)(g, out, *rules[::2], *pads)
    return out


# -- semi-Lagrangian advection --------------------------------------------------------------

class _Layout:
    """The field's :class:`~.fused_lattice.Layout` as the kernels take it (cached):
    ``args`` (2-D: 16 scalars, the shifts, averaging flags, offsets and periodic flags;
    3-D: one tuple of those four tuples), ``periodic`` (per axis) and ``weights`` (of the
    velocity samplings' transposes: 1, ½, ¼ or ⅛ per component)."""

    def __init__(self, domain, location):
        from .fused_lattice import Layout
        lay, nd = Layout.of(domain, location), domain.ndim
        shift, avg = tuple(int(s) for s in lay.shift), tuple(bool(a) for a in lay.avg)
        offset, self.periodic = tuple(float(g) for g in lay.geo[:nd]), tuple(bool(p) for p in lay.geo[nd:])
        self.args = (*shift, *avg, *offset, *self.periodic) if nd == 2 else ((shift, avg, offset, self.periodic),)
        self.weights = tuple(math.prod(0.5 if avg[nd * c + a] else 1.0 for a in range(nd)) for c in range(nd))

    @classmethod
    def of(cls, domain, location):
        key = ("gpu-layout", location)
        out = domain._cache.get(key)
        if out is None:
            out = domain._cache[key] = cls(domain, location)
        return out


def _padded(q, velocity, domain, location):
    from . import interpolation as interp
    return interp.pad_field(q, domain, location), interp.pad_velocity(velocity, domain)


def semi_lagrangian(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``q'(x) = I[q](x - Δt U(x))``."""
    qp, padded = _padded(q, velocity, domain, location)
    out = xp_of(q).empty(q.shape, dtype=q.dtype)
    _kernels().launch(_of_rank("sl_forward", q.ndim), q.shape)(out, qp, *padded, *_Layout.of(domain, location).args,
                                                               dt / domain.dx)
    return out


def semi_lagrangian_vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``(Iᵀ g, Sᵀ(-Δt g ∂I[q]/∂x))`` through the padding's transpose."""
    from . import interpolation as interp
    qp, padded = _padded(q, velocity, domain, location)
    xp, lay = xp_of(q), _Layout.of(domain, location)
    adj_qp, adj = xp.zeros_like(qp), [xp.zeros_like(p) for p in padded]
    _kernels().launch(_of_rank("sl_vjp", q.ndim), g.shape)(g, qp, *padded, *lay.args, dt / domain.dx, adj_qp, *adj,
                                                           *lay.weights)
    return (interp.pad_field_transpose(adj_qp, domain, location),
            tuple(interp.pad_field_transpose(a, domain, d) for d, a in enumerate(adj)))


def semi_lagrangian_jvp(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``dot_q' = I dot_q + Σ_a ∂I[q]/∂x_a · (-Δt S_a dot_u_a)``."""
    from . import interpolation as interp
    dot_q, dot_u = dots
    qp, padded = _padded(q, velocity, domain, location)
    dq = qp if dot_q is None else interp.pad_field(dot_q, domain, location, homogeneous=True)
    du = padded if dot_u is None else interp.pad_velocity(dot_u, domain, homogeneous=True)
    out = xp_of(q).empty(q.shape, dtype=q.dtype)
    _kernels().launch(_of_rank("sl_jvp", q.ndim), q.shape)(out, dq, *du, qp, *padded, *_Layout.of(domain, location).args,
                                                           dt / domain.dx, dot_q is not None, dot_u is not None)
    return out


# -- pressure projection: the stencil passes around the solve -----------------------------

class _Projection:
    """What the projection's passes need of ``domain`` for arrays like ``like``, cached
    (masks and prescribed velocities on the device; the ghost rules and ``plain`` as
    scalars, found once: ``plain`` asks the device)."""

    def __init__(self, domain, like):
        from . import pressure, stencils
        nd = domain.ndim
        self.mask = pressure._open_mask(domain, (like,) * nd)
        self.fixed = tuple(domain.array("fixed_velocity", like, d) for d in range(nd))
        self.zero = tuple(xp_of(like).zeros_like(c) for c in self.fixed)  # the homogeneous (tangent) projection's
        self.rules = tuple(float(stencils.pressure_rule(domain, d, side)[0]) for d in range(nd) for side in range(2))
        self.open = bool(all(bool(m.all()) for m in self.mask))
        self.plain = self.open and not any(bool(c.any()) for c in self.fixed)
        self.inv_h = 1.0 / domain.dx

    @classmethod
    def of(cls, domain, like):
        key = ("gpu-projection", xp_of(like).__name__, like.dtype)
        out = domain._cache.get(key)
        if out is None:
            out = domain._cache[key] = cls(domain, like)
        return out


def supports_projection(velocity, *, domain, solve=None):
    return supports(velocity, domain)


def supports_projection_vjp(g, ans, velocity, *, domain, solve=None):
    return g[1] is not None and supports((*g[0], g[1]), domain)


def supports_projection_jvp(dots, ans, velocity, *, domain, solve=None):
    return dots[0] is not None and supports(dots[0], domain)


def _span(velocity):
    """What a projection pass covers: the union of the components' lattices and the cells'."""
    return tuple(u.shape[d] for d, u in enumerate(velocity))


def _project(velocity, domain, solve, homogeneous):
    """``u_b = M u + c`` (``c`` dropped if ``homogeneous``), ``b = D u_b``, ``p = L⁺ b``,
    ``u' = u_b − M G p``: two launches around the solve."""
    from . import pressure
    solve = pressure.PressureSolve() if solve is None else solve
    nd, like = domain.ndim, velocity[0]
    pr, xp, k = _Projection.of(domain, like), xp_of(like), _kernels()
    plain = pr.open if homogeneous else pr.plain
    masked = tuple(velocity) if plain else tuple(xp.empty(u.shape, dtype=u.dtype) for u in velocity)
    b = xp.empty(domain.grid.shape, dtype=like.dtype)
    k.launch(_of_rank("projection_rhs", nd), _span(velocity))(*velocity, *pr.mask,
                                                              *(pr.zero if homogeneous else pr.fixed), pr.inv_h, plain,
                                                              *masked, b)
    p = pressure.solve_pressure(domain, b, solve)
    out = tuple(xp.empty(u.shape, dtype=u.dtype) for u in velocity)
    k.launch(_of_rank("projection_finish", nd), _span(velocity))(p, *masked, *pr.mask, pr.inv_h, *pr.rules, plain, *out)
    return out, p


def project(velocity, *, domain, solve=None):
    """:func:`~.pressure.project` with its stencil passes on the device: ``b = D (M u +
    c)``, the solve (:func:`~.pressure.solve_pressure`, whose kernels dispatch on their
    own), ``u' = u_b − M G p``."""
    return _project(velocity, domain, solve, homogeneous=False)


def project_vjp(g, ans, velocity, *, domain, solve=None):
    """``adj_u = M (g_u + Dᵀ L⁺ (g_p − Gᵀ M g_u))``: the two transposed passes on the
    device around one adjoint solve."""
    from . import pressure
    solve = pressure.PressureSolve() if solve is None else solve
    g_u, gp = g
    nd = domain.ndim
    pr, xp, k = _Projection.of(domain, gp), xp_of(gp), _kernels()
    rhs = xp.empty(gp.shape, dtype=gp.dtype)
    k.launch(_of_rank("projection_vjp_rhs", nd), _span(g_u))(*g_u, gp, *pr.mask, pr.inv_h, *pr.rules, pr.plain, rhs)
    r = pressure.solve_pressure(domain, rhs, solve, adjoint=True)
    adj = tuple(xp.empty(gd.shape, dtype=gd.dtype) for gd in g_u)
    k.launch(_of_rank("projection_vjp_finish", nd), _span(g_u))(r, *g_u, *pr.mask, pr.inv_h, pr.plain, *adj)
    return (adj,)


def project_jvp(dots, ans, velocity, *, domain, solve=None):
    """``(dot_u', dot_p)``: the homogeneous projection of the tangent (``c`` dropped; the
    projection is affine in ``u``), the forward's passes with zero prescribed velocities."""
    return _project(dots[0], domain, solve, homogeneous=True)


# -- MacCormack: forward, VJP, JVP -------------------------------------------------------

def _maccormack_first(q, velocity, dt, domain, location):
    """What every MacCormack rule starts from: the padded ``q`` and velocity, the layout,
    ``c = Δt/h``, ``q¹ = SL(q, Δt)`` and its padding, and the nodal bounds of the padded ``q``."""
    from . import interpolation as interp
    qp, padded = _padded(q, velocity, domain, location)
    xp, k, lay, c = xp_of(q), _kernels(), _Layout.of(domain, location), dt / domain.dx
    q1 = xp.empty(q.shape, dtype=q.dtype)
    k.launch(_of_rank("sl_forward", q.ndim), q.shape)(q1, qp, *padded, *lay.args, c)
    lo, hi = xp.empty_like(qp), xp.empty_like(qp)
    k.launch(_of_rank("nodal_bounds", q.ndim), qp.shape)(qp, lo, hi, *lay.periodic)
    return qp, padded, lay, c, q1, interp.pad_field(q1, domain, location), lo, hi


def maccormack(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """:func:`~.advection.maccormack` forward: ``q¹ = SL(q, Δt)``, the nodal bounds of the
    padded ``q`` and the limited correction, three launches (and the padding of ``q¹``)."""
    from .limiter import tie_tolerance
    qp, padded, lay, c, q1, q1p, lo, hi = _maccormack_first(q, velocity, dt, domain, location)
    out = xp_of(q).empty(q.shape, dtype=q.dtype)
    _kernels().launch(_of_rank("mc_correct", q.ndim), q.shape)(out, q, q1, q1p, lo, hi, *padded, *lay.args, c,
                                                               tie_tolerance(q.dtype))
    return out


def maccormack_vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """The VJP of :func:`maccormack` (as ``fused_advection._maccormack_vjp``): the
    correction's transpose into the padded adjoints of the bounds, of ``q¹`` and of U; the
    bounds' transpose; then ``q¹ = SL(q, Δt)``'s with the cotangent of ``q¹``."""
    from . import interpolation as interp
    from .limiter import tie_tolerance
    qp, padded, lay, c, q1, q1p, lo, hi = _maccormack_first(q, velocity, dt, domain, location)
    xp, k, nd, tol = xp_of(q), _kernels(), q.ndim, tie_tolerance(q.dtype)
    adj_c, adj_lo, adj_hi, adj_q1p = xp.empty_like(g), xp.zeros_like(qp), xp.zeros_like(qp), xp.zeros_like(q1p)
    adj_qp, adj = xp.zeros_like(qp), [xp.zeros_like(p) for p in padded]
    k.launch(_of_rank("mc_correct_vjp", nd), g.shape)(g, q, q1, q1p, lo, hi, *padded, *lay.args, c, tol, adj_c,
                                                      adj_lo, adj_hi, adj_q1p, *adj, *lay.weights)
    k.launch(_of_rank("nodal_bounds_vjp", nd), qp.shape)(qp, lo, hi, adj_lo, adj_hi, adj_qp, *lay.periodic, tol)
    adj_q1 = adj_c + interp.pad_field_transpose(adj_q1p, domain, location)
    k.launch(_of_rank("sl_vjp", nd), g.shape)(adj_q1, qp, *padded, *lay.args, c, adj_qp, *adj, *lay.weights)
    return (interp.pad_field_transpose(adj_qp, domain, location) + 0.5 * adj_c,
            tuple(interp.pad_field_transpose(a, domain, d) for d, a in enumerate(adj)))


def maccormack_jvp(dots, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``dot_q' = s_c (dot_q¹ + (dot_q − dot_q⁰)/2) + s_lo dot_lo + s_hi dot_hi`` (the
    reference's rule): the bounds' tangents on the padded lattice, ``dot_q¹`` by the
    semi-Lagrangian JVP, then one pass for the bounds' and ``q⁰``'s tangents and the clamp's shares."""
    from . import interpolation as interp
    from .limiter import tie_tolerance
    dot_q, dot_u = dots
    qp, padded, lay, c, q1, q1p, lo, hi = _maccormack_first(q, velocity, dt, domain, location)
    xp, k, nd, tol = xp_of(q), _kernels(), q.ndim, tie_tolerance(q.dtype)
    dq = xp.zeros_like(q) if dot_q is None else dot_q
    dqp = interp.pad_field(dq, domain, location, homogeneous=True)
    du = padded if dot_u is None else interp.pad_velocity(dot_u, domain, homogeneous=True)
    dlo, dhi = xp.empty_like(qp), xp.empty_like(qp)
    k.launch(_of_rank("nodal_bounds_jvp", nd), qp.shape)(qp, dqp, lo, hi, dlo, dhi, *lay.periodic, tol)
    dq1 = xp.empty(q.shape, dtype=q.dtype)
    k.launch(_of_rank("sl_jvp", nd), q.shape)(dq1, dqp, *du, qp, *padded, *lay.args, c, True, dot_u is not None)
    dq1p = interp.pad_field(dq1, domain, location, homogeneous=True)
    out = xp.empty(q.shape, dtype=q.dtype)
    k.launch(_of_rank("mc_correct_jvp", nd), q.shape)(out, q, dq, q1, dq1, q1p, dq1p, lo, hi, dlo, dhi, *padded, *du,
                                                      *lay.args, c, tol, dot_u is not None)
    return out


# -- the Poisson operator: L x, damped-Jacobi and red-black sweeps (2-D, 3-D) --------------

def _on_device(a, dtype=None) -> bool:
    return hasattr(a, "__cuda_array_interface__") and (a.dtype == dtype if dtype is not None else a.dtype.kind == "f")


def supports_poisson(op, a, *args) -> bool:
    """A 2-D or 3-D device float array of the operator's own shape (no batch axes)."""
    return _on_device(a) and op.ndim in (2, 3) and tuple(a.shape) == tuple(op.shape) and available()


def supports_jacobi(op, b, x, sweeps, omega) -> bool:
    return sweeps > 0 and (x is None or _on_device(x, b.dtype)) and supports_poisson(op, b)


def _of_rank(name, ndim):
    """The kernel ``name`` of :mod:`.gpu_kernels` for ``ndim`` dimensions (``name_3d`` in 3-D)."""
    return getattr(_kernels(), name if ndim == 2 else f"{name}_3d")


def _neighbour_coefficients(op, dtype):
    """``(inv_diag, diag, lo₀, hi₀, lo₁, hi₁[, lo₂, hi₂])`` of the PoissonOperator ``op`` as
    device cell arrays (``fused_poisson.neighbour_coefficients`` built with the operator's
    own array module), cached on the operator."""
    import numpy as onp
    key = ("gpu-neighbour-arrays", onp.dtype(dtype))
    cached = op._aux.get(key)
    if cached is None:
        diag, offs = op._coef(dtype)
        xp = xp_of(diag)
        out = [op._inv_diag(dtype), diag]
        for d in range(op.ndim):
            if op.periodic[d]:
                lo, hi = offs[d]
            else:
                lo, hi = xp.zeros(op.shape, dtype=dtype), xp.zeros(op.shape, dtype=dtype)
                inner, lower = [slice(None)] * op.ndim, [slice(None)] * op.ndim
                inner[d], lower[d] = slice(1, None), slice(None, -1)
                lo[tuple(inner)], hi[tuple(lower)] = offs[d], offs[d]
            out += [lo, hi]
        cached = op._aux[key] = tuple(xp.ascontiguousarray(a) for a in out)
    return cached


def poisson_apply(op, x):
    """``L x`` (:meth:`~.poisson.PoissonOperator.apply`), one launch."""
    out = xp_of(x).empty(x.shape, dtype=x.dtype)
    k = _kernels()
    k.launch(_of_rank("poisson_apply", x.ndim), x.shape)(x, *_neighbour_coefficients(op, x.dtype)[1:],
                                                          *op.periodic, out)
    return out


def jacobi_sweeps(op, b, x, sweeps, omega):
    """``sweeps`` damped-Jacobi sweeps ``x += ω D⁻¹ (b − L x)`` (``x`` None: from zero, the
    first sweep ``ω D⁻¹ b``): one launch a sweep between two device buffers, no host
    synchronisation between them; ``x`` itself is never written."""
    xp, k = xp_of(b), _kernels()
    coefficients = _neighbour_coefficients(op, b.dtype)
    w = b.dtype.type(omega)  # ω in the field's precision, as the reference's numpy/cupy arithmetic
    first = x is None
    current, spare = (xp.empty(b.shape, dtype=b.dtype) if first else x), None
    if first:
        k.launch(_of_rank("jacobi_start", b.ndim), b.shape)(b, coefficients[0], w, current)
    sweep = _of_rank("jacobi_sweep", b.ndim)
    for _ in range(sweeps - first):
        if spare is None:
            spare = xp.empty(b.shape, dtype=b.dtype)
        k.launch(sweep, b.shape)(current, spare, b, *coefficients, *op.periodic, w)
        current, spare = spare, (None if current is x else current)
    return current


def supports_red_black(op, b, x, sweeps, reverse) -> bool:
    """As the fused smoother: a true 2-colouring (no odd periodic axis)."""
    return (sweeps > 0 and (x is None or _on_device(x, b.dtype)) and supports_poisson(op, b)
            and not any(p and n % 2 for p, n in zip(op.periodic, op.shape)))


def red_black(op, b, x, sweeps, reverse):
    """``sweeps`` red-black Gauss-Seidel sweeps (:func:`~.multigrid._gauss_seidel`), colour
    0 first (1 if ``reverse``), from ``x`` (None: zero; not written): two in-place launches
    a sweep on one device buffer."""
    xp, k = xp_of(b), _kernels()
    coefficients = _neighbour_coefficients(op, b.dtype)
    out = xp.zeros(b.shape, dtype=b.dtype) if x is None else x.copy()
    colour = _of_rank("gauss_seidel_colour", b.ndim)
    for _ in range(sweeps):
        for half in range(2):
            k.launch(colour, b.shape)(out, b, *coefficients, *op.periodic, (1 - half) if reverse else half)
    return out


# -- multigrid transfers (2-D, 3-D) --------------------------------------------------------

def supports_transfer(fine, coarse, a) -> bool:
    """A 2-D or 3-D device float array."""
    return _on_device(a) and fine.ndim in (2, 3) and a.ndim == fine.ndim and available()


def _transfer(fine, coarse, dtype):
    """The per-axis weights (a_lo, b_lo, a_hi, b_hi) of ``multigrid._transfer_weights`` as
    contiguous device arrays, the fine fluid mask and whether it is all fluid (cached)."""
    def make(dtype):
        from .multigrid import _transfer_weights
        xp = coarse._xp
        weights = tuple(tuple(xp.ascontiguousarray(w) for w in axis) for axis in _transfer_weights(coarse, dtype))
        return weights, xp.ascontiguousarray(fine._fluid_mask(dtype)), bool(fine.all_fluid)
    return coarse._cached("gpu-transfer", dtype, make)


def prolong(fine, coarse, e):
    """The multigrid prolongation (``multigrid._prolong_reference``): one launch an axis,
    the fine fluid mask applied in the last."""
    weights, fluid, all_fluid = _transfer(fine, coarse, e.dtype)
    xp, nd = xp_of(e), e.ndim
    kernel = _of_rank("prolong_axis", nd)
    for d in range(nd):
        out = xp.empty(tuple(2 * n if a == d else n for a, n in enumerate(e.shape)), dtype=e.dtype)
        _kernels().launch(kernel, out.shape)(e, out, *weights[d], d, fluid, d == nd - 1 and not all_fluid)
        e = out
    return e


def restrict(fine, coarse, r):
    """The multigrid restriction (``multigrid._restrict_reference``, the transpose of
    :func:`prolong` over 2ᵈ): one launch an axis, the last first, the fluid mask applied in
    the first and the scale in the last."""
    weights, fluid, all_fluid = _transfer(fine, coarse, r.dtype)
    xp, nd = xp_of(r), r.ndim
    kernel = _of_rank("restrict_axis", nd)
    for d in reversed(range(nd)):
        out = xp.empty(tuple(n // 2 if a == d else n for a, n in enumerate(r.shape)), dtype=r.dtype)
        _kernels().launch(kernel, out.shape)(r, out, *weights[d], d, fluid, d == nd - 1 and not all_fluid,
                                             0.5 ** nd if d == 0 else 1.0)
        r = out
    return r
