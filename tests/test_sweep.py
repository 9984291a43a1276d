"""fluidgrad sweep: members on Dask into one Zarr store; equal to single runs bit for bit,
failures recorded, resume runs only what is missing."""

import subprocess
import sys

import numpy as onp
import pytest

pytest.importorskip("dask.distributed")
xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")

from fluidgrad.errors import SimulationError  # noqa: E402
from fluidgrad.sweeps import store, sweep  # noqa: E402
from fluidgrad.sweeps import run as member_run  # noqa: E402

SMALL = ["--set", "grid.resolution=[16,16]", "--steps", "8"]
VARY = ["--vary", "physics.viscosity=0.01,0.05", "--vary", "initial.velocity.amplitude=0.5,1e0"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fluidgrad", *args], capture_output=True, text=True)


def test_a_cli_sweep_equals_single_runs_bit_for_bit(tmp_path):
    done = _cli("sweep", "taylor_green", *VARY, *SMALL, "--workers", "2", "--out", str(tmp_path / "s"), "--quiet")
    assert done.returncode == 0, done.stderr
    ds = xr.open_zarr(tmp_path / "s" / "sweep.zarr")
    assert list(ds["status"].values) == ["done"] * 4
    assert list(ds["physics.viscosity"].values) == [0.01, 0.01, 0.05, 0.05]
    assert list(ds["initial.velocity.amplitude"].values) == [0.5, 1.0, 0.5, 1.0]
    for i, (nu, amp) in enumerate([(0.01, 0.5), (0.01, 1.0), (0.05, 0.5), (0.05, 1.0)]):
        single = _cli("run", "taylor_green", *SMALL, "--set", f"physics.viscosity={nu}",
                      "--set", f"initial.velocity.amplitude={amp}", "--out", str(tmp_path / f"r{i}"), "--quiet")
        assert single.returncode == 0, single.stderr
        result = onp.load(tmp_path / f"r{i}" / "result.npz")
        for name in ("density", "pressure", "u", "v"):
            assert onp.array_equal(ds[name].values[i], result[name]), (i, name)
    assert ds.attrs["fluidgrad_version"] and "Taylor-Green" in ds.attrs["scenario"]
    assert ds["u"].dims == ("member", "x_face", "y") and ds["u"].attrs["units"] == "m/s"


def test_a_bad_member_stops_the_sweep_before_anything_runs(tmp_path):
    done = _cli("sweep", "taylor_green", "--vary", "physics.viscosity=0.01,-1", *SMALL, "--out", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "member 1 (physics.viscosity=-1): physics.viscosity" in done.stderr
    assert not (tmp_path / "s").exists()


def test_a_failed_member_is_recorded_with_its_error(tmp_path, monkeypatch):
    def blow_up(sim, state, steps):
        raise SimulationError("step 3: the velocity is not finite")
    monkeypatch.setattr(member_run, "_simulate", blow_up)
    result = member_run.run_member("taylor_green", {"grid.resolution": [16, 16], "time.steps": 4})
    assert result["status"] == "failed" and result["error"] == "SimulationError: step 3: the velocity is not finite"
    from fluidgrad.scenario import load_scenario
    from fluidgrad.sweeps.members import expand
    scenario = load_scenario("taylor_green", {"grid.resolution": [16, 16]})
    path = tmp_path / "sweep.zarr"
    store.create(path, scenario, expand({"physics.viscosity": [0.1, 0.2]}), "text", {})
    store.write_member(path, 1, result, scenario)
    ds = xr.open_zarr(path)
    assert list(ds["status"].values) == ["pending", "failed"]
    assert ds["error"].values[1].startswith("SimulationError") and onp.isnan(ds["density"].values[1]).all()
    assert store.finished(path) == set()


def test_resume_runs_only_the_members_not_done(tmp_path):
    from dask.distributed import Client, LocalCluster
    vary = {"physics.viscosity": [0.01, 0.02, 0.03]}
    small = {"grid.resolution": [16, 16], "time.steps": 6}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        first = sweep("taylor_green", vary, overrides=small, out=tmp_path, client=client)
        reference = first["density"].values.copy()
        import xarray
        xarray.Dataset({"status": ("member", onp.array(["pending"], dtype="<U8"))}).to_zarr(
            tmp_path / "sweep.zarr", region={"member": slice(1, 2)}, zarr_format=2)  # as if interrupted
        ran = []
        again = sweep("taylor_green", vary, overrides=small, out=tmp_path, client=client, resume=True,
                      on_member=lambda i, r: ran.append(i))
    assert ran == [1]
    assert list(again["status"].values) == ["done"] * 3
    assert onp.array_equal(again["density"].values, reference)
