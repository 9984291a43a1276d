"""The members of a sweep: the VALUES grammar, product and zip, validation of every
member before anything runs (naming the member and the key)."""

import numpy as onp
import pytest

from fluidgrad.errors import ScenarioError, UsageError
from fluidgrad.sweeps.members import Member, expand, load_members, parse_values, parse_vary


@pytest.mark.parametrize("text, values", [
    ("0.01,0.02", [0.01, 0.02]),
    ("1e-6, 1E-4, .5, 5.", [1e-6, 1e-4, 0.5, 5.0]),
    ("0..3", [0, 1, 2, 3]),
    ("-2..-1", [-2, -1]),
    ("[32,32],[64, 64]", [[32, 32], [64, 64]]),
    ("semi_lagrangian,maccormack", ["semi_lagrangian", "maccormack"]),
    ("'a,b',c", ["a,b", "c"]),
    ("{type: zero},{type: uniform, value: [1, 0]}", [{"type": "zero"}, {"type": "uniform", "value": [1, 0]}]),
])
def test_values(text, values):
    assert parse_values(text) == values


def test_linspace_and_logspace_include_both_ends():
    assert parse_values("linspace(0, 1, 5)") == [0.0, 0.25, 0.5, 0.75, 1.0]
    got = parse_values("logspace(-3,-1,3)")
    assert onp.allclose(got, [1e-3, 1e-2, 1e-1], rtol=1e-15)
    assert all(type(v) is float for v in got)


@pytest.mark.parametrize("item, message", [
    ("physics.viscosity", "expected KEY=VALUES"),
    ("=1,2", "expected KEY=VALUES"),
    ("physics..viscosity=1", "not a key path"),
    ("physics.viscosity=", "an empty value"),
    ("physics.viscosity=1,,2", "an empty value"),
    ("seed=3..1", "an empty range"),
    ("x=linspace(0,1)", "linspace(a, b, n)"),
    ("x=logspace(0,1,2.5)", "count n >= 1"),
    ("x=[1,2", "cannot parse"),
])
def test_malformed_vary_is_a_one_line_usage_error(item, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_vary(item)
    assert "\n" not in str(info.value)


def test_product_runs_fastest_in_the_last_key_and_zip_pairs():
    vary = {"a": [1, 2], "b": ["x", "y", "z"]}
    members = expand(vary)
    assert [tuple(m.values.values()) for m in members] == [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]
    assert [m.index for m in members] == list(range(6))
    zipped = expand({"a": [1, 2], "b": ["x", "y"]}, zipped=True)
    assert [m.values for m in zipped] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(UsageError, match="a: 2, b: 3"):
        expand(vary, zipped=True)
    with pytest.raises(UsageError, match="at least one"):
        expand({})


def test_every_member_is_validated_and_a_bad_one_is_named():
    members = expand({"physics.viscosity": [0.01, -1.0], "time.steps": [3]})
    with pytest.raises(ScenarioError) as info:
        load_members("taylor_green", members)
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.startswith("member 1 (physics.viscosity=-1.0, time.steps=3): physics.viscosity")
    assert info.value.keys == ["physics.viscosity"]


def test_members_get_the_common_overrides_under_their_own_values():
    members = expand({"initial.velocity.amplitude": [0.5, 2.0]})
    loaded = load_members("taylor_green", members, {"time.steps": 4, "initial.velocity.amplitude": 9.0})
    assert [s.steps for s in loaded] == [4, 4]
    assert [s.initial["velocity"]["amplitude"] for s in loaded] == [0.5, 2.0]


def test_a_member_labels_itself():
    assert Member(3, {"a": 0.5, "b": "x"}).label() == "member 3 (a=0.5, b='x')"


from hypothesis import given, strategies as st  # noqa: E402


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=6))
def test_comma_lists_of_numbers_round_trip(values):
    assert parse_values(",".join(repr(v) for v in values)) == values


@given(st.integers(-50, 50), st.integers(0, 40))
def test_integer_ranges_include_both_ends(a, length):
    assert parse_values(f"{a}..{a + length}") == list(range(a, a + length + 1))
