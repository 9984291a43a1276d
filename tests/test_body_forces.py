"""Forces on obstacles (fluidgrad.forces), the no-slip obstacle walls of the viscous
step, and the inflow profile: exact discrete balances, an analytic channel flow, and
gradients against finite differences."""

import numpy as onp
import pytest

import fluidgrad as fg
from fluidgrad import forces
from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.errors import InputError
from fluidgrad.grid import Grid
from fluidgrad.ops import PressureSolve
from fluidgrad.simulation import Physics, Simulation

TIGHT = PressureSolve(tolerance=1e-12, adjoint_tolerance=1e-13)


def _uniform_force(domain, value, axis):
    return tuple(onp.full(domain.face_shape(d), value if d == axis else 0.0) for d in range(domain.ndim))


def _archimedes(n):
    """Per obstacle: (pressure force along y, its discrete volume: the y-faces touching it
    times h², the solid cells' volume) for fluid at rest under a body force g = -3 in y."""
    domain = Domain(Grid((6 * n // 5, n), (1.2, 1.0)), Boundaries.closed(2),
                    [Obstacle("circle", center=(0.5, 0.45), radius=0.2), Obstacle("box", lower=(0.8, 0.2), upper=(1.0, 0.4))])
    sim = Simulation(domain, 0.05, Physics(), pressure=TIGHT)
    state = sim.step(sim.zeros_state(), force=_uniform_force(domain, -3.0, 1))
    assert max(float(onp.abs(u).max()) for u in state.velocity) < 1e-10  # still at rest
    pressure, viscous = forces.obstacle_forces(state, domain, 0.0, sim.dt)
    out = []
    for k, ob in enumerate(domain.obstacles):
        cells = ob.cells(domain.grid)
        below, above = domain._neighbour_cells(cells, 1)
        assert abs(float(pressure[k][0])) < 1e-9 and float(viscous[k][1]) == 0.0
        out.append((float(pressure[k][1]), (below | above).sum() * domain.dx ** 2, cells.sum() * domain.dx ** 2))
    return out


def test_archimedes_the_pressure_force_on_a_body_in_fluid_at_rest_is_the_weight_of_the_fluid_it_displaces():
    # the discrete pressure force telescopes exactly to -g × the faces the body holds
    # (a staircase half a cell larger than its cells on each side), and tends to -g × V
    coarse, fine = _archimedes(20), _archimedes(40)
    for force, faces, _ in coarse + fine:
        onp.testing.assert_allclose(force, 3.0 * faces, rtol=1e-9)
    circle = 0.2 ** 2 * onp.pi
    errors = [abs(run[0][0] / 3.0 - circle) / circle for run in (coarse, fine)]
    assert errors[1] < 0.6 * errors[0] and errors[1] < 0.15


def test_archimedes_in_3d_and_the_force_components_of_a_sphere():
    domain = Domain(Grid((10, 8, 8), (1.25, 1.0, 1.0)), Boundaries.closed(3),
                    [Obstacle("sphere", center=(0.6, 0.5, 0.45), radius=0.25)])
    sim = Simulation(domain, 0.05, Physics(), pressure=TIGHT)
    state = sim.step(sim.zeros_state(), force=_uniform_force(domain, 2.0, 2))  # "gravity" along +z
    (total,) = forces.total_forces(state, domain, 0.0, sim.dt)
    cells = domain.obstacles[0].cells(domain.grid)
    below, above = domain._neighbour_cells(cells, 2)
    onp.testing.assert_allclose(float(total[2]), -2.0 * (below | above).sum() * domain.dx ** 3, rtol=1e-9)
    parts = forces.force_components([float(c) for c in total], domain)
    assert set(parts) == {"drag", "lift", "side"} and parts["side"] == pytest.approx(float(total[2]))


def test_in_a_steady_flow_driven_by_a_body_force_the_obstacle_takes_exactly_that_force():
    # a periodic array of cylinders (Stokes flow through a square array): at steady state
    # the drag (pressure + viscous) equals the force on the fluid, to the steady state's
    # convergence; the same weights without the pre-projection velocity miss it by ~20 %
    domain = Domain(Grid((24, 24), (1.0, 1.0)), Boundaries.periodic(2), [Obstacle("circle", center=(0.5, 0.5), radius=0.2)])
    nu, f = 1.0, 1.0
    sim = Simulation(domain, 0.02, Physics(viscosity=nu), pressure=TIGHT)
    state = sim.rollout(sim.zeros_state(), 250, force=lambda k, c: _uniform_force(domain, f, 0), checkpoint=False)
    pressure, viscous = forces.obstacle_forces(state, domain, nu, sim.dt)
    applied = f * domain.open_faces[0].sum() * domain.dx ** 2
    total = float(pressure[0][0]) + float(viscous[0][0])
    onp.testing.assert_allclose(total, applied, rtol=1e-6)
    assert float(viscous[0][0]) > 0.5 * total  # both parts carry drag; at this viscosity mostly the shear
    assert abs(float(forces.lift(state, domain, nu, sim.dt))) < 1e-9
    assert forces.drag(state, domain, nu, sim.dt, obstacle=0) == pytest.approx(total)


def test_poiseuille_flow_between_obstacle_slabs_is_no_slip_at_their_faces():
    # a periodic box with two solid slabs as the channel walls (obstacles, not box walls),
    # driven by a body force: u(y) = f/(2ν) (y - a)(b - y) with the walls on the cells'
    # faces a, b. The slip the viscous step used to allow (obstacles ignored there) gave
    # a centreline speed twice too high.
    n = 32
    domain = Domain(Grid((8, n), (0.25, 1.0)), Boundaries.periodic(2),
                    [Obstacle("box", lower=(-1, -1), upper=(2, 0.2)), Obstacle("box", lower=(-1, 0.8), upper=(2, 2))])
    a = domain.dx * (1 + int(onp.flatnonzero(domain.solid[0])[onp.flatnonzero(domain.solid[0]) < n // 2].max()))
    b = domain.dx * int(onp.flatnonzero(domain.solid[0])[onp.flatnonzero(domain.solid[0]) > n // 2].min())
    nu, f = 0.5, 1.0
    sim = Simulation(domain, 0.02, Physics(viscosity=nu))
    state = sim.rollout(sim.zeros_state(), 200, force=lambda k, c: _uniform_force(domain, f, 0), checkpoint=False)
    y = domain.grid.cell_centers(1)
    inside = (y > a) & (y < b)
    exact = f / (2 * nu) * (y - a) * (b - y)
    # the mirror ghost is second order: a parabola sits f h² / (8ν) above it
    onp.testing.assert_allclose(state.velocity[0][0][inside], exact[inside], rtol=0, atol=f * domain.dx ** 2 / (4 * nu))
    # and the wall shear it reports is the analytic f (b - a) / 2 on each slab, per unit length
    _, viscous = forces.obstacle_forces(state, domain, nu, sim.dt)
    length = domain.grid.size[0]
    for k in range(2):
        onp.testing.assert_allclose(float(viscous[k][0]), f * (b - a) / 2 * length, rtol=1e-3)


def _channel(n=16):
    spec = {"x_lo": {"type": "inflow", "velocity": [1.0, 0.0]}, "x_hi": "outflow", "y": "no_slip"}
    return Domain(Grid((2 * n, n), (2.0, 1.0)), Boundaries.from_dict(spec, 2),
                  [Obstacle("circle", center=(0.5, 0.45), radius=0.15)])


def test_the_drag_is_differentiable_in_the_inflow_profile():
    domain = _channel()
    sim = Simulation(domain, 0.02, Physics(viscosity=0.01), pressure=TIGHT)
    start = sim.initial_state(velocity=(onp.ones(domain.face_shape(0)), onp.zeros(domain.face_shape(1))))

    def mean_drag(profile):
        states = [start]
        physics = Physics(viscosity=0.01, inflow_profile=profile)
        for _ in range(3):
            states.append(sim.rollout(states[-1], 3, physics=physics))
        return sum(forces.drag(s, domain, 0.01, sim.dt) for s in states[1:]) / 3

    rng = onp.random.default_rng(1)
    profile = 1 + 0.2 * rng.standard_normal(domain.inflow_profile_shape)
    direction = rng.standard_normal(profile.shape)
    value, grad = fg.value_and_grad(mean_drag)(profile)
    _, tangent = fg.jvp(mean_drag, (profile,), (direction,))
    eps = 1e-5
    central = (float(mean_drag(profile + eps * direction)) - float(mean_drag(profile - eps * direction))) / (2 * eps)
    onp.testing.assert_allclose(float(onp.dot(grad, direction)), float(tangent), rtol=1e-9)
    onp.testing.assert_allclose(float(tangent), central, rtol=1e-6)
    assert abs(central) > 1e-4  # the profile does move the drag


def test_the_inflow_profile_sets_the_inflow_faces_and_the_flow_rate():
    domain = _channel()
    sim = Simulation(domain, 0.02, Physics(viscosity=0.01))
    profile = onp.linspace(0.5, 1.5, domain.inflow_profile_shape[0])
    state = sim.step(sim.zeros_state(), Physics(viscosity=0.01, inflow_profile=profile))
    onp.testing.assert_allclose(state.velocity[0][0], profile, rtol=1e-12)
    with pytest.raises(InputError, match=r"inflow_profile: expected shape \(16,\)"):
        sim.step(sim.zeros_state(), Physics(inflow_profile=onp.ones(5)))
    closed = Domain(Grid((8, 8), (1.0, 1.0)), Boundaries.closed(2))
    with pytest.raises(InputError, match="exactly one inflow face"):
        Simulation(closed, 0.1).step(Simulation(closed, 0.1).zeros_state(), Physics(inflow_profile=onp.ones(8)))


def test_a_fixed_flow_rate_profile_keeps_the_mean_and_its_gradient_has_no_part_along_it():
    from fluidgrad.optimize import InflowProfile
    sim = Simulation(_channel(), 0.02)
    param = InflowProfile("fixed")
    raw = onp.random.default_rng(2).uniform(0.2, 2.0, sim.domain.inflow_profile_shape)
    onp.testing.assert_allclose(float(onp.mean(param.apply((raw,), sim))), 1.0, rtol=1e-14)
    target = onp.linspace(0, 1, raw.size)
    grad = fg.grad(lambda r: fg.numpy.sum(param.apply((r,), sim) * target))(raw)
    assert abs(float(onp.dot(grad, raw))) < 1e-12 * onp.linalg.norm(grad) * onp.linalg.norm(raw)
