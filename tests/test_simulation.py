"""Simulation steps and differentiable rollouts: Taylor tests through 100 steps,
checkpointed = plain gradients, bounded memory, forward mode."""

import tracemalloc

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as fnp
from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.checkpointing import beta, default_snapshots, parse_bytes, snapshots_for_budget, sweeps_needed
from fluidgrad.grid import Grid
from fluidgrad.ops import PressureSolve
from fluidgrad.simulation import Physics, Simulation
from fluidgrad.testing import check_vjp, taylor_test


def _sim(shape=(24, 16), obstacle=True, physics=Physics(viscosity=0.01, buoyancy=(0.0, 2.0))):
    grid = Grid(shape, (shape[0] / shape[1], 1.0))
    obstacles = [Obstacle("circle", center=(0.6, 0.4), radius=0.12)] if obstacle else []
    domain = Domain(grid, Boundaries.closed(2), obstacles)
    exact = PressureSolve("auto", tolerance=3e-13, adjoint_tolerance=1e-14)  # smooth to round-off
    return Simulation(domain, 0.02, physics, advection="maccormack", pressure=exact)


def _initial(sim, seed=0):
    rng = onp.random.default_rng(seed)
    x, y = sim.domain.grid.mesh()
    density = onp.exp(-((x - 0.8) ** 2 + (y - 0.3) ** 2) / 0.02)
    velocity = [0.3 * rng.standard_normal(s) for s in sim.domain.velocity_shapes]
    return sim.initial_state(velocity=velocity, density=density)


def _loss(state):
    return fnp.sum(state.density ** 2) * 0.01 + fnp.sum(state.velocity[1] ** 2) * 0.01


@pytest.mark.slow
def test_taylor_rate_through_100_steps_wrt_initial_velocity_and_control():
    sim = _sim()
    s0 = _initial(sim)
    rng = onp.random.default_rng(7)
    force0 = tuple(0.1 * rng.standard_normal(s) for s in sim.domain.velocity_shapes)

    def of_velocity(u):
        return _loss(sim.rollout(s0.replace(velocity=u), 100, controls=force0,
                                 force=lambda k, c: c))

    def of_force(f):
        return _loss(sim.rollout(s0, 100, controls=f, force=lambda k, c: c))

    # small steps, large against round-off; a step may still cross a kink of the
    # piecewise smooth map (a grid line, the limiter switching), so the typical rate is
    # judged (a wrong gradient gives 1 at every step)
    for fun, x in ((of_velocity, s0.velocity), (of_force, force0)):
        result = taylor_test(fun, x, h0=1e-5, num=8, full=True)
        assert abs(onp.median(result.rates) - 2) <= 0.1 and min(result.rates) > 1.5, result


def test_checkpointed_and_plain_gradients_agree():
    sim = _sim()
    s0 = _initial(sim)

    def loss(u, **kw):
        return _loss(sim.rollout(s0.replace(velocity=u), 30, **kw))

    g_plain = fg.grad(lambda u: loss(u, checkpoint=False))(s0.velocity)
    for snapshots in (2, 7, 40):
        g_ckpt = fg.grad(lambda u: loss(u, snapshots=snapshots))(s0.velocity)
        for a, b in zip(g_plain, g_ckpt, strict=True):
            onp.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_a_recomputed_step_takes_the_forward_branches(monkeypatch):
    """A checkpoint segment re-runs its steps with the inputs traced as they were: a plain
    zero coefficient stays plain there, so its term is skipped as in the forward. (The
    recomputation used to box it, compute the zero terms: vorticity confinement and a
    viscosity-0 diffusion in every recomputed step, 35 % of a 512² gradient's time, and
    differentiate a slightly different trajectory.)"""
    from fluidgrad.ops import forces
    sim = _sim(obstacle=False, physics=Physics(viscosity=0.0, buoyancy=(0.0, 2.0), vorticity_confinement=0.0))
    s0 = _initial(sim)
    calls = []
    parts = forces._confinement_parts
    monkeypatch.setattr(forces, "_confinement_parts", lambda *a, **k: calls.append(1) or parts(*a, **k))

    def loss(u, **kw):
        return _loss(sim.rollout(s0.replace(velocity=u), 12, **kw))

    g_plain = fg.grad(lambda u: loss(u, checkpoint=False))(s0.velocity)
    g_ckpt = fg.grad(lambda u: loss(u, snapshots=3))(s0.velocity)
    assert not calls
    for a, b in zip(g_plain, g_ckpt, strict=True):
        onp.testing.assert_array_equal(b, a)  # the same operations on the same values


