"""Gradient checks for users' own primitives and functions (and for ours).

* :func:`check_vjp` - the dot-product test ``<J v, w> = <v, Jᵀ w>`` between the JVP and
  the VJP, and a central-difference check of the JVP;
* :func:`check_grad` - a scalar function's gradient against central differences (at the
  best step of each direction's U-curve);
* :func:`gradient_check` (flat vectors) / :func:`gradient_check_tree` (nested containers)
  - the full report: U-curves of FD error vs step along random directions, best-step
  errors, plateaus and kinks, the subspace cosine, JVP vs VJP and the Taylor remainder
  rate, as a :class:`GradientReport` (``summary()``, ``to_dict()``); what
  ``fluidgrad gradcheck`` prints;
* :func:`taylor_test` - the convergence rate of ``|f(x + h dx) - f(x) - h <∇f, dx>|``
  as ``h`` halves (2 for a correct gradient, 1 for a wrong one).

All work on nested containers of arrays and on numpy or cupy arrays.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import numpy as fnp
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
    for x, y in zip(leaves, flatten_as(treedef, b) if treedef is not None else [b], strict=True):
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
    for x, d in zip(leaves, dirs, strict=True):
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
                               for x, y in zip(la, lb, strict=True)])


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
    rhs = sum(_inner(t, a) for t, a in zip(tangents, adjoints, strict=True))
    scale = max(abs(lhs), abs(rhs), 1e-300)
    dot_error = abs(lhs - rhs) / scale

    plus = partial(*[_axpy(p, eps, t) for p, t in zip(primals, tangents, strict=True)])
    minus = partial(*[_axpy(p, -eps, t) for p, t in zip(primals, tangents, strict=True)])
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


def check_grad(fun, *args, argnums=0, eps=None, rtol=1e-6, directions=3, seed=0,
               raise_on_failure=True) -> float:
    """Check the gradient of a scalar ``fun`` against central differences along a few
    random directions; returns the largest relative error. By default each direction is
    judged at the best step of its U-curve (error vs step, see :func:`gradient_check`);
    ``eps`` fixes one step instead (the old behaviour)."""
    if eps is None:
        report = gradient_check_tree(fun, *args, argnums=argnums, directions=directions, seed=seed, rtol=rtol,
                                     min_cosine=-1.0)
        worst = report.best_error
        where = f"best step of {len(report.directions[0].steps) if report.directions else 0}"
    else:
        worst = _check_grad_fixed(fun, args, argnums, eps, directions, seed)
        where = f"eps={eps:g}"
    if raise_on_failure and not worst <= rtol:
        raise GradientCheckError(f"{getattr(fun, '__name__', 'function')}: gradient disagrees "
                                 f"with central differences (relative error {worst:.3g} > {rtol:g}, {where})")
    return worst


def _check_grad_fixed(fun, args, argnums, eps, directions, seed):
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
        an = sum(_inner(g, d) for g, d in zip(grads, dirs, strict=True))
        worst = max(worst, abs(fd - an) / max(abs(fd), abs(an), 1e-300))
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


# ---------------------------------------------------------------------------------------
# gradient_check: the U-curve, the subspace cosine, JVP vs VJP and the Taylor remainder

DEFAULT_STEPS = tuple(float(h) for h in np.logspace(-2, -9, 15))  # relative steps, 10^0.5 apart


def _rel(a, b) -> float:
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


def _longest_run(flags):
    """``(start, stop)`` of the longest run of True in ``flags`` (``stop`` exclusive), or None."""
    best, start = None, None
    for i, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


@dataclasses.dataclass
class DirectionCheck:
    """One random direction ``v`` of :func:`gradient_check` (``|v| = 1``).

    ``steps[k]`` is the relative step ``h``; the function is evaluated at ``x ± t v`` with
    ``t = h · max(|x|, 1)``. ``central[k]`` is the central difference at that step,
    ``errors[k]`` its relative error against the adjoint's ``<g, v>`` (the U-curve).
    ``plateau`` is ``(h_hi, h_lo)``, the widest range of steps over which successive
    central differences agree to ``plateau_rtol`` (three steps at least), or None.
    ``one_sided_gap[k]`` is ``|forward - backward| / max(|forward|, |backward|)`` of the
    one-sided differences: it shrinks like ``h`` where ``f`` is smooth and stays put at a
    kink (``kink``: it does not shrink over the plateau). ``taylor_remainders[k]`` is
    ``|f(x + t v) - f(x) - t <g, v>|``, ``taylor_rates[k]`` the rate between steps ``k``
    and ``k + 1``, and ``taylor_range`` ``(h_hi, h_lo)`` the widest range of three or more
    steps, with remainders above round-off, over which the fitted log-log slope
    (``taylor_slope``) is ``2 ± taylor_tol``; ``taylor_decades`` is its width and
    ``taylor_plateau_decades`` the width of its overlap with the plateau.
    """
    adjoint: float
    steps: list
    central: list
    errors: list
    best_step: float
    best_error: float
    best_estimate: float
    plateau: tuple | None
    one_sided_gap: list
    kink: bool
    taylor_remainders: list
    taylor_rates: list
    taylor_range: tuple | None
    taylor_decades: float
    taylor_slope: float | None
    jvp: float | None = None
    jvp_error: float | None = None

    @property
    def plateau_decades(self) -> float:
        return math.log10(self.plateau[0] / self.plateau[1]) if self.plateau else 0.0

    @property
    def taylor_plateau_decades(self) -> float:
        if not (self.plateau and self.taylor_range):
            return 0.0
        hi, lo = min(self.plateau[0], self.taylor_range[0]), max(self.plateau[1], self.taylor_range[1])
        return math.log10(hi / lo) if hi > lo else 0.0


@dataclasses.dataclass
class GradientReport:
    """What :func:`gradient_check` found; ``passed`` when every direction's best-step
    error is at most ``rtol``, the subspace cosine at least ``min_cosine`` and (when a
    JVP was given) JVP and VJP agree to ``jvp_rtol``; with ``require_taylor`` also a
    Taylor rate of 2 over ``min_taylor_decades`` decades inside the plateau in some
    direction (``taylor_decades`` is the widest such overlap; the Taylor remainder sinks
    into round-off soon after the kinks stop, so it is evidence, not a default check). ``smooth`` is
    False when some direction has no plateau or a kink at ``x``; ``diagnosis`` then says
    so in one line."""
    value: float
    size: int
    grad_norm: float
    directions: list
    cosine: float
    best_error: float            # the worst direction's best-step error
    jvp_error: float | None      # the worst direction's |JVP - <g, v>| relative error
    taylor_decades: float        # the widest overlap of a rate-2 range with the plateau
    smooth: bool
    diagnosis: str | None
    passed: bool
    rtol: float
    min_cosine: float
    jvp_rtol: float
    plateau_rtol: float
    taylor_tol: float
    min_taylor_decades: float
    require_taylor: bool
    evaluations: int
    seconds: float

    def rows(self):
        """``(check, value, tolerance text, ok)`` rows of the summary table."""
        rows = []
        for i, d in enumerate(self.directions):
            rows.append((f"direction {i + 1}: best-step FD error (h={d.best_step:.1e}, "
                         f"plateau {'yes' if d.plateau else 'no'})", d.best_error, f"<= {self.rtol:.0e}",
                         d.best_error <= self.rtol))
        rows.append((f"cosine(V^T g, FD) over {len(self.directions)} directions", self.cosine,
                     f">= {self.min_cosine:g}", self.cosine >= self.min_cosine))
        if self.jvp_error is not None:
            rows.append(("forward (JVP) vs adjoint (VJP)", self.jvp_error, f"<= {self.jvp_rtol:.0e}",
                         self.jvp_error <= self.jvp_rtol))
        ok = self.taylor_decades >= self.min_taylor_decades
        rows.append((f"Taylor rate 2±{self.taylor_tol:g} inside the plateau: decades of h", self.taylor_decades,
                     f">= {self.min_taylor_decades:g}", ok if self.require_taylor else None))
        return rows

    def taylor_text(self) -> str:
        parts = []
        for i, d in enumerate(self.directions):
            if d.taylor_range:
                inside = d.taylor_plateau_decades
                parts.append(f"{i + 1}: {d.taylor_slope:.3f} over h {d.taylor_range[0]:.1e}..{d.taylor_range[1]:.1e}"
                             + (f" ({inside:.1f} dec. in plateau)" if inside < d.taylor_decades - 1e-9 else ""))
            else:
                parts.append(f"{i + 1}: none")
        return "Taylor remainder slope (h range) per direction: " + "; ".join(parts)

    def summary(self) -> str:
        lines = [f"  {'check':<66} {'value':>10} {'tolerance':>10}  result"]
        for name, value, tol, ok in self.rows():
            result = "info" if ok is None else ("ok" if ok else "FAILED")
            text = (f"{value:10.8f}" if name.startswith("cosine") else
                    f"{value:10.1f}" if name.startswith("Taylor") else f"{value:10.3e}")
            lines.append(f"  {name:<66} {text} {tol:>10}  {result}")
        lines.append("  " + self.taylor_text())
        if self.diagnosis:
            lines.append("  " + self.diagnosis)
        lines.append(f"  {'PASSED' if self.passed else 'FAILED'} ({self.evaluations} evaluations, "
                     f"{self.seconds:.1f} s)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for d, direction in zip(out["directions"], self.directions):
            d["plateau_decades"] = direction.plateau_decades
            d["taylor_plateau_decades"] = direction.taylor_plateau_decades
        return _jsonable(out)

    @classmethod
    def from_dict(cls, data: dict) -> "GradientReport":
        fields = {f.name for f in dataclasses.fields(DirectionCheck)}
        dirs = []
        for d in data["directions"]:
            d = {k: v for k, v in d.items() if k in fields}
            for key in ("plateau", "taylor_range"):
                d[key] = tuple(d[key]) if d[key] is not None else None
            dirs.append(DirectionCheck(**d))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in names}, "directions": dirs})


def _jsonable(obj):
    """Plain floats (NaN and ±inf as None), lists for tuples."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _taylor(steps, remainders, tol, floor):
    """Rates between consecutive steps, and the widest range of at least three steps
    (a decade at the default spacing) whose remainders all lie above the round-off
    ``floor`` and whose fitted log-log slope is ``2 ± tol`` (each single rate within
    ``2 ± 3 tol``): ``(rates, (h_hi, h_lo) or None, decades, slope)``."""
    rates = []
    for k in range(len(steps) - 1):
        r0, r1 = remainders[k], remainders[k + 1]
        ok = r0 > 0 and r1 > 0 and math.isfinite(r0) and math.isfinite(r1)
        rates.append(math.log(r0 / r1) / math.log(steps[k] / steps[k + 1]) if ok else float("nan"))
    usable = [math.isfinite(r) and r > floor for r in remainders]
    best = None
    for lo in range(len(steps)):
        for hi in range(lo + 2, len(steps)):
            if not all(usable[lo:hi + 1]) or not all(abs(r - 2.0) <= 3 * tol for r in rates[lo:hi]):
                break
            slope = float(np.polyfit(np.log(steps[lo:hi + 1]), np.log(remainders[lo:hi + 1]), 1)[0])
            width = math.log10(steps[lo] / steps[hi])
            if abs(slope - 2.0) <= tol and (best is None or width > best[2] + 1e-12):
                best = ((steps[lo], steps[hi]), slope, width)
    if best is None:
        return rates, None, 0.0, None
    return rates, best[0], best[2], best[1]


