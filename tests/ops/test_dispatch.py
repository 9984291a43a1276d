"""One rule picks each kernel's implementation; tests can force the reference and see
which implementation ran."""

import contextlib
import logging

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as fnp
from fluidgrad.ad.core import Primitive
from fluidgrad.errors import UnknownNameError
from fluidgrad.ops import KERNELS, SCHEMES, advect, advect_state, compiled, record, register_scheme, use_reference
from fluidgrad.ops.advection import (_semi_lagrangian_jvp_reference, _semi_lagrangian_reference,
                                     _semi_lagrangian_vjp_reference)
from fluidgrad.ops.dispatch import Kernel

from ops import domains

fused_only = pytest.mark.skipif(not compiled.enabled(), reason="numba is not installed or FLUIDGRAD_NUMBA=0")


@pytest.fixture
def dummy_scheme():
    """A scheme with reference rules only (semi-Lagrangian's arithmetic under a new name)."""
    prim = Primitive(_semi_lagrangian_reference, "dummy_advection")
    prim.defvjp_all(needs=(0, 1))(_semi_lagrangian_vjp_reference)
    prim.defjvp_all(_semi_lagrangian_jvp_reference)
    register_scheme("dummy", prim, "test scheme")
    yield prim
    del SCHEMES["dummy"]


def _state(name="obstacle", seed=0):
    domain = domains.make(name, 2)
    rng = onp.random.default_rng(seed)
    q = rng.standard_normal(domain.grid.shape)
    u = tuple(0.5 * rng.standard_normal(s) for s in domain.velocity_shapes)
    return domain, q, u


def test_every_kernel_has_a_reference_and_known_kinds():
    assert len(KERNELS) >= 15
    for name, kernel in KERNELS.items():
        assert kernel.kinds()[-1] == "reference" and callable(kernel.reference), name
        assert set(kernel.kinds()) <= {"gpu", "fused", "reference"}
    for name in ("advect_state", "advect_state.vjp", "semi_lagrangian", "maccormack.vjp", "project", "project.vjp",
                 "pad_field", "poisson.apply", "poisson.jacobi", "multigrid.red_black", "multigrid.prolong"):
        assert "fused" in KERNELS[name].kinds(), name


def test_a_kernel_name_is_defined_once():
    with pytest.raises(ValueError, match="defined twice"):
        Kernel("advect_state", lambda: None)


@pytest.mark.parametrize("reference", [False, True])
def test_a_registered_scheme_runs_on_every_path_or_raises(dummy_scheme, reference):
    """The dummy scheme has no fused kernels: every kernel that meets it falls back to its
    reference (and says so), and gives semi-Lagrangian's numbers."""
    domain, q, u = _state()
    kw = dict(dt=0.6 * domains.H, domain=domain)
    with use_reference():
        expected_q = advect(q, u, scheme="semi_lagrangian", **kw)
        expected = advect_state.fun((q,), u, scheme="semi_lagrangian", **kw)
        expected_grad = fg.grad(lambda v: fnp.sum(advect_state((q,), v, scheme="semi_lagrangian", **kw)[0][0] ** 2))(u)
    forced = use_reference() if reference else contextlib.nullcontext()
    with forced, record() as ran:
        got_q = advect(q, u, scheme="dummy", **kw)
        got = advect_state.fun((q,), u, scheme="dummy", **kw)
        got_grad = fg.grad(lambda v: fnp.sum(advect_state((q,), v, scheme="dummy", **kw)[0][0] ** 2))(u)
    assert ran.ran("advect_state") == {"reference"} and ran.ran("advect_state.vjp") == {"reference"}
    assert ran.ran("semi_lagrangian") == set()  # the dummy's own rules ran, not semi-Lagrangian's kernel
    onp.testing.assert_array_equal(got_q, expected_q)
    for a, b in zip(got[1], expected[1], strict=True):
        onp.testing.assert_array_equal(a, b)
    onp.testing.assert_array_equal(got[0][0], expected[0][0])
    for a, b in zip(got_grad, expected_grad, strict=True):
        onp.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("reference", [False, True])
def test_an_unknown_scheme_is_an_error_on_every_path(reference):
    domain, q, u = _state()
    kw = dict(dt=0.1, domain=domain, scheme="nope")
    with use_reference() if reference else contextlib.nullcontext():
        for call in (lambda: advect(q, u, **kw), lambda: advect_state((q,), u, **kw),
                     lambda: advect_state.fun((q,), u, **kw),
                     lambda: fg.grad(lambda v: fnp.sum(advect_state((q,), v, **kw)[0][0]))(u)):
            with pytest.raises(UnknownNameError, match="unknown advection scheme 'nope'") as info:
                call()
            assert info.value.key == "advection"


@fused_only
def test_a_declined_implementation_is_logged(dummy_scheme, caplog):
    domain, q, u = _state()
    with caplog.at_level(logging.DEBUG, logger="fluidgrad.ops"):
        advect_state.fun((q,), u, dt=0.1, domain=domain, scheme="dummy")
    assert any("advect_state: the fused implementation does not support" in r.message for r in caplog.records)


def _scenario_gradient(name, steps=2):
    scenario = fg.load_scenario(name)
    sim = scenario.simulation()
    state = scenario.initial_state(sim)

    def loss(velocity):
        return fnp.sum(sim.rollout(state.replace(velocity=velocity), steps).density ** 2)

    return fg.value_and_grad(loss)(state.velocity)


@fused_only
def test_which_implementation_runs_for_a_bundled_scenario():
    """smoke_plume (2-D, closed box, DCT projection, MacCormack): every kernel of a taped
    rollout and its gradient runs fused; under use_reference() none does, and the numbers
    agree."""
    with record() as ran:
        value, grad = _scenario_gradient("smoke_plume")
    summary = ran.summary()
    print(summary)
    for name in ("advect_state", "advect_state.vjp", "project", "project.vjp", "pad_field"):
        assert ran.ran(name) == {"fused"}, (name, summary)
    with use_reference(), record() as ran:
        ref_value, ref_grad = _scenario_gradient("smoke_plume")
    assert all(ran.ran(name) == {"reference"} for name in ran) and "advect_state" in ran, ran.summary()
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
    for a, b in zip(grad, ref_grad, strict=True):
        onp.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * float(onp.abs(b).max()))


@fused_only
def test_the_obstacle_solver_kernels_run_fused():
    """CG with a multigrid preconditioner on a grid deep enough for 3 levels: L x,
    red-black smoothing and the transfers run fused; the coarsest level's dense inverse is
    built by the reference ``L x`` on a batch of unit vectors (the fused kernel takes no
    batch axes), once."""
    from fluidgrad.boundaries import Boundaries, Domain, Obstacle
    from fluidgrad.grid import Grid
    from fluidgrad.ops.pressure import PressureSolve, project
    domain = Domain(Grid((64, 48), (1.0, 0.75)), Boundaries.closed(2), [Obstacle("circle", center=(0.5, 0.4), radius=0.15)])
    rng = onp.random.default_rng(2)
    u = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    with record() as ran:
        project(u, domain=domain, solve=PressureSolve("cg", tolerance=1e-8))
    for name in ("project", "multigrid.red_black", "multigrid.prolong", "multigrid.restrict"):
        assert ran.ran(name) == {"fused"}, (name, ran.summary())
    assert ran["poisson.apply"]["fused"] > 10 and ran["poisson.apply"]["reference"] <= 1, ran.summary()
