"""Pressure projection: divergence-free results, idempotence, symmetry, solver agreement."""

import numpy as onp
import pytest

from fluidgrad.ops.pressure import PressureSolve, _projection, project
from fluidgrad.ops.stencils import divergence
from fluidgrad.testing import _inner

from ops import domains

EXACT = [("periodic", "fft"), ("periodic", "dct"), ("no_slip", "dct"), ("moving_wall", "dct"),
         ("inflow_outflow", "dct"), ("mixed", "dct")]


def _velocity(domain, seed=0):
    rng = onp.random.default_rng(seed)
    return tuple(rng.standard_normal(s) for s in domain.velocity_shapes)


def _max_div(domain, u):
    return float(onp.abs(divergence(u, domain=domain)[domain.fluid]).max())


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name, solver", EXACT)
def test_fast_solvers_leave_no_divergence(name, solver, ndim):
    domain = domains.make(name, ndim)
    u, _ = project(_velocity(domain), domain=domain, solve=PressureSolve(solver))
    assert _max_div(domain, u) <= 1e-10


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", domains.NAMES)
@pytest.mark.parametrize("solver", ["cg", "multigrid"])
def test_iterative_solvers_reach_their_tolerance(name, solver, ndim):
    domain = domains.make(name, ndim)
    tol = 1e-7
    u, _ = project(_velocity(domain), domain=domain, solve=PressureSolve(solver, tolerance=tol))
    assert _max_div(domain, u) <= tol


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", ["periodic", "no_slip", "free_slip", "mixed", "obstacle"])
def test_projection_is_idempotent_and_symmetric_with_walls_and_obstacles(name, ndim):
    domain = domains.make(name, ndim)
    settings = PressureSolve("auto", tolerance=1e-13, adjoint_tolerance=1e-13)

    def p(u):
        return _projection(u, domain, settings, homogeneous=True)[0]

    u, w = _velocity(domain, 1), _velocity(domain, 2)
    pu = p(u)
    ppu = p(pu)
    assert max(float(onp.abs(a - b).max()) for a, b in zip(ppu, pu, strict=True)) <= 1e-11
    lhs, rhs = _inner(pu, w), _inner(u, p(w))
    assert abs(lhs - rhs) <= 1e-11 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_outflow_projection_is_symmetric_in_the_face_weighted_inner_product(ndim):
    """An outflow face's pressure gradient spans half a cell: P is self-adjoint for
    ⟨x, y⟩ = Σ x y / w with w = 2 on outflow faces, 1 elsewhere."""
    domain = domains.make("inflow_outflow", ndim)
    settings = PressureSolve("dct")
    weights = tuple(onp.where(c == 2, 2.0, 1.0) for c in domain.pressure_conductances)

    def p(u):
        return _projection(u, domain, settings, homogeneous=True)[0]

    u, w = _velocity(domain, 3), _velocity(domain, 4)
    lhs = sum(float((a * b / c).sum()) for a, b, c in zip(p(u), w, weights, strict=True))
    rhs = sum(float((a * b / c).sum()) for a, b, c in zip(u, p(w), weights, strict=True))
    assert abs(lhs - rhs) <= 1e-11 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("name", ["no_slip", "inflow_outflow", "moving_wall"])
def test_all_solvers_agree(name):
    domain = domains.make(name, 2)
    u = _velocity(domain, 5)
    ref, p_ref = project(u, domain=domain, solve=PressureSolve("dct"))
    for solver in ("cg", "multigrid"):
        out, p = project(u, domain=domain, solve=PressureSolve(solver, tolerance=1e-12))
        assert max(float(onp.abs(a - b).max()) for a, b in zip(out, ref, strict=True)) <= 1e-9
        assert float(onp.abs(p - p_ref).max()) <= 1e-9


def test_boundary_values_are_imposed():
    domain = domains.make("inflow_outflow", 2)
    u, _ = project(_velocity(domain, 6), domain=domain)
    onp.testing.assert_allclose(u[0][0], 1.0)           # the inflow's normal velocity
    assert abs(u[1][:, 0]).max() == 0 and abs(u[1][:, -1]).max() == 0   # free-slip walls
    obstacle = domains.make("obstacle", 2)
    u, _ = project(_velocity(obstacle, 7), domain=obstacle)
    closed = ~obstacle.open_faces[0]
    assert abs(u[0][closed]).max() == 0


def test_fft_rejects_walls_and_fast_solvers_reject_obstacles():
    with pytest.raises(ValueError, match="'fft' needs a periodic box"):
        PressureSolve("fft").resolved(domains.make("no_slip", 2))
    with pytest.raises(ValueError, match="cannot handle obstacles"):
        PressureSolve("dct").resolved(domains.make("obstacle", 2))
    with pytest.raises(ValueError, match="unknown solver 'spectral'"):
        PressureSolve("spectral")


def test_float32_stays_float32():
    domain = domains.make("obstacle", 2)
    u = tuple(a.astype(onp.float32) for a in _velocity(domain))
    out, p = project(u, domain=domain, solve=PressureSolve("cg", tolerance=1e-4))
    assert all(a.dtype == onp.float32 for a in out) and p.dtype == onp.float32
