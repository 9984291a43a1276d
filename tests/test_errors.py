"""The error hierarchy: every error fluidgrad raises on purpose is a FluidgradError that
keeps its builtin base; errors caused by a scenario key carry it in ``.key``; the
command line maps the base to its exit codes."""

import pickle

import pytest

import fluidgrad as fg
from fluidgrad import cli, errors
from fluidgrad.ad.core import DifferentiationError
from fluidgrad.backend import BackendError as BackendFromBackend
from fluidgrad.boundaries import Boundaries, BoundaryFace, Domain
from fluidgrad.grid import Grid
from fluidgrad.optimize import ResumeError as ResumeFromOptimize
from fluidgrad.scenario import ScenarioError as ScenarioFromScenario, parse_scenario
from fluidgrad.simulation import Simulation, SimulationError as SimulationFromSimulation
from fluidgrad.testing import GradientCheckError as CheckFromTesting

BUILTIN_BASES = {
    errors.InputError: ValueError, errors.UnknownNameError: ValueError, errors.ScenarioError: ValueError,
    errors.UsageError: ValueError, errors.ResumeError: ValueError, errors.BackendError: RuntimeError,
    errors.SolveError: RuntimeError, errors.SimulationError: RuntimeError,
    errors.DifferentiationError: TypeError, errors.GradientCheckError: AssertionError,
}

BASE = {"grid": {"resolution": [8, 8]}, "time": {"dt": 0.01, "steps": 2}}


@pytest.mark.parametrize("cls", sorted(BUILTIN_BASES, key=lambda c: c.__name__))
def test_every_error_is_a_fluidgrad_error_and_keeps_its_builtin(cls):
    assert issubclass(cls, fg.FluidgradError) and issubclass(cls, BUILTIN_BASES[cls])
    assert getattr(fg, cls.__name__) is cls


def test_every_error_class_of_the_package_is_covered():
    defined = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)}
    assert defined - {errors.FluidgradError} == set(BUILTIN_BASES)


def test_old_import_locations_still_work():
    assert cli.UsageError is errors.UsageError and ScenarioFromScenario is errors.ScenarioError
    assert DifferentiationError is errors.DifferentiationError and CheckFromTesting is errors.GradientCheckError
    assert ResumeFromOptimize is errors.ResumeError and BackendFromBackend is errors.BackendError
    assert SimulationFromSimulation is errors.SimulationError and fg.DifferentiationError is DifferentiationError


def test_a_scenario_error_carries_the_key_of_its_first_problem():
    with pytest.raises(fg.ScenarioError) as info:
        parse_scenario({**BASE, "time": {"dt": -1.0, "steps": 0}})
    exc = info.value
    assert exc.key == "time.dt" and exc.keys == ["time.dt", "time.steps"]
    assert exc.problems[0] == "time.dt: must be positive (got -1.0)"
    assert isinstance(exc, fg.InputError) and isinstance(exc, ValueError)


def test_a_library_error_from_the_boundaries_is_composed_with_its_key():
    with pytest.raises(fg.InputError) as info:
        Boundaries.from_dict({"y_hi": {"type": "no_slip", "velocity": [0.0, 1.0]}}, 2)
    assert info.value.key == "boundaries.y_hi.velocity"
    assert str(info.value) == "a wall cannot move through itself (normal component must be 0)"
    with pytest.raises(fg.ScenarioError) as info:
        parse_scenario({**BASE, "boundaries": {"y_hi": {"type": "no_slip", "velocity": [0.0, 1.0]}}})
    assert info.value.key == "boundaries.y_hi.velocity"
    assert info.value.problems == ["boundaries.y_hi.velocity: a wall cannot move through itself "
                                   "(normal component must be 0)"]


def test_library_messages_carry_no_key_paths():
    with pytest.raises(fg.InputError) as info:
        Grid((8, 8), (1.0, 2.0))
    assert info.value.key == "grid" and str(info.value).startswith("cells must be square")
    sim_args = (Domain(Grid((8, 8), (1.0, 1.0))),)
    with pytest.raises(fg.UnknownNameError) as info:
        Simulation(*sim_args, 0.1, advection="upwind")
    assert info.value.key == "advection" and info.value.name == "upwind"
    assert str(info.value).startswith("unknown advection scheme 'upwind' (expected one of ")
    with pytest.raises(fg.InputError) as info:
        Simulation(*sim_args, -0.1)
    assert info.value.key == "time.dt" and str(info.value) == "must be positive (got -0.1)"


def test_errors_survive_pickling_with_their_fields():
    exc = pickle.loads(pickle.dumps(errors.UnknownNameError("solver", "x", ("a", "b"), key="pressure.solver")))
    assert type(exc) is errors.UnknownNameError and exc.key == "pressure.solver" and exc.choices == ("a", "b")
    exc = pickle.loads(pickle.dumps(errors.ScenarioError(["a: bad", "b: worse"], keys=["a", "b"])))
    assert exc.problems == ["a: bad", "b: worse"] and exc.key == "a"


@pytest.mark.parametrize("exc, code", [
    (errors.InputError("bad", key="x"), 2), (errors.UnknownNameError("thing", "y", ("z",)), 2),
    (errors.UsageError("--out: no"), 2), (errors.ResumeError("other run"), 2), (errors.BackendError("no GPU"), 2),
    (errors.ScenarioError(["a: one", "b: two"]), 2), (errors.SimulationError("blew up at step 3"), 1),
    (errors.SolveError("did not converge"), 1), (errors.DifferentiationError("no rule"), 1),
    (FloatingPointError("NaN"), 1)])
def test_the_cli_maps_the_base_to_exit_codes(exc, code, monkeypatch, capsys):
    def fail(args):
        raise exc
    monkeypatch.setattr(cli, "cmd_list", fail)  # main() builds its parser after this
    assert cli.main(["list"]) == code
    err = capsys.readouterr().err
    lines = getattr(exc, "problems", None) or [str(exc)]
    assert err.splitlines() == [f"fluidgrad: {line}" for line in lines] and "Traceback" not in err


def test_unknown_boundary_kind_names_the_key():
    with pytest.raises(fg.UnknownNameError) as info:
        Boundaries.from_dict({"x_lo": "noslip"}, 2)
    assert info.value.key == "boundaries.x_lo" and "did you mean 'no_slip'?" in str(info.value)
    with pytest.raises(fg.UnknownNameError) as info:
        Boundaries.from_dict({"y": {"type": "wall"}}, 2)
    assert info.value.key == "boundaries.y.type"
    with pytest.raises(fg.UnknownNameError) as info:
        BoundaryFace("wall")
    assert info.value.key is None and info.value.what == "boundary type"
