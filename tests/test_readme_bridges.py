"""The README's PyTorch and JAX examples run as written, and their losses fall."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(heading):
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("heading, framework", [("### With PyTorch", "torch"), ("### With JAX", "jax")])
def test_readme_example_runs_and_its_loss_falls(heading, framework, capsys):
    pytest.importorskip(framework)
    code = _example(heading)
    namespace = {}
    exec(compile(code, f"README {heading}", "exec"), namespace)
    assert "loss" in capsys.readouterr().out
    assert namespace["loss"].item() < 0.5 * 0.026  # both start near 0.026
