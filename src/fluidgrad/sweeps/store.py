"""``sweep.zarr``: one Zarr store (format 2) for all members of a sweep, readable with
``xarray.open_zarr`` at every point while it is written.

Dimension ``member``; each varied key (spelled as given) a coordinate along it (lists and
mappings as their YAML text). Per member:

* the fields (``--what run`` and ``optimize``): ``density``, ``pressure`` on the cells
  (``x``, ``y`` (, ``z``)) and the velocity components ``u``, ``v`` (, ``w``) on their
  faces (``x_face``, ...); the final ones, or with ``--record-every K`` a snapshot every K
  steps (and the last step) along a ``time`` dimension (coordinates ``time`` = step·Δt
  and ``step``), the last one the final state;
* ``--what gradient`` / ``optimize``: ``parameters`` (the flat raw parameter vector: the
  point of the gradient, or the optimized one) and ``gradient`` along ``parameter``
  (coordinate ``parameter_name``: ``initial_velocity_0[17]``, ``viscosity``);
* ``status`` (``pending``, ``done``, ``failed``), ``error`` and the scalars of
  :data:`.run.SCALARS` for the mode.

Units are the scenario's box units, as the pictures name them: L (length) and T (time);
the stored pressure is the solver's kinematic pressure times the step, p·Δt/ρ [L²/T].
Attributes: the scenario's text, the common overrides, the varied keys, ``what``,
``record_every`` (0: final fields only) and the fluidgrad version.

Who writes what: a member's worker writes its own fields and vectors (chunks of one
member, so no two processes ever write the same chunk); the driver writes the scalars and
``status`` (one writer, status last: a member reads ``done`` only once all of it is written).
"""

from __future__ import annotations

import json
import os
import time

import numpy as onp

from .run import SCALARS

#: the fields' long names and units (pressure as :mod:`fluidgrad.render` names it)
FIELDS = {"density": ("density", "1"), "pressure": ("kinematic pressure times the step p·Δt/ρ", "L²/T"),
          "u": ("velocity x-component on the x faces", "L/T"), "v": ("velocity y-component on the y faces", "L/T"),
          "w": ("velocity z-component on the z faces", "L/T")}
#: the scalars' units and long names (``{loss}``: the loss's units, :func:`loss_units`)
SCALAR_ATTRS = {
    "wall_seconds": ("s", "wall time of the member's simulation (or its gradient, or its optimization)"),
    "steps_per_second": ("1/s", "simulation steps per second"),
    "max_divergence": ("1/T", "largest |∇·u| over the fluid cells after the last projection"),
    "loss": ("{loss}", "loss of the optimize: block at the initial parameters"),
    "grad_norm": ("{loss} per unit of the parameters", "norm of the loss's gradient (the last one when optimizing)"),
    "initial_loss": ("{loss}", "loss at the initial parameters"),
    "final_loss": ("{loss}", "loss at the optimized parameters"),
    "iterations": ("1", "optimizer iterations completed"),
    "seconds_per_iteration": ("s", "wall time per optimizer iteration"),
    "stop_reason": (None, "why the optimization stopped"),
}
STATUS = ("pending", "done", "failed")
TEXT_LENGTH = 300  # error and stop_reason are cut to this many characters


def field_dims(scenario) -> dict:
    """``{field: (dims, shape)}`` of the scenario's fields (one state)."""
    grid, names = scenario.grid, "xyz"[: scenario.grid.ndim]
    periodic = scenario.boundaries.periodic_axes
    dims = {"density": (tuple(names), tuple(grid.resolution)), "pressure": (tuple(names), tuple(grid.resolution))}
    for d, comp in enumerate("uvw"[: grid.ndim]):
        axes = tuple(f"{n}_face" if e == d else n for e, n in enumerate(names))
        dims[comp] = (axes, grid.face_shape(d, periodic[d]))
    return dims


def record_steps(steps: int, every: int) -> list:
    """The steps ``--record-every every`` snapshots: 0, every, 2·every, ... and ``steps``."""
    out = list(range(0, steps + 1, every))
    return out if out[-1] == steps else out + [steps]


