"""Scenario files: YAML (safe loading only) -> validated, typed settings -> a simulation.

``load_scenario(path_or_name)`` reads a YAML file (or a bundled scenario by name),
checks every key and reports *all* problems at once, each as
``key.path: what is wrong (got X)`` with a "did you mean" for misspellings. Defaults
live in :data:`DEFAULTS`. Relative paths inside a scenario are relative to its file.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
from importlib import resources
from pathlib import Path

import numpy as onp
import yaml

from .boundaries import AXES, KINDS, Boundaries, Domain, Obstacle, face_name
from .errors import BAD_INPUT, InputError, ScenarioError  # noqa: F401 (ScenarioError re-exported)
from .grid import Grid
from .initial import DENSITY_TYPES, VELOCITY_TYPES
from .ops.advection import SCHEMES
from .ops.pressure import SOLVERS, PressureSolve
from .simulation import Physics, Simulation, Source

#: the advection schemes a scenario may name (the keys of the advection table, sorted)

MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 100_000

DEFAULTS = {
    "name": None,                     # the file's stem
    "description": "",
    "grid": {"resolution": None, "size": None},
    "time": {"dt": None, "steps": None},
    "physics": {"viscosity": 0.0, "buoyancy": None, "vorticity_confinement": 0.0},   # buoyancy: zeros
    "advection": "maccormack",
    "pressure": {"solver": "auto", "tolerance": 1e-6, "adjoint_tolerance": None, "iterations": 50,
                 "max_iterations": 10_000, "preconditioner": "multigrid"},
    "boundaries": {},                 # faces not named are no-slip walls
    "obstacles": [],
    "initial": {"velocity": {"type": "zero"}, "density": {"type": "zero"}},
    "sources": [],
    "output": {"every": 1, "video": {"field": "density", "colormap": None, "fps": 30, "format": "mp4",
                                     "projection": "slice", "arrows": False}},
    "backend": "numpy",
    "dtype": "float64",
    "optimize": None,
}

OPTIMIZE_DEFAULTS = {
    "parameters": ["initial_velocity"],
    "parametrization": "stream",
    "smoothing": 0.0,
    "loss": {"type": "density_mse", "target": None, "times": None, "window": None, "obstacle": None},
    "flow_rate": "fixed",             # inflow_profile: fixed | free
    "regularization": {"smoothness": 0.0, "effort": 0.0},
    "control": {"hold": 1, "coarsen": 1},
    "optimizer": {"type": "lbfgs", "iterations": 50},
    "checkpointing": {"memory_budget": None},
}

SHAPES = {"circle": ("center", "radius"), "sphere": ("center", "radius"), "box": ("lower", "upper"),
          "image": ("path", "threshold")}
PARAMETERS = ("initial_velocity", "initial_density", "control_force", "viscosity", "buoyancy",
              "vorticity_confinement", "source_rate", "inflow_profile")
LOSSES = ("density_mse", "velocity_mse", "kinetic_energy", "drag", "lift")
FIELDS = ("density", "vorticity", "speed", "pressure")


class _Checker:
    """Collects problems while reading a nested dict: ``problems`` (``key.path:
    message``) and ``paths`` (the key path of each)."""

    def __init__(self):
        self.problems = []
        self.paths = []

    def add(self, path, message, got=None, has_got=False):
        text = f"{path}: {message}"
        if has_got or got is not None:
            text += f" (got {_show(got)})"
        self.problems.append(text)
        self.paths.append(path)

    def error(self, exc, default_path, got=None, has_got=False):
        """Add a library error: at its ``key`` (else ``default_path``), with its message."""
        self.add(getattr(exc, "key", None) or default_path, str(exc), got, has_got)

    def keys(self, value, allowed, path):
        """Check ``value`` is a mapping with only ``allowed`` keys; returns it (or {})."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path or "scenario", "expected a mapping of keys", value, True)
            return {}
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), list(allowed), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; expected one of {', '.join(allowed)}"
                self.add(_join(path, key), f"unknown key{extra}")
        return value

    def number(self, value, path, *, positive=False, nonnegative=False, integer=False, default=None):
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(path, "expected " + ("an integer" if integer else "a number"), value, True)
            return default
        if integer and not float(value).is_integer():
            self.add(path, "expected an integer", value, True)
            return default
        if not math.isfinite(value):
            self.add(path, "must be finite", value, True)
            return default
        if positive and value <= 0:
            self.add(path, "must be positive", value, True)
            return default
        if nonnegative and value < 0:
            self.add(path, "must be >= 0", value, True)
            return default
        return int(value) if integer else float(value)

    def vector(self, value, n, path, *, positive=False, integer=False):
        if not isinstance(value, (list, tuple)):
            self.add(path, f"expected {n} numbers", value, True)
            return None
        if len(value) != n:
            self.add(path, f"expected {n} numbers, got {len(value)}")
            return None
        out = []
        for i, v in enumerate(value):
            if v is None:  # number() takes None for "not given"; inside a vector it is a hole
                self.add(f"{path}[{i}]", "expected " + ("an integer" if integer else "a number"), v, True)
            out.append(self.number(v, f"{path}[{i}]", positive=positive, integer=integer))
        return None if any(v is None for v in out) else tuple(out)

    def choice(self, value, options, path, default=None):
        if value is None:
            return default
        if not isinstance(value, str) or value not in options:
            hint = difflib.get_close_matches(str(value), list(options), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            self.add(path, f"expected one of {', '.join(options)}{extra}", value, True)
            return default
        return value

    def file(self, value, path, base):
        if not isinstance(value, str) or not value:
            self.add(path, "expected a file path", value, True)
            return None
        p = Path(value)
        if not p.is_absolute() and base is not None:
            p = base / p
        if not p.is_file():
            self.add(path, "file not found", str(p), True)
            return None
        return str(p.absolute())  # absolute: later uses must not join the base again


def _memory_bytes() -> int:
    """Physical memory of this machine (bytes); a large default where unknown."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 40


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


# ---------------------------------------------------------------------------
# reading YAML safely


def _count_nodes(node, memo):
    """Number of nodes after expanding aliases (without expanding them)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive aliases
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_count_nodes(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_count_nodes(k, memo) + _count_nodes(v, memo) for k, v in node.value)
    memo[key] = total
    return total


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's numbers: PyYAML follows YAML 1.1, which reads
    ``1e-6``, ``1E-4`` and ``5e-3`` (no dot, or no signed exponent) as strings."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)
for _first in "-+0123456789.":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", _FLOAT))


def load_yaml(text: str):
    """One YAML document, safely, with every number a scientist writes read as a number."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(text: str, source: str = "scenario"):
    """Parse YAML with the safe loader only; refuse huge files and alias bombs. A text
    parsed before is not parsed again (a sweep's worker reads the same scenario for every
    member; parsing is ~10 ms): the caller gets its own copy."""
    return copy.deepcopy(_read_yaml(text, source))


@functools.lru_cache(maxsize=16)
def _read_yaml(text: str, source: str):
    if len(text.encode()) > MAX_YAML_BYTES:
        raise ScenarioError([f"{source}: file too large ({len(text.encode())} bytes; limit {MAX_YAML_BYTES})"])
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is not None and _count_nodes(node, {}) > MAX_YAML_NODES:
            raise ScenarioError([f"{source}: too many YAML nodes after expanding aliases "
                                 f"(limit {MAX_YAML_NODES}; a YAML bomb?)"])
        return load_yaml(text)
    except yaml.constructor.ConstructorError as exc:
        raise ScenarioError([f"{source}: unsupported YAML tag {exc.problem.split()[-1] if exc.problem else ''}"
                             f" at line {exc.problem_mark.line + 1 if exc.problem_mark else '?'} "
                             f"(only plain YAML is allowed)".replace("  ", " ")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError([f"{source}: invalid YAML{where}: {problem}"]) from None


# ---------------------------------------------------------------------------
# the typed scenario


@dataclasses.dataclass
class Scenario:
    """A validated scenario (made by :func:`load_scenario`): its settings as typed fields
    (``grid``, ``dt``, ``steps``, ``physics``, ...) and the YAML data as read (``raw``)."""

    name: str
    description: str
    path: Path | None
    grid: Grid
    dt: float
    steps: int
    physics: Physics
    advection: str
    pressure: PressureSolve
    boundaries: Boundaries
    obstacles: list
    initial: dict
    sources: list
    output: dict
    backend: str
    dtype: str
    optimize: dict | None
    raw: dict

    @property
    def base(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    def domain(self) -> Domain:
        return Domain(self.grid, self.boundaries, self.obstacles)

    def simulation(self, backend=None, dtype=None) -> Simulation:
        domain = self.domain()
        sources = [Source(s["field"], Obstacle(s["shape"], **_shape_params(s, self.base)).cells(self.grid),
                          s.get("rate", 1.0), tuple(s["value"]) if s.get("value") is not None else None)
                   for s in self.sources]
        return Simulation(domain, self.dt, self.physics, advection=self.advection, pressure=self.pressure,
                          sources=sources, backend=backend or self.backend, dtype=dtype or self.dtype)

    def settings(self) -> dict:
        """What an optimization of this scenario depends on, as JSON data: every key with
        its default filled in, except ``description``, ``output``, ``backend`` (where it
        runs, not what it computes) and ``optimize.optimizer.iterations`` (a resume may
        run longer). A ``--resume`` with other settings is refused."""
        import json
        d = _merge(DEFAULTS, self.raw)
        d["name"] = self.name
        for key in ("description", "output", "backend"):
            d.pop(key, None)
        if isinstance(d.get("optimize"), dict):
            d["optimize"] = _merge(OPTIMIZE_DEFAULTS, d["optimize"])
            if isinstance(d["optimize"].get("optimizer"), dict):
                d["optimize"]["optimizer"].pop("iterations", None)
        return json.loads(json.dumps(d, default=str))

    def initial_fields(self, sim):
        """``(velocity, density)`` of the ``initial:`` section as checked arrays of ``sim``;
        a :class:`ScenarioError` names the key of a field that does not fit the grid."""
        from .initial import density_field, velocity_field
        velocity = _at(_data_key("initial.velocity", self.initial["velocity"]), lambda: sim.check_fields(
            velocity=velocity_field(self.initial["velocity"], sim.domain, self.base))[0])
        density = _at(_data_key("initial.density", self.initial["density"]), lambda: sim.check_fields(
            density=density_field(self.initial["density"], self.grid, self.base))[1])
        return velocity, density

    def initial_state(self, sim):
        velocity, density = self.initial_fields(sim)
        return sim.initial_state(velocity=velocity, density=density)

    def check(self):
        """Everything ``run``, ``optimize`` and ``gradcheck`` prepare before they simulate,
        without simulating: the backend, the sources, the initial fields and the loss
        target on the grid (the data files read), the optimization's parameters. Raises
        :class:`ScenarioError` naming the key at fault."""
        from .backend import get_backend
        _at("backend", get_backend, self.backend)
        sim = _at("sources", self.simulation)
        self.initial_fields(sim)
        if self.optimize is not None:
            key = _data_key("optimize.loss.target", self.optimize["loss"]["target"])
            target = _at(key, self.loss_target, sim)
            if isinstance(target, tuple):
                _at(key, sim.check_fields, target)
            elif target is not None:
                _at(key, sim.check_fields, None, target)
            from .problems import parameters
            for i, p in enumerate(_at("optimize.parameters", parameters, self)):
                size = sum(math.prod(s) for s in _at(f"optimize.parameters[{i}]", p.shapes, sim))
                if size * 8 * 8 > _memory_bytes():  # the optimizer keeps several copies
                    raise ScenarioError([f"optimize.parameters[{i}]: {p.name} has {size:,} values, more than this "
                                         f"machine's memory holds (fewer time.steps, or a larger "
                                         f"optimize.control.hold / coarsen)"], keys=[f"optimize.parameters[{i}]"])
                _at(f"optimize.parameters[{i}]", p.initial, sim)

    def loss_target(self, sim):
        """The target of the ``optimize:`` loss on ``sim`` (``None`` if it has none)."""
        from .problems import loss_target
        return loss_target(self, sim)

    def problem(self, sim, target=None):
        """The optimization problem of the ``optimize:`` block on ``sim`` (see
        :mod:`fluidgrad.problems`); ``target`` reuses a :meth:`loss_target`."""
        from .problems import build_problem
        return build_problem(self, sim, target)


def _at(key, fn, *args):
    """``fn(*args)``; bad input it raises becomes a :class:`ScenarioError` at the error's
    own key, else at ``key``."""
    try:
        return fn(*args)
    except ScenarioError:
        raise
    except BAD_INPUT as exc:
        where = getattr(exc, "key", None) or key
        raise ScenarioError([f"{where}: {exc}"], keys=[where]) from None


def _data_key(key, spec):
    """The key to blame for a field ``spec`` read from a file: its ``path``."""
    return f"{key}.path" if isinstance(spec, dict) and spec.get("type") in ("image", "file") else key


def _shape_params(spec, base):
    shape = spec["shape"]
    if shape in ("circle", "sphere"):
        return {"center": tuple(spec["center"]), "radius": float(spec["radius"])}
    if shape == "box":
        return {"lower": tuple(spec["lower"]), "upper": tuple(spec["upper"])}
    from .initial import load_image
    path = Path(spec["path"])
    path = path if path.is_absolute() or base is None else base / path
    mask = load_image(path, (256, 256)) > float(spec.get("threshold", 0.5))
    return {"mask": mask}


def _merge(defaults, given):
    out = copy.deepcopy(defaults)
    if isinstance(given, dict):
        for k, v in given.items():
            if isinstance(out.get(k), dict) and isinstance(v, dict):
                out[k] = _merge(out[k], v)
            else:
                out[k] = v
    return out


def bundled_dir():
    return resources.files("fluidgrad") / "scenarios"


def bundled_scenarios() -> dict:
    """Name -> path of the scenarios shipped in the package."""
    folder = bundled_dir()
    try:
        return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def resolve(path_or_name) -> Path:
    """A scenario file path, or the bundled scenario of that name."""
    p = Path(path_or_name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ScenarioError([f"{path_or_name}: {'not a file' if p.exists() else 'file not found'}"])
        return p
    bundled = bundled_scenarios()
    if str(path_or_name) in bundled:
        return bundled[str(path_or_name)]
    hint = difflib.get_close_matches(str(path_or_name), list(bundled), n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else " (see 'fluidgrad list')"
    raise ScenarioError([f"{path_or_name}: no such file or bundled scenario{extra}"])


def load_scenario(path_or_name, overrides: dict | None = None) -> Scenario:
    """Read, validate and type a scenario; ``overrides`` (dotted keys -> values) are
    applied before validation. Raises :class:`ScenarioError` listing every problem."""
    path = resolve(path_or_name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read ({exc})"]) from None
    data = read_yaml(text, str(path))
    return parse_scenario(data, path, overrides)


_KEY = re.compile(r"[^.\[\]\s]+(\[\d+\])*(\.[^.\[\]\s]+(\[\d+\])*)*")


def key_parts(key: str) -> list:
    """``'obstacles[0].radius'`` (or ``'obstacles.0.radius'``) -> ``['obstacles', 0, 'radius']``;
    ``None`` if ``key`` is not a key path."""
    if not _KEY.fullmatch(key):
        return None
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", key)
    return [int(p.strip("[]")) if p.startswith("[") or p.isdigit() else p for p in parts]


def key_path(parts) -> str:
    """The dotted key path of ``parts``: ``['obstacles', 0, 'radius']`` -> ``obstacles[0].radius``."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts))


def set_dotted(data: dict, key: str, value):
    """Set ``data`` at the key path ``key`` (``--set``): mappings on the way are created,
    a short form ``name`` becomes ``{type: name}``, and ``[i]`` (or ``.i``) picks item
    ``i`` of a list. Raises :class:`ScenarioError` for a list index that is out of range
    or applied to something that is not a list."""
    parts = key_parts(key)
    if not parts:
        raise ScenarioError([f"--set {key}: not a key path (expected e.g. grid.resolution or obstacles[0].radius)"])
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            where = key_path(parts[:i]) or "scenario"
            if not isinstance(node, list):
                raise ScenarioError([f"{where}: not a list, so --set {key} cannot pick item {part} "
                                     f"(got {_show(node)})"], keys=[where])
            if part >= len(node):
                raise ScenarioError([f"{key_path(parts[:i + 1])}: no such item in --set {key} ({where} has "
                                     f"{len(node)} item{'' if len(node) == 1 else 's'})"],
                                    keys=[key_path(parts[:i + 1])])
        elif not isinstance(node, dict):
            where = key_path(parts[:i])
            raise ScenarioError([f"{where}: not a mapping, so --set {key} cannot set {part!r} in it "
                                 f"(got {_show(node)})"], keys=[where])
        if last:
            node[part] = value
            return
        child = node[part] if isinstance(part, int) else node.get(part)
        if isinstance(parts[i + 1], int):
            if child is None:
                child = node[part] = []
        elif child is None or not isinstance(child, (dict, list)):
            child = node[part] = {"type": child} if isinstance(child, str) else {}
        node = child


def parse_scenario(data, path: Path | None = None, overrides: dict | None = None) -> Scenario:
    """Validate the YAML data of a scenario into a :class:`Scenario`."""
    source = str(path) if path is not None else "scenario"
    if data is None:  # an empty file, or only comments, or `null`
        raise ScenarioError([f"{source}: the file is empty" if path is not None else "scenario: empty"])
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string"}.get(type(data), "a single value")
        raise ScenarioError([f"{source}: expected a mapping of keys at the top level, got {kind} "
                             f"({_show(data)})"])
    data = copy.deepcopy(data)
    problems = []
    for key, value in (overrides or {}).items():
        try:
            set_dotted(data, key, value)
        except ScenarioError as exc:
            problems.append(exc)
    if problems:
        raise ScenarioError([p for e in problems for p in e.problems], path, [k for e in problems for k in e.keys])
    c = _Checker()
    base = path.parent if path is not None else None
    c.keys(data, list(DEFAULTS), "")
    d = _merge(DEFAULTS, data)

    # grid
    grid_spec = c.keys(d["grid"], ["resolution", "size"], "grid")
    resolution = grid_spec.get("resolution")
    if resolution is None:
        c.add("grid.resolution", "required: [nx, ny] or [nx, ny, nz]")
        ndim = 2
    elif not isinstance(resolution, (list, tuple)) or len(resolution) not in (2, 3):
        c.add("grid.resolution", "expected 2 or 3 integers", resolution, True)
        resolution, ndim = None, 2
    else:
        ndim = len(resolution)
        resolution = c.vector(resolution, ndim, "grid.resolution", positive=True, integer=True)
    size = grid_spec.get("size")
    size = c.vector(size, ndim, "grid.size", positive=True) if size is not None else (
        tuple(float(n) / max(resolution) for n in resolution) if resolution else None)
    grid = None
    if resolution and math.prod(resolution) * 8 * 40 > _memory_bytes():
        c.add("grid.resolution", f"{math.prod(resolution):,} cells need more memory than this machine has "
                                 f"(about 320 bytes per cell)", list(resolution), True)
        resolution = None
    if resolution and size:
        try:
            grid = Grid(resolution, size)
        except InputError as exc:
            c.error(exc, "grid")

    # time
    time_spec = c.keys(d["time"], ["dt", "steps"], "time")
    dt = c.number(time_spec.get("dt"), "time.dt", positive=True)
    steps = c.number(time_spec.get("steps"), "time.steps", positive=True, integer=True)
    if time_spec.get("dt") is None:
        c.add("time.dt", "required: the time step")
    if time_spec.get("steps") is None:
        c.add("time.steps", "required: the number of steps")

    # physics
    ph = c.keys(d["physics"], ["viscosity", "buoyancy", "vorticity_confinement"], "physics")
    viscosity = c.number(ph.get("viscosity"), "physics.viscosity", nonnegative=True, default=0.0)
    buoyancy = ph.get("buoyancy")
    buoyancy = (0.0,) * ndim if buoyancy is None else c.vector(buoyancy, ndim, "physics.buoyancy")
    confinement = c.number(ph.get("vorticity_confinement"), "physics.vorticity_confinement",
                           nonnegative=True, default=0.0)
    physics = Physics(viscosity, buoyancy or (0.0,) * ndim, confinement)

    advection = c.choice(d["advection"], tuple(sorted(SCHEMES)), "advection", DEFAULTS["advection"])

    # boundaries (parsed before the pressure solver, which depends on them)
    boundaries = _parse_boundaries(c, d["boundaries"], ndim)

    pr = c.keys(d["pressure"], list(DEFAULTS["pressure"]), "pressure")
    solver = c.choice(pr.get("solver"), SOLVERS, "pressure.solver", DEFAULTS["pressure"]["solver"])
    pressure = PressureSolve(
        solver, c.number(pr.get("tolerance"), "pressure.tolerance", positive=True, default=1e-6),
        c.number(pr.get("adjoint_tolerance"), "pressure.adjoint_tolerance", positive=True),
        c.number(pr.get("max_iterations"), "pressure.max_iterations", positive=True, integer=True, default=10_000),
        c.number(pr.get("iterations"), "pressure.iterations", positive=True, integer=True, default=50),
        c.choice(pr.get("preconditioner"), ("multigrid", "jacobi"), "pressure.preconditioner", "multigrid"))

    obstacles = _parse_obstacles(c, d["obstacles"], ndim, grid, base)
    if boundaries is not None and grid is not None:
        try:
            pressure.resolved(Domain(grid, boundaries, obstacles))
        except ValueError as exc:
            c.error(exc, "pressure.solver")

    initial = _parse_initial(c, d["initial"], ndim, grid, base)
    sources = _parse_sources(c, d["sources"], ndim, grid, base)
    output = _parse_output(c, d["output"])
    backend = c.choice(d["backend"], ("numpy", "cupy"), "backend", "numpy")
    dtype = c.choice(d["dtype"], ("float32", "float64"), "dtype", "float64")
    optimize = _parse_optimize(c, d["optimize"], ndim, grid, base, steps) if d["optimize"] is not None else None
    if optimize is not None and boundaries is not None:
        _check_forces_and_inflow(c, optimize, boundaries, obstacles)

    name = d["name"] if d["name"] is not None else (path.stem if path is not None else "scenario")
    if not isinstance(name, str) or not name or "/" in name:
        c.add("name", "expected a non-empty name without '/'", name, True)
    description = d["description"] if isinstance(d["description"], str) else ""
    if c.problems:
        raise ScenarioError(c.problems, path, c.paths)
    return Scenario(name, description, path, grid, dt, steps, physics, advection, pressure, boundaries,
                    obstacles, initial, sources, output, backend, dtype, optimize, data)


def _window(c, window, steps):
    """``optimize.loss.window``: ``[first, last]`` steps; negative ones count from the end
    (-1 the last step; a window reaching before the first step starts there)."""
    if not isinstance(window, list) or len(window) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v != 0 for v in window):
        c.add("optimize.loss.window", "expected [first, last]: two non-zero step numbers (negative: from the end)",
              window, True)
        return None
    if not steps:
        return None
    first, last = (v if v > 0 else steps + 1 + v for v in window)
    if window[0] < 0:
        first = max(first, 1)
    if not 1 <= first <= last <= steps:
        c.add("optimize.loss.window", f"expected 1 <= first <= last <= {steps} (the steps)", window, True)
        return None
    return first, last