def test_gradients_wrt_physical_parameters():
    sim = _sim(obstacle=False)
    s0 = _initial(sim)

    def loss(params):
        nu, b = params
        return _loss(sim.rollout(s0, 20, physics=Physics(viscosity=nu, buoyancy=(0.0, b))))

    r = check_vjp(loss, (0.01, 2.0), rtol_fd=1e-5)
    assert r.dot_product_error < 1e-10


def test_forward_mode_through_a_checkpointed_rollout():
    sim = _sim()
    s0 = _initial(sim)

    def final_density(u):
        return sim.rollout(s0.replace(velocity=u), 15, snapshots=3).density

    r = check_vjp(final_density, s0.velocity)
    assert r.dot_product_error < 1e-10 and r.finite_difference_error < 1e-6


def _peak_gradient_memory(sim, s0, steps, snapshots, checkpoint=True):
    tracemalloc.start()
    fg.grad(lambda u: _loss(sim.rollout(s0.replace(velocity=u), steps, snapshots=snapshots,
                                        checkpoint=checkpoint)))(s0.velocity)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_checkpointed_peak_memory_does_not_grow_with_the_number_of_steps():
    sim = _sim((48, 32), obstacle=False, physics=Physics(buoyancy=(0.0, 1.0)))
    s0 = _initial(sim)
    _peak_gradient_memory(sim, s0, 2, 4)  # fill the caches first
    short = _peak_gradient_memory(sim, s0, 8, 4)
    long = _peak_gradient_memory(sim, s0, 64, 4)
    assert long <= 2 * short, (short, long)
    plain = _peak_gradient_memory(sim, s0, 64, None, checkpoint=False)
    assert plain > 2 * long, (plain, long)  # the un-checkpointed tape does grow


def test_schedule_arithmetic():
    assert beta(20, 4) == 10626
    assert sweeps_needed(10_000, 20) == 4 and sweeps_needed(1, 3) == 0
    assert parse_bytes("1GB") == 10 ** 9 and parse_bytes("512 MiB") == 512 * 2 ** 20
    assert snapshots_for_budget("1MB", 100_000) == 10
    assert snapshots_for_budget("1GB", 100_000, steps=10) is None
    with pytest.raises(ValueError, match="expected a size like '1GB'") as info:
        parse_bytes("lots")
    assert info.value.key == "optimize.checkpointing.memory_budget"


def test_default_snapshots_are_few_and_leave_out_the_pressure():
    # 512² float32: a state (velocity, density, pressure) is 4 MiB, a snapshot (no pressure) 3 MiB
    cells = 512 * 512 * 4
    assert default_snapshots(100) == 13 and default_snapshots(1000) == 44
    assert beta(44, 2) >= 1000 > beta(43, 2)
    assert snapshots_for_budget(None, 4 * cells, 100, 3 * cells) == 13  # not the 64 that fit 192 MiB
    assert snapshots_for_budget("192MiB", 4 * cells, 100, 3 * cells) == 64  # a budget given is used whole
    assert snapshots_for_budget(None, 4 * cells, 4000, 3 * cells) == 64  # never beyond the default budget
    assert snapshots_for_budget(None, 2 ** 20, 100, 3 * 2 ** 18) == 48  # 256²: as many as fit 36 MiB
    assert snapshots_for_budget(None, 2 ** 18, 100) is None  # 128²: the whole tape fits, no recomputation
    sim = _sim((40, 40), obstacle=False)
    assert sim.snapshot_bytes() == sim.state_bytes() - 40 * 40 * 8


def test_a_snapshot_holds_velocity_and_density_only():
    sim = _sim((128, 128), obstacle=False, physics=Physics(buoyancy=(0.0, 1.0)))
    s0 = _initial(sim)
    _peak_gradient_memory(sim, s0, 4, 2)  # fill the caches first
    few, many = (_peak_gradient_memory(sim, s0, 60, k) for k in (10, 30))  # both 2 sweeps
    per_snapshot = (many - few) / 20
    # a whole state would be 4 arrays of 128² float64 (512 KiB); a snapshot is 3 (384 KiB)
    assert 0.6 * sim.snapshot_bytes() < per_snapshot < 0.5 * (sim.snapshot_bytes() + sim.state_bytes()), \
        (per_snapshot, sim.snapshot_bytes())