def loss_units(scenario) -> str:
    """The units of the scenario's loss (box units; a regularized loss adds terms of its own)."""
    kind = scenario.optimize["loss"]["type"]
    return {"density_mse": "1", "velocity_mse": "L²/T²"}.get(kind, f"L^{scenario.grid.ndim + 2}/T²")


def coordinates(scenario, record_every=None) -> dict:
    grid, periodic = scenario.grid, scenario.boundaries.periodic_axes
    coords = {}
    for d, n in enumerate("xyz"[: grid.ndim]):
        coords[n] = (n, grid.cell_centers(d), {"units": "L", "long_name": f"cell centre {n}"})
        coords[f"{n}_face"] = (f"{n}_face", grid.face_positions(d, periodic[d]),
                               {"units": "L", "long_name": f"face {n}"})
    if record_every:
        steps = onp.array(record_steps(scenario.steps, record_every))
        coords["time"] = ("time", steps * scenario.dt, {"units": "T", "long_name": "time t = step·Δt"})
        coords["step"] = ("time", steps, {"units": "1", "long_name": "simulation step"})
    return coords


def create(path, scenario, members, text: str, overrides: dict, what: str = "run", record_every=None,
           parameter_names=None):
    """Write the empty store: every member ``pending``, everything else NaN (lazily:
    nothing of the members' size is held in memory or written). Written with zarr itself,
    in the layout xarray reads (``_ARRAY_DIMENSIONS``, ``coordinates``, consolidated
    metadata): xarray and dask.array cost a second to import and write it."""
    n = len(members)
    data = {}
    if what in ("run", "optimize"):
        times = (len(record_steps(scenario.steps, record_every)),) if record_every else ()
        for name, (dims, shape) in field_dims(scenario).items():
            long_name, units = FIELDS[name]
            data[name] = (("member",) + ("time",) * len(times) + dims,
                          _Empty((n,) + times + shape, (1,) + (1,) * len(times) + shape),
                          {"long_name": long_name, "units": units})
    coords = {"member": ("member", onp.arange(n))}
    if what != "run":
        size = len(parameter_names)
        units = loss_units(scenario)
        data["parameters"] = (("member", "parameter"), _Empty((n, size), (1, size)),
                              {"long_name": "raw parameters (the point of the gradient, or the optimized ones)",
                               "units": "the parameters' own units (see parameter_name)"})
        if what == "gradient":
            data["gradient"] = (("member", "parameter"), _Empty((n, size), (1, size)),
                                {"long_name": "gradient of the loss with respect to the raw parameters",
                                 "units": f"{units} per unit of each parameter"})
        coords["parameter_name"] = ("parameter", onp.array(parameter_names), {"long_name": "parameter[flat index]"})
    data["status"] = ("member", onp.full(n, "pending", dtype="<U8"), {"flag_meanings": " ".join(STATUS)})
    data["error"] = ("member", onp.full(n, "", dtype=f"<U{TEXT_LENGTH}"), {"long_name": "why the member failed"})
    for name in SCALARS[what]:
        units, long_name = SCALAR_ATTRS[name]
        attrs = {"long_name": long_name}
        if units is not None:
            attrs["units"] = units.format(loss=loss_units(scenario) if "{" in units else "")
        empty = onp.full(n, "", dtype=f"<U{TEXT_LENGTH}") if name == "stop_reason" else onp.full(n, onp.nan)
        data[name] = ("member", empty, attrs)
    for key in members[0].values:
        coords[key] = ("member", onp.array([_coordinate(m.values[key]) for m in members]))
    coords.update(coordinates(scenario, record_every))
    attrs = {"scenario": text, "overrides": json.dumps(overrides, default=str),
             "varied": json.dumps(list(members[0].values)), "what": what, "record_every": int(record_every or 0),
             "fluidgrad_version": _version()}
    _write(path, data, coords, attrs)


class _Empty(tuple):
    """A variable not written yet: ``(shape, chunks)``, NaN until a member writes it."""

    def __new__(cls, shape, chunks):
        return super().__new__(cls, (shape, chunks))