def _check_forces_and_inflow(c, optimize, boundaries, obstacles):
    """What ``drag``/``lift`` losses and an ``inflow_profile`` parameter need of the box."""
    kind, obstacle = optimize["loss"]["type"], optimize["loss"]["obstacle"]
    if kind in ("drag", "lift"):
        if not obstacles:
            c.add("optimize.loss.type", f"{kind} is the force on obstacles, and the scenario has none")
        elif obstacle is not None and obstacle >= len(obstacles):
            c.add("optimize.loss.obstacle", f"expected an obstacle index in 0..{len(obstacles) - 1}", obstacle, True)
    if "inflow_profile" in optimize["parameters"]:
        inflow = [f for pair in boundaries.faces for f in pair if f.kind == "inflow"]
        if len(inflow) != 1:
            c.add("optimize.parameters", f"inflow_profile needs exactly one inflow face, the box has {len(inflow)}")


def _parse_boundaries(c, spec, ndim):
    spec = c.keys(spec, list(AXES[:ndim]) + [face_name(a, s) for a in range(ndim) for s in (0, 1)],
                  "boundaries")
    clean = {}
    before = len(c.problems)
    for key, value in spec.items():
        path = f"boundaries.{key}"
        if key not in list(AXES[:ndim]) + [face_name(a, s) for a in range(ndim) for s in (0, 1)]:
            continue
        if isinstance(value, str):
            kind = c.choice(value, KINDS, path)
            if kind is not None:
                clean[key] = kind
            continue
        face = c.keys(value, ["type", "velocity"], path)
        if not isinstance(value, dict):
            continue
        kind = c.choice(face.get("type"), KINDS, f"{path}.type")
        if face.get("type") is None:
            c.add(f"{path}.type", "required")
        velocity = face.get("velocity")
        if velocity is not None:
            velocity = c.vector(velocity, ndim, f"{path}.velocity")
        if kind is not None:
            clean[key] = {"type": kind, "velocity": velocity}
    if len(c.problems) > before:  # a face with problems: the whole is checked once they are fixed
        return None
    try:
        return Boundaries.from_dict(clean, ndim)
    except InputError as exc:
        c.error(exc, "boundaries")
        return None


