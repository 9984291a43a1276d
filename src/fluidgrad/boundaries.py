"""Boundary conditions on the faces of the box, solid obstacles, and the ``Domain``
that combines them with the grid into the masks and values the kernels need.

Face kinds, each described once in :data:`RULES` (a :class:`BoundaryRule`):

* ``periodic`` - the opposite face is the same face;
* ``no_slip`` - a wall; fluid velocity equals the wall velocity (zero unless a moving
  wall's ``velocity`` is given: its tangential part drags the fluid, its normal part
  must be zero);
* ``free_slip`` - a wall; zero normal velocity, no friction (zero tangential gradient);
* ``inflow`` - a given velocity enters (normal and tangential parts prescribed);
* ``outflow`` - zero pressure on the face, zero-gradient velocity.

Pressure sees walls and inflow as Neumann faces (the normal velocity there is fixed)
and outflow as a Dirichlet face (p = 0). Scalars (density) have zero gradient at every
non-periodic face. Faces next to a solid cell are closed, with the obstacle's velocity.
Kernels ask a face's rule (``face.rule.solid``, ``face.rule.pressure``, ...), never its
name, so a new kind is one more entry in :data:`RULES`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools

import numpy as onp

from .errors import InputError, UnknownNameError
from .grid import AXES, Grid

#: the ghost rule ``ghost = a·inside + (1 - a)·face value`` of each boundary letter:
#: "N" (Neumann: ghost = inside, zero gradient) and "D" (Dirichlet: the face value is
#: prescribed, ghost = 2·value - inside); the letters also name the fast transforms
#: along a bounded axis (see :mod:`fluidgrad.ops.spectral`)
GHOST_COEFFICIENT = {"N": 1.0, "D": -1.0}


@dataclasses.dataclass(frozen=True)
class BoundaryRule:
    """What a kind of box face means to every kernel.

    ``periodic``: the opposite face is the same face. ``solid``: a wall (no normal flow
    through it; a moving wall moves along itself only). ``velocity``: whether the face
    takes a ``velocity``: ``"none"``, ``"optional"`` (a moving wall) or ``"required"``.
    ``open``: the normal velocity on the face is left to the pressure projection (else
    it is fixed: zero or the given velocity). ``pressure``: the pressure's letter on the
    face, ``"N"`` (zero normal gradient) or ``"D"`` (p = 0). ``tangential``: the letter of
    velocity components tangential to the face, ``"D"`` (the face value is the face's
    velocity) or ``"N"`` (zero gradient). Normal components and scalars are ``"N"``.
    """

    periodic: bool = False
    solid: bool = False
    velocity: str = "none"
    open: bool = False
    pressure: str = "N"
    tangential: str = "N"

    @property
    def pressure_dirichlet(self) -> bool:
        """True where the pressure is held at 0 on the face (an outflow)."""
        return self.pressure == "D"

    def letter(self, location, axis) -> str:
        """The boundary letter ("N"/"D") of a field at ``location`` ('pressure', 'center'
        for scalars, or a velocity component's axis) across a face normal to ``axis``."""
        if location == "pressure":
            return self.pressure
        if location == "center" or location == axis:
            return "N"
        return self.tangential


#: every boundary kind and its rule; the one place a kind is defined
RULES = {
    "periodic": BoundaryRule(periodic=True),
    "no_slip": BoundaryRule(solid=True, velocity="optional", tangential="D"),
    "free_slip": BoundaryRule(solid=True),
    "inflow": BoundaryRule(velocity="required", tangential="D"),
    "outflow": BoundaryRule(open=True, pressure="D"),
}
KINDS = tuple(RULES)
WALLS = tuple(k for k, r in RULES.items() if r.solid)


def rule_of(kind, key=None) -> BoundaryRule:
    """The :class:`BoundaryRule` of boundary kind ``kind`` (:class:`UnknownNameError`,
    with ``key``, for a kind that is not in :data:`RULES`)."""
    try:
        return RULES[kind]
    except (KeyError, TypeError):
        raise UnknownNameError("boundary type", kind, KINDS, key) from None


@dataclasses.dataclass(frozen=True)
class BoundaryFace:
    """One face of the box: its ``kind`` and, for moving walls and inflow, ``velocity``."""

    kind: str
    velocity: tuple | None = None

    def __post_init__(self):
        rule = rule_of(self.kind)
        if self.velocity is not None:
            object.__setattr__(self, "velocity", tuple(float(v) for v in self.velocity))
        article = "an" if self.kind[0] in "aeiou" else "a"
        if rule.velocity == "required" and self.velocity is None:
            raise InputError(f"{article} {self.kind} face needs a velocity")
        if rule.velocity == "none" and self.velocity is not None:
            raise InputError(f"{article} {self.kind} face takes no velocity")

    @property
    def rule(self) -> BoundaryRule:
        """What this face's kind means to the kernels."""
        return RULES[self.kind]

    def wall_velocity(self, ndim: int) -> tuple:
        return self.velocity if self.velocity is not None else (0.0,) * ndim


def face_name(axis: int, side: int) -> str:
    return f"{AXES[axis]}_{'lo' if side == 0 else 'hi'}"


@dataclasses.dataclass(frozen=True)
class Boundaries:
    """Boundary conditions of all faces: ``faces[axis] = (low face, high face)``."""

    faces: tuple

    def __post_init__(self):
        faces = tuple((_as_face(lo), _as_face(hi)) for lo, hi in self.faces)
        object.__setattr__(self, "faces", faces)
        ndim = len(faces)
        for axis, pair in enumerate(faces):
            if pair[0].rule.periodic != pair[1].rule.periodic:
                raise InputError("a periodic face needs a periodic partner",
                                 key=f"boundaries.{face_name(axis, 0)}/{face_name(axis, 1)}")
            for side, face in enumerate(pair):
                key = f"boundaries.{face_name(axis, side)}.velocity"
                if face.velocity is not None and len(face.velocity) != ndim:
                    raise InputError(f"expected {ndim} numbers, got {len(face.velocity)}", key=key)
                if face.rule.solid and face.velocity is not None and face.velocity[axis] != 0:
                    raise InputError("a wall cannot move through itself (normal component must be 0)", key=key)

    @classmethod
    def periodic(cls, ndim: int) -> "Boundaries":
        return cls(tuple((BoundaryFace("periodic"), BoundaryFace("periodic")) for _ in range(ndim)))

    @classmethod
    def closed(cls, ndim: int, kind: str = "no_slip") -> "Boundaries":
        return cls(tuple((BoundaryFace(kind), BoundaryFace(kind)) for _ in range(ndim)))

    @classmethod
    def from_dict(cls, spec: dict, ndim: int) -> "Boundaries":
        """From ``{'x': 'periodic', 'y_lo': 'no_slip', 'y_hi': {'type': 'no_slip',
        'velocity': [1, 0]}}``; faces not named are no-slip walls."""
        faces = [[BoundaryFace("no_slip"), BoundaryFace("no_slip")] for _ in range(ndim)]
        for key, value in spec.items():
            if key in AXES[:ndim]:
                axis = AXES.index(key)
                faces[axis] = [_as_face(value, key), _as_face(value, key)]
                continue
            names = [face_name(a, s) for a in range(ndim) for s in (0, 1)]
            if key not in names:
                hint = difflib.get_close_matches(key, names + list(AXES[:ndim]), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise InputError(f"unknown boundary face {key!r}{extra}", key=f"boundaries.{key}")
            axis, side = AXES.index(key[0]), (0 if key.endswith("lo") else 1)
            faces[axis][side] = _as_face(value, key)
        return cls(tuple(tuple(pair) for pair in faces))

    @property
    def ndim(self) -> int:
        return len(self.faces)

    def rule(self, axis: int, side: int) -> BoundaryRule:
        """The rule of face (axis, side)."""
        return self.faces[axis][side].rule

    def is_periodic(self, axis: int) -> bool:
        return self.faces[axis][0].rule.periodic

    @property
    def periodic_axes(self) -> tuple:
        return tuple(self.is_periodic(a) for a in range(self.ndim))

    def ghost(self, location, axis: int, side: int):
        """Ghost rule ``ghost = a·inside + b`` half a cell outside face (axis, side) for a
        field at ``location`` ('pressure', 'center' or a velocity component): ``a`` from
        the face's letter, ``b = (1 - a)·face value`` (the wall velocity of a tangential
        component; 0 otherwise)."""
        face = self.faces[axis][side]
        a = GHOST_COEFFICIENT[face.rule.letter(location, axis)]
        value = 0.0
        if location not in ("pressure", "center") and location != axis:
            value = face.wall_velocity(self.ndim)[location]
        return a, (1.0 - a) * value

    def tangential_ghost(self, component: int, axis: int, side: int):
        """Ghost rule ``ghost = a·inside + b`` for velocity component ``component`` half a
        cell outside face (axis, side), ``axis != component``: no-slip/inflow make the
        face value the wall velocity (a = -1, b = 2v); free-slip/outflow copy (a = 1)."""
        return self.ghost(component, axis, side)


def _face(kind, velocity, where) -> BoundaryFace:
    """``BoundaryFace(kind, velocity)``; a velocity it refuses names ``where.velocity``."""
    try:
        return BoundaryFace(kind, velocity)
    except InputError as exc:
        if exc.key is None and where is not None:
            exc.key = f"{where}.velocity"
        raise


def _as_face(value, key=None) -> BoundaryFace:
    if isinstance(value, BoundaryFace):
        return value
    where = f"boundaries.{key}" if key is not None else None
    if isinstance(value, str):
        rule_of(value, where)  # an unknown kind names the face's key
        return _face(value, None, where)
    if isinstance(value, dict):
        unknown = set(value) - {"type", "velocity"}
        if unknown:
            raise InputError(f"unknown boundary key {sorted(unknown)[0]!r} (expected type, velocity)", key=where)
        if "type" not in value:
            raise InputError("a boundary face needs a type", key=where)
        rule_of(value["type"], f"{where}.type" if where else None)
        return _face(value["type"], value.get("velocity"), where)
    raise InputError(f"a boundary face must be a type name or {{type, velocity}}, got {value!r}", key=where)


# ---------------------------------------------------------------------------
# obstacles


@dataclasses.dataclass(frozen=True)
class Obstacle:
    """A solid region: ``shape`` 'circle'/'sphere' (center, radius), 'box' (lower,
    upper) or 'mask' (a boolean array resampled to the grid); optional rigid
    ``velocity`` given to the faces of its cells."""

    shape: str
    center: tuple | None = None
    radius: float | None = None
    lower: tuple | None = None
    upper: tuple | None = None
    mask: object = None
    velocity: tuple | None = None

    def cells(self, grid: Grid):
        """Boolean cell mask: True where the cell centre lies inside the obstacle."""
        xs = grid.mesh()
        if self.shape in ("circle", "sphere"):
            r2 = sum((x - c) ** 2 for x, c in zip(xs, self.center))
            with onp.errstate(over="ignore"):  # a huge radius squares to inf: all inside
                return r2 <= onp.float64(self.radius) ** 2
        if self.shape == "box":
            inside = onp.ones(grid.shape, dtype=bool)
            for x, lo, hi in zip(xs, self.lower, self.upper):
                inside &= (x >= lo) & (x <= hi)
            return inside
        if self.shape == "mask":
            return resample_mask(onp.asarray(self.mask), grid.shape)
        raise UnknownNameError("obstacle shape", self.shape, ("circle", "sphere", "box", "mask"))


def resample_mask(mask, shape):
    """Nearest-neighbour resampling of a boolean (or 0..1) image to ``shape``."""
    mask = onp.asarray(mask)
    idx = [onp.minimum((onp.arange(n) + 0.5) * m / n, m - 1).astype(int) for n, m in zip(shape, mask.shape)]
    return mask[onp.ix_(*idx)] > 0.5


# ---------------------------------------------------------------------------
# the domain


class Domain:
    """Grid + boundaries + obstacles, and the masks derived from them.

    Static (never differentiated) and hashed by identity, so kernels can take it as a
    keyword argument. Derived arrays are numpy; :meth:`array` moves one to the array
    module and dtype of a field, with caching.
    """

    def __init__(self, grid: Grid, boundaries: Boundaries | None = None, obstacles=()):
        boundaries = boundaries or Boundaries.closed(grid.ndim)
        if boundaries.ndim != grid.ndim:
            raise InputError(f"boundaries are {boundaries.ndim}-D but the grid is {grid.ndim}-D")
        self.grid = grid
        self.boundaries = boundaries
        self.ndim = grid.ndim
        self.periodic_axes = boundaries.periodic_axes
        self.all_periodic = all(self.periodic_axes)  # no ghost layers anywhere
        self.obstacles = tuple(obstacles)
        solid = onp.zeros(grid.shape, dtype=bool)
        self._solid_velocity = [onp.zeros(grid.shape) for _ in range(grid.ndim)]
        for ob in self.obstacles:
            cells = ob.cells(grid)
            solid |= cells
            if ob.velocity is not None:
                for d in range(grid.ndim):
                    self._solid_velocity[d][cells] = ob.velocity[d]
        self.solid = solid
        self._cache = {}

    def __repr__(self):
        return f"Domain({self.grid}, obstacles={len(self.obstacles)})"

    @property
    def dx(self) -> float:
        return self.grid.dx

    @property
    def has_obstacles(self) -> bool:
        return bool(self.solid.any())

    @property
    def fluid(self):
        return ~self.solid

    def periodic(self, axis: int) -> bool:
        return self.periodic_axes[axis]

    def face_shape(self, axis: int) -> tuple:
        return self.grid.face_shape(axis, self.periodic(axis))

    @property
    def velocity_shapes(self) -> tuple:
        return tuple(self.face_shape(d) for d in range(self.ndim))

    def _neighbour_cells(self, cell_array, axis):
        """The cell values on each side of every face normal to ``axis`` (for boundary
        faces of a bounded axis, the outside neighbour is the inside cell itself)."""
        if self.periodic(axis):
            return onp.roll(cell_array, 1, axis), cell_array
        lo = onp.concatenate([onp.take(cell_array, [0], axis), cell_array], axis)
        hi = onp.concatenate([cell_array, onp.take(cell_array, [-1], axis)], axis)
        return lo, hi

    @functools.cached_property
    def open_faces(self) -> tuple:
        """Per axis, True on faces whose normal velocity is free (set by the pressure
        projection); False on walls, inflow faces and faces touching a solid cell."""
        masks = []
        for axis in range(self.ndim):
            mask = _face_mask_of(self, axis)
            if not self.periodic(axis):
                for side, index in ((0, 0), (1, -1)):
                    if not self.boundaries.rule(axis, side).open:
                        _face_slice(mask, axis, index)[...] = False
            masks.append(mask)
        return tuple(masks)

    @functools.cached_property
    def has_closed_faces(self) -> bool:
        """Whether any face's normal velocity is prescribed (walls, inflow, obstacles)."""
        return not all(m.all() for m in self.open_faces)

    @property
    def fixed_velocity(self) -> tuple:
        """Per axis, the prescribed normal velocity on closed faces (0 on open faces).
        Computed on each access (float64): the kernels keep only :meth:`array`'s copy in
        their dtype (at 512² the float64 masks held 8 MB for the whole run)."""
        values = []
        for axis in range(self.ndim):
            left, right = self._neighbour_cells(self._solid_velocity[axis], axis)
            sl, sr = self._neighbour_cells(self.solid, axis)
            v = onp.where(sr, right, onp.where(sl, left, 0.0))
            if not self.periodic(axis):
                for side, index in ((0, 0), (1, -1)):
                    face = self.boundaries.faces[axis][side]
                    if not face.rule.open and face.velocity is not None:
                        _face_slice(v, axis, index)[...] = face.velocity[axis]
            values.append(onp.where(self.open_faces[axis], 0.0, v))
        return tuple(values)

    @property
    def pressure_conductances(self) -> tuple:
        """Per axis, face weights of the pressure Laplacian: 1 on open interior faces,
        2 on outflow faces (p = 0 half a cell away), 0 on closed faces. Computed on each
        access, like :attr:`fixed_velocity`."""
        weights = []
        for axis in range(self.ndim):
            w = self.open_faces[axis].astype(float)
            if not self.periodic(axis):
                for side, index in ((0, 0), (1, -1)):
                    _face_slice(w, axis, index)[...] *= 2.0
            weights.append(w)
        return tuple(weights)

    @functools.cached_property
    def inflow_face(self) -> tuple:
        """``(axis, side)`` of the box's one inflow face (:class:`InputError` if there is
        none or more than one: an inflow profile needs exactly one)."""
        found = [(a, s) for a, pair in enumerate(self.boundaries.faces) for s, f in enumerate(pair)
                 if f.kind == "inflow"]
        if len(found) != 1:
            raise InputError(f"an inflow profile needs exactly one inflow face, the box has {len(found)}",
                             key="boundaries")
        return found[0]

    @property
    def inflow_profile_shape(self) -> tuple:
        """Shape of an inflow profile: the cells of the inflow face (the grid without its axis)."""
        axis, _ = self.inflow_face
        return tuple(n for a, n in enumerate(self.grid.shape) if a != axis)

    def inflow_velocity(self) -> float:
        """The inflow face's own (uniform) normal velocity."""
        axis, side = self.inflow_face
        return self.boundaries.faces[axis][side].velocity[axis]

    def fixed_velocity_with(self, profile) -> tuple:
        """:attr:`fixed_velocity` with ``profile`` (a differentiable array of
        :attr:`inflow_profile_shape`) as the normal velocity of the inflow face, where that
        face touches no solid cell: ``c + E (profile - c_inflow)``, ``E`` the face's mask."""
        from .backend import xp_of
        from . import numpy as fnp
        axis, side = self.inflow_face
        raw = getattr(profile, "_fg_value", profile)
        if tuple(getattr(raw, "shape", ())) != self.inflow_profile_shape:
            raise InputError(f"inflow_profile: expected shape {self.inflow_profile_shape} (the cells of the "
                             f"inflow face {face_name(axis, side)}), got {tuple(getattr(raw, 'shape', ()))}")
        like = xp_of(raw).zeros((), dtype=raw.dtype)
        key = ("inflow-mask", xp_of(raw).__name__, raw.dtype)
        mask = self._cache.get(key)
        if mask is None:
            m = onp.zeros(self.face_shape(axis))
            _face_slice(m, axis, 0 if side == 0 else -1)[...] = 1.0
            m *= _face_mask_of(self, axis)
            mask = self._cache[key] = xp_of(raw).asarray(m, dtype=raw.dtype)
        fixed = [self.array("fixed_velocity", like, d) for d in range(self.ndim)]
        delta = fnp.expand_dims(profile - self.inflow_velocity(), axis)
        fixed[axis] = fixed[axis] + mask * delta
        return tuple(fixed)

    @property
    def has_outflow(self) -> bool:
        return any(f.rule.pressure_dirichlet for pair in self.boundaries.faces for f in pair)

    def array(self, name, like, index=None):
        """A derived numpy array (``open_faces``, ``fixed_velocity``, ...) in the array
        module and float dtype of ``like``, cached."""
        from .backend import xp_of
        xp = xp_of(like)
        dtype = getattr(like, "dtype", onp.float64)
        key = (name, index, xp.__name__, dtype)  # dtypes hash fast; str(dtype) does not
        out = self._cache.get(key)
        if out is None:
            value = getattr(self, name)
            if index is not None:
                value = value[index]
            value = onp.asarray(value)
            out = xp.asarray(value.astype(dtype, copy=False) if value.dtype != bool else value)
            self._cache[key] = out
        return out


def _face_mask_of(domain, axis):
    """Faces normal to ``axis`` that touch no solid cell."""
    left, right = domain._neighbour_cells(domain.solid, axis)
    return ~(left | right)


def _face_slice(array, axis, index):
    sl = [slice(None)] * array.ndim
    sl[axis] = index
    return array[tuple(sl)]