def test_recorded_rollout_and_monitor():
    sim = _sim(obstacle=False)
    s0 = _initial(sim)
    seen = []
    states = sim.rollout(s0, 10, record_every=4, monitor=lambda k, s: seen.append(k))
    assert [s.step for s in states] == [0, 4, 8, 10] and seen == list(range(10))
    final = sim.rollout(s0, 10)
    onp.testing.assert_allclose(states[-1].density, final.density, rtol=1e-13)


def test_snapshots_on_disk_give_the_same_gradient(tmp_path):
    sim = _sim(obstacle=False)
    s0 = _initial(sim)

    def loss(u, **kw):
        return _loss(sim.rollout(s0.replace(velocity=u), 12, snapshots=3, **kw))

    g_memory = fg.grad(loss)(s0.velocity)
    seen = []

    def watching(u):
        value = loss(u, snapshot_dir=tmp_path)
        seen.extend(tmp_path.glob("*.npy"))  # snapshots exist during the forward pass
        return value

    g_disk = fg.grad(watching)(s0.velocity)
    for a, b in zip(g_memory, g_disk, strict=True):
        onp.testing.assert_array_equal(a, b)
    assert seen and not list(tmp_path.glob("*.npy"))  # and are removed when no longer needed


def test_the_schedule_uses_the_fewest_step_evaluations():
    """Counted step evaluations (forward + recomputations) equal a brute-force optimum."""
    import functools

    from fluidgrad.checkpointing import binomial_rollout

    @functools.lru_cache(None)
    def fewest(length, snapshots):
        if length <= 1:
            return length
        if snapshots == 0:
            return float("inf")
        return min(m + fewest(length - m, snapshots - 1) + fewest(m, snapshots) for m in range(1, length))

    for length, snapshots in [(7, 2), (20, 3), (33, 4), (45, 3), (60, 6)]:
        calls = []

        def step(k, x, p):
            calls.append(k)
            return x * 1.01 + p

        fg.grad(lambda x: fnp.sum(binomial_rollout(step, x, length, snapshots, 0.5) ** 2))(onp.ones(3))
        assert len(calls) == fewest(length, snapshots), (length, snapshots)


def test_long_rollouts_do_not_recurse_per_step():
    """With as many snapshots as steps (a large memory budget) the schedule must not
    nest one segment per step (3,000 steps would exceed Python's recursion limit)."""
    from fluidgrad.checkpointing import binomial_rollout

    def step(k, x, p):
        return x * 0.999 + p

    for snapshots in (5000, 20):
        g = fg.grad(lambda x: fnp.sum(binomial_rollout(step, x, 3000, snapshots, 0.001) ** 2))(onp.ones(2))
        final = 0.999 ** 3000 + 0.001 * (1 - 0.999 ** 3000) / 0.001
        onp.testing.assert_allclose(g, 2 * final * 0.999 ** 3000, rtol=1e-10)


def test_closed_faces_of_a_state_have_no_effect_and_zero_gradient():
    """A step starts by setting walls, inflow faces and faces touching the obstacle to
    their prescribed velocity: what a state holds there changes nothing downstream."""
    sim = _sim()
    s0 = _initial(sim)
    rng = onp.random.default_rng(4)
    noise = tuple(rng.standard_normal(s) * ~m for s, m in zip(sim.domain.velocity_shapes, sim.domain.open_faces))

    def loss(u):
        return _loss(sim.rollout(s0.replace(velocity=u), 5))

    base = float(loss(s0.velocity))
    assert float(loss(tuple(a + b for a, b in zip(s0.velocity, noise, strict=True)))) == base
    grad = fg.grad(loss)(s0.velocity)
    for g, m in zip(grad, sim.domain.open_faces, strict=True):
        assert onp.all(g[~m] == 0.0)
        assert onp.abs(g[m]).max() > 0