def _check_shape(c, spec, ndim, grid, base, path, fields=SHAPES):
    shape = c.choice(spec.get("shape"), tuple(fields), f"{path}.shape")
    if spec.get("shape") is None:
        c.add(f"{path}.shape", f"required: one of {', '.join(fields)}")
    if shape in ("circle", "sphere"):
        if (shape == "circle") != (ndim == 2):
            c.add(f"{path}.shape", f"a {shape} needs a {'2' if shape == 'circle' else '3'}-D grid")
        center = c.vector(spec.get("center"), ndim, f"{path}.center")
        radius = c.number(spec.get("radius"), f"{path}.radius", positive=True)
        if spec.get("radius") is None:
            c.add(f"{path}.radius", "required")
        if center and grid and any(not 0 <= x <= s for x, s in zip(center, grid.size)):
            c.add(f"{path}.center", "lies outside the box", list(center), True)
    elif shape == "box":
        lower = c.vector(spec.get("lower"), ndim, f"{path}.lower")
        upper = c.vector(spec.get("upper"), ndim, f"{path}.upper")
        if lower and upper and any(lo >= hi for lo, hi in zip(lower, upper)):
            c.add(f"{path}.upper", "must exceed lower in every axis", list(upper), True)
        if lower and upper and grid and (any(hi <= 0 for hi in upper) or
                                         any(lo >= s for lo, s in zip(lower, grid.size))):
            c.add(path, "the box lies outside the domain")
    elif shape == "image":
        if ndim != 2:
            c.add(f"{path}.shape", "image masks need a 2-D grid")
        file = c.file(spec.get("path"), f"{path}.path", base)
        if file:
            try:
                from .initial import load_image
                load_image(file, (8, 8))
            except ValueError as exc:
                c.add(f"{path}.path", str(exc))
    return shape