def gradient_check(fun, x, grad=None, *, value=None, jvp=None, directions=4, steps=DEFAULT_STEPS,
                   rtol=1e-5, min_cosine=0.9999, jvp_rtol=1e-8, plateau_rtol=None, taylor_tol=0.1,
                   taylor_decades=1.0, require_taylor=False, seed=0, progress=None) -> GradientReport:
    """Check the gradient ``grad`` of the scalar ``fun`` at the flat float vector ``x``
    the way a careful person would, along ``directions`` random unit directions ``v``.

    * the U-curve: central differences ``(f(x + t v) - f(x - t v)) / 2t`` over the
      relative ``steps`` ``h`` (``t = h · max(|x|, 1)``; default 1e-2 … 1e-9, 15 steps)
      against ``<g, v>``. Truncation error falls like ``h²`` from the left, round-off grows
      like ``1/h`` to the right; only the bottom says something about the gradient, so
      each direction is judged by its **best step**;
    * the **plateau**: the widest range of at least three steps over which successive
      central differences agree to ``plateau_rtol`` (default ``rtol``). No plateau
      means FD never settles: the function has kinks within the steps tried (or is noisy)
      and ``smooth`` is False. A kink *at* ``x`` is caught by the one-sided differences,
      whose gap does not shrink as ``h`` does;
    * the **cosine** between ``Vᵀ g`` and the best-step estimates (one per direction);
    * **JVP vs VJP**: ``jvp(v)`` (a callable giving the forward-mode directional
      derivative, or ``"auto"`` to use fluidgrad's :func:`jvp` on ``fun``) against ``<g, v>``;
    * the **Taylor remainder** ``|f(x + t v) - f(x) - t <g, v>|`` from the same
      evaluations: rate 2 for the right gradient, 1 for a wrong one; reported is the
      widest range of ``h`` with every rate in ``2 ± taylor_tol``.

    ``grad`` is the gradient at ``x`` (default: fluidgrad's :func:`value_and_grad` of
    ``fun``) and ``value`` ``fun(x)`` if known. ``progress(n)`` is called after every
    ``n`` evaluations. Costs ``2 · directions · len(steps)`` evaluations of ``fun`` (+1
    for the value, + ``directions`` JVPs). Returns a :class:`GradientReport`.
    """
    import time
    t0 = time.perf_counter()
    x = np.asarray(x, dtype=float).ravel()
    tick = progress or (lambda n: None)
    evaluations = 0

    def f(y):
        nonlocal evaluations
        out = float(to_numpy(fun(y)))
        evaluations += 1
        tick(1)
        return out

    if grad is None:
        val, grad = value_and_grad(fun)(x)
        value = float(to_numpy(val)) if value is None else value
        evaluations += 1
        tick(1)
    grad = np.asarray(to_numpy(grad), dtype=float).ravel()
    if grad.shape != x.shape:
        raise ValueError(f"gradient_check: gradient of shape {grad.shape} for x of shape {x.shape}")
    if value is None:
        value = f(x)
    if jvp == "auto":
        def jvp(v, _fun=fun):
            from .ad.transforms import jvp as forward
            return float(to_numpy(forward(_fun, (x,), (v,))[1]))
    plateau_rtol = rtol if plateau_rtol is None else plateau_rtol
    steps = [float(h) for h in steps]
    scale = max(float(np.linalg.norm(x)), 1.0)
    rng = np.random.default_rng(seed)
    floor = 100 * np.finfo(float).eps * max(abs(value), 1e-300)  # round-off in f(x + t v) - f(x)
    checks = []
    for _ in range(directions):
        v = rng.standard_normal(x.size)
        v /= np.linalg.norm(v)
        d = float(grad @ v)
        central, errors, gaps, remainders = [], [], [], []
        for h in steps:
            t = h * scale
            fp, fm = f(x + t * v), f(x - t * v)
            c = (fp - fm) / (2 * t)
            central.append(c)
            errors.append(_rel(c, d) if math.isfinite(c) else float("inf"))
            gaps.append(_rel((fp - value) / t, (value - fm) / t))
            remainders.append(abs(fp - value - t * d))
        best = int(np.argmin(errors))
        agree = [_rel(a, b) <= plateau_rtol for a, b in zip(central[:-1], central[1:])]
        run = _longest_run(agree)
        plateau = (steps[run[0]], steps[run[1]]) if run and run[1] - run[0] >= 2 else None
        kink = False
        if plateau:
            inside = gaps[run[0]:run[1] + 1]
            # smooth: the gap shrinks like h over the plateau (or is round-off small)
            kink = min(inside) > 10 * plateau_rtol and inside[-1] > 0.5 * inside[0]
        rates, trange, decades, slope = _taylor(steps, remainders, taylor_tol, floor)
        check = DirectionCheck(d, steps, central, errors, steps[best], errors[best], central[best], plateau,
                               gaps, kink, remainders, rates, trange, decades, slope)
        if jvp is not None:
            check.jvp = float(jvp(v))
            check.jvp_error = _rel(check.jvp, d)
            tick(1)
        checks.append(check)

    adjoint = np.array([c.adjoint for c in checks])
    estimates = np.array([c.best_estimate for c in checks])
    denom = float(np.linalg.norm(adjoint) * np.linalg.norm(estimates))
    cosine = float(adjoint @ estimates) / denom if denom > 0 else (1.0 if not adjoint.any() and not estimates.any()
                                                                    else 0.0)
    best_error = max(c.best_error for c in checks)
    jvp_error = max(c.jvp_error for c in checks) if jvp is not None else None
    worst_taylor = max(c.taylor_plateau_decades for c in checks)
    no_plateau = [i + 1 for i, c in enumerate(checks) if c.plateau is None]
    kinks = [i + 1 for i, c in enumerate(checks) if c.kink]
    smooth = not no_plateau and not kinks
    diagnosis = None
    if no_plateau:
        diagnosis = (f"the loss looks non-smooth here: along direction(s) {', '.join(map(str, no_plateau))} "
                     f"the finite differences never settle (no three successive steps agree to "
                     f"{plateau_rtol:.0e}), so the steps tried cross kinks or noise")
    elif kinks:
        gap = max(min(c.one_sided_gap) for c in checks if c.kink)
        diagnosis = (f"the loss looks non-smooth here: it has a kink at this point (along direction(s) "
                     f"{', '.join(map(str, kinks))} the one-sided slopes differ by {gap:.1%} however small the "
                     f"step); check at a nearby point instead")
    passed = (best_error <= rtol and cosine >= min_cosine and (jvp_error is None or jvp_error <= jvp_rtol)
              and (not require_taylor or worst_taylor >= taylor_decades))
    return GradientReport(value, x.size, float(np.linalg.norm(grad)), checks, cosine, best_error, jvp_error,
                          worst_taylor, smooth, diagnosis, bool(passed), rtol, min_cosine, jvp_rtol, plateau_rtol,
                          taylor_tol, taylor_decades, require_taylor, evaluations, time.perf_counter() - t0)


