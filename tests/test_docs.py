"""The documentation's scenario reference covers exactly the keys the validator accepts.

The reference is generated from the validator when the docs are built
(``docs/_ext/scenario_reference.py``); only the meanings are hand-written
(``docs/scenario_keys.yaml``). This checks, without Sphinx, that the two agree, so a new
scenario key without a meaning fails here and not only in the docs build (which
``.ci/run`` runs with warnings as errors: the full build is not repeated here).
"""

import importlib.util
from pathlib import Path

import pytest

from fluidgrad.scenario import bundled_scenarios, load_yaml

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def reference():
    path = DOCS / "_ext" / "scenario_reference.py"
    if not path.exists():
        pytest.skip("no docs/ folder next to the tests")
    spec = importlib.util.spec_from_file_location("scenario_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key_paths(data, prefix=""):
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        if isinstance(value, dict):
            yield from _key_paths(value, path)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _key_paths(item, path + "[]")


def test_every_key_the_validator_accepts_has_a_meaning_and_no_other(reference):
    assert reference.check() == []


def test_the_reference_lists_every_key_of_the_bundled_scenarios(reference):
    records = reference.collect()
    shown = set(reference._shown(records))
    for name, path in bundled_scenarios().items():
        data = load_yaml(path.read_text())
        for key in _key_paths(data):
            key = reference._normal(key)
            if key.startswith("optimize.loss.target."):  # given like initial.density / initial.velocity
                continue
            assert key in shown, f"{name}: {key} is missing from the scenario reference"


def test_the_video_keys_of_the_bundled_scenarios_are_in_the_reference(reference):
    text = reference.render()
    for key in ("output.video.arrows", "output.video.projection"):
        assert f"`{key}`" in text


def test_every_cli_flag_and_argument_has_help_text():
    """Every option and positional argument of every subcommand says what it is."""
    import argparse

    from fluidgrad.cli import build_parser

    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif not isinstance(action, argparse._HelpAction) and action.help in (None, "", argparse.SUPPRESS):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "fluidgrad")
    assert not missing, missing