@pytest.mark.parametrize("scheme", ["maccormack", "semi_lagrangian"])
def test_gradient_at_rest_in_the_obstacle_agrees_with_central_differences(scheme):
    """The initial state of a scenario: random velocity in the fluid, exactly zero in the
    obstacle (departure points on grid nodes there). Along random directions that move
    the solid faces too, the adjoint agrees with the best step of central differences."""
    sim = _sim(shape=(16, 12))
    sim.advection = scheme
    x, y = sim.domain.grid.mesh()
    density = onp.exp(-((x - 0.8) ** 2 + (y - 0.3) ** 2) / 0.02)
    rng = onp.random.default_rng(5)
    u0 = tuple(0.3 * rng.standard_normal(s) * m for s, m in zip(sim.domain.velocity_shapes, sim.domain.open_faces))
    s0 = sim.zeros_state().replace(density=density)

    def loss(u):
        return float(_loss(sim.rollout(s0.replace(velocity=u), 8)))

    grad = fg.grad(lambda u: _loss(sim.rollout(s0.replace(velocity=u), 8)))(u0)
    for _ in range(3):
        v = tuple(rng.standard_normal(s) for s in sim.domain.velocity_shapes)
        adjoint = sum(float((g * d).sum()) for g, d in zip(grad, v, strict=True))
        errors = [abs((loss(tuple(a + h * d for a, d in zip(u0, v))) - loss(tuple(a - h * d for a, d in zip(u0, v))))
                      / (2 * h) - adjoint) / abs(adjoint) for h in 10.0 ** -onp.arange(3, 10)]
        assert min(errors) <= 1e-6, errors


def _mixed(scheme="maccormack"):
    """Every physics term, a wall, an outflow face, a circle, CG, random velocity in the fluid."""
    grid = Grid((20, 16), (1.25, 1.0))
    bc = Boundaries.from_dict({"x_lo": "no_slip", "x_hi": "outflow", "y": "free_slip"}, 2)
    domain = Domain(grid, bc, [Obstacle("circle", center=(0.5, 0.45), radius=0.15)])
    sim = Simulation(domain, 0.03, Physics(viscosity=0.01, buoyancy=(0.0, 1.0), vorticity_confinement=0.05),
                     advection=scheme, pressure=PressureSolve("cg", tolerance=1e-13, adjoint_tolerance=1e-14))
    x, y = grid.mesh()
    rng = onp.random.default_rng(0)
    s0 = sim.zeros_state().replace(density=onp.exp(-((x - 0.6) ** 2 + (y - 0.2) ** 2) / 0.02))
    u0 = tuple(0.3 * rng.standard_normal(s) * m for s, m in zip(domain.velocity_shapes, domain.open_faces))
    return sim, s0, u0


@pytest.mark.slow
def test_mixed_scenario_loss_is_continuous_and_its_gradient_agrees():
    """30 MacCormack steps of the mixed scenario, along random directions: one-sided
    differences shrink like ε from 1e-3 to 1e-9 (a jump would leave a plateau), the
    best central difference agrees with the adjoint to 1e-6, and the Taylor remainder
    falls at rate 2 ± 0.1 over a decade of steps (measured: 1.99-2.03, mostly from
    1e-5 to 1e-6; at larger steps the path crosses interpolation kinks)."""
    sim, s0, u0 = _mixed()

    def objective(u):
        return _loss(sim.rollout(s0.replace(velocity=u), 30))

    def f(u, h, v):
        return float(objective(tuple(a + h * b for a, b in zip(u, v))))

    grad = fg.grad(objective)(u0)
    f0 = float(objective(u0))
    norm = onp.sqrt(sum(float((a ** 2).sum()) for a in u0))
    rng = onp.random.default_rng(1)
    eps = 10.0 ** -onp.arange(3, 10)
    for _ in range(4):
        v = [rng.standard_normal(s) for s in sim.domain.velocity_shapes]
        scale = norm / onp.sqrt(sum(float((a ** 2).sum()) for a in v))
        v = [scale * a for a in v]
        slope = sum(float((g * a).sum()) for g, a in zip(grad, v, strict=True))
        one_sided = onp.array([f(u0, e, v) - f0 for e in eps])
        ratios = one_sided[:-1] / one_sided[1:]
        assert onp.all((ratios >= 5) & (ratios <= 20)), ratios
        central = [abs((f(u0, e, v) - f(u0, -e, v)) / (2 * e) - slope) / abs(slope) for e in eps]
        assert min(central) <= 1e-6, central
        remainder = onp.abs(one_sided[:5] - eps[:5] * slope)  # above round-off down to 1e-7
        rates = onp.log10(remainder[:-1] / remainder[1:])
        assert onp.any(onp.abs(rates - 2) <= 0.1), rates
