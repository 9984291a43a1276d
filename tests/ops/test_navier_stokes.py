"""Physics from the composed kernels: Taylor-Green decay and plane Poiseuille flow."""

import numpy as onp

from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import advect_velocity, apply_force, diffuse_velocity, make_incompressible


def _step(u, domain, dt, nu, force=None, scheme="maccormack"):
    if force is not None:
        u = apply_force(u, force, dt)
    u = advect_velocity(u, dt=dt, domain=domain, scheme=scheme)
    u = diffuse_velocity(u, nu, dt=dt, domain=domain)
    return make_incompressible(u, domain=domain)


def _taylor_green_decay_rate(nu, dt, t_end=2.0, n=64):
    """Decay rate of the amplitude of u = (sin x cos y, -cos x sin y); exact: 2ν."""
    grid = Grid((n, n), (2 * onp.pi, 2 * onp.pi))
    domain = Domain(grid, Boundaries.periodic(2))
    xu, yu = grid.mesh(0, True)
    xv, yv = grid.mesh(1, True)
    u0 = (onp.sin(xu) * onp.cos(yu), -onp.cos(xv) * onp.sin(yv))
    u = make_incompressible(u0, domain=domain)
    norm = sum((a * a).sum() for a in u0)
    steps = int(round(t_end / dt))
    for _ in range(steps):
        u = _step(u, domain, dt, nu)
    amplitude = sum((a * b).sum() for a, b in zip(u, u0, strict=True)) / norm
    return -onp.log(amplitude) / (steps * dt)


def test_taylor_green_vortex_decays_at_the_analytic_rate():
    nu = 0.1
    rate = _taylor_green_decay_rate(nu, dt=0.02)
    assert abs(rate / (2 * nu) - 1) <= 0.02, rate


def test_taylor_green_numerical_dissipation_is_first_order_in_time():
    """Split advection + projection leaves an O(Δt) decay of the (steady) inviscid vortex."""
    coarse, fine = _taylor_green_decay_rate(0.0, 0.05), _taylor_green_decay_rate(0.0, 0.025)
    assert coarse < 0.3 * 0.05 and 1.7 < coarse / fine < 2.5, (coarse, fine)


def test_plane_poiseuille_flow_reaches_the_parabolic_profile():
    ny, nu, g = 32, 1.0, 8.0
    grid = Grid((8, ny), (0.25, 1.0))
    domain = Domain(grid, Boundaries.from_dict({"x": "periodic"}, 2))
    u = tuple(onp.zeros(s) for s in domain.velocity_shapes)
    force = (onp.full(domain.velocity_shapes[0], g), onp.zeros(domain.velocity_shapes[1]))
    for _ in range(100):
        u = _step(u, domain, 0.05, nu, force)
    y = grid.cell_centers(1)
    exact = g / (2 * nu) * y * (1 - y)
    error = onp.abs(u[0] - exact[None, :]).max() / exact.max()
    assert error <= 0.01, error
    assert onp.abs(u[1]).max() <= 1e-10