def _parse_obstacles(c, spec, ndim, grid, base):
    if spec is None:
        return []
    if not isinstance(spec, list):
        c.add("obstacles", "expected a list of shapes", spec, True)
        return []
    out = []
    for i, ob in enumerate(spec):
        path = f"obstacles[{i}]"
        ob = c.keys(ob, ["shape", "center", "radius", "lower", "upper", "path", "threshold", "velocity"], path)
        if not isinstance(spec[i], dict):
            continue
        shape = _check_shape(c, ob, ndim, grid, base, path)
        velocity = c.vector(ob["velocity"], ndim, f"{path}.velocity") if ob.get("velocity") is not None else None
        if shape and not c.problems:
            params = _shape_params(ob, base)
            out.append(Obstacle(shape if shape != "image" else "mask", velocity=velocity, **params))
    if grid is not None and out and not c.problems:
        solid = onp.zeros(grid.shape, dtype=bool)
        for ob in out:
            solid |= ob.cells(grid)
        if solid.all():
            c.add("obstacles", "the obstacles fill the whole domain")
    return out


def _parse_initial(c, spec, ndim, grid, base):
    spec = c.keys(spec, ["velocity", "density"], "initial")
    out = {}
    for field, types in (("velocity", VELOCITY_TYPES), ("density", DENSITY_TYPES)):
        path = f"initial.{field}"
        value = spec.get(field, {"type": "zero"})
        if isinstance(value, str):
            value = {"type": value}
        value = c.keys(value, ["type"] + sorted({k for v in types.values() for k in v}), path)
        value = {k: v for k, v in value.items() if v is not None}  # null: not given (the default)
        kind = c.choice(value.get("type"), tuple(types), f"{path}.type", "zero")
        if kind is None:
            continue
        for key in value:
            if key != "type" and key not in types[kind] and key in {k for v in types.values() for k in v}:
                c.add(f"{path}.{key}", f"not used by type {kind} (which takes {', '.join(types[kind]) or 'nothing'})")
        if kind == "uniform":
            c.vector(value.get("value"), ndim, f"{path}.value")
        if kind == "gaussian":
            center = c.vector(value.get("center"), ndim, f"{path}.center")
            c.number(value.get("radius"), f"{path}.radius", positive=True)
            if value.get("radius") is None:
                c.add(f"{path}.radius", "required")
            if center and grid and any(not 0 <= x <= s for x, s in zip(center, grid.size)):
                c.add(f"{path}.center", "lies outside the box", list(center), True)
        if kind == "box":
            c.vector(value.get("lower"), ndim, f"{path}.lower")
            c.vector(value.get("upper"), ndim, f"{path}.upper")
        for key in ("value", "amplitude", "smooth"):
            if key in value and key in types[kind] and not (kind == "uniform" and key == "value"):
                c.number(value[key], f"{path}.{key}")
        if kind == "taylor_green" and "k" in value:
            c.number(value["k"], f"{path}.k", positive=True, integer=True)
        if kind == "random" and "seed" in value:
            c.number(value["seed"], f"{path}.seed", nonnegative=True, integer=True)
        if kind in ("image", "file"):
            file = c.file(value.get("path"), f"{path}.path", base)
            if file and grid is not None:
                _check_loadable(c, kind, field, file, grid, ndim, f"{path}.path")
            if file:
                value = dict(value, path=file)
        out[field] = dict(value, type=kind)
    return out


