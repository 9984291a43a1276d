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


def test_a_16_member_cli_sweep_at_64_equals_16_runs_bit_for_bit(tmp_path):
    """Seeds × viscosities, 64², float64: each member's fields equal its `fluidgrad run`'s."""
    from fluidgrad.cli import main
    random = ["--set", "initial.velocity={type: random, seed: 0, amplitude: 0.5}"]
    common = ["--set", "grid.resolution=[64,64]", "--steps", "40", "--dtype", "float64", *random, "--quiet"]
    seeds, viscosities = [0, 1, 2, 3], [0.001, 0.01, 0.02, 0.05]
    done = _cli("sweep", "taylor_green", "--vary", "initial.velocity.seed=0..3", "--vary",
                "physics.viscosity=1e-3,0.01,0.02,0.05", *common, "--workers", "2", "--out", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    ds = xr.open_zarr(tmp_path / "s" / "sweep.zarr")
    assert list(ds["status"].values) == ["done"] * 16
    members = [(seed, nu) for seed in seeds for nu in viscosities]
    assert list(ds["initial.velocity.seed"].values) == [m[0] for m in members]
    assert list(ds["physics.viscosity"].values) == [m[1] for m in members]
    for i, (seed, nu) in enumerate(members):  # `fluidgrad run`, in this process (no start-up 16 times)
        folder = tmp_path / f"r{i}"
        assert main(["run", "taylor_green", *common, "--set", f"initial.velocity.seed={seed}",
                     "--set", f"physics.viscosity={nu}", "--set", "output.video=null", "--out", str(folder)]) == 0
        result = onp.load(folder / "result.npz")
        for name in ("density", "pressure", "u", "v"):
            assert ds[name].dtype == onp.float64 and onp.array_equal(ds[name].values[i], result[name]), (i, name)
    assert len({float(onp.abs(ds["u"].values[i]).max()) for i in range(16)}) == 16  # the members do differ
    assert ds.attrs["fluidgrad_version"] and "Taylor-Green" in ds.attrs["scenario"]
    import imageio.v3 as iio
    for field in ("density", "speed"):  # `render --member` draws what rendering the single run draws
        a, b = tmp_path / f"m3_{field}.png", tmp_path / f"r3_{field}.png"
        assert _cli("render", str(tmp_path / "s" / "sweep.zarr"), "--member", "3", "--field", field,
                    "--out", str(a), "--quiet").returncode == 0
        assert _cli("render", str(tmp_path / "r3" / "result.npz"), "--field", field, "--out", str(b),
                    "--quiet").returncode == 0
        assert onp.array_equal(iio.imread(a), iio.imread(b)), field
    bad = _cli("render", str(tmp_path / "s" / "sweep.zarr"), "--member", "16")
    assert bad.returncode == 2 and "--member must be one of 0..15" in bad.stderr


def test_the_store_names_box_units_as_the_pictures_do(tmp_path):
    from fluidgrad.render import FIELD_NAMES
    from fluidgrad.scenario import load_scenario
    from fluidgrad.sweeps.members import expand
    scenario = load_scenario("taylor_green", {"grid.resolution": [16, 16]})
    store.create(tmp_path / "sweep.zarr", scenario, expand({"physics.viscosity": [0.1]}), "text", {})
    ds = xr.open_zarr(tmp_path / "sweep.zarr")
    assert ds["u"].dims == ("member", "x_face", "y") and ds["u"].attrs["units"] == "L/T"
    assert ds["v"].attrs["units"] == "L/T" and ds["density"].attrs["units"] == "1"
    assert ds["pressure"].attrs["units"] == FIELD_NAMES["pressure"][1] == "L²/T"
    assert "p·Δt/ρ" in ds["pressure"].attrs["long_name"] and "p·Δt/ρ" in FIELD_NAMES["pressure"][0]
    assert ds["x"].attrs["units"] == ds["x_face"].attrs["units"] == "L"
    assert ds["max_divergence"].attrs["units"] == "1/T" and ds["wall_seconds"].attrs["units"] == "s"


def test_the_stored_pressure_is_what_the_projection_returns():
    """p·Δt/ρ [L²/T]: the projection subtracts its gradient from the velocity (u' = u − ∇φ)."""
    from fluidgrad.ops.stencils import gradient
    from fluidgrad.scenario import load_scenario
    scenario = load_scenario("taylor_green", {"grid.resolution": [16, 16], "initial.velocity":
                                              {"type": "random", "seed": 1, "amplitude": 1.0}})
    sim = scenario.simulation(dtype="float64")
    state = scenario.initial_state(sim)
    forced = state.replace(velocity=tuple(u + 0.1 * onp.roll(u, 3, axis=1) for u in state.velocity))
    projected = sim.make_incompressible(forced)
    grad = gradient(projected.pressure, domain=sim.domain)
    for before, after, g in zip(forced.velocity, projected.velocity, grad):
        assert onp.allclose(before - after, g, atol=1e-10)


def test_a_bad_member_stops_the_sweep_before_anything_runs(tmp_path):
    done = _cli("sweep", "taylor_green", "--vary", "physics.viscosity=0.01,-1", *SMALL, "--out", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "member 1 (physics.viscosity=-1): physics.viscosity" in done.stderr
    assert not (tmp_path / "s").exists()


def test_a_failed_member_is_recorded_with_its_error(tmp_path, monkeypatch):
    def blow_up(sim, state, steps, record=None):
        raise SimulationError("step 3: the velocity is not finite")
    monkeypatch.setattr(member_run, "_simulate", blow_up)
    result = member_run.run_member("taylor_green", {"grid.resolution": [16, 16], "time.steps": 4})
    assert result["status"] == "failed" and result["error"] == "SimulationError: step 3: the velocity is not finite"
    from fluidgrad.scenario import load_scenario
    from fluidgrad.sweeps.members import expand
    scenario = load_scenario("taylor_green", {"grid.resolution": [16, 16]})
    path = tmp_path / "sweep.zarr"
    store.create(path, scenario, expand({"physics.viscosity": [0.1, 0.2]}), "text", {})
    store.write_summary(path, 1, result)
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


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as c:
        yield c


def test_record_every_writes_snapshots_along_time(tmp_path, client):
    vary, small = {"physics.viscosity": [0.01, 0.05]}, {"grid.resolution": [16, 16], "time.steps": 10}
    results = []
    ds = sweep("taylor_green", vary, overrides=small, out=tmp_path / "a", client=client, record_every=4,
               on_member=lambda i, r: results.append(r))
    assert [r["arrays"] for r in results] == [{}, {}]  # the fields went from the member into the store
    assert sorted(results[0]["metrics"]) == ["max_divergence", "steps_per_second", "wall_seconds"]
    assert ds["density"].dims == ("member", "time", "x", "y") and ds["u"].dims == ("member", "time", "x_face", "y")
    assert list(ds["step"].values) == [0, 4, 8, 10]  # every 4 steps and the last
    assert onp.allclose(ds["time"].values, onp.array([0, 4, 8, 10]) * 0.02) and ds["time"].attrs["units"] == "T"
    final = sweep("taylor_green", vary, overrides=small, out=tmp_path / "b", client=client)
    at4 = sweep("taylor_green", vary, overrides={**small, "time.steps": 4}, out=tmp_path / "c", client=client)
    for name in ("density", "pressure", "u", "v"):
        assert onp.array_equal(ds[name].values[:, -1], final[name].values), name  # the last snapshot is the final
        assert onp.array_equal(ds[name].values[:, 1], at4[name].values), name
    assert not onp.array_equal(ds["u"].values[0, 0], ds["u"].values[0, 1])
    chunks = ds["u"].encoding["chunks"]
    assert chunks == (1, 1, 16, 16)  # one member's snapshot per chunk: written as the rollout passes it


def test_gradient_sweep_records_the_loss_and_its_gradient(copied, tmp_path, client):
    from fluidgrad.scenario import load_scenario
    scenario = copied / "fit_buoyancy.yaml"
    values = [[0.0, 0.3], [0.0, 0.7]]
    ds = sweep(str(scenario), {"physics.buoyancy": values}, what="gradient", out=tmp_path, client=client)
    assert list(ds["status"].values) == ["done"] * 2 and ds.attrs["what"] == "gradient"
    assert list(ds["parameter_name"].values) == ["buoyancy[0]", "buoyancy[1]"]
    assert ds["loss"].attrs["units"] == "1" and "gradient" in ds["gradient"].attrs["long_name"]
    assert "density" not in ds
    for i, b in enumerate(values):  # the Problem's own value_and_grad, as gradcheck uses it
        loaded = load_scenario(str(scenario), {"physics.buoyancy": b})
        problem = loaded.problem(loaded.simulation())
        x = problem.flatten(problem.initial_raw())
        loss, g = problem.value_and_grad(x)
        assert ds["loss"].values[i] == loss and onp.array_equal(ds["gradient"].values[i], g)
        assert onp.array_equal(ds["parameters"].values[i], b)
        assert ds["grad_norm"].values[i] == pytest.approx(onp.linalg.norm(g), rel=1e-12)
    assert (ds["gradient"].values[:, 1] < 0).all()  # below the observed buoyancy (1.3): raising it lowers the loss


def test_optimize_sweep_equals_fluidgrad_optimize(copied, tmp_path, client):
    import json
    from fluidgrad.cli import main
    scenario = copied / "fit_buoyancy.yaml"
    few = {"optimize.optimizer.iterations": 3}
    ds = sweep(str(scenario), {"physics.buoyancy": [[0.0, 0.3], [0.0, 0.9]]}, what="optimize", overrides=few,
               out=tmp_path / "s", client=client)
    assert list(ds["status"].values) == ["done"] * 2
    for i, b in enumerate(["[0.0,0.3]", "[0.0,0.9]"]):
        out = tmp_path / f"o{i}"
        assert main(["optimize", str(scenario), "--set", f"physics.buoyancy={b}", "--iterations", "3",
                     "--set", "output.video=null", "--out", str(out), "--quiet"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert ds["final_loss"].values[i] == metrics["final_loss"] and ds["iterations"].values[i] == metrics["iterations"]
        assert ds["initial_loss"].values[i] == metrics["initial_loss"]
        assert onp.array_equal(ds["parameters"].values[i], onp.load(out / "params.npz")["buoyancy"])
        assert str(ds["stop_reason"].values[i]) == metrics["stop_reason"]
    assert (ds["final_loss"] < 1e-3 * ds["initial_loss"]).all()  # fit_buoyancy's target: buoyancy 1.3
    assert onp.allclose(ds["parameters"].values[:, 1], 1.3, atol=1e-2)
    assert onp.isfinite(ds["density"].values).all()  # the optimized rollout's final fields


@pytest.mark.parametrize("flags, message", [
    (["--what", "gradient"], "--what gradient: the scenario has no optimize: block"),
    (["--record-every", "0"], "--record-every 0: expected a step count >= 1"),
    (["--what", "optimize", "--record-every", "2"], "with --what run only"),
    (["--what", "sample"], "invalid choice: 'sample'"),
    (["--workers", "0"], "--workers 0: expected a whole number >= 1"),
    (["--workers", "-1"], "--workers -1: expected a whole number >= 1"),  # hung before
    (["--threads-per-worker", "0"], "--threads-per-worker 0: expected a whole number >= 1"),
    (["--scheduler", "localhost"], "--scheduler localhost: cannot connect (missing port number"),
    (["--scheduler", "http://localhost:8786"], "cannot connect (unknown address scheme 'http'"),
])
def test_bad_sweep_flags_are_one_line_errors(tmp_path, flags, message):
    done = _cli("sweep", "taylor_green", "--vary", "physics.viscosity=0.01", *SMALL, *flags, "--out", str(tmp_path / "s"))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "s").exists()


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, capsys):
    import socket

    import dask
    from fluidgrad import cli
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = cli.main(["sweep", "taylor_green", "--vary", "physics.viscosity=0.01", *SMALL,
                         "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"--scheduler tcp://127.0.0.1:{port}: cannot connect" in err
    assert not (tmp_path / "s").exists()


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
    """An external scheduler, two `dask worker` processes, `kill -9` of one in the middle of
    a 16-member sweep: the sweep completes and every member equals the undisturbed sweep."""
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
        args = ["sweep", "taylor_green", "--vary", "initial.velocity.amplitude=linspace(0.5,1.5,16)",
                "--set", "grid.resolution=[64,64]", "--steps", "150", "--scheduler", address, "--quiet"]
        disturbed = subprocess.Popen([sys.executable, "-m", "fluidgrad", *args, "--out", str(tmp_path / "a")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store_path = tmp_path / "a" / "sweep.zarr"
        _wait_for(lambda: store_path.exists() and len(store.finished(store_path)) >= 1, 180, "a first member")
        os.kill(procs[1].pid, signal.SIGKILL)
        assert len(store.finished(store_path)) < 16  # killed in the middle
        out, err = disturbed.communicate(timeout=300)
        assert disturbed.returncode == 0, err
        quiet = _cli(*args, "--out", str(tmp_path / "b"))
        assert quiet.returncode == 0, quiet.stderr
    finally:
        for p in procs:
            p.kill()
            p.wait()
    a, b = xr.open_zarr(tmp_path / "a" / "sweep.zarr"), xr.open_zarr(tmp_path / "b" / "sweep.zarr")
    assert list(a["status"].values) == ["done"] * 16
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


_PEAK = """
import resource, sys
from fluidgrad.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB: this process, the driver, alone
sys.exit(code)
"""


@pytest.mark.slow
def test_the_drivers_peak_memory_is_flat_in_the_number_of_members(tmp_path):
    """64 members against 16 at 256² (2 MiB of fields a member: 128 MiB if the driver held
    them all): the driver's peak within 1.2×."""
    peaks = {}
    for count in (16, 64):
        done = subprocess.run([sys.executable, "-c", _PEAK, "sweep", "taylor_green", "--set",
                               "grid.resolution=[256,256]", "--steps", "1", "--vary",
                               f"physics.viscosity=linspace(0.01,0.05,{count})", "--workers", "2", "--quiet",
                               "--out", str(tmp_path / str(count))], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        peaks[count] = int(done.stdout.split()[-1]) / 1024
    assert peaks[64] <= 1.2 * peaks[16], peaks


@pytest.mark.slow
def test_ctrl_c_records_what_finished_and_resume_completes(tmp_path):
    """Ctrl-C mid-sweep (SIGINT to every process of the command, as a terminal sends it):
    exit 130 with one line, no worker tracebacks, every member done before it recorded (the
    driver's last batch flushed), the store consistent; --resume completes the rest equal
    to an undisturbed sweep."""
    import os
    import signal
    args = ["sweep", "taylor_green", "--vary", "initial.velocity.amplitude=linspace(0.5,1.5,8)",
            "--set", "grid.resolution=[64,64]", "--steps", "300", "--workers", "2", "--quiet"]
    out = tmp_path / "a"
    path = out / "sweep.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "fluidgrad", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(lambda: path.exists() and len(store.finished(path)) >= 1, 180, "a first member")
    seen = store.finished(path)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "fluidgrad: interrupted", err
    done = store.finished(path)
    assert seen <= done and len(done) < 8
    with xr.open_zarr(path) as ds:
        status = ds["status"].values
        assert set(status) <= {"done", "pending"}
        assert all(onp.isfinite(ds["density"].values[i]).all() for i in sorted(done))
    resumed = _cli(*args, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    fresh = _cli(*args, "--out", str(tmp_path / "b"))
    a, b = xr.open_zarr(path), xr.open_zarr(tmp_path / "b" / "sweep.zarr")
    assert list(a["status"].values) == ["done"] * 8 and fresh.returncode == 0
    for name in ("density", "pressure", "u", "v"):
        assert onp.array_equal(a[name].values, b[name].values), name
