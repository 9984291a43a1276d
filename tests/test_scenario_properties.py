"""Property-based test of the scenario layer: random mutations of the bundled scenarios
(values of the wrong type, negative, huge, NaN, strings, nested mappings where numbers
go, lists of the wrong length; deleted keys, unknown keys, changed nesting) fed to
``fluidgrad check`` never give a traceback or an exit code other than 0 or 2, and every
line of an exit-2 message names a key path (or the file).

Derandomized (a fixed sequence of examples, no example database) so CI is reproducible;
for a longer random hunt: ``FG_EXAMPLES=5000 FG_RANDOM=1 FG_DEPTH=6 pytest tests/test_scenario_properties.py``.
"""

import contextlib
import copy
import io
import os
import re
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluidgrad import cli
from fluidgrad.scenario import bundled_dir, bundled_scenarios, read_yaml

EXAMPLES = int(os.environ.get("FG_EXAMPLES", 150))
RANDOM = bool(os.environ.get("FG_RANDOM"))
DEPTH = int(os.environ.get("FG_DEPTH", 3))  # mutations per example, at most
NAMES = sorted(bundled_scenarios())
ORIGINALS = {name: read_yaml(path.read_text()) for name, path in bundled_scenarios().items()}
KEY = re.compile(r"^[A-Za-z_]\w*(\[\d+\])*(\.\w+(\[\d+\])*)*(/\w+)?: \S")
IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)

NUMBERS = st.one_of(st.integers(-3, 3), st.integers(-10 ** 12, 10 ** 12),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1e-300, 1e300, 2 ** 63, 0.5]))
BAD = st.one_of(
    st.none(), st.booleans(), NUMBERS,
    st.sampled_from(["", "nan", ".nan", "NaN", "inf", "-inf", "1e999", "many", "-1", "periodic", "image",
                     "circle", "file", "zero", "density", "cupy", "float16", "fft"]),
    st.text(alphabet="abcxyz_.-0123456789 ", max_size=6),
    st.lists(NUMBERS, max_size=4),
    st.lists(st.integers(1, 40), min_size=1, max_size=4),
    st.dictionaries(IDENT, NUMBERS, max_size=2),
    st.just({"type": "gaussian"}), st.just({"a": {"b": [1, 2]}}), st.just([{"shape": "circle"}]),
    st.just([[1, 2], [3, 4]]),
).map(copy.deepcopy)  # a later mutation must not change a shared example


def _paths(node, path=()):
    """Every path to a value inside ``node`` (the root included)."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, path + (i,))


def _get(node, path):
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(NAMES))
    data = copy.deepcopy(ORIGINALS[name])
    for _ in range(draw(st.integers(1, DEPTH))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap", "unwrap",
                                       "truncate"]))
        target = _get(data, path)
        if action == "add" and isinstance(target, dict):
            target[draw(IDENT)] = draw(BAD)
        elif action == "truncate" and isinstance(target, list) and target:
            target.pop()
        elif not path:
            continue  # the root stays a mapping: its own messages are tested elsewhere
        else:
            parent, key = _get(data, path[:-1]), path[-1]
            if action == "delete":
                del parent[key]
            elif action == "wrap":
                parent[key] = draw(st.sampled_from([[target], {"value": target}, {"type": target}]))
            elif action == "unwrap" and isinstance(target, (dict, list)) and target:
                values = list(target.values()) if isinstance(target, dict) else target
                parent[key] = draw(st.sampled_from(values))
            else:
                parent[key] = draw(BAD)
    return name, data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder with the bundled data files, so relative paths in the mutants resolve."""
    path = tmp_path_factory.mktemp("mutants")
    for file in bundled_dir().iterdir():
        if not file.name.endswith(".yaml"):
            shutil.copy(str(file), path / file.name)
    return path


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(mutated())
def test_check_of_a_mutated_scenario_is_ok_or_one_line_per_problem(folder, case):
    name, data = case
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["check", str(path)])
    assert code in (0, 2), err.getvalue()
    lines = err.getvalue().splitlines()
    assert bool(lines) == (code == 2), err.getvalue()
    for line in lines:
        assert line.startswith("fluidgrad: "), line
        text = line[len("fluidgrad: "):]
        assert text.startswith(f"{path}: ") or KEY.match(text), line
