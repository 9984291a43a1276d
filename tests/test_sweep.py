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
    import imageio.v3 as iio
    for field in ("density", "speed"):  # `render --member` draws what rendering the single run draws
        a, b = tmp_path / f"m3_{field}.png", tmp_path / f"r3_{field}.png"
        assert _cli("render", str(tmp_path / "s" / "sweep.zarr"), "--member", "3", "--field", field,
                    "--out", str(a), "--quiet").returncode == 0
        assert _cli("render", str(tmp_path / "r3" / "result.npz"), "--field", field, "--out", str(b),
                    "--quiet").returncode == 0
        assert onp.array_equal(iio.imread(a), iio.imread(b)), field
    bad = _cli("render", str(tmp_path / "s" / "sweep.zarr"), "--member", "4")
    assert bad.returncode == 2 and "--member must be one of 0..3" in bad.stderr
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


def _wait_for(predicate, seconds, what):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except (OSError, KeyError, ValueError):  # a store still being created
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tmp_path):
    """An external scheduler, two `dask worker` processes, `kill -9` of one mid-sweep: the
    sweep completes and every member equals the undisturbed sweep."""
    import os
    import signal
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "FLUIDGRAD_THREADS": "1"}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
              "--dashboard-address", ":0"]
    try:
        procs += [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
        from dask.distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        args = ["sweep", "taylor_green", "--vary", "initial.velocity.amplitude=linspace(0.5,1.5,8)",
                "--set", "grid.resolution=[64,64]", "--steps", "150", "--scheduler", address, "--quiet"]
        disturbed = subprocess.Popen([sys.executable, "-m", "fluidgrad", *args, "--out", str(tmp_path / "a")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store_path = tmp_path / "a" / "sweep.zarr"
        _wait_for(lambda: store_path.exists() and len(store.finished(store_path)) >= 1, 180, "a first member")
        os.kill(procs[1].pid, signal.SIGKILL)
        assert len(store.finished(store_path)) < 8  # killed in the middle
        out, err = disturbed.communicate(timeout=300)
        assert disturbed.returncode == 0, err
        quiet = _cli(*args, "--out", str(tmp_path / "b"))
        assert quiet.returncode == 0, quiet.stderr
    finally:
        for p in procs:
            p.kill()
            p.wait()
    a, b = xr.open_zarr(tmp_path / "a" / "sweep.zarr"), xr.open_zarr(tmp_path / "b" / "sweep.zarr")
    assert list(a["status"].values) == ["done"] * 8
    for name in ("density", "pressure", "u", "v"):
        assert onp.array_equal(a[name].values, b[name].values), name


@pytest.mark.slow
def test_resume_after_the_whole_command_is_killed(tmp_path):
    import os
    import signal
    args = ["sweep", "taylor_green", "--vary", "initial.velocity.amplitude=linspace(0.5,1.5,8)",
            "--set", "grid.resolution=[64,64]", "--steps", "150", "--workers", "1", "--quiet"]
    out = tmp_path / "a"
    proc = subprocess.Popen([sys.executable, "-m", "fluidgrad", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    path = out / "sweep.zarr"
    try:
        _wait_for(lambda: path.exists() and len(store.finished(path)) >= 2, 180, "two members")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its cluster and workers
        proc.wait()
    done = store.finished(path)  # the store opens cleanly
    assert 2 <= len(done) < 8
    other = _cli("sweep", "taylor_green", "--vary", "initial.velocity.amplitude=0.5,1", "--out", str(out), "--resume")
    assert other.returncode == 2 and "not this one" in other.stderr
    resumed = _cli(*args, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    fresh = _cli(*args, "--out", str(tmp_path / "b"))
    assert fresh.returncode == 0, fresh.stderr
    a, b = xr.open_zarr(path), xr.open_zarr(tmp_path / "b" / "sweep.zarr")
    assert list(a["status"].values) == ["done"] * 8
    for name in ("density", "pressure", "u", "v"):
        assert onp.array_equal(a[name].values, b[name].values), name
