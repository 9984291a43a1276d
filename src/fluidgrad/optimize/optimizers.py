"""Gradient-based optimizers on a flat parameter vector, with saveable state.

Each optimizer is ``init(x, f, g) -> state`` and ``step(state, fun) -> state``, where
``fun(x) -> (f, g)`` evaluates the loss and its gradient and the state is a dict of
arrays and numbers holding at least ``x``, ``f`` and ``g`` of the current iterate.
Because the whole state is saved after every iteration, a resumed run continues
exactly where it stopped (same iterates, same final loss).

* ``gd``: ``x ← x - lr g``;
* ``adam``: Kingma & Ba (2015), bias-corrected moments;
* ``lbfgs``: limited-memory BFGS (two-loop recursion, ``memory`` pairs) with a
  backtracking Armijo line search; bounds by projection;
* ``scipy_lbfgsb``: scipy's L-BFGS-B (``jac=True``, true bound constraints); it keeps
  its curvature pairs internally, so a resumed run restarts from the last iterate.

``clip_grad_norm`` rescales the gradient used by ``gd``/``adam`` to at most that norm.

Every optimizer also carries the stopping tolerances that :func:`~.loop.run` applies
after each iteration (:func:`stop_reason`): ``ftol``, on the relative decrease
``0 ≤ (f_k − f_{k+1}) / |f_k| ≤ ftol`` (scipy L-BFGS-B's default, 2.2e-9), and ``gtol``,
on the gradient norm relative to the initial one, ``‖g_{k+1}‖ ≤ gtol ‖g_0‖`` (1e-5);
0 disables a test. ``lbfgs`` also stops when its line search finds no lower loss.
"""

from __future__ import annotations

import dataclasses

import numpy as onp

from ..errors import InputError, UnknownNameError

OPTIMIZERS = ("lbfgs", "adam", "gd", "scipy_lbfgsb")


FTOL = 2.220446049250313e-09  # scipy L-BFGS-B's default factr·eps (1e7 · 2.2e-16)
GTOL = 1e-5


def _tolerance(default):
    return dataclasses.field(default=default, kw_only=True)


def stop_reason(optimizer, f_old, f_new, g_norm, g0_norm):
    """Why to stop after an iteration from loss ``f_old`` to ``f_new`` (gradient norm
    ``g_norm``; ``g0_norm`` at the start), or None: ``0 ≤ f_old − f_new ≤ ftol |f_old|``
    or ``‖g‖ ≤ gtol ‖g₀‖`` (or a zero gradient)."""
    ftol, gtol = getattr(optimizer, "ftol", FTOL), getattr(optimizer, "gtol", GTOL)
    if g_norm == 0:
        return "the gradient is zero"
    if gtol and g_norm <= gtol * g0_norm:
        return f"gradient norm {g_norm:.3g} <= gtol {gtol:.3g} x the initial {g0_norm:.3g}"
    decrease = f_old - f_new
    if ftol and 0 <= decrease <= ftol * abs(f_old):
        rel = decrease / abs(f_old) if f_old else 0.0
        return f"relative decrease {rel:.3g} <= ftol {ftol:.3g}"
    return None


def _project(x, bounds):
    if bounds is None:
        return x
    lo, hi = bounds
    return onp.clip(x, lo, hi)


def _clipped(g, max_norm):
    if max_norm is None:
        return g
    norm = float(onp.linalg.norm(g))
    return g * (max_norm / norm) if norm > max_norm else g


@dataclasses.dataclass
class GradientDescent:
    learning_rate: float = 0.1
    clip_grad_norm: float | None = None
    bounds: tuple | None = None
    ftol: float = _tolerance(FTOL)
    gtol: float = _tolerance(GTOL)

    def init(self, x, f, g):
        return {"x": x, "f": f, "g": g}

    def step(self, state, fun):
        x = _project(state["x"] - self.learning_rate * _clipped(state["g"], self.clip_grad_norm), self.bounds)
        f, g = fun(x)
        return {"x": x, "f": f, "g": g}


