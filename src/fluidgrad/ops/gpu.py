"""The GPU implementations (kind ``gpu`` of :mod:`.dispatch`): the numba-cuda kernels of
:mod:`.gpu_kernels` launched on device arrays, outputs allocated by the arrays' own module.

:func:`supports` is their half of the dispatch rule: device arrays (they expose
``__cuda_array_interface__``: cupy's do, numpy's and the tests' strict stand-in's do not)
of one float dtype, numba-cuda installed and a device usable. The functions themselves
take any arrays numba-cuda takes, so the ``gpu_sim`` tests call them with numpy arrays in
numba's CUDA simulator, where the dispatch rule never sends them.

Kernels here: ghost-layer padding and its transpose (2-D), semi-Lagrangian advection
forward, VJP and JVP (2-D, Euler backtrace). Everything else runs its array-API reference
on cupy arrays.
"""

from __future__ import annotations

import functools

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
    """Whether the GPU kernels take ``arrays`` on ``domain``: 2-D, the Euler backtrace,
    device arrays of one float dtype."""
    if not hasattr(arrays[0], "__cuda_array_interface__") or domain.ndim != 2 or backtrace != "euler":
        return False  # host arrays first: the rule asks on every kernel call
    dtype = arrays[0].dtype
    return (dtype.kind == "f" and all(hasattr(a, "__cuda_array_interface__") and a.dtype == dtype for a in arrays)
            and available())


def _kernels():
    from . import gpu_kernels
    return gpu_kernels


# -- padding ------------------------------------------------------------------------------

def supports_padding(q, domain, *args, **kwargs) -> bool:
    return q.ndim == 2 and supports((q,), domain)


def pad_field(q, domain, location, homogeneous=False):
    """:func:`~.interpolation.pad_field` on the device."""
    if domain.all_periodic:
        return q
    from .interpolation import _ghost_rules
    rules, pad0, pad1 = _ghost_rules(domain, location)
    out = xp_of(q).empty((q.shape[0] + 2 * pad0, q.shape[1] + 2 * pad1), dtype=q.dtype)
    k = _kernels()
    k.launch(k.pad, out.shape)(q, out, *(float(r) for r in rules), pad0, pad1, homogeneous)
    return out


def pad_field_transpose(g, domain, location):
    """:func:`~.interpolation.pad_field_transpose` on the device."""
    if domain.all_periodic:
        return g
    from .interpolation import _ghost_rules
    rules, pad0, pad1 = _ghost_rules(domain, location)
    out = xp_of(g).empty((g.shape[0] - 2 * pad0, g.shape[1] - 2 * pad1), dtype=g.dtype)
    k = _kernels()
    k.launch(k.pad_transpose, out.shape)(g, out, *(float(rules[i]) for i in (0, 2, 4, 6)), pad0, pad1)
    return out


# -- semi-Lagrangian advection --------------------------------------------------------------

def _layout(domain, location):
    """The field's :class:`~.fused_lattice.Layout` as the kernels' scalars: shifts,
    averaging flags, offsets, periodic flags."""
    from .fused_lattice import Layout
    lay = Layout.of(domain, location)
    return (*(int(s) for s in lay.shift), *(bool(a) for a in lay.avg), float(lay.geo[0]), float(lay.geo[1]),
            bool(lay.geo[2]), bool(lay.geo[3]))


def _padded(q, velocity, domain, location):
    from . import interpolation as interp
    return interp.pad_field(q, domain, location), interp.pad_velocity(velocity, domain)


def semi_lagrangian(q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``q'(x) = I[q](x - Δt U(x))``."""
    qp, (up, vp) = _padded(q, velocity, domain, location)
    out = xp_of(q).empty(q.shape, dtype=q.dtype)
    k = _kernels()
    k.launch(k.sl_forward, q.shape)(out, qp, up, vp, *_layout(domain, location), dt / domain.dx)
    return out


def semi_lagrangian_vjp(g, ans, q, velocity, *, dt, domain, location="center", backtrace="euler"):
    """``(Iᵀ g, Sᵀ(-Δt g ∂I[q]/∂x))`` through the padding's transpose."""
    from . import interpolation as interp
    qp, padded = _padded(q, velocity, domain, location)
    xp = xp_of(q)
    adj_qp, adj = xp.zeros_like(qp), [xp.zeros_like(p) for p in padded]
    layout = _layout(domain, location)
    avg = layout[4:8]
    weights = ((0.5 if avg[0] else 1.0) * (0.5 if avg[1] else 1.0), (0.5 if avg[2] else 1.0) * (0.5 if avg[3] else 1.0))
    k = _kernels()
    k.launch(k.sl_vjp, g.shape)(g, qp, *padded, *layout, dt / domain.dx, adj_qp, *adj, *weights)
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
    k = _kernels()
    k.launch(k.sl_jvp, q.shape)(out, dq, *du, qp, *padded, *_layout(domain, location), dt / domain.dx,
                                dot_q is not None, dot_u is not None)
    return out
