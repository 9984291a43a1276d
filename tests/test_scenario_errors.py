"""A corpus of malformed scenarios: each must exit 2 with one line per problem naming
the key path, and no traceback."""

import os
import subprocess
import sys

import pytest

from fluidgrad import cli

BASE = """
grid: {resolution: [16, 16], size: [1.0, 1.0]}
time: {dt: 0.01, steps: 5}
"""

BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))

CORPUS = {
    "syntax-error": ("grid: {resolution: [16, 16]\ntime: {dt: 0.01}", "invalid YAML at line"),
    "tab-indentation": ("grid:\n\tresolution: [16, 16]", "invalid YAML"),
    "python-object-tag": (BASE + "x: !!python/object/apply:os.system ['echo hacked']", "unsupported YAML tag"),
    "yaml-bomb": (BOMB, "a YAML bomb"),
    "not-a-mapping": ("- 1\n- 2", "expected a mapping of keys at the top level"),
    "unknown-top-key": (BASE + "gird: {}", "gird: unknown key; did you mean 'grid'?"),
    "unknown-nested-key": (BASE + "physics: {viscosty: 0.1}", "physics.viscosty: unknown key; did you mean 'viscosity'?"),
    "missing-resolution": ("grid: {size: [1, 1]}\ntime: {dt: 0.01, steps: 5}", "grid.resolution: required"),
    "missing-dt": ("grid: {resolution: [16, 16]}\ntime: {steps: 5}", "time.dt: required"),
    "resolution-wrong-length": ("grid: {resolution: [16]}\ntime: {dt: 0.01, steps: 5}", "grid.resolution: expected 2 or 3 integers"),
    "resolution-not-integer": ("grid: {resolution: [16.5, 16]}\ntime: {dt: 0.01, steps: 5}", "grid.resolution[0]: expected an integer"),
    "negative-size": ("grid: {resolution: [16, 16], size: [1, -1]}\ntime: {dt: 0.01, steps: 5}", "grid.size[1]: must be positive"),
    "non-square-cells": ("grid: {resolution: [16, 16], size: [1, 2]}\ntime: {dt: 0.01, steps: 5}", "grid: cells must be square"),
    "negative-dt": ("grid: {resolution: [16, 16]}\ntime: {dt: -0.1, steps: 5}", "time.dt: must be positive"),
    "zero-steps": ("grid: {resolution: [16, 16]}\ntime: {dt: 0.1, steps: 0}", "time.steps: must be positive"),
    "steps-is-text": ("grid: {resolution: [16, 16]}\ntime: {dt: 0.1, steps: many}", "time.steps: expected an integer"),
    "negative-viscosity": (BASE + "physics: {viscosity: -1}", "physics.viscosity: must be >= 0"),
    "negative-vorticity-confinement": (BASE + "physics: {vorticity_confinement: -0.5}",
                                       "physics.vorticity_confinement: must be >= 0 (got -0.5)"),
    "buoyancy-wrong-length": (BASE + "physics: {buoyancy: [0, 1, 2]}", "physics.buoyancy: expected 2 numbers, got 3"),
    "unknown-advection": (BASE + "advection: upwind", "advection: expected one of maccormack, semi_lagrangian"),
    "misspelled-solver": (BASE + "pressure: {solver: multigird}", "pressure.solver: expected one of"),
    "fft-with-walls": (BASE + "pressure: {solver: fft}", "pressure.solver: 'fft' needs a periodic box"),
    "dct-with-obstacle": (BASE + "pressure: {solver: dct}\nobstacles: [{shape: circle, center: [0.5, 0.5], radius: 0.1}]",
                          "pressure.solver: 'dct' cannot handle obstacles"),
    "periodic-without-partner": (BASE + "boundaries: {x_lo: periodic}", "boundaries.x_lo/x_hi: a periodic face needs a periodic partner"),
    "unknown-boundary-type": (BASE + "boundaries: {y_hi: noslip}", "boundaries.y_hi: expected one of"),
    "wall-velocity-wrong-length": (BASE + "boundaries: {y_hi: {type: no_slip, velocity: [1.0, 0.0, 0.0]}}",
                                   "boundaries.y_hi.velocity: expected 2 numbers, got 3"),
    "unknown-boundary-face": (BASE + "boundaries: {top: no_slip}", "boundaries.top: unknown key"),
    "inflow-without-velocity": (BASE + "boundaries: {x_lo: inflow}",
                                "boundaries.x_lo.velocity: an inflow face needs a velocity"),
    "obstacle-outside": (BASE + "obstacles: [{shape: circle, center: [3.0, 0.5], radius: 0.1}]", "obstacles[0].center: lies outside the box"),
    "sphere-in-2d": (BASE + "obstacles: [{shape: sphere, center: [0.5, 0.5], radius: 0.1}]", "obstacles[0].shape: a sphere needs a 3-D grid"),
    "obstacle-missing-radius": (BASE + "obstacles: [{shape: circle, center: [0.5, 0.5]}]", "obstacles[0].radius: required"),
    "box-inverted": (BASE + "obstacles: [{shape: box, lower: [0.5, 0.5], upper: [0.4, 0.9]}]", "obstacles[0].upper: must exceed lower"),
    "obstacle-fills-domain": (BASE + "obstacles: [{shape: box, lower: [0, 0], upper: [1, 1]}]", "obstacles: the obstacles fill the whole domain"),
    "drag-without-obstacle": (BASE + "optimize: {parameters: [viscosity], loss: {type: drag}}",
                              "optimize.loss.type: drag is the force on obstacles, and the scenario has none"),
    "drag-obstacle-index": (BASE + "obstacles: [{shape: circle, center: [0.5, 0.5], radius: 0.1}]\n"
                            "optimize: {parameters: [viscosity], loss: {type: lift, obstacle: 1}}",
                            "optimize.loss.obstacle: expected an obstacle index in 0..0"),
    "inflow-profile-without-inflow": (BASE + "optimize: {parameters: [inflow_profile], loss: {type: kinetic_energy}}",
                                      "optimize.parameters: inflow_profile needs exactly one inflow face"),
    "loss-window-past-the-end": (BASE + "optimize: {parameters: [viscosity], loss: {type: kinetic_energy, window: [3, 9]}}",
                                 "optimize.loss.window: expected 1 <= first <= last <= 5"),
    "loss-window-not-steps": (BASE + "optimize: {parameters: [viscosity], loss: {type: kinetic_energy, window: [0.5, 2]}}",
                              "optimize.loss.window: expected [first, last]"),
    "flow-rate-unknown": (BASE + "optimize: {parameters: [viscosity], flow_rate: constant}",
                          "optimize.flow_rate: expected one of fixed, free"),
    "missing-image": (BASE + "initial: {density: {type: image, path: nowhere.png}}", "initial.density.path: file not found"),
    "missing-npz": (BASE + "initial: {velocity: {type: file, path: missing.npz}}", "initial.velocity.path: file not found"),
    "not-an-image": (BASE + "initial: {density: {type: image, path: notes.txt}}", "initial.density.path: cannot read image"),
    "unknown-initial-type": (BASE + "initial: {velocity: {type: swirl}}", "initial.velocity.type: expected one of"),
    "gaussian-without-radius": (BASE + "initial: {density: {type: gaussian, center: [0.5, 0.5]}}", "initial.density.radius: required"),
    "unknown-video-field": (BASE + "output: {video: {field: temperature}}", "output.video.field: expected one of"),
    "unknown-colormap": (BASE + "output: {video: {colormap: infernoo}}", "output.video.colormap: unknown colormap; did you mean 'inferno'?"),
    "unknown-parameter": (BASE + "optimize: {parameters: [initial_speed], loss: {type: kinetic_energy}}",
                          "optimize.parameters[0]: expected one of"),
    "loss-without-target": (BASE + "optimize: {loss: {type: density_mse}}", "optimize.loss.target: required for density_mse"),
    "learning-rate-for-lbfgs": (BASE + "optimize: {loss: {type: kinetic_energy}, optimizer: {type: lbfgs, learning_rate: 0.1}}",
                                "optimize.optimizer.learning_rate: not used by lbfgs"),
    "bad-memory-budget": (BASE + "optimize: {loss: {type: kinetic_energy}, checkpointing: {memory_budget: lots}}",
                          "optimize.checkpointing.memory_budget: expected a size"),
    "loss-time-after-end": (BASE + "optimize: {loss: {type: kinetic_energy, times: [3, 9]}}", "optimize.loss.times: steps must lie in 1..5"),
    "unknown-backend": (BASE + "backend: torch", "backend: expected one of numpy, cupy"),
    "grid-too-large": ("grid: {resolution: [100000, 100000]}\ntime: {dt: 0.01, steps: 5}",
                       "grid.resolution: 10,000,000,000 cells need more memory"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("malformed")
    (path / "notes.txt").write_text("not an image")
    return path


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_scenario_exits_2_naming_the_key(name, folder, capsys):
    text, expected = CORPUS[name]
    path = folder / f"{name}.yaml"
    path.write_text(text)
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("fluidgrad: ") for line in lines), err
    assert expected in err, err
    assert "Traceback" not in err


def test_a_negative_vorticity_confinement_is_one_line_naming_the_key(folder, capsys):
    path = folder / "confinement.yaml"
    path.write_text(BASE + "physics: {viscosity: 0.01, vorticity_confinement: -2}")
    assert cli.main(["check", str(path)]) == 2
    assert capsys.readouterr().err == "fluidgrad: physics.vorticity_confinement: must be >= 0 (got -2)\n"


def test_all_problems_are_reported_at_once(folder, capsys):
    path = folder / "many.yaml"
    path.write_text("grid: {resolution: [16, 16]}\ntime: {dt: -1, steps: 0}\nphysics: {viscosity: -2}\n")
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "time.dt" in err and "time.steps" in err and "physics.viscosity" in err


def test_no_traceback_from_a_real_process(folder):
    path = folder / "bomb.yaml"
    path.write_text(BOMB)
    out = subprocess.run([sys.executable, "-m", "fluidgrad", "run", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_a_negative_smoothing_is_one_line_naming_the_key(folder, capsys):
    path = folder / "smoothing.yaml"
    path.write_text(BASE + "optimize: {smoothing: -1, loss: {type: kinetic_energy}}")
    assert cli.main(["check", str(path)]) == 2
    assert capsys.readouterr().err == "fluidgrad: optimize.smoothing: must be >= 0 (got -1)\n"


@pytest.mark.parametrize("text, value", [("1e-6", 1e-6), ("1E-4", 1e-4), (".5", 0.5), ("5.", 5.0),
                                         ("-2.5e+3", -2500.0), ("3", 3)])
def test_numbers_as_scientists_write_them(text, value):
    """PyYAML's YAML 1.1 rules read 1e-6 and 1E-4 as strings; the scenario layer reads
    YAML 1.2 numbers, in files and in --set."""
    from fluidgrad.scenario import load_yaml
    assert load_yaml(text) == value and type(load_yaml(text)) is type(value)


def test_exponents_without_a_dot_are_accepted_in_files_and_in_set(folder):
    path = folder / "numbers.yaml"
    path.write_text("grid: {resolution: [16, 16], size: [1.0, 1.0]}\ntime: {dt: 1e-2, steps: 5}\n"
                    "physics: {viscosity: 1E-3}\npressure: {solver: cg, tolerance: 1e-6}\n")
    assert cli.main(["check", str(path), "--set", "time.dt=5e-3", "--quiet"]) == 0
    from fluidgrad.scenario import load_scenario
    scenario = load_scenario(str(path), {"time.dt": 5e-3})
    assert scenario.dt == 5e-3


def _check(*argv):
    return cli.main(["check", *map(str, argv)])


@pytest.mark.parametrize("key", ["obstacles[0].radius", "obstacles.0.radius"])
def test_set_reaches_list_items(key, capsys):
    from fluidgrad.scenario import load_scenario
    assert load_scenario("karman_vortex", {key: 0.15}).obstacles[0].radius == 0.15
    assert _check("karman_vortex", "--set", f"{key}=0.15", "--quiet") == 0
    assert _check("karman_vortex", "--set", f"{key}=-1") == 2
    assert capsys.readouterr().err == "fluidgrad: obstacles[0].radius: must be positive (got -1)\n"


@pytest.mark.parametrize("name, key, expected", [
    ("karman_vortex", "obstacles[1].radius", "obstacles[1]: no such item in --set obstacles[1].radius "
                                             "(obstacles has 1 item)"),
    ("lid_cavity", "obstacles[0].radius", "obstacles[0]: no such item in --set obstacles[0].radius "
                                          "(obstacles has 0 items)"),
    ("lid_cavity", "time[0]", "time: not a list, so --set time[0] cannot pick item 0"),
    ("karman_vortex", "obstacles.radius", "obstacles: not a mapping, so --set obstacles.radius cannot set"),
    ("lid_cavity", "grid..size", "--set grid..size: not a key path"),
])
def test_set_with_a_bad_index_names_the_key(name, key, expected, capsys):
    assert _check(name, "--set", f"{key}=0.1") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fluidgrad: {expected}") and err.count("\n") == 1, err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null\n", "~\n"])
def test_an_empty_file_says_so(text, folder, capsys):
    path = folder / "empty.yaml"
    path.write_text(text)
    assert _check(path) == 2
    assert capsys.readouterr().err == f"fluidgrad: {path}: the file is empty\n"


@pytest.mark.parametrize("text, kind", [("- 1\n- 2\n", "a list"), ("just text\n", "a string"), ("3\n", "a single value")])
def test_a_file_that_is_not_a_mapping_says_so(text, kind, folder, capsys):
    path = folder / "notmapping.yaml"
    path.write_text(text)
    assert _check(path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fluidgrad: {path}: expected a mapping of keys at the top level, got {kind}")
    assert err.count("\n") == 1


@pytest.mark.parametrize("name, setting, expected", [
    ("lid_cavity", "boundaries.x_lo=inflow", "boundaries.x_lo.velocity: an inflow face needs a velocity"),
    ("lid_cavity", "boundaries.x=inflow", "boundaries.x.velocity: an inflow face needs a velocity"),
    ("karman_vortex", "boundaries.x_lo.velocity=[1,0,0]", "boundaries.x_lo.velocity: expected 2 numbers, got 3"),
    ("karman_vortex", "boundaries.x_lo.velocity=fast", "boundaries.x_lo.velocity: expected 2 numbers (got 'fast')"),
    ("karman_vortex", "boundaries.x_hi.velocity=[1,0]", "boundaries.x_hi.velocity: an outflow face takes no velocity"),
    # a face given by its short form takes a velocity through --set too
    ("lid_cavity", "boundaries.x_lo.velocity=[1,0,0]", "boundaries.x_lo.velocity: expected 2 numbers, got 3"),
])
def test_a_face_velocity_problem_is_reported_once_at_the_face(name, setting, expected, capsys):
    assert _check(name, "--set", setting) == 2
    assert capsys.readouterr().err == f"fluidgrad: {expected}\n"


def test_a_short_form_face_takes_a_velocity_by_set():
    from fluidgrad.scenario import load_scenario
    scenario = load_scenario("lid_cavity", {"boundaries.x_lo.velocity": [0.0, 1.0]})
    assert scenario.boundaries.faces[0][0].velocity == (0.0, 1.0)



@pytest.mark.parametrize("cwd", ["parent", "folder", "elsewhere"])
def test_relative_data_paths_resolve_once_against_the_scenario_folder(cwd, copied, monkeypatch):
    from fluidgrad.scenario import load_scenario
    where = {"parent": copied.parent, "folder": copied, "elsewhere": copied.parent.parent}[cwd]
    monkeypatch.chdir(where)
    for name in ("smoke_target", "fit_buoyancy"):
        scenario = load_scenario(os.path.relpath(copied / f"{name}.yaml"), {"grid.resolution": [8, 8]})
        sim = scenario.simulation()
        target = scenario.loss_target(sim)  # was: cannot read s/s/smoke_target.png
        assert target.shape == (8, 8) and float(abs(target).max()) > 0
        scenario.check()


def test_check_reads_the_data_files_like_optimize(copied, capsys):
    import numpy as onp
    onp.savez(copied / "three_d.npz", density=onp.ones((4, 4, 4)), u=onp.ones((3, 3)), v=onp.ones((3, 3)))
    path = copied / "fit_buoyancy.yaml"
    assert _check(path, "--set", "optimize.loss.target.path=three_d.npz") == 2
    assert capsys.readouterr().err == ("fluidgrad: optimize.loss.target.path: a 3-D field cannot be used "
                                       "on a 2-D grid\n")
    assert _check(path, "--set", "initial.velocity={type: file, path: three_d.npz}") == 2
    err = capsys.readouterr().err
    assert err.startswith("fluidgrad: initial.velocity.path: ") and "array 'u' has shape (3, 3)" in err
    assert _check(path, "--set", "optimize.loss.target.path=missing.npz") == 2
    assert capsys.readouterr().err.startswith("fluidgrad: optimize.loss.target.path: file not found")
    (copied / "smoke_target.png").write_text("not an image")
    assert _check(copied / "smoke_target.yaml") == 2
    err = capsys.readouterr().err
    assert err.startswith("fluidgrad: optimize.loss.target.path: cannot read image") and "smoke_target.png" in err


def test_check_refuses_a_backend_that_run_refuses(monkeypatch, tmp_path, capsys):
    from fluidgrad import backend
    monkeypatch.setattr(backend, "_cupy", lambda: None)
    assert _check("smoke_target", "--set", "backend=cupy") == 2
    assert capsys.readouterr().err == ("fluidgrad: backend: backend 'cupy' requested but cupy is not installed "
                                       "(pip install 'fluidgrad[gpu]')\n")
    assert cli.main(["run", "smoke_target", "--backend", "cupy", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert "cupy is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("name, setting, expected", [  # found by tests/test_scenario_properties.py
    ("control_to_target", "grid.resolution=[null,32]", "fluidgrad: grid.resolution[0]: expected an integer (got None)\n"),
    ("smoke_target", "optimize.parameters=[null]", "fluidgrad: optimize.parameters[0]: expected one of"),
    ("control_to_target", "time.steps=1e16", "fluidgrad: optimize.parameters[0]: control_force has"),
    ("karman_vortex", "initial.density.type=null", None),  # null is "not given": the default type
    ("taylor_green", "initial.velocity.amplitude=null", None),
    ("smoke_plume", "sources[0].rate=null", None),
    ("smoke_plume", "sources[0].radius=1e300", None),
    ("smoke_target", "initial.density.radius=1e300", None),
])
def test_mutants_that_once_raised_tracebacks(name, setting, expected, capsys):
    assert _check(name, "--set", setting, "--quiet") == (0 if expected is None else 2)
    err = capsys.readouterr().err
    assert err.startswith(expected or "") and err.count("\n") == (expected is not None), err
