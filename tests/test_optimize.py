"""Parameters, optimizers, the resumable loop, and the smoke-target showcase."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as onp
import pytest

import fluidgrad as fg
from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import divergence
from fluidgrad.optimize import (ControlForce, InitialVelocity, PhysicsParameter, Problem, density_mse,
                                make_optimizer, run)
from fluidgrad.simulation import AdjointMonitor, Physics, Simulation, SimulationError, check_finite
from fluidgrad.testing import check_vjp

import tiny_problem

HERE = Path(__file__).parent


@pytest.mark.parametrize("spec, ndim", [({"x": "periodic", "y": "periodic"}, 2), ({}, 2),
                                        ({"x": "periodic"}, 3), ({}, 3)])
def test_stream_function_velocity_is_divergence_free_with_no_flow_through_walls(spec, ndim):
    shape = (8, 6) if ndim == 2 else (6, 5, 4)
    grid = Grid(shape, tuple(n * 0.1 for n in shape))
    sim = Simulation(Domain(grid, Boundaries.from_dict(spec, ndim)), 0.01)
    p = InitialVelocity()
    raw = tuple(onp.random.default_rng(0).standard_normal(s) for s in p.shapes(sim))
    u = p.apply(raw, sim)
    assert [a.shape for a in u] == list(sim.domain.velocity_shapes)
    assert onp.abs(divergence(u, domain=sim.domain)).max() < 1e-12
    for axis in range(ndim):
        if not sim.domain.periodic(axis):
            wall = onp.take(u[axis], [0, -1], axis=axis)
            assert onp.abs(wall).max() == 0


def test_control_force_held_and_upsampled():
    grid = Grid((8, 8), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.periodic(2)), 0.01)
    control = ControlForce(steps=10, hold=4, coarsen=4)
    raw = tuple(onp.random.default_rng(1).standard_normal(s) for s in control.shapes(sim))
    assert raw[0].shape == (3, 2, 2)
    f5 = control.force_at(5, raw, sim)
    assert f5[0].shape == (8, 8) and f5[0][0, 0] == raw[0][1, 0, 0] and f5[0][7, 7] == raw[0][1, 1, 1]
    r = check_vjp(lambda raw: control.force_at(9, raw, sim), raw)
    assert r.dot_product_error < 1e-12


def _quadratic_problem():
    a = onp.diag(onp.linspace(1, 50, 12))
    b = onp.linspace(-1, 1, 12)

    class P:
        def value_and_grad(self, x):
            return float(0.5 * x @ a @ x - b @ x), a @ x - b
    return P(), onp.linalg.solve(a, b)


@pytest.mark.parametrize("kind, options, iterations, tol", [
    ("lbfgs", {}, 40, 1e-8), ("scipy_lbfgsb", {}, 40, 1e-6), ("adam", {"learning_rate": 0.05}, 400, 1e-2),
    ("gd", {"learning_rate": 0.019}, 600, 1e-3)])
def test_optimizers_minimize_a_quadratic(kind, options, iterations, tol):
    problem, solution = _quadratic_problem()
    opt = make_optimizer(kind, **options)
    x = onp.zeros(12)
    state = opt.init(x, *problem.value_and_grad(x))
    if hasattr(opt, "minimize"):
        opt.minimize(state, problem.value_and_grad, iterations, lambda s: state.update(s))
    else:
        for _ in range(iterations):
            state = opt.step(state, problem.value_and_grad)
    assert onp.abs(state["x"] - solution).max() < tol


def test_adam_follows_the_textbook_trajectory():
    """Four steps on ``f = ½ Σ a_i x_i² - b·x``, recomputed here from Kingma & Ba's update
    with its bias correction ``m̂ = m / (1 - β₁ᵗ)``, ``v̂ = v / (1 - β₂ᵗ)``."""
    a, b = [1.0, 4.0], [0.5, -1.0]

    def fun(x):
        x = [float(v) for v in x]
        f = sum(0.5 * ai * xi * xi - bi * xi for ai, xi, bi in zip(a, x, b, strict=True))
        return f, onp.array([ai * xi - bi for ai, xi, bi in zip(a, x, b, strict=True)])

    lr, beta1, beta2, eps = 0.1, 0.9, 0.999, 1e-8
    x, m, v = [0.3, 0.2], [0.0, 0.0], [0.0, 0.0]
    expected = []
    for t in range(1, 5):
        g = [ai * xi - bi for ai, xi, bi in zip(a, x, b, strict=True)]
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        x = [xi - lr * (mi / (1 - beta1 ** t)) / (math.sqrt(vi / (1 - beta2 ** t)) + eps)
             for xi, mi, vi in zip(x, m, v, strict=True)]
        expected.append(x)
    opt = make_optimizer("adam", learning_rate=lr, beta1=beta1, beta2=beta2, eps=eps)
    state = opt.init(onp.array([0.3, 0.2]), *fun([0.3, 0.2]))
    for t, want in enumerate(expected, 1):
        state = opt.step(state, fun)
        assert state["t"] == t
        onp.testing.assert_allclose(state["x"], want, rtol=0, atol=1e-12)
        onp.testing.assert_allclose(state["g"], fun(want)[1], rtol=0, atol=1e-12)


class _QuadraticProblem:
    """The quadratic as an optimization problem for :func:`run` (one 12-number parameter)."""

    parameters = [type("Parameter", (), {"name": "x"})()]
    size, steps = 12, 0

    def __init__(self):
        self.inner, _ = _quadratic_problem()

    def initial_raw(self):
        return onp.zeros(12)

    def flatten(self, raw):
        return onp.asarray(raw, dtype=float)

    def unflatten(self, x):
        return x

    def value_and_grad(self, x):
        return self.inner.value_and_grad(x)


def test_scipy_lbfgsb_resumed_runs_to_the_requested_iteration(tmp_path):
    """3 iterations, then resumed to 8: the history has 8 records; the first 3 are those of
    an 8-iteration run in one go, the last 5 those of a fresh scipy run of 5 iterations from
    the 3rd iterate (its curvature pairs are not saved)."""
    problem, n, k = _QuadraticProblem(), 8, 3
    whole = run(problem, make_optimizer("scipy_lbfgsb"), n)
    first = run(problem, make_optimizer("scipy_lbfgsb"), k, tmp_path)
    resumed = run(problem, make_optimizer("scipy_lbfgsb"), n, tmp_path, resume=True)
    fresh = []
    make_optimizer("scipy_lbfgsb").minimize({"x": first.x}, problem.value_and_grad, n - k, fresh.append)
    assert len(whole.history) == n and len(first.history) == k and len(fresh) == n - k
    assert [h["iteration"] for h in resumed.history] == list(range(1, n + 1))
    assert json.loads((tmp_path / "history.json").read_text()) == resumed.history
    losses = [h["loss"] for h in resumed.history]
    assert losses[:k] == [h["loss"] for h in whole.history[:k]] == [h["loss"] for h in first.history]
    assert losses[k:] == [float(s["f"]) for s in fresh]
    assert [h["grad_norm"] for h in resumed.history[k:]] == [float(onp.linalg.norm(s["g"])) for s in fresh]
    assert onp.array_equal(resumed.x, fresh[-1]["x"]) and resumed.final_loss == losses[-1]


def test_bounds_are_respected():
    problem, _ = _quadratic_problem()
    for kind in ("lbfgs", "scipy_lbfgsb", "adam"):
        opt = make_optimizer(kind, bounds=(-0.01, 0.01))
        x = onp.zeros(12)
        state = opt.init(x, *problem.value_and_grad(x))
        if hasattr(opt, "minimize"):
            opt.minimize(state, problem.value_and_grad, 20, lambda s: state.update(s))
        else:
            for _ in range(20):
                state = opt.step(state, problem.value_and_grad)
        assert onp.abs(state["x"]).max() <= 0.01 + 1e-15


def test_unknown_optimizer_and_option_are_named():
    with pytest.raises(ValueError, match="unknown optimizer 'bfgs'") as info:
        make_optimizer("bfgs")
    assert info.value.key == "optimize.optimizer.type"
    with pytest.raises(ValueError, match=r"^not an option of adam") as info:
        make_optimizer("adam", lr=0.1)
    assert info.value.key == "optimize.optimizer.lr"


@pytest.mark.slow
def test_smoke_target_showcase_loss_drops_tenfold():
    """Optimize the initial velocity so that smoke forms a target after 100 steps."""
    problem = tiny_problem.build(n=32, steps=100, dt=0.01)
    result = run(problem, make_optimizer("lbfgs"), 30)
    assert result.initial_loss / result.final_loss >= 10, (result.initial_loss, result.final_loss)


def test_fit_a_physical_parameter():
    grid = Grid((16, 16), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.closed(2)), 0.02, Physics(buoyancy=(0.0, 0.7)))
    x, y = grid.mesh()
    s0 = sim.initial_state(density=onp.exp(-((x - 0.5) ** 2 + (y - 0.3) ** 2) / 0.01))
    observed = sim.rollout(s0, 15, physics=Physics(buoyancy=(0.0, 1.3))).density
    problem = Problem(sim, s0, [PhysicsParameter("buoyancy")],
                      lambda states, v: density_mse(states[-1], observed), 15)
    result = run(problem, make_optimizer("lbfgs"), 15)
    onp.testing.assert_allclose(result.x, [0.0, 1.3], atol=1e-4)


def test_interrupt_then_resume_gives_the_same_result(tmp_path):
    problem = tiny_problem.build()
    reference = run(problem, make_optimizer("lbfgs"), 6)

    def stop_at_three(record):
        if record["iteration"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(problem, make_optimizer("lbfgs"), 6, tmp_path, callback=stop_at_three)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 3
    resumed = run(problem, make_optimizer("lbfgs"), 6, tmp_path, resume=True)
    assert resumed.final_loss == pytest.approx(reference.final_loss, rel=1e-12)
    assert [h["iteration"] for h in resumed.history] == list(range(1, 7))


@pytest.mark.parametrize("kind", ["adam", "lbfgs"])
def test_sigkill_at_a_random_iteration_then_resume(tmp_path, kind):
    iterations = 6
    reference = run(tiny_problem.build(), make_optimizer(kind), iterations)
    kill_after = int(onp.random.default_rng(20250611).integers(1, iterations - 1))  # seeded: reruns kill alike
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(HERE / "tiny_problem.py"), str(tmp_path), kind,
                             str(iterations)], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if int(line) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = run(tiny_problem.build(), make_optimizer(kind), iterations, tmp_path, resume=True)
    assert resumed.final_loss == pytest.approx(reference.final_loss, rel=1e-12)


def test_resume_state_of_another_optimization_is_rejected(tmp_path):
    problem = tiny_problem.build()
    run(problem, make_optimizer("adam"), 1, tmp_path)
    with pytest.raises(ValueError, match="saved by a different optimization"):
        run(problem, make_optimizer("lbfgs"), 2, tmp_path, resume=True)


def test_per_step_adjoint_norms_and_blow_up_reports():
    problem = tiny_problem.build()
    monitor = AdjointMonitor()
    sim, s0 = problem.sim, problem.initial_state
    fg.grad(lambda d: fg.numpy.sum(sim.rollout(s0.replace(density=d), 12, snapshots=3,
                                               adjoint_monitor=monitor).density ** 2))(s0.density)
    assert sorted(monitor.norms) == list(range(12)) and all(v > 0 for v in monitor.norms.values())
    bad = s0.replace(density=s0.density * onp.nan)
    with pytest.raises(SimulationError, match="step 1: density is not finite"):
        sim.rollout(bad, 3, monitor=check_finite)
    with fg.detect_anomaly():
        with pytest.raises(FloatingPointError, match="forward pass: advect_state produced NaN"):
            fg.grad(lambda d: fg.numpy.sum(sim.step(s0.replace(density=d)).density))(s0.density * onp.nan)


@pytest.mark.parametrize("periodic", [(True, True), (False, True), (False, False)])
def test_gaussian_blur_keeps_constants_spreads_a_point_and_is_differentiable(periodic):
    from fluidgrad.optimize.parameters import gaussian_blur
    onp.testing.assert_allclose(gaussian_blur(onp.full((9, 12), 0.7), 1.5, periodic), 0.7, rtol=1e-14)
    point = onp.zeros((31, 33))
    point[15, 16] = 1.0
    blurred = gaussian_blur(point, 2.0, periodic)
    k = onp.arange(-6, 7)
    w = onp.exp(-k ** 2 / 8.0)
    onp.testing.assert_allclose(blurred[9:22, 16], w / w.sum() * (w[6] / w.sum()), rtol=1e-12)  # separable
    assert abs(blurred.sum() - 1.0) <= 1e-14
    result = check_vjp(lambda z: gaussian_blur(z, 1.3, periodic), onp.random.default_rng(0).standard_normal((7, 8)))
    assert result.dot_product_error <= 1e-12


def test_smoothing_blurs_the_stream_function_before_it_becomes_a_velocity():
    sim = Simulation(Domain(Grid((16, 16), (1.0, 1.0)), Boundaries.periodic(2)), 0.01)
    raw = (onp.random.default_rng(1).standard_normal((16, 16)),)
    from fluidgrad.optimize.parameters import gaussian_blur
    smooth = InitialVelocity(smoothing=2.0).apply(raw, sim)
    expected = InitialVelocity().apply((gaussian_blur(raw[0], 2.0, (True, True)),), sim)
    for a, b in zip(smooth, expected, strict=True):
        onp.testing.assert_allclose(a, b, rtol=1e-14)
    rough = InitialVelocity().apply(raw, sim)
    assert sum(float((a ** 2).sum()) for a in smooth) < 0.1 * sum(float((a ** 2).sum()) for a in rough)


# -- stopping: tolerances, a failed line search, resume ------------------------------------------------


def test_lbfgs_stops_on_the_gradient_tolerance_instead_of_iterating_at_round_off():
    """The buoyancy fit converges in a handful of iterations; before the tolerances it spent
    the remaining ones on line searches at round-off (30 evaluations each)."""
    grid = Grid((16, 16), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.closed(2)), 0.02, Physics(buoyancy=(0.0, 0.7)))
    x, y = grid.mesh()
    s0 = sim.initial_state(density=onp.exp(-((x - 0.5) ** 2 + (y - 0.3) ** 2) / 0.01))
    observed = sim.rollout(s0, 15, physics=Physics(buoyancy=(0.0, 1.3))).density
    calls = []

    class Counted(Problem):
        def value_and_grad(self, x):
            calls.append(1)
            return super().value_and_grad(x)

    problem = Counted(sim, s0, [PhysicsParameter("buoyancy")], lambda states, v: density_mse(states[-1], observed), 15)
    g0 = float(onp.linalg.norm(problem.value_and_grad(problem.flatten(problem.initial_raw()))[1]))
    calls.clear()
    result = run(problem, make_optimizer("lbfgs"), 50)
    onp.testing.assert_allclose(result.x, [0.0, 1.3], atol=2e-5)  # gtol 1e-5: the last step is quadratic
    assert 3 <= len(result.history) <= 8, result.history
    assert len(calls) <= 1 + len(result.history) + 4  # about one evaluation per iteration, no halving sprees
    assert result.stop_reason.startswith("gradient norm"), result.stop_reason
    assert result.history[-1]["grad_norm"] <= 1e-5 * g0 < result.history[-2]["grad_norm"]


@pytest.mark.parametrize("kind, options", [("lbfgs", {}), ("scipy_lbfgsb", {}), ("gd", {"learning_rate": 0.019}),
                                           ("adam", {"learning_rate": 0.05})])
def test_every_optimizer_stops_on_the_relative_decrease(kind, options):
    """On the 12-D quadratic: the last iteration lowers the loss by ≤ ftol relative, none
    before it does (a rise, as Adam's, does not stop); with both tolerances 0 the run goes
    to the iteration limit."""
    problem, solution = _QuadraticProblem(), _quadratic_problem()[1]
    result = run(problem, make_optimizer(kind, **options), 5000)
    losses = [0.0] + [h["loss"] for h in result.history]  # f(0) = 0
    assert len(result.history) < {"lbfgs": 40, "scipy_lbfgsb": 40, "gd": 1000, "adam": 1000}[kind]
    assert result.stop_reason.startswith("relative decrease"), result.stop_reason
    assert 0 <= losses[-2] - losses[-1] <= 2.3e-9 * abs(losses[-2])
    ftol = 2.220446049250313e-09
    assert not any(0 <= a - b <= ftol * abs(a) for a, b in zip(losses[:-2], losses[1:-1]))  # none before
    assert onp.abs(result.x - solution).max() < {"lbfgs": 1e-4, "scipy_lbfgsb": 1e-4, "gd": 1e-2, "adam": 1e-2}[kind]
    fixed = run(problem, make_optimizer(kind, ftol=0, gtol=0, **options), 7)
    assert len(fixed.history) == 7 and fixed.stop_reason == "reached the iteration limit (7 of 7)"


def test_gtol_is_relative_to_the_initial_gradient_norm():
    problem = _QuadraticProblem()
    result = run(problem, make_optimizer("lbfgs", ftol=0, gtol=1e-3), 100)
    g0 = float(onp.linalg.norm(problem.value_and_grad(onp.zeros(12))[1]))
    norms = [h["grad_norm"] for h in result.history]
    assert norms[-1] <= 1e-3 * g0 < norms[-2]
    assert result.stop_reason.startswith("gradient norm") and f"{g0:.3g}" in result.stop_reason


def test_a_line_search_without_decrease_stops_the_run_without_an_iteration():
    """A gradient that does not point downhill (f is constant): the first line search
    gives up after max_backtracks evaluations and the run stops, recording nothing."""
    calls = []

    class Flat(_QuadraticProblem):
        def value_and_grad(self, x):
            calls.append(1)
            return 1.0, onp.ones(12)

    result = run(Flat(), make_optimizer("lbfgs", max_backtracks=7), 50)
    assert result.history == [] and len(calls) == 1 + 7
    assert "line search" in result.stop_reason and result.final_loss == 1.0


def test_a_resumed_converged_run_stops_the_same_way(tmp_path):
    """Interrupted at iteration 5, resumed: the same iterations and reason as a run in one
    go; resuming the finished run again evaluates nothing and says the same."""
    problem = _QuadraticProblem()
    whole = run(problem, make_optimizer("lbfgs"), 500)

    def stop_at_five(record):
        if record["iteration"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(problem, make_optimizer("lbfgs"), 500, tmp_path, callback=stop_at_five)
    resumed = run(problem, make_optimizer("lbfgs"), 500, tmp_path, resume=True)
    assert resumed.history[:5] == json.loads((tmp_path / "history.json").read_text())[:5]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert resumed.stop_reason == whole.stop_reason and resumed.final_loss == whole.final_loss

    class Forbidden(_QuadraticProblem):
        def value_and_grad(self, x):
            raise AssertionError("a finished run must not evaluate again")

    again = run(Forbidden(), make_optimizer("lbfgs"), 500, tmp_path, resume=True)
    assert again.stop_reason == whole.stop_reason and again.history == resumed.history
