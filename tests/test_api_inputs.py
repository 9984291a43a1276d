"""The Python API checks the arrays it is given at the boundary: a wrong shape, a dtype
that is not real numbers or non-finite values raise an InputError naming the argument
and what was expected (not numpy's broadcast error steps later)."""

import numpy as onp
import pytest

from fluidgrad.errors import InputError
from fluidgrad.scenario import load_scenario


@pytest.fixture(scope="module")
def sim():
    return load_scenario("lid_cavity").simulation()  # 64x64, walls: faces (65, 64) and (64, 65)


@pytest.mark.parametrize("kwargs, message", [
    ({"density": onp.ones((32, 32))}, "density: expected shape (64, 64), got (32, 32)"),
    ({"density": onp.ones((64, 64, 1))}, "density: expected shape (64, 64), got (64, 64, 1)"),
    ({"density": 1.0}, "density: expected shape (64, 64), got ()"),
    ({"density": [[1.0, 2.0], [3.0]]}, "density: expected an array of shape (64, 64), got list"),
    ({"density": onp.full((64, 64), onp.nan)}, "density: holds values that are not finite"),
    ({"density": onp.full((64, 64), 1e300)}, None),  # fine in float64
    ({"density": onp.ones((64, 64), complex)}, "density: expected real numbers, got dtype complex128"),
    ({"density": onp.full((64, 64), "a")}, "density: expected real numbers, got dtype <U1"),
    ({"velocity": [onp.ones((65, 64))]}, "velocity: expected 2 face arrays (one per axis, shapes (65, 64), "
                                         "(64, 65)), got 1"),
    ({"velocity": onp.zeros((64, 64))}, "velocity: expected 2 face arrays"),
    ({"velocity": (onp.zeros((65, 64)), onp.zeros((64, 64)))}, "velocity[1]: expected shape (64, 65), got (64, 64)"),
    ({"velocity": (onp.zeros((65, 64)), onp.full((64, 65), onp.inf))}, "velocity[1]: holds values that are not finite"),
    ({"velocity": 3.0}, "velocity: expected 2 face arrays"),
])
def test_initial_state_names_the_bad_argument(sim, kwargs, message):
    if message is None:
        sim.initial_state(**kwargs)
        return
    with pytest.raises(InputError) as info:
        sim.initial_state(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_float32_overflow_is_not_finite():
    sim = load_scenario("lid_cavity", {"dtype": "float32", "grid.resolution": [8, 8]}).simulation()
    with pytest.raises(InputError, match=r"density: holds values that are not finite \(NaN or Inf\) in float32"):
        sim.initial_state(density=onp.full((8, 8), 1e300))


def test_initial_state_accepts_lists_and_integers():
    sim = load_scenario("lid_cavity", {"grid.resolution": [8, 8]}).simulation()
    state = sim.initial_state(density=[[1] * 8] * 8, velocity=(onp.zeros((9, 8), int), onp.zeros((8, 9))))
    assert state.density.dtype == onp.float64 and state.density.shape == (8, 8)


@pytest.mark.parametrize("args, kwargs, message", [
    ((None, 2), {}, "state: expected a State, got NoneType"),
    (("state", 2.5), {}, "steps: expected a non-negative integer, got 2.5"),
    (("state", -1), {}, "steps: expected a non-negative integer, got -1"),
    (("state", 1), {"force": onp.zeros(3)}, "force: expected a function force(k, controls), got ndarray"),
])
def test_rollout_names_the_bad_argument(args, kwargs, message):
    sim = load_scenario("lid_cavity", {"grid.resolution": [8, 8]}).simulation()
    state = sim.initial_state()
    args = tuple(state if a == "state" else a for a in args)
    with pytest.raises(InputError) as info:
        sim.rollout(*args, **kwargs)
    assert str(info.value) == message
