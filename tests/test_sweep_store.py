"""sweep.zarr's writers: a chunk written by fluidgrad reads back through zarr as it was
written; the driver's summaries reach the store in batches, status last; a worker warms
up once per kind of member."""

import os

import numpy as onp
import pytest

zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")
pytest.importorskip("dask.distributed")

from fluidgrad.scenario import load_scenario  # noqa: E402
from fluidgrad.sweeps import run as member_run  # noqa: E402
from fluidgrad.sweeps import store  # noqa: E402
from fluidgrad.sweeps.members import expand  # noqa: E402


@pytest.mark.parametrize("separator", [".", "/"])
@pytest.mark.parametrize("dtype, values", [("f8", onp.random.default_rng(0).normal(size=(1, 6, 5))),
                                           ("f4", onp.random.default_rng(1).normal(size=(1, 6, 5))),
                                           ("<U8", onp.array([["done", "failed", "", "pending", "x"] * 6])
                                            .reshape(1, 6, 5))])
def test_a_chunk_put_by_fluidgrad_reads_back_through_zarr(tmp_path, separator, dtype, values):
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=2)
    array = group.create_array("a", shape=(3, 6, 5), chunks=(1, 6, 5), dtype=dtype,
                               chunk_key_encoding={"name": "v2", "separator": separator})
    array[...] = onp.zeros((3, 6, 5), dtype) if dtype != "<U8" else onp.full((3, 6, 5), "pending")
    before = array[...]
    store.put_chunk(array, (1, 0, 0), values)
    after = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["a"][...]
    assert onp.array_equal(after[1], values[0].astype(dtype))
    assert onp.array_equal(after[[0, 2]], before[[0, 2]])  # the other chunks untouched
    left = [f for _, _, files in os.walk(tmp_path) for f in files if f.endswith(".partial")]
    assert left == []  # written whole, then renamed over the chunk


def test_a_chunk_of_the_wrong_shape_is_refused(tmp_path):
    array = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=2).create_array(
        "a", shape=(3, 4), chunks=(1, 4), dtype="f8")
    with pytest.raises(ValueError):
        store.put_chunk(array, (0, 0), onp.ones(5))


def _store(tmp_path, n):
    scenario = load_scenario("taylor_green", {"grid.resolution": [8, 8]})
    path = tmp_path / "sweep.zarr"
    store.create(path, scenario, expand({"physics.viscosity": list(onp.linspace(0.01, 0.1, n))}), "text", {})
    return path


def _result(status="done", error="", seconds=0.5):
    return {"status": status, "error": error,
            "metrics": {"wall_seconds": seconds, "steps_per_second": 10 / seconds, "max_divergence": 1e-12}}


def test_the_driver_writes_summaries_in_batches_and_the_status_last(tmp_path, monkeypatch):
    path = _store(tmp_path, 5)
    writer = store.SummaryWriter(path, every=3600)
    writer.write(0, _result(seconds=0.25))
    writer.write(3, _result(status="failed", error="SimulationError: step 3: the velocity is not finite"))
    with xr.open_zarr(path) as ds:  # the numbers wait for the flush; the error text is written at once
        assert list(ds["status"].values) == ["pending"] * 5 and onp.isnan(ds["wall_seconds"].values).all()
        assert ds["error"].values[3].startswith("SimulationError")
    order = []
    put = store.put_chunk
    monkeypatch.setattr(store, "put_chunk", lambda array, *a: (order.append(array.path), put(array, *a))[1])
    writer.flush()
    assert order[-1] == "status" and set(order) == {"status", "wall_seconds", "steps_per_second", "max_divergence"}
    with xr.open_zarr(path) as ds:
        assert list(ds["status"].values) == ["done", "pending", "pending", "failed", "pending"]
        assert ds["wall_seconds"].values[0] == 0.25 and ds["steps_per_second"].values[3] == 20.0
        assert onp.isnan(ds["wall_seconds"].values[[1, 2, 4]]).all()
    assert store.finished(path) == {0}


def test_a_flush_is_due_every_few_tenths_of_a_second(tmp_path, monkeypatch):
    path = _store(tmp_path, 3)
    clock = [100.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    writer = store.SummaryWriter(path, every=0.5)
    writer.write(0, _result())
    assert store.finished(path) == set()
    clock[0] += 0.6
    writer.write(1, _result())
    assert store.finished(path) == {0, 1}


def test_a_rerun_member_that_succeeds_loses_the_error_of_its_earlier_run(tmp_path):
    path = _store(tmp_path, 3)
    store.write_summary(path, 2, _result(status="failed", error="SolveError: no convergence"))
    writer = store.SummaryWriter(path)  # a resumed sweep's driver
    writer.write(2, _result())
    writer.flush()
    with xr.open_zarr(path) as ds:
        assert ds["status"].values[2] == "done" and ds["error"].values[2] == ""


def test_the_summaries_of_many_members_fill_several_chunks(tmp_path):
    path = _store(tmp_path, 3)
    group = zarr.open_group(str(path), mode="r+", zarr_format=2, use_consolidated=False)
    for name in ("status", "wall_seconds"):  # as zarr chunks them for a large sweep
        old = group[name]
        values, attrs = old[...], dict(old.attrs)
        del group[name]
        group.create_array(name, shape=values.shape, chunks=(2,), dtype=values.dtype, attributes=attrs,
                           fill_value=old.fill_value)[...] = values
    zarr.consolidate_metadata(str(path), zarr_format=2)
    store._OPEN.clear()
    writer = store.SummaryWriter(path)
    for i in (2, 0):
        writer.write(i, _result(seconds=0.1 * (i + 1)))
    writer.flush()
    with xr.open_zarr(path) as ds:
        assert list(ds["status"].values) == ["done", "pending", "done"]
        assert onp.allclose(ds["wall_seconds"].values[[0, 2]], [0.1, 0.3])


def test_a_worker_warms_up_once_per_kind_of_member(monkeypatch):
    kind = member_run._kernel_kind
    assert kind({"physics": {"viscosity": 0.01}, "grid": {"resolution": [16, 16]}}) == \
        kind({"physics": {"viscosity": 0.5}, "grid": {"resolution": [16, 16]}})
    assert kind({"advection": "maccormack"}) != kind({"advection": "semi_lagrangian"})
    assert kind({"grid": {"resolution": [16, 16]}}) != kind({"grid": {"resolution": [16, 32]}})
    steps = []
    from fluidgrad.simulation import Simulation
    step = Simulation.step
    monkeypatch.setattr(Simulation, "step", lambda self, state, *a, **k: (steps.append(1), step(self, state, *a, **k))[1])
    monkeypatch.setattr(member_run, "_WARM", set())
    small = {"grid.resolution": [16, 16], "time.steps": 3}
    first = member_run.run_member("taylor_green", {**small, "physics.viscosity": 0.01})
    warmed = len(steps)
    second = member_run.run_member("taylor_green", {**small, "physics.viscosity": 0.02})
    assert first["status"] == second["status"] == "done"
    assert warmed >= 1 and len(steps) - warmed < warmed  # the second member took no warm-up step


def test_importing_the_forkserver_module_elsewhere_keeps_ctrl_c():
    """Only the forkserver (flagged) ignores SIGINT: a process ignoring it passes that on
    to every program it starts, and the command line would ignore Ctrl-C."""
    import importlib
    import signal
    import sys
    before = signal.getsignal(signal.SIGINT)
    sys.modules.pop("fluidgrad.sweeps.forked", None)
    importlib.import_module("fluidgrad.sweeps.forked")
    assert signal.getsignal(signal.SIGINT) is before