def _check_loadable(c, kind, field, file, grid, ndim, path):
    from .initial import load_image, load_npz
    try:
        if kind == "image":
            if ndim != 2:
                c.add(path, "images need a 2-D grid")
            else:
                load_image(file, grid.shape)
        else:
            keys = ["density"] if field == "density" else ["u", "v", "w"][:ndim]
            load_npz(file, keys)
    except ValueError as exc:
        c.add(path, str(exc))


def _parse_sources(c, spec, ndim, grid, base):
    if spec is None:
        return []
    if not isinstance(spec, list):
        c.add("sources", "expected a list", spec, True)
        return []
    out = []
    for i, src in enumerate(spec):
        path = f"sources[{i}]"
        src = c.keys(src, ["field", "shape", "center", "radius", "lower", "upper", "path", "threshold",
                           "rate", "value"], path)
        if not isinstance(spec[i], dict):
            continue
        src = {k: v for k, v in src.items() if v is not None}  # null: not given (the default)
        field = c.choice(src.get("field"), ("density", "velocity"), f"{path}.field", "density")
        _check_shape(c, src, ndim, grid, base, path)
        if field == "density":
            c.number(src.get("rate", 1.0), f"{path}.rate")
        elif field == "velocity":
            c.vector(src.get("value"), ndim, f"{path}.value")
        out.append(dict(src, field=field or "density"))
    return out