def _write(path, data, coords, attrs):
    """The store of ``data`` and ``coords`` (name -> ``(dims, values or _Empty, attrs)``)."""
    import zarr
    group = zarr.open_group(str(path), mode="w", zarr_format=2, attributes=attrs)
    extra = " ".join(name for name, (dims, *_) in coords.items() if dims not in (name, (name,)))  # not indexes
    for name, (dims, values, *rest) in {**coords, **data}.items():
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        meta = {**(rest[0] if rest else {}), "_ARRAY_DIMENSIONS": list(dims)}
        if name in data and extra:
            meta["coordinates"] = extra
        if isinstance(values, _Empty):
            group.create_array(name, shape=values[0], chunks=values[1], dtype="f8", fill_value=onp.nan,
                               attributes=meta)
        else:
            values = onp.asarray(values)
            array = group.create_array(name, shape=values.shape, dtype=values.dtype, attributes=meta,
                                       fill_value=onp.nan if values.dtype.kind == "f" else None)
            array[...] = values
    zarr.consolidate_metadata(str(path), zarr_format=2)


def member_writer(path, index: int):
    """``write(arrays, time=None)``: writes member ``index``'s arrays (name -> array; at
    snapshot ``time`` for the recorded fields) into its own chunks of the store; for the
    process that runs the member."""
    array = _arrays(path)

    def write(arrays, time=None):
        where = (index,) if time is None else (index, time)
        for name, value in arrays.items():
            target = array(name)
            put_chunk(target, where + (0,) * (target.ndim - len(where)), value)
    return write


def put_chunk(array, coords, values):
    """Write ``values`` as the chunk at chunk-grid position ``coords`` of the format-2
    zarr ``array`` (in a local store): the bytes zarr itself writes (the array's dtype,
    filters, compressor and chunk key), into a temporary file renamed over the chunk's,
    so a reader sees the old chunk or the new one, never a part. Zarr's own ``setitem``
    costs ~1.5 ms of CPU a chunk in its asynchronous machinery (7 ms for a 64² member's
    four fields, 3.5 % of its simulation); this, 0.2 ms."""
    meta = array.metadata
    data = onp.ascontiguousarray(onp.asarray(values, dtype=meta.dtype.to_native_dtype()).reshape(meta.chunks))
    for codec in meta.filters or ():
        data = codec.encode(data)
    if meta.compressor is not None:
        data = meta.compressor.encode(data)
    file = os.path.join(str(array.store_path.store.root), array.path, meta.encode_chunk_key(coords))
    temporary = os.path.join(os.path.dirname(file), f".{os.path.basename(file)}.{os.getpid()}.partial")
    try:
        handle = open(temporary, "wb")
    except FileNotFoundError:  # a nested chunk key ("/" separator) whose folder is new
        os.makedirs(os.path.dirname(file), exist_ok=True)
        handle = open(temporary, "wb")
    with handle:
        handle.write(data)
    os.replace(temporary, file)


_OPEN = {}  # (store path, its metadata's inode and mtime) -> {name: zarr array}: opened once per process


def _arrays(path):
    """``array(name)``: the store's zarr array ``name``, opened once per process and
    store (a worker writes many members into the same store; opening costs ~1 ms an
    array). A store created anew at the same path is a new key."""
    import zarr
    meta = os.stat(os.path.join(str(path), ".zmetadata"))
    key = (str(path), meta.st_ino, meta.st_mtime_ns)
    if key not in _OPEN:
        _OPEN.clear()  # one store at a time: a worker moves on to the next sweep
        _OPEN[key] = {"": zarr.open_group(zarr.storage.LocalStore(str(path)), mode="r+", zarr_format=2,
                                          use_consolidated=False)}
    cache = _OPEN[key]
    return lambda name: cache.get(name) or cache.setdefault(name, cache[""][name])


