"""Fused ghost-layer padding of 2-D fields and its transpose (numba), the compiled form
of :func:`fluidgrad.ops.interpolation.pad_field` and its adjoint.

``ghost = a·edge + b`` on each padded side (``rules`` = [a_lo0, b_lo0, a_hi0, b_hi0,
a_lo1, b_lo1, a_hi1, b_hi1]; b dropped if ``homogeneous``): axis 0 first, then axis 1 over
the padded rows, as ``stencils.pad`` applied axis by axis; the transpose sends the
ghosts' cotangents back to the edges times a, axis 1 first.
"""

from __future__ import annotations

import numpy as onp

from .compiled import jit, row, prange, twin

MINIMUM = 65536  # cells from which padding runs on several threads (a copy: cheap per cell)


@row
def _pad_edges(q, out, rules, pad0, pad1, homogeneous):
    """The ghost layers of :func:`pad` (the interior is already copied into ``out``)."""
    n0, n1 = q.shape
    o1 = 1 if pad1 else 0
    w = 0.0 if homogeneous else 1.0
    if pad0:
        for j in range(n1):
            out[0, j + o1] = rules[0] * q[0, j] + w * rules[1]
            out[n0 + 1, j + o1] = rules[2] * q[n0 - 1, j] + w * rules[3]
    if pad1:
        for i in range(out.shape[0]):
            out[i, 0] = rules[4] * out[i, 1] + w * rules[5]
            out[i, n1 + 1] = rules[6] * out[i, n1] + w * rules[7]


@twin(MINIMUM)
def pad(q, rules, pad0, pad1, homogeneous):
    """``q`` with a ghost layer on the padded axes (see the module docstring)."""
    n0, n1 = q.shape
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    out = onp.empty((n0 + 2 * o0, n1 + 2 * o1), dtype=q.dtype)
    for i in prange(n0):
        for j in range(n1):  # element-wise: a slice copy compiles numba's shape checks (seconds)
            out[i + o0, j + o1] = q[i, j]
    _pad_edges(q, out, rules, pad0, pad1, homogeneous)
    return out


@row
def _pad_transpose_edges(g, out, rules, pad0, pad1):
    """The ghost cotangents of :func:`pad_transpose` (interior already copied)."""
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    n0, n1 = out.shape
    if pad1:
        for i in range(n0):
            out[i, 0] += rules[4] * g[i + o0, 0]
            out[i, n1 - 1] += rules[6] * g[i + o0, n1 + 1]
    if pad0:
        for j in range(n1):
            lo, hi = g[0, j + o1], g[n0 + 1, j + o1]
            if pad1:  # the corner ghosts went through the axis-1 rule first
                if j == 0:
                    lo += rules[4] * g[0, 0]
                    hi += rules[4] * g[n0 + 1, 0]
                if j == n1 - 1:
                    lo += rules[6] * g[0, n1 + 1]
                    hi += rules[6] * g[n0 + 1, n1 + 1]
            out[0, j] += rules[0] * lo
            out[n0 - 1, j] += rules[2] * hi


@twin(MINIMUM)
def pad_transpose(g, rules, pad0, pad1):
    """Adjoint of :func:`pad` (its linear part)."""
    o0, o1 = (1 if pad0 else 0), (1 if pad1 else 0)
    n0, n1 = g.shape[0] - 2 * o0, g.shape[1] - 2 * o1
    out = onp.empty((n0, n1), dtype=g.dtype)
    for i in prange(n0):
        for j in range(n1):
            out[i, j] = g[i + o0, j + o1]
    _pad_transpose_edges(g, out, rules, pad0, pad1)
    return out


def supports(q, domain, *args, **kwargs) -> bool:
    """A 2-D numpy float array (of a 2-D domain)."""
    return domain.ndim == 2 and type(q) is onp.ndarray and q.ndim == 2 and q.dtype.kind == "f"
