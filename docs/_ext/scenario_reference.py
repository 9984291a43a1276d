"""The scenario reference, generated from the validator itself.

Nothing here lists the scenario keys. :func:`collect` runs
:func:`fluidgrad.scenario.parse_scenario` on a few probe scenarios (most of them
invalid on purpose, so that every branch of the validator runs) with its ``_Checker``
replaced by a recording subclass, and notes every call: which keys each mapping accepts
(``keys``), which names a choice allows (``choice``), which values are numbers, vectors,
files or booleans, which keys are required, and the defaults the validator substitutes.
Defaults come from :data:`fluidgrad.scenario.DEFAULTS` and ``OPTIMIZE_DEFAULTS`` first,
then from the validator's own ``default=`` arguments. The small tables (initial-field
types, shapes, boundary kinds, advection schemes) are read from the validator's tables.

The only hand-written part is the meaning of each key, in ``docs/scenario_keys.yaml``.
:func:`check` reports every key the validator accepts that has no meaning there, and
every meaning for a key the validator does not accept, so the two cannot drift: the
Sphinx build logs them as warnings, which ``-W`` turns into errors (and
``tests/test_docs.py`` checks the same without Sphinx).

Run it as a script to print the generated Markdown.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MEANINGS = HERE.parent / "scenario_keys.yaml"

# ---------------------------------------------------------------------------------------
# recording the validator


class _Record:
    """What the validator did with one key path (list items as ``[]``)."""

    def __init__(self):
        self.children = []        # accepted keys, in the validator's order (a mapping)
        self.options = None       # allowed names (a choice)
        self.number = None        # {"integer", "positive", "nonnegative"} flags (a number)
        self.vector = set()       # lengths seen (a vector: one per axis, or fixed)
        self.vector_flags = set()
        self.file = False
        self.boolean = False
        self.required = None      # the validator's "required ..." message
        self.default = None       # the validator's default= argument


_PLACEHOLDERS = {}  # filled by collect(): raw boundary key -> "<face>" / "<axis>"


def _normal(path: str) -> str:
    """``obstacles[2].radius`` -> ``obstacles[].radius``; ``boundaries.x_lo`` -> ``boundaries.<face>``."""
    path = re.sub(r"\[\d+\]", "[]", path)
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "boundaries" and parts[1] in _PLACEHOLDERS:
        parts[1] = _PLACEHOLDERS[parts[1]]
    return ".".join(parts)


@contextlib.contextmanager
def _recording(records: dict):
    from fluidgrad import scenario

    base = scenario._Checker
    state = {"main": None, "depth": 0}

    def rec(path):
        return records.setdefault(_normal(path), _Record())

    class Recorder(base):
        def __init__(self):
            super().__init__()
            if state["main"] is None:  # the first checker of a parse; others (the loss target's) are not recorded
                state["main"] = self

        def _mine(self):
            return state["main"] is self and state["depth"] == 0

        def add(self, path, message, got=None, has_got=False):
            if state["main"] is self:
                if message.startswith("required"):
                    rec(path).required = message
                if message == "expected true or false":
                    rec(path).boolean = True
            return super().add(path, message, got, has_got)

        def keys(self, value, allowed, path):
            if self._mine():
                r = rec(path)
                for key in allowed:
                    child = _normal(f"{path}.{key}" if path else str(key))
                    if child not in r.children:
                        r.children.append(child)
                    rec(child)
            return super().keys(value, allowed, path)

        def number(self, value, path, *, positive=False, nonnegative=False, integer=False, default=None):
            if self._mine():
                r = rec(path)
                r.number = (r.number or set()) | {name for name, on in (("integer", integer), ("positive", positive),
                                                                         ("nonnegative", nonnegative)) if on}
                if default is not None:
                    r.default = default
            return super().number(value, path, positive=positive, nonnegative=nonnegative, integer=integer,
                                  default=default)

        def vector(self, value, n, path, *, positive=False, integer=False):
            if self._mine():
                r = rec(path)
                r.vector.add(n)
                r.vector_flags |= {name for name, on in (("integer", integer), ("positive", positive)) if on}
            state["depth"] += 1
            try:
                return super().vector(value, n, path, positive=positive, integer=integer)
            finally:
                state["depth"] -= 1

        def choice(self, value, options, path, default=None):
            if self._mine():
                r = rec(path)
                r.options = list(options)
                if default is not None:
                    r.default = default
            return super().choice(value, options, path, default)

        def file(self, value, path, base):
            if self._mine():
                rec(path).file = True
            return super().file(value, path, base)

    scenario._Checker = Recorder
    try:
        yield state
    finally:
        scenario._Checker = base


def _probes():
    """Scenarios that make every branch of the validator run (values need not be valid:
    only the validator's calls are recorded)."""
    from fluidgrad.initial import DENSITY_TYPES, VELOCITY_TYPES
    from fluidgrad.scenario import OPTIMIZE_DEFAULTS, SHAPES
    from fluidgrad.optimize.optimizers import OPTIMIZERS

    def shapes(ndim, extra):
        del ndim  # every shape in every dimension: a wrong one only adds a problem
        return [dict({"shape": shape, **{k: 1 for k in keys}}, **extra) for shape, keys in SHAPES.items()]

    def full(ndim, vtype, dtype):
        axes = "xyz"[:ndim]
        faces = [f"{a}_{s}" for a in axes for s in ("lo", "hi")]
        return {
            "name": "probe", "description": "probe",
            "grid": {"resolution": [8] * ndim, "size": [1.0] * ndim},
            "time": {"dt": 0.1, "steps": 2},
            "physics": {"viscosity": 0.1, "buoyancy": [0.0] * ndim, "vorticity_confinement": 0.1},
            "advection": "maccormack",
            "pressure": {"solver": "auto", "tolerance": 1e-6, "adjoint_tolerance": 1e-6, "iterations": 5,
                         "max_iterations": 10, "preconditioner": "multigrid"},
            # an axis by name and as a mapping, a face by name and as a mapping
            "boundaries": {axes[0]: "periodic" if ndim == 2 else {"type": "periodic", "velocity": [0.0] * ndim},
                           faces[2]: "free_slip",
                           **{f: {"type": "no_slip", "velocity": [0.0] * ndim} for f in faces[3:]}},
            "obstacles": shapes(ndim, {"velocity": [0.0] * ndim}),
            "initial": {"velocity": {"type": vtype, **{k: 1 for k in VELOCITY_TYPES[vtype]}},
                        "density": {"type": dtype, **{k: 1 for k in DENSITY_TYPES[dtype]}}},
            "sources": [dict(s, field="density", rate=1.0) for s in shapes(ndim, {})] +
                       [dict(s, field="velocity", value=[0.0] * ndim) for s in shapes(ndim, {})],
            "output": {"every": 1, "video": {"field": "density", "colormap": "viridis", "fps": 30, "format": "mp4",
                                             "projection": "slice", "arrows": "probe"}},
            "backend": "numpy", "dtype": "float64",
            "optimize": {
                "parameters": ["initial_velocity"], "parametrization": "stream", "smoothing": 0.0,
                "loss": {"type": "density_mse", "target": {"type": "zero"}, "times": [1]},
                "regularization": {"smoothness": 0.0, "effort": 0.0},
                "control": {"hold": 1, "coarsen": 1},
                "optimizer": {"type": "adam", "iterations": 1, "learning_rate": 0.1, "memory": 2,
                              "clip_grad_norm": 1.0, "bounds": [0, 1], "ftol": 0.0, "gtol": 0.0},
                "checkpointing": {"memory_budget": "1MB"},
            },
        }

    vtypes, dtypes = list(VELOCITY_TYPES), list(DENSITY_TYPES)
    for i in range(max(len(vtypes), len(dtypes))):
        for ndim in (2, 3):
            yield full(ndim, vtypes[i % len(vtypes)], dtypes[i % len(dtypes)])
    for kind in OPTIMIZERS:  # every optimizer type (some keys are checked per type)
        probe = full(2, "zero", "zero")
        probe["optimize"]["optimizer"]["type"] = kind
        yield probe
    # what is required: left out
    yield {"obstacles": [{"shape": "circle"}, {}], "sources": [{}], "boundaries": {"x_lo": {}, "y": {"velocity": [0.0, 0.0]}},
           "optimize": {"loss": {"type": "density_mse"}}}
    assert set(OPTIMIZE_DEFAULTS)  # the probes above give every optimize key


def collect() -> dict:
    """Key path -> :class:`_Record`, for every key the validator accepts."""
    from fluidgrad.boundaries import face_name
    from fluidgrad.grid import AXES
    from fluidgrad.scenario import ScenarioError, parse_scenario

    _PLACEHOLDERS.clear()
    _PLACEHOLDERS.update({a: "<axis>" for a in AXES})
    _PLACEHOLDERS.update({face_name(a, s): "<face>" for a in range(len(AXES)) for s in (0, 1)})
    records = {"": _Record()}
    for probe in _probes():
        with _recording(records):
            with contextlib.suppress(ScenarioError):
                parse_scenario(probe, None)
    return records


# ---------------------------------------------------------------------------------------
# rendering


def _default_of(path: str):
    """The default of ``path`` in the validator's tables (``None`` if none is given there)."""
    from fluidgrad.scenario import DEFAULTS, OPTIMIZE_DEFAULTS
    parts = path.split(".")
    node = DEFAULTS
    if parts[0] == "optimize" and len(parts) > 1:
        node, parts = OPTIMIZE_DEFAULTS, parts[1:]
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _code(value) -> str:
    if value == "":
        return '`""`'
    if isinstance(value, str):
        return f"`{value}`"
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return f"`{text}`"


def _accepts(path, r: _Record, records, meaning=None) -> str:
    if meaning and "accepts" in meaning:
        return meaning["accepts"]
    item = records.get(path + "[]")
    if item is not None:
        inner = "a mapping (keys below)" if item.children else _accepts(path + "[]", item, records)
        return f"a list; each item {inner}"
    kinds = []
    if r.options is not None:
        kinds.append("one of " + ", ".join(f"`{o}`" for o in r.options))
    if r.number is not None:
        what = "an integer" if "integer" in r.number else "a number"
        if "positive" in r.number:
            what += " > 0"
        elif "nonnegative" in r.number:
            what += " ≥ 0"
        kinds.append(what)
    if r.vector:
        flags = r.vector_flags
        what = "positive integers" if flags == {"integer", "positive"} else (
            "positive numbers" if "positive" in flags else "numbers")
        kinds.append(f"{sorted(r.vector)[0]} {what}" if len(r.vector) == 1 else f"{what}, one per axis")
    if r.file:
        kinds.append("a file path")
    if r.boolean:
        kinds.append("`true` or `false`")
    if r.children:
        kinds.append("a mapping")
    return " or ".join(kinds) if kinds else "(see meaning)"


def _recorded_kind(r: _Record) -> bool:
    return bool(r.options is not None or r.number is not None or r.vector or r.file or r.boolean or r.children)


def _row_default(path, r: _Record, meaning: dict) -> str:
    if "default" in meaning:
        return meaning["default"]
    if r.children:
        return ""
    table = _default_of(path)
    if table is not None:
        return _code(table)
    if r.default is not None:
        return _code(r.default)
    if r.required:
        rest = r.required[len("required"):].strip()
        return "required" + (f" {rest}" if rest.startswith("for ") else "")
    return "—"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def load_meanings(path=MEANINGS) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {k: (v if isinstance(v, dict) else {"meaning": v}) for k, v in data.get("keys", {}).items()}, data


def _shown(records) -> list:
    """The key paths in the order the validator reads them (depth first); list items
    (``x[]``) that are not mappings are folded into their list."""
    out = []

    def walk(path):
        for child in records[path].children:
            out.append(child)
            if records[child].children:
                walk(child)
            item = child + "[]"
            if item in records and records[item].children:
                walk(item)

    walk("")
    return out


def check(records=None, meanings=None) -> list:
    """Problems: keys the validator accepts without a meaning, and meanings of keys it
    does not accept (as sentences)."""
    records = collect() if records is None else records
    meanings = load_meanings()[0] if meanings is None else meanings
    shown = _shown(records)
    problems = [f"scenario key {p!r} is accepted by the validator but has no meaning in {MEANINGS.name}"
                for p in shown if p not in meanings]
    problems += [f"{MEANINGS.name} describes {p!r}, which the validator does not accept"
                 for p in meanings if p not in shown]
    for p in shown:
        if p in meanings and "default" in meanings[p]:
            table = _default_of(p)
            if table is not None or records[p].default is not None:
                problems.append(f"{MEANINGS.name} gives a default for {p!r}, which the validator's tables "
                                f"already give ({_code(table if table is not None else records[p].default)})")
        if p in meanings and "accepts" in meanings[p] and (_recorded_kind(records[p]) or p + "[]" in records):
            problems.append(f"{MEANINGS.name} says what {p!r} accepts, which the validator already says "
                            f"({_accepts(p, records[p], records)})")
    return problems


def _simple_table(header, rows) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render(records=None, meanings=None, extra=None) -> str:
    """The reference as MyST Markdown."""
    from fluidgrad.boundaries import RULES
    from fluidgrad.initial import DENSITY_TYPES, VELOCITY_TYPES
    from fluidgrad.ops.advection import SCHEMES
    from fluidgrad.scenario import SHAPES

    records = collect() if records is None else records
    if meanings is None or extra is None:
        meanings, extra = load_meanings()
    lines = ["<!-- generated by docs/_ext/scenario_reference.py from fluidgrad.scenario; do not edit -->", ""]
    shown = _shown(records)
    sections = {}
    for p in shown:
        sections.setdefault(p.split(".")[0].split("[")[0], []).append(p)
    for top, paths in sections.items():
        lines += [f"### `{top}`", ""]
        intro = extra.get("sections", {}).get(top)
        if intro:
            lines += [intro.strip(), ""]
        rows = []
        for p in paths:
            m = meanings.get(p, {})
            rows.append([f"`{p}`", _accepts(p, records[p], records, m), _row_default(p, records[p], m),
                         m.get("meaning", "")])
        lines += _simple_table(["key", "accepts", "default", "meaning"], rows)
        if top == "initial":
            for field, types in (("velocity", VELOCITY_TYPES), ("density", DENSITY_TYPES)):
                lines += [f"`initial.{field}` types and the keys each takes:", ""]
                lines += _simple_table(["type", "keys"], [[f"`{t}`", ", ".join(f"`{k}`" for k in ks) or "—"]
                                                          for t, ks in types.items()])
        if top == "obstacles":
            lines += ["Shapes (obstacles and sources) and the keys each takes:", ""]
            lines += _simple_table(["shape", "keys"], [[f"`{s}`", ", ".join(f"`{k}`" for k in ks)]
                                                       for s, ks in SHAPES.items()])
        if top == "boundaries":
            lines += ["Boundary kinds (from `fluidgrad.boundaries.RULES`):", ""]
            lines += _simple_table(
                ["kind", "wall", "takes `velocity`", "normal velocity", "pressure on the face"],
                [[f"`{k}`", "periodic" if r.periodic else ("yes" if r.solid else "no"), r.velocity,
                  "left to the projection" if r.open else ("—" if r.periodic else "fixed (zero or given)"),
                  "—" if r.periodic else ("p = 0" if r.pressure == "D" else "zero normal gradient")]
                 for k, r in RULES.items()])
        if top == "advection":
            lines += _simple_table(["scheme", "description"], [[f"`{s.name}`", s.description]
                                                               for s in SCHEMES.values()])
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------
# Sphinx


def _generate(app):
    from sphinx.util import logging
    logger = logging.getLogger(__name__)
    records = collect()
    meanings, extra = load_meanings()
    for problem in check(records, meanings):
        logger.warning(problem, type="fluidgrad", subtype="scenario-keys")
    target = Path(app.srcdir) / "_generated" / "scenario_keys.md"
    target.parent.mkdir(exist_ok=True)
    text = render(records, meanings, extra)
    if not target.exists() or target.read_text() != text:  # unchanged: no rebuild
        target.write_text(text)


def setup(app):
    app.connect("builder-inited", _generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    import sys
    for problem in check():
        print("problem:", problem, file=sys.stderr)
    print(render())