def gradient_check_tree(fun, *args, argnums=0, **options) -> GradientReport:
    """:func:`gradient_check` for a scalar ``fun`` of nested containers of arrays: the
    floating-point leaves of ``args[argnums]`` are flattened into one float64 vector (and
    cast back to their dtype and array module for every evaluation)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    trees = [flatten(args[i]) for i in nums]
    slots = [(t, j) for t, (leaves, _) in enumerate(trees) for j, leaf in enumerate(leaves) if is_differentiable(leaf)]

    def leaf_of(t, j):
        return trees[t][0][j]

    sizes = [int(np.size(to_numpy(leaf_of(t, j)))) for t, j in slots]

    def rebuild(vector):
        full = list(args)
        leaves = [list(ls) for ls, _ in trees]
        offset = 0
        for (t, j), n in zip(slots, sizes):
            old = leaf_of(t, j)
            chunk = vector[offset:offset + n]
            offset += n
            shape, dtype = np.shape(old), getattr(old, "dtype", np.dtype(float))
            if xp_of(old) is np:  # differentiable reshaping: a forward-mode tangent ("auto" JVP) flows through
                leaves[t][j] = fnp.astype(fnp.reshape(chunk, shape), dtype) if shape else chunk[0]
            else:  # a device array: the JVP check is for numpy inputs
                leaves[t][j] = xp_of(old).asarray(np.asarray(chunk).reshape(shape).astype(dtype))
        for (i, (_, treedef)), ls in zip(zip(nums, trees), leaves):
            full[i] = unflatten(treedef, ls) if treedef is not None else ls[0]
        return full

    x = np.concatenate([np.asarray(to_numpy(leaf_of(t, j)), dtype=float).ravel() for t, j in slots]) \
        if slots else np.zeros(0)
    value, grads = value_and_grad(fun, nums)(*args)
    flat_grads = []
    for t, g in enumerate(grads):
        g_leaves = flatten_as(trees[t][1], g) if trees[t][1] is not None else [g]
        for (tt, j) in slots:
            if tt == t:
                leaf = g_leaves[j]
                flat_grads.append(np.zeros(sizes[slots.index((tt, j))]) if leaf is None
                                  else np.asarray(to_numpy(leaf), dtype=float).ravel())
    grad = np.concatenate(flat_grads) if flat_grads else np.zeros(0)
    return gradient_check(lambda y: fun(*rebuild(y)), x, grad, value=float(to_numpy(value)), **options)