class SummaryWriter:
    """The driver's writes of each member's scalars, error and, last, status, once the
    member's own arrays are in the store.

    The numbers and the statuses are kept here (a few bytes a member) and written as
    whole chunks at most every ``every`` seconds, and by :meth:`flush` (the sweep calls it
    when it ends or is interrupted): writing five arrays a member took the driver 20 ms of
    CPU, taken from the workers when they have every core. A text (an error, a stop
    reason; or the blank replacing one of an earlier run) is written at once. Killed
    between two flushes, the store shows the last flush's state: members finished since
    then are run again by ``--resume``."""

    def __init__(self, path, every=0.5):
        self.array, self.every = _arrays(path), every
        self.values, self.texts, self.dirty, self.last = {}, {}, set(), time.monotonic()

    def write(self, index, result):
        for name, value in {**result["metrics"], "error": result["error"], "status": result["status"]}.items():
            target = self.array(name)
            if target.dtype.kind == "U" and name != "status":
                if name not in self.texts:  # the members with a text already (a resumed sweep's)
                    self.texts[name] = set(onp.flatnonzero(target[...] != "").tolist())
                if value or index in self.texts[name]:
                    target[index] = value[:TEXT_LENGTH]
                    self.texts[name].discard(index)
                continue
            if name not in self.values:
                self.values[name] = target[...]
            self.values[name][index] = value
            self.dirty.add((name, index // target.chunks[0]))
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self):
        """Write every chunk changed since the last flush, the statuses' last."""
        for name, chunk in sorted(self.dirty, key=lambda item: item[0] == "status"):
            target = self.array(name)
            size = target.chunks[0]
            part = self.values[name][chunk * size:(chunk + 1) * size]
            whole = onp.zeros(size, part.dtype)  # the last chunk is stored whole; zarr reads only its start
            whole[:len(part)] = part
            put_chunk(target, (chunk,), whole)
        self.dirty.clear()
        self.last = time.monotonic()


def write_summary(path, index: int, result: dict):
    """Write one member's summary now (see :class:`SummaryWriter`)."""
    writer = SummaryWriter(path)
    writer.write(index, result)
    writer.flush()


def finished(path) -> set:
    """The members whose status is ``done`` in the store at ``path`` (for ``--resume``)."""
    import xarray as xr
    with xr.open_zarr(path) as ds:
        return _done(ds)


def _done(ds) -> set:
    return {int(i) for i in onp.flatnonzero(ds["status"].values == "done")}


def resumable(path, members, overrides: dict, what: str = "run", record_every=None) -> set:
    """The members already ``done`` in the store at ``path`` if it holds this sweep (the
    same varied keys and values, the same overrides, ``what`` and ``record_every``); an
    empty set if it cannot be read (killed while it was being created); a ``UsageError``
    naming what differs if it holds another sweep."""
    import xarray as xr
    from ..errors import UsageError
    try:
        ds = xr.open_zarr(path)
    except Exception:  # noqa: BLE001 - a store cut short while being created: start afresh
        return set()
    with ds:
        varied = json.loads(ds.attrs.get("varied", "[]"))
        if varied != list(members[0].values) or ds.sizes.get("member") != len(members):
            raise UsageError(f"{path}: holds a sweep over {', '.join(varied) or 'nothing'} with "
                             f"{ds.sizes.get('member')} members, not this one (use another --out, or --force)")
        for key in varied:
            if list(ds[key].values) != [_coordinate(m.values[key]) for m in members]:
                raise UsageError(f"{path}: holds a sweep with other values of {key}")
        if ds.attrs.get("overrides") != json.dumps(overrides, default=str):
            raise UsageError(f"{path}: holds a sweep with other settings ({ds.attrs.get('overrides')})")
        stored = (ds.attrs.get("what", "run"), int(ds.attrs.get("record_every", 0)))
        if stored != (what, int(record_every or 0)):
            raise UsageError(f"{path}: holds a sweep of --what {stored[0]} --record-every {stored[1]}, "
                             f"not --what {what} --record-every {int(record_every or 0)}")
        return _done(ds)


def _coordinate(value):
    if isinstance(value, (list, dict)):
        import yaml
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


def _version():
    from .. import __version__
    return __version__