def _parse_output(c, spec):
    spec = c.keys(spec, ["every", "video"], "output")
    every = c.number(spec.get("every"), "output.every", positive=True, integer=True, default=1)
    video = spec.get("video")
    if video is False or video is None:
        return {"every": every, "video": None}
    video = c.keys(video, ["field", "colormap", "fps", "format", "projection", "arrows"], "output.video")
    field = c.choice(video.get("field"), FIELDS, "output.video.field", "density")
    projection = c.choice(video.get("projection"), ("slice", "max"), "output.video.projection", "slice")
    arrows = video.get("arrows", False)
    if not isinstance(arrows, bool):
        c.add("output.video.arrows", "expected true or false", arrows, True)
        arrows = False
    fps = c.number(video.get("fps"), "output.video.fps", positive=True, integer=True, default=30)
    fmt = c.choice(video.get("format"), ("mp4", "gif"), "output.video.format", "mp4")
    colormap = video.get("colormap")
    if colormap is not None:
        import matplotlib
        if not isinstance(colormap, str) or colormap not in matplotlib.colormaps:
            hint = difflib.get_close_matches(str(colormap), list(matplotlib.colormaps), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            c.add("output.video.colormap", f"unknown colormap{extra}", colormap, True)
            colormap = None
    return {"every": every, "video": {"field": field, "colormap": colormap, "fps": fps, "format": fmt,
                                      "projection": projection, "arrows": arrows}}


def _parse_optimize(c, spec, ndim, grid, base, steps):
    given = c.keys(spec, list(OPTIMIZE_DEFAULTS), "optimize")
    o = _merge(OPTIMIZE_DEFAULTS, given)
    params = o["parameters"]
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, list) or not params:
        c.add("optimize.parameters", "expected a non-empty list", params, True)
        params = []
    for i, p in enumerate(params):
        if p is None:
            c.add(f"optimize.parameters[{i}]", f"expected one of {', '.join(PARAMETERS)}", p, True)
        c.choice(p, PARAMETERS, f"optimize.parameters[{i}]")
    parametrization = c.choice(o["parametrization"], ("stream", "raw"), "optimize.parametrization", "stream")
    smoothing = c.number(o["smoothing"], "optimize.smoothing", nonnegative=True, default=0.0)
    loss = c.keys(o["loss"], ["type", "target", "times", "window", "obstacle"], "optimize.loss")
    kind = c.choice(loss.get("type"), LOSSES, "optimize.loss.type", "density_mse")
    target = loss.get("target")
    if kind in ("density_mse", "velocity_mse"):
        if target is None:
            c.add("optimize.loss.target", f"required for {kind}")
        else:
            allowed = DENSITY_TYPES if kind == "density_mse" else VELOCITY_TYPES
            fake = _Checker()
            parsed = _parse_initial(fake, {"density" if kind == "density_mse" else "velocity": target},
                                    ndim, grid, base)
            for problem, where in zip(fake.problems, fake.paths):
                c.problems.append(problem.replace("initial.density", "optimize.loss.target")
                                  .replace("initial.velocity", "optimize.loss.target"))
                c.paths.append(where.replace("initial.density", "optimize.loss.target")
                               .replace("initial.velocity", "optimize.loss.target"))
            target = parsed.get("density" if kind == "density_mse" else "velocity")
            del allowed
    times = loss.get("times")
    if times is not None:
        if not isinstance(times, list) or not times:
            c.add("optimize.loss.times", "expected a list of step numbers", times, True)
            times = None
        else:
            times = [c.number(t, f"optimize.loss.times[{i}]", positive=True, integer=True) for i, t in enumerate(times)]
            if steps and any(t is not None and t > steps for t in times):
                c.add("optimize.loss.times", f"steps must lie in 1..{steps}", times, True)
    window = loss.get("window")
    if window is not None:
        if times is not None:
            c.add("optimize.loss.window", "give times or a window, not both")
        bounds = _window(c, window, steps)
        if bounds:
            times = list(range(bounds[0], bounds[1] + 1))
    obstacle = loss.get("obstacle")
    if obstacle is not None:
        if kind not in ("drag", "lift"):
            c.add("optimize.loss.obstacle", f"not used by {kind}")
        obstacle = c.number(obstacle, "optimize.loss.obstacle", nonnegative=True, integer=True)
    flow_rate = c.choice(o["flow_rate"], ("fixed", "free"), "optimize.flow_rate", "fixed")
    reg = c.keys(o["regularization"], ["smoothness", "effort"], "optimize.regularization")
    smooth = c.number(reg.get("smoothness"), "optimize.regularization.smoothness", nonnegative=True, default=0.0)
    eff = c.number(reg.get("effort"), "optimize.regularization.effort", nonnegative=True, default=0.0)
    ctrl = c.keys(o["control"], ["hold", "coarsen"], "optimize.control")
    hold = c.number(ctrl.get("hold"), "optimize.control.hold", positive=True, integer=True, default=1)
    coarsen = c.number(ctrl.get("coarsen"), "optimize.control.coarsen", positive=True, integer=True, default=1)
    opt = c.keys(o["optimizer"], ["type", "iterations", "learning_rate", "memory", "clip_grad_norm", "bounds",
                                  "ftol", "gtol"],
                 "optimize.optimizer")
    from .optimize.optimizers import OPTIMIZERS
    opt_type = c.choice(opt.get("type", "lbfgs"), OPTIMIZERS, "optimize.optimizer.type", "lbfgs")
    iterations = c.number(opt.get("iterations"), "optimize.optimizer.iterations", positive=True, integer=True,
                          default=50)
    options = {}
    if "learning_rate" in opt:
        if opt_type not in ("adam", "gd"):
            c.add("optimize.optimizer.learning_rate", f"not used by {opt_type}")
        options["learning_rate"] = c.number(opt["learning_rate"], "optimize.optimizer.learning_rate", positive=True)
    if "memory" in opt:
        options["memory"] = c.number(opt["memory"], "optimize.optimizer.memory", positive=True, integer=True)
    if "clip_grad_norm" in opt:
        options["clip_grad_norm"] = c.number(opt["clip_grad_norm"], "optimize.optimizer.clip_grad_norm", positive=True)
    for tol in ("ftol", "gtol"):  # stopping tolerances (optimize.optimizers.stop_reason); 0 disables
        if tol in opt:
            options[tol] = c.number(opt[tol], f"optimize.optimizer.{tol}", nonnegative=True)
    if "bounds" in opt:
        b = c.vector(opt["bounds"], 2, "optimize.optimizer.bounds")
        options["bounds"] = b
    ck = c.keys(o["checkpointing"], ["memory_budget"], "optimize.checkpointing")
    budget = ck.get("memory_budget")
    if budget is not None:
        from .checkpointing import parse_bytes
        try:
            budget = parse_bytes(budget)
            if budget <= 0:
                raise InputError("must be positive")
        except InputError as exc:
            c.add("optimize.checkpointing.memory_budget", str(exc), ck.get("memory_budget"), True)
            budget = None
    return {"parameters": params, "parametrization": parametrization, "smoothing": smoothing,
            "loss": {"type": kind, "target": target, "times": times, "obstacle": obstacle},
            "flow_rate": flow_rate,
            "regularization": {"smoothness": smooth, "effort": eff},
            "control": {"hold": hold, "coarsen": coarsen},
            "optimizer": {"type": opt_type, "iterations": iterations, "options": options},
            "memory_budget": budget}
