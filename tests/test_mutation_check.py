"""The mutation list of ``scripts/mutation_check.py`` still applies to the source: each
snippet occurs exactly once in its file and each named test file exists."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
mutation_check = sys.modules["mutation_check"] = importlib.util.module_from_spec(_spec)  # for dataclasses
_spec.loader.exec_module(mutation_check)
MUTATIONS = mutation_check.MUTATIONS


def test_the_list_has_distinct_names_and_covers_the_known_holes():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names)) >= 10


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_each_snippet_occurs_once_and_its_tests_exist(mutation):
    text = (ROOT / "src" / mutation.file).read_text()
    assert text.count(mutation.original) == 1, f"{mutation.name}: snippet not found exactly once in {mutation.file}"
    assert mutation.replacement != mutation.original
    assert mutation_check.apply(text, mutation) != text
    files = [arg.split("::")[0] for arg in mutation.tests if arg.startswith("tests/")]
    assert files and all((ROOT / f).is_file() for f in files), mutation.tests


def test_apply_refuses_a_snippet_that_is_not_found_once():
    m = MUTATIONS[0]
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutation_check.apply("", m)
    with pytest.raises(ValueError, match="occurs 2 times"):
        mutation_check.apply(m.original * 2, m)
