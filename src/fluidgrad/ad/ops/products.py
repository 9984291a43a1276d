"""Tensor products: einsum and matmul as primitives; dot, tensordot, inner, outer and
vdot built from them.

The VJP of an einsum with respect to one operand is another einsum of the cotangent
with the other operands (``adj_a[ij] = sum_k g[ik] b[jk]`` for ``ik = ij,jk``).
"""

from __future__ import annotations

import string

import numpy as onp

from ...errors import InputError
from ..core import DifferentiationError, Primitive
from . import arith, reductions, shaping

_LETTERS = string.ascii_letters


def _parse(subscripts, shapes):
    """Explicit per-operand subscripts and the output subscript (ellipses expanded)."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        inputs, output = subscripts.split("->")
    else:
        inputs, output = subscripts, None
    ins = inputs.split(",")
    if len(ins) != len(shapes):
        raise InputError(f"einsum: {len(ins)} subscripts for {len(shapes)} operands")
    used = set(subscripts) - set(".,->")
    free = [c for c in _LETTERS if c not in used]
    n_ell = max((len(s) - len(sub.replace("...", "")) for sub, s in zip(ins, shapes) if "..." in sub),
                default=0)
    ell = "".join(free[:n_ell])
    expanded = []
    for sub, s in zip(ins, shapes):
        if "..." in sub:
            k = len(s) - len(sub.replace("...", ""))
            sub = sub.replace("...", ell[n_ell - k:] if k else "")
        expanded.append(sub)
    if output is None:
        counts = {c: "".join(expanded).count(c) for c in set("".join(expanded))}
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        output = output.replace("...", ell)
    return expanded, output


def _einsum(subscripts, *operands, **kwargs):
    return onp.einsum(subscripts, *operands, **kwargs)


einsum = Primitive(_einsum, "einsum", register=True)


def _einsum_adjoint(g, subscripts, operands, i, kwargs):
    ins, out = _parse(subscripts, [arith.shape_of(o) for o in operands])
    target = ins[i]
    if len(set(target)) != len(target):
        raise DifferentiationError(
            f"einsum {subscripts!r}: an index repeated within one operand (a diagonal or "
            f"trace) is not differentiable here")
    others = [(s, o) for k, (s, o) in enumerate(zip(ins, operands)) if k != i]
    available = set(out).union(*[set(s) for s, _ in others])
    kept = "".join(c for c in target if c in available)
    spec = ",".join([out] + [s for s, _ in others]) + "->" + kept
    adj = einsum(spec, g, *[o for _, o in others], **kwargs)
    shape = arith.shape_of(operands[i])
    if kept != target:  # indices summed in this operand alone: broadcast back over them
        adj = shaping.reshape(adj, tuple(arith.shape_of(adj)[kept.index(c)] if c in kept else 1
                                         for c in target))
    full = onp.broadcast_shapes(arith.shape_of(adj), shape)
    if full != arith.shape_of(adj):
        adj = shaping.broadcast_to(adj, full)
    return arith.unbroadcast(adj, operands[i])


@einsum.defvjp_all
def _einsum_vjp(g, ans, subscripts, *operands, **kwargs):
    return (None, *[_einsum_adjoint(g, subscripts, operands, i, kwargs)
                    if arith.dtype_of(o).kind in "fc" else None for i, o in enumerate(operands)])


@einsum.defjvp_all
def _einsum_jvp(dots, ans, subscripts, *operands, **kwargs):
    total = None
    for i, dot in enumerate(dots[1:]):
        if dot is not None:
            ops = list(operands)
            ops[i] = dot
            part = einsum(subscripts, *ops, **kwargs)
            total = part if total is None else total + part
    return total


matmul = Primitive(onp.matmul, "matmul", register=True)


def _matmul_adj_a(g, ans, a, b):
    """``adj_a = g bᵀ`` (the 1-D cases of matmul promoted to matrices and back)."""
    if shaping._ndim(b) == 1:
        if shaping._ndim(a) == 1:
            return arith.unbroadcast(g * b, a)
        adj = matmul(shaping.expand_dims(g, -1), shaping.reshape(b, (1, -1)))
    elif shaping._ndim(a) == 1:
        adj = shaping.squeeze(matmul(shaping.expand_dims(g, -2), shaping.swapaxes(b, -1, -2)), -2)
    else:
        adj = matmul(g, shaping.swapaxes(b, -1, -2))
    return arith.unbroadcast(adj, a)


def _matmul_adj_b(g, ans, a, b):
    """``adj_b = aᵀ g`` (the 1-D cases of matmul promoted to matrices and back)."""
    if shaping._ndim(a) == 1:
        if shaping._ndim(b) == 1:
            return arith.unbroadcast(g * a, b)
        adj = matmul(shaping.reshape(a, (-1, 1)), shaping.expand_dims(g, -2))
    elif shaping._ndim(b) == 1:
        adj = shaping.squeeze(matmul(shaping.swapaxes(a, -1, -2), shaping.expand_dims(g, -1)), -1)
    else:
        adj = matmul(shaping.swapaxes(a, -1, -2), g)
    return arith.unbroadcast(adj, b)


matmul.defvjp(_matmul_adj_a, _matmul_adj_b, needs=((1,), (0,)))
matmul.defjvp(lambda d, ans, a, b: matmul(d, b), lambda d, ans, a, b: matmul(a, d))


def _any_tensor(*args):
    return any(hasattr(a, "_fg_value") for a in args)


def tensordot(a, b, axes=2):
    """Sum of products over the given axes of ``a`` and ``b`` (numpy.tensordot)."""
    if not _any_tensor(a, b):
        return onp.tensordot(a, b, axes)
    na, nb = shaping._ndim(a), shaping._ndim(b)
    if isinstance(axes, int):
        axes_a, axes_b = list(range(na - axes, na)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
    axes_a = [x % na for x in axes_a]
    axes_b = [x % nb for x in axes_b]
    sa = list(_LETTERS[:na])
    sb = list(_LETTERS[na:na + nb])
    for x, y in zip(axes_a, axes_b):
        sb[y] = sa[x]
    out = [c for k, c in enumerate(sa) if k not in axes_a] + [c for k, c in enumerate(sb) if k not in axes_b]
    return einsum("".join(sa) + "," + "".join(sb) + "->" + "".join(out), a, b)


def dot(a, b):
    """numpy.dot: a product over the last axis of ``a`` and the second-to-last of ``b``."""
    if not _any_tensor(a, b):
        return onp.dot(a, b)
    na, nb = shaping._ndim(a), shaping._ndim(b)
    if na == 0 or nb == 0:
        return arith.multiply(a, b)
    return tensordot(a, b, ([na - 1], [max(nb - 2, 0)]))


def inner(a, b):
    """Sum of products over the last axes of ``a`` and ``b``."""
    if not _any_tensor(a, b):
        return onp.inner(a, b)
    if shaping._ndim(a) == 0 or shaping._ndim(b) == 0:
        return arith.multiply(a, b)
    return tensordot(a, b, ([-1], [-1]))


def outer(a, b):
    """``out[i, j] = a.ravel()[i] * b.ravel()[j]``."""
    if not _any_tensor(a, b):
        return onp.outer(a, b)
    return shaping.reshape(a, (-1, 1)) * shaping.reshape(b, (1, -1))


def vdot(a, b):
    """``sum(conj(a) * b)`` over the flattened arrays."""
    if not _any_tensor(a, b):
        return onp.vdot(a, b)
    return reductions.sum(arith.conj(shaping.ravel(a)) * shaping.ravel(b))
