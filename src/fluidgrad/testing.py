"""Gradient checks for users' own primitives and functions (and for ours).

* :func:`check_vjp` - the dot-product test ``<J v, w> = <v, Jᵀ w>`` between the JVP and
  the VJP, and a central-difference check of the JVP;
* :func:`check_grad` - a scalar function's gradient against central differences;
* :func:`taylor_test` - the convergence rate of ``|f(x + h dx) - f(x) - h <∇f, dx>|``
  as ``h`` halves (2 for a correct gradient, 1 for a wrong one).

All work on nested containers of arrays and on numpy or cupy arrays.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .ad.core import is_differentiable
from .ad.transforms import jvp, value_and_grad, vjp
from .ad.tree import flatten, flatten_as, unflatten
from .backend import to_numpy, xp_of
from .errors import GradientCheckError  # noqa: F401 (re-exported)


@dataclasses.dataclass
class CheckResult:
    dot_product_error: float   # |<Jv,w> - <v,Jᵀw>| / max(|<Jv,w>|, |<v,Jᵀw>|)
    finite_difference_error: float  # ||FD(v) - Jv|| / ||Jv||
    jvp_wt: float              # <J v, w>
    vjp_v: float               # <v, Jᵀ w>


def _inner(a, b) -> float:
    """Σ a·b over all leaves of two trees (None counts as zero)."""
    total = 0.0
    leaves, treedef = flatten(a)
    for x, y in zip(leaves, flatten_as(treedef, b) if treedef is not None else [b]):
        if x is None or y is None:
            continue
        total += float(np.real(np.vdot(to_numpy(x).ravel(), to_numpy(y).ravel())))
    return total


def _norm(a) -> float:
    return math.sqrt(max(_inner(a, a), 0.0))


def _random_like(tree, rng):
    """Standard-normal values shaped like the floating-point leaves of ``tree`` (None elsewhere)."""
    leaves, treedef = flatten(tree)
    out = []
    for leaf in leaves:
        if not is_differentiable(leaf):
            out.append(None)
            continue
        shape = getattr(leaf, "shape", ())
        dtype = getattr(leaf, "dtype", np.dtype(float))
        value = rng.standard_normal(shape).astype(dtype)
        if isinstance(leaf, float):
            out.append(float(value))
        else:
            out.append(xp_of(leaf).asarray(value))
    return unflatten(treedef, out)


def _axpy(tree, h, direction):
    """``tree + h * direction`` leafwise (leaves without a direction unchanged)."""
    leaves, treedef = flatten(tree)
    dirs = flatten_as(treedef, direction) if treedef is not None else [direction]
    out = []
    for x, d in zip(leaves, dirs):
        if d is None:
            out.append(x)
        else:
            y = x + h * d
            out.append(y.astype(x.dtype) if hasattr(x, "dtype") and hasattr(y, "astype") else y)
    return unflatten(treedef, out)


def _sub_scale(a, b, scale):
    la, treedef = flatten(a)
    lb = flatten_as(treedef, b) if treedef is not None else [b]
    return unflatten(treedef, [None if x is None or not is_differentiable(x) else (x - y) * scale
                               for x, y in zip(la, lb)])


def _diff_argnums(args):
    return tuple(i for i, a in enumerate(args) if any(is_differentiable(x) for x in flatten(a)[0]))


def check_vjp(fun, *args, argnums=None, kwargs=None, eps=1e-6, rtol_dot=1e-10, rtol_fd=1e-6,
              seed=0, raise_on_failure=True) -> CheckResult:
    """Check ``fun``'s VJP against its JVP (dot-product test) and its JVP against
    central differences, along random directions. ``argnums`` (default: every argument
    with floating-point leaves) selects the inputs; ``kwargs`` are passed unchanged."""
    kwargs = kwargs or {}
    argnums = _diff_argnums(args) if argnums is None else tuple(argnums)
    rng = np.random.default_rng(seed)

    def partial(*diff_args):
        full = list(args)
        for i, a in zip(argnums, diff_args):
            full[i] = a
        return fun(*full, **kwargs)

    primals = [args[i] for i in argnums]
    tangents = [_random_like(p, rng) for p in primals]
    out, vjp_fn = vjp(partial, *primals)
    cotangent = _random_like(out, rng)
    _, dot_out = jvp(partial, primals, tangents)
    adjoints = vjp_fn(cotangent)

    lhs = _inner(dot_out, cotangent)
    rhs = sum(_inner(t, a) for t, a in zip(tangents, adjoints))
    scale = max(abs(lhs), abs(rhs), 1e-300)
    dot_error = abs(lhs - rhs) / scale

    plus = partial(*[_axpy(p, eps, t) for p, t in zip(primals, tangents)])
    minus = partial(*[_axpy(p, -eps, t) for p, t in zip(primals, tangents)])
    fd = _sub_scale(plus, minus, 1.0 / (2 * eps))
    fd_error = _norm(_sub_scale(fd, dot_out, 1.0)) / max(_norm(dot_out), _norm(fd), 1e-300)

    result = CheckResult(dot_error, fd_error, lhs, rhs)
    name = getattr(fun, "__name__", repr(fun))
    if raise_on_failure:
        if not dot_error <= rtol_dot:
            raise GradientCheckError(f"{name}: dot-product test failed: <Jv,w>={lhs!r} "
                                     f"<v,J^T w>={rhs!r} (relative error {dot_error:.3g} > {rtol_dot:g})")
        if not fd_error <= rtol_fd:
            raise GradientCheckError(f"{name}: JVP disagrees with central differences "
                                     f"(relative error {fd_error:.3g} > {rtol_fd:g}, eps={eps:g})")
    return result


def check_grad(fun, *args, argnums=0, eps=1e-6, rtol=1e-6, directions=3, seed=0,
               raise_on_failure=True) -> float:
    """Check the gradient of a scalar ``fun`` against central differences along a few
    random directions; returns the largest relative error."""
    rng = np.random.default_rng(seed)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    _, grads = value_and_grad(fun, nums)(*args)
    worst = 0.0
    for _ in range(directions):
        dirs = [_random_like(args[i], rng) for i in nums]
        shifted = [list(args), list(args)]
        for i, d in zip(nums, dirs):
            shifted[0][i] = _axpy(args[i], eps, d)
            shifted[1][i] = _axpy(args[i], -eps, d)
        fd = (float(to_numpy(fun(*shifted[0]))) - float(to_numpy(fun(*shifted[1])))) / (2 * eps)
        an = sum(_inner(g, d) for g, d in zip(grads, dirs))
        worst = max(worst, abs(fd - an) / max(abs(fd), abs(an), 1e-300))
    if raise_on_failure and not worst <= rtol:
        raise GradientCheckError(f"{getattr(fun, '__name__', 'function')}: gradient disagrees "
                                 f"with central differences (relative error {worst:.3g} > {rtol:g})")
    return worst


@dataclasses.dataclass
class TaylorResult:
    rate: float           # the smallest observed rate (the one to compare with 2)
    rates: list           # rate between consecutive step sizes
    residuals: list       # |f(x + h dx) - f(x) - h <grad, dx>| for each h
    steps: list           # the step sizes h


def taylor_test(fun, x, dx=None, h0=None, num=5, seed=0, full=False):
    """Observed convergence rate of the first-order Taylor remainder of scalar ``fun``
    at ``x`` along ``dx``: about 2 when the gradient is right, about 1 when it is wrong.
    Returns the smallest rate (or a :class:`TaylorResult` with ``full=True``)."""
    value, g = value_and_grad(fun)(x)
    if dx is None:
        dx = _random_like(x, np.random.default_rng(seed))
    value = float(to_numpy(value))
    slope = _inner(g, dx)
    if h0 is None:
        h0 = 1e-2 * max(_norm(x), 1.0) / max(_norm(dx), 1e-300)
    steps = [h0 / 2 ** k for k in range(num)]
    residuals = [abs(float(to_numpy(fun(_axpy(x, h, dx)))) - value - h * slope) for h in steps]
    rates = [math.log2(r0 / r1) if r1 > 0 and r0 > 0 else float("inf")
             for r0, r1 in zip(residuals[:-1], residuals[1:])]
    result = TaylorResult(min(rates), rates, residuals, steps)
    return result if full else result.rate
