"""The members of a parameter sweep: the product (or, zipped, the pairs) of the varied
keys' values, each member a scenario validated before anything runs.

A varied key is written ``KEY=VALUES`` (``--vary``), ``KEY`` a scenario key path as
``--set`` takes it (``physics.viscosity``, ``obstacles[0].radius``) and ``VALUES`` one of

* ``a,b,c``: YAML values (numbers as a scientist writes them, ``1e-6`` and ``.5``
  included; brackets nest, so ``[32,32],[64,64]`` is two resolutions);
* ``A..B``: the integers A to B, both included (``initial.velocity.seed=0..63``);
* ``linspace(a,b,n)``: n values from a to b, both included; ``logspace(a,b,n)``: n values
  from 10^a to 10^b, both included (numpy's).

Member ``i`` of the product runs fastest in the last key: members of ``--vary a=1,2
--vary b=x,y`` are (1,x), (1,y), (2,x), (2,y).
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as onp

from ..errors import ScenarioError, UsageError

_RANGE = re.compile(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*")
_SPACE = re.compile(r"\s*(linspace|logspace)\s*\((.*)\)\s*")


@dataclasses.dataclass(frozen=True)
class Member:
    """One member: its position in the sweep and the value of each varied key."""

    index: int
    values: dict

    def label(self) -> str:
        """``member 3 (physics.viscosity=0.01, initial.velocity.seed=2)``."""
        return f"member {self.index} ({', '.join(f'{k}={v!r}' for k, v in self.values.items())})"


def parse_vary(item: str) -> tuple[str, list]:
    """``'KEY=VALUES'`` -> ``(KEY, [values])``; a one-line :class:`UsageError` if malformed."""
    from ..scenario import key_parts
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--vary {item!r}: expected KEY=VALUES (e.g. physics.viscosity=0.01,0.02)")
    if key_parts(key) is None:
        raise UsageError(f"--vary {item!r}: {key!r} is not a key path (e.g. physics.viscosity)")
    return key, parse_values(text, key)


def parse_values(text: str, key: str = "KEY") -> list:
    """The values ``VALUES`` stands for (see the module docstring)."""
    if _RANGE.fullmatch(text):
        a, b = (int(g) for g in _RANGE.fullmatch(text).groups())
        if b < a:
            raise UsageError(f"--vary {key}={text}: an empty range (A..B needs A <= B)")
        return list(range(a, b + 1))
    space = _SPACE.fullmatch(text)
    if space:
        return _spaced(space.group(1), space.group(2), key, text)
    values = [_yaml_value(part, key) for part in _split_top_level(text)]
    if not values or any(v is None for v in values):
        raise UsageError(f"--vary {key}={text}: an empty value (expected e.g. {key}=1,2,3)")
    return values


def _spaced(kind, arguments, key, text):
    parts = [_yaml_value(p, key) for p in _split_top_level(arguments)]
    numbers = len(parts) == 3 and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts)
    if not numbers or not float(parts[2]).is_integer() or parts[2] < 1:
        raise UsageError(f"--vary {key}={text}: expected {kind}(a, b, n) with numbers a, b and a count n >= 1")
    a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
    values = onp.linspace(a, b, n) if kind == "linspace" else onp.logspace(a, b, n)
    return [float(v) for v in values]


def _split_top_level(text: str) -> list:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _yaml_value(text, key):
    import yaml
    from ..scenario import load_yaml
    try:
        return load_yaml(text) if text else None
    except yaml.YAMLError:
        raise UsageError(f"--vary {key}: cannot parse value {text!r}") from None


def expand(vary: dict, zipped: bool = False) -> list:
    """The members of a sweep over ``vary`` (key -> list of values, in order): their
    product, or with ``zipped`` the i-th value of every key together (equal lengths)."""
    if not vary:
        raise UsageError("a sweep needs at least one --vary KEY=VALUES")
    keys = list(vary)
    if zipped:
        lengths = {k: len(v) for k, v in vary.items()}
        if len(set(lengths.values())) != 1:
            raise UsageError("--zip needs as many values for every key, got "
                             + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        rows = zip(*(vary[k] for k in keys))
    else:
        rows = itertools.product(*(vary[k] for k in keys))
    return [Member(i, dict(zip(keys, row))) for i, row in enumerate(rows)]


def load_members(scenario, members, overrides: dict | None = None) -> list:
    """Every member's validated :class:`~fluidgrad.scenario.Scenario` (the common
    ``overrides`` first, the member's values on top); a :class:`ScenarioError` listing
    each problem as ``member i (key=value, ...): key.path: message`` if any fails."""
    from ..scenario import load_scenario
    loaded, problems, keys = [], [], []
    for member in members:
        try:
            loaded.append(load_scenario(scenario, {**(overrides or {}), **member.values}))
        except ScenarioError as exc:
            problems += [f"{member.label()}: {p}" for p in exc.problems]
            keys += exc.keys
    if problems:
        raise ScenarioError(problems, keys=keys)
    return loaded
