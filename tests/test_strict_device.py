"""The glue on a device backend without a GPU: every bundled scenario's run, one
optimize iteration and one gradcheck with ``--backend cupy`` served by the strict
stand-in (:mod:`strict_device`), whose arrays refuse to mix with numpy's as cupy's do."""

import json

import numpy as onp
import pytest

import fluidgrad as fg
import strict_device
from fluidgrad import backend, cli
from fluidgrad.ad.tensor import Tensor

from test_cli import OPTIMIZATION, SMALL


@pytest.fixture
def device():
    with strict_device.installed() as cp:
        yield cp


def test_the_stand_in_refuses_to_mix_as_cupy_does(device):
    x = device.asarray(onp.arange(4.0))
    host = onp.ones(4)
    for mix in (lambda: onp.asarray(x), lambda: onp.array([x, x]), lambda: x + host, lambda: host * x,
                lambda: device.concatenate([x, host]), lambda: device.where(host > 0, x, 0.0),
                lambda: x.__setitem__(slice(None), host), lambda: x[onp.array([0, 1])]):
        with pytest.raises(TypeError):
            mix()
    # the explicit moves, scalars, and numpy functions on device arrays (results on the device)
    assert type(x.get()) is onp.ndarray and type(backend.to_numpy(2 * x)) is onp.ndarray
    assert backend.is_cupy_array(onp.sum(x)) and float(x.max()) == 3.0 and backend.is_cupy_array(x[1])
    assert backend.get_backend("cupy") is device and backend.xp_of(fg.tensor(x)) is device
    t = x + fg.tensor(x)  # the operator defers to the Tensor's reflected one, as cupy's does
    assert isinstance(t, Tensor) and backend.is_cupy_array(t)


def test_the_stand_in_is_gone_outside_its_block():
    with strict_device.installed() as cp:
        x = cp.zeros(2)
    assert not backend.is_cupy_array(x) and backend.xp_of(x) is onp


def _cli(*args):
    return cli.main([str(a) for a in args])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_bundled_scenario_runs_on_the_device(name, tmp_path, device):
    common = ["--steps", 4, "--set", f"grid.resolution={SMALL[name]}", "--quiet"]
    assert _cli("run", name, "--backend", "cupy", "--out", tmp_path / "device", *common) == 0
    assert json.loads((tmp_path / "device" / "metrics.json").read_text())["backend"] == "cupy"
    assert _cli("run", name, "--backend", "numpy", "--out", tmp_path / "host", *common) == 0
    on_device, on_host = onp.load(tmp_path / "device" / "result.npz"), onp.load(tmp_path / "host" / "result.npz")
    for key in on_host.files:  # the references on the device, the fused kernels on the host
        if on_host[key].dtype.kind != "f":
            assert onp.array_equal(on_device[key], on_host[key]), key
            continue
        scale = max(float(onp.abs(on_host[key]).max()), 1e-30)
        assert float(onp.abs(on_device[key] - on_host[key]).max()) <= 1e-9 * scale, key


@pytest.mark.parametrize("name", OPTIMIZATION)
def test_one_optimize_iteration_and_a_gradcheck_on_the_device(name, tmp_path, device):
    common = ["--backend", "cupy", "--steps", 4, "--set", f"grid.resolution={SMALL[name]}", "--quiet"]
    assert _cli("optimize", name, "--iterations", 1, "--out", tmp_path / "opt", *common) == 0
    history = json.loads((tmp_path / "opt" / "history.json").read_text())
    assert len(history) == 1 and onp.isfinite(history[0]["loss"])
    assert json.loads((tmp_path / "opt" / "metrics.json").read_text())["backend"] == "cupy"
    assert _cli("gradcheck", name, "--out", tmp_path / "check", *common) == 0
    assert json.loads((tmp_path / "check" / "gradcheck.json").read_text())["passed"]