@dataclasses.dataclass
class Adam:
    learning_rate: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip_grad_norm: float | None = None
    bounds: tuple | None = None
    ftol: float = _tolerance(FTOL)
    gtol: float = _tolerance(GTOL)

    def init(self, x, f, g):
        return {"x": x, "f": f, "g": g, "m": onp.zeros_like(x), "v": onp.zeros_like(x), "t": 0}

    def step(self, state, fun):
        g = _clipped(state["g"], self.clip_grad_norm)
        t = state["t"] + 1
        m = self.beta1 * state["m"] + (1 - self.beta1) * g
        v = self.beta2 * state["v"] + (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        x = _project(state["x"] - self.learning_rate * m_hat / (onp.sqrt(v_hat) + self.eps), self.bounds)
        f, g_new = fun(x)
        return {"x": x, "f": f, "g": g_new, "m": m, "v": v, "t": t}


@dataclasses.dataclass
class LBFGS:
    memory: int = 10
    initial_step: float = 1.0   # length of the first (steepest-descent) step
    armijo: float = 1e-4
    max_backtracks: int = 30
    bounds: tuple | None = None
    ftol: float = _tolerance(FTOL)
    gtol: float = _tolerance(GTOL)

    def init(self, x, f, g):
        n = x.size
        return {"x": x, "f": f, "g": g, "s": onp.zeros((0, n)), "y": onp.zeros((0, n))}

    def direction(self, g, s_hist, y_hist):
        """``-H g`` by the two-loop recursion, ``H₀ = (sᵀy / yᵀy) I``."""
        q = g.copy()
        alphas = []
        rhos = [1.0 / float(y @ s) for s, y in zip(s_hist, y_hist)]
        for s, y, rho in reversed(list(zip(s_hist, y_hist, rhos))):
            a = rho * float(s @ q)
            alphas.append(a)
            q = q - a * y
        if len(s_hist):
            q = q * (float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1]))
        for (s, y, rho), a in zip(zip(s_hist, y_hist, rhos), reversed(alphas)):
            b = rho * float(y @ q)
            q = q + (a - b) * s
        return -q

    def step(self, state, fun):
        x, f, g = state["x"], state["f"], state["g"]
        s_hist, y_hist = state["s"], state["y"]
        d = self.direction(g, s_hist, y_hist)
        slope = float(g @ d)
        if slope >= 0 or not onp.isfinite(slope):  # not a descent direction: restart
            s_hist, y_hist = s_hist[:0], y_hist[:0]
            d, slope = -g, -float(g @ g)
        t = 1.0 if len(s_hist) else self.initial_step / max(float(onp.linalg.norm(g)), 1e-300)
        for _ in range(self.max_backtracks):
            x_new = _project(x + t * d, self.bounds)
            f_new, g_new = fun(x_new)
            if onp.isfinite(f_new) and f_new <= f + self.armijo * t * slope:
                break
            t *= 0.5
        else:  # no decrease found: stay, and tell the loop to stop (converged or stalled)
            return {**state, "stop": f"the line search found no lower loss in {self.max_backtracks} halvings "
                                     f"of the step (the loss is at round-off)"}
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12 * float(onp.linalg.norm(s) * onp.linalg.norm(y)):
            s_hist = onp.concatenate([s_hist, s[None]])[-self.memory:]
            y_hist = onp.concatenate([y_hist, y[None]])[-self.memory:]
        return {"x": x_new, "f": f_new, "g": g_new, "s": s_hist, "y": y_hist}


@dataclasses.dataclass
class ScipyLBFGSB:
    """scipy's L-BFGS-B, run as one call; the loop records and saves each iteration
    from its callback (its curvature pairs stay inside scipy)."""

    memory: int = 10
    bounds: tuple | None = None
    ftol: float = _tolerance(FTOL)
    gtol: float = _tolerance(GTOL)

    def init(self, x, f, g):
        return {"x": x, "f": f, "g": g}

    def minimize(self, state, fun, iterations, on_iteration):
        """Run up to ``iterations`` iterations; ``on_iteration(state)`` after each (a true
        return value, a reason to stop, ends the run). Returns scipy's reason when it
        stopped early on its own, else None."""
        from scipy.optimize import minimize
        last = {}

        def wrapped(x):
            f, g = fun(x)
            last.update(x=x.copy(), f=f, g=g)
            return f, g

        def callback(intermediate_result):
            x = intermediate_result.x
            if not ("x" in last and onp.array_equal(last["x"], x)):
                wrapped(x)
            if on_iteration({"x": last["x"], "f": last["f"], "g": last["g"]}):
                raise StopIteration

        bounds = None
        if self.bounds is not None:
            lo = onp.broadcast_to(self.bounds[0], state["x"].shape)
            hi = onp.broadcast_to(self.bounds[1], state["x"].shape)
            bounds = list(zip(lo, hi))
        if iterations > 0:
            res = minimize(wrapped, state["x"], jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                           options={"maxiter": iterations, "maxcor": self.memory, "ftol": 0.0, "gtol": 0.0})
            if res.status not in (1, 99):  # 1: maxiter reached; 99: our callback stopped it
                return f"scipy L-BFGS-B stopped: {res.message}"
        return None


def make_optimizer(kind: str, **options):
    """An optimizer by name, with its options (``learning_rate``, ``memory``, ...)."""
    classes = {"gd": GradientDescent, "adam": Adam, "lbfgs": LBFGS, "scipy_lbfgsb": ScipyLBFGSB}
    if kind not in classes:
        raise UnknownNameError("optimizer", kind, OPTIMIZERS, key="optimize.optimizer.type")
    cls = classes[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InputError(f"not an option of {kind} (expected one of {', '.join(sorted(names))})",
                         key=f"optimize.optimizer.{unknown[0]}")
    return cls(**options)
