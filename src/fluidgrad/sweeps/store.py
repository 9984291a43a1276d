"""``sweep.zarr``: one Zarr store (format 2) for all members of a sweep, written member by
member as they finish, readable with ``xarray.open_zarr`` at every point in between.

Dimension ``member``; each varied key (spelled as given) a coordinate along it (lists and
mappings as their YAML text); the final fields ``density``, ``pressure`` on the cells
(``x``, ``y`` (, ``z``)) and the velocity components ``u``, ``v`` (, ``w``) on their faces
(``x_face``, ...); per member ``status`` (``pending``, ``done``, ``failed``), ``error``
and the metrics of :data:`.run.METRICS`; attributes: the scenario's text, the common
overrides and the fluidgrad version.
"""

from __future__ import annotations

import json

import numpy as onp

from .run import METRICS

FIELDS = {"density": ("density", "1"), "pressure": ("kinematic pressure", "m^2 s^-2")}
UNITS = {"wall_seconds": "s", "steps_per_second": "1/s", "max_divergence": "1/s"}
STATUS = ("pending", "done", "failed")
ERROR_LENGTH = 300


def field_dims(scenario) -> dict:
    """``{field: (dims, shape)}`` of the scenario's final fields."""
    grid, names = scenario.grid, "xyz"[: scenario.grid.ndim]
    periodic = scenario.boundaries.periodic_axes
    dims = {"density": (tuple(names), tuple(grid.resolution)), "pressure": (tuple(names), tuple(grid.resolution))}
    for d, comp in enumerate("uvw"[: grid.ndim]):
        axes = tuple(f"{n}_face" if e == d else n for e, n in enumerate(names))
        dims[comp] = (axes, grid.face_shape(d, periodic[d]))
    return dims


def coordinates(scenario) -> dict:
    grid, periodic = scenario.grid, scenario.boundaries.periodic_axes
    coords = {}
    for d, n in enumerate("xyz"[: grid.ndim]):
        coords[n] = (n, grid.cell_centers(d), {"units": "m", "long_name": f"cell centre {n}"})
        coords[f"{n}_face"] = (f"{n}_face", grid.face_positions(d, periodic[d]), {"units": "m", "long_name": f"face {n}"})
    return coords


def create(path, scenario, members, text: str, overrides: dict):
    """Write the empty store: every member ``pending``, fields NaN (lazily: nothing of
    the members' size is held in memory)."""
    import dask.array as da
    import xarray as xr
    n = len(members)
    data = {}
    for name, (dims, shape) in field_dims(scenario).items():
        long_name, units = FIELDS.get(name, (f"velocity component {name} on its faces", "m/s"))
        data[name] = (("member",) + dims, da.full((n,) + shape, onp.nan, chunks=(1,) + shape),
                      {"long_name": long_name, "units": units})
    data["status"] = ("member", onp.full(n, "pending", dtype="<U8"), {"flag_meanings": " ".join(STATUS)})
    data["error"] = ("member", onp.full(n, "", dtype=f"<U{ERROR_LENGTH}"), {"long_name": "why the member failed"})
    for name in METRICS:
        data[name] = ("member", onp.full(n, onp.nan), {"units": UNITS[name], "long_name": name.replace("_", " ")})
    coords = {"member": ("member", onp.arange(n))}
    for key in members[0].values:
        coords[key] = ("member", onp.array([_coordinate(m.values[key]) for m in members]))
    coords.update(coordinates(scenario))
    ds = xr.Dataset(data, coords=coords, attrs={"scenario": text, "overrides": json.dumps(overrides, default=str),
                                                 "varied": json.dumps(list(members[0].values)),
                                                 "fluidgrad_version": _version()})
    ds.to_zarr(path, mode="w", compute=False, zarr_format=2, consolidated=True)


def write_member(path, index: int, result: dict, scenario):
    """Write member ``index``'s result into its region of the store."""
    import xarray as xr
    data = {}
    for name, (dims, shape) in field_dims(scenario).items():
        value = result["fields"].get(name)
        value = onp.full(shape, onp.nan) if value is None else value
        data[name] = (("member",) + dims, value[None])
    data["error"] = ("member", onp.array([result["error"][:ERROR_LENGTH]], dtype=f"<U{ERROR_LENGTH}"))
    for name in METRICS:
        data[name] = ("member", onp.array([result["metrics"][name]], dtype=float))
    region = {"member": slice(index, index + 1)}
    xr.Dataset(data).to_zarr(path, region=region, zarr_format=2)
    # the status last: a member reads "done" only once everything else of it is written
    status = xr.Dataset({"status": ("member", onp.array([result["status"]], dtype="<U8"))})
    status.to_zarr(path, region=region, zarr_format=2)


def finished(path) -> set:
    """The members whose status is ``done`` in the store at ``path`` (for ``--resume``)."""
    import xarray as xr
    with xr.open_zarr(path) as ds:
        return _done(ds)


def _done(ds) -> set:
    return {int(i) for i in onp.flatnonzero(ds["status"].values == "done")}


def resumable(path, members, overrides: dict) -> set:
    """The members already ``done`` in the store at ``path`` if it holds this sweep (the
    same varied keys and values, the same overrides); an empty set if it cannot be read
    (killed while it was being created); a ``UsageError`` naming what differs if it
    holds another sweep."""
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
        return _done(ds)


def _coordinate(value):
    if isinstance(value, (list, dict)):
        import yaml
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


def _version():
    from .. import __version__
    return __version__
