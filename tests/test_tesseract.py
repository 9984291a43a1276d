"""fluidgrad's Tesseract for Mosaic's navier-stokes-grid domain, loaded in-process.

The Tesseract speaks Mosaic's float32 schema. Its VJP and JVP are checked against
central differences (best step of a U-curve) of the same forward map evaluated in
float64, because float32 outputs put a floor of ~1e-4 under any finite difference
(checked separately, through ``apply`` itself)."""

import importlib.util
from pathlib import Path

import numpy as onp
import pytest

tesseract_core = pytest.importorskip("tesseract_core")
if importlib.util.find_spec("mosaic_shared") is None and importlib.util.find_spec("mosaic") is None:
    pytest.skip("Mosaic's canonical schemas (mosaic-shared or mosaic-bench) are not installed", allow_module_level=True)

API = Path(__file__).resolve().parents[1] / "tesseract" / "navier-stokes-grid" / "tesseract_api.py"
L = 2 * onp.pi
FD_PHYSICS = {"viscosity": 0.001, "dt": 0.05, "steps": 20}   # Mosaic's gradient/fd_check
STEPS = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6]


def _load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tess():
    return tesseract_core.Tesseract.from_tesseract_api(str(API))


@pytest.fixture(scope="module")
def api():
    """The same tesseract_api module, for the float64 forward map."""
    return _load_file("fluidgrad_tesseract_api", API)


@pytest.fixture(scope="module")
def multimode():
    """Mosaic's multimode initial condition (its own generator), N = 16, seed 42."""
    spec = importlib.util.find_spec("mosaic")
    if spec is None:
        pytest.skip("mosaic-bench (Mosaic's initial conditions) is not installed")
    pytest.importorskip("jax")
    ics = _load_file("mosaic_ns_grid_ics", Path(list(spec.submodule_search_locations)[0])
                     / "benchmarks" / "problems" / "navier_stokes_grid" / "ics.py")
    return onp.asarray(ics._multimode(16, seed=42))


def _inputs(v0, viscosity, dt, steps, **extra):
    return {"v0": v0, "viscosity": onp.array([viscosity], onp.float32), "dt": onp.array([dt], onp.float32),
            "steps": steps, "domain_extent": L, **extra}


def _forward64(api, v0, viscosity, dt, steps):
    """The Tesseract's forward map in float64 (a schema object built without the float32 cast)."""
    inputs = api.InputSchema.model_construct(v0=onp.asarray(v0, onp.float64), viscosity=onp.array([viscosity], float),
                                             dt=onp.array([dt], float), steps=steps, domain_extent=L)
    return onp.asarray(api._Problem(inputs).forward())[:, :, None, :]


def _best(errors):
    return min(errors)


def test_taylor_green_decays_as_the_analytic_solution(tess):
    n, nu, dt, steps = 64, 0.05, 0.01, 20
    x = onp.arange(n) * L / n
    X, Y = onp.meshgrid(x, x, indexing="ij")
    v0 = onp.stack([onp.sin(X) * onp.cos(Y), -onp.cos(X) * onp.sin(Y)], -1)[:, :, None, :].astype(onp.float32)
    out = tess.apply(_inputs(v0, nu, dt, steps))
    assert out["drag"] is None
    result = onp.asarray(out["result"])
    assert result.shape == (n, n, 1, 2) and result.dtype == onp.float32
    exact = v0 * onp.exp(-2 * nu * dt * steps)
    error = onp.linalg.norm(result - exact) / onp.linalg.norm(exact)
    assert error < 1e-3          # measured 5.0e-4; Mosaic's acceptance is 1e-2


def test_vjp_and_jvp_match_central_differences(tess, api, multimode):
    nu, dt, steps = FD_PHYSICS["viscosity"], FD_PHYSICS["dt"], FD_PHYSICS["steps"]
    inputs = _inputs(multimode, nu, dt, steps)
    v0 = multimode.astype(onp.float64)
    nu, dt = float(onp.float32(nu)), float(onp.float32(dt))
    rng = onp.random.default_rng(0)
    w = rng.standard_normal(v0.shape)
    d = rng.standard_normal(v0.shape)
    d *= onp.linalg.norm(v0) / onp.linalg.norm(d)
    d_nu, d_dt = 0.3 * nu, 0.3 * dt          # the tangent of every input at once
    grads = tess.vector_jacobian_product(inputs=inputs, vjp_inputs=["v0", "viscosity", "dt"],
                                         vjp_outputs=["result"], cotangent_vector={"result": w.astype(onp.float32)})
    tangent = {"v0": d.astype(onp.float32), "viscosity": onp.array([d_nu], onp.float32),
               "dt": onp.array([d_dt], onp.float32)}
    jv = onp.asarray(tess.jacobian_vector_product(inputs=inputs, jvp_inputs=["v0", "viscosity", "dt"],
                                                   jvp_outputs=["result"], tangent_vector=tangent)["result"])
    tangent = {k: onp.asarray(t, float) for k, t in tangent.items()}   # what the Tesseract saw
    d, d_nu, d_dt = tangent["v0"], float(tangent["viscosity"][0]), float(tangent["dt"][0])

    def along(h):
        plus = _forward64(api, v0 + h * d, nu + h * d_nu, dt + h * d_dt, steps)
        minus = _forward64(api, v0 - h * d, nu - h * d_nu, dt - h * d_dt, steps)
        return (plus - minus) / (2 * h)

    # one direction per input, and all together
    vjp_errors, jvp_errors = {}, []
    for name, direction in [("v0", (d, 0, 0)), ("viscosity", (0 * d, d_nu, 0)), ("dt", (0 * d, 0, d_dt))]:
        analytic = (float((onp.asarray(grads["v0"], float) * direction[0]).sum())
                    + float(onp.asarray(grads["viscosity"])[0]) * direction[1]
                    + float(onp.asarray(grads["dt"])[0]) * direction[2])
        errs = []
        for h in STEPS:
            plus = _forward64(api, v0 + h * direction[0], nu + h * direction[1], dt + h * direction[2], steps)
            minus = _forward64(api, v0 - h * direction[0], nu - h * direction[1], dt - h * direction[2], steps)
            fd = float((((plus - minus) / (2 * h)) * w).sum())
            errs.append(abs(fd - analytic) / abs(analytic))
        vjp_errors[name] = _best(errs)
    for h in STEPS:
        fd = along(h)
        jvp_errors.append(onp.linalg.norm(jv - fd) / onp.linalg.norm(fd))
    print("best relative errors: VJP", vjp_errors, "JVP", _best(jvp_errors))
    assert all(e <= 1e-5 for e in vjp_errors.values()), vjp_errors
    assert _best(jvp_errors) <= 1e-5, jvp_errors


def test_finite_differences_through_apply_reach_the_float32_floor(tess, multimode):
    """Central differences of the float32 ``apply`` itself (the perturbation as float32
    holds it): the VJP agrees down to what float32 outputs resolve."""
    inputs = _inputs(multimode, **FD_PHYSICS)
    rng = onp.random.default_rng(1)
    w = rng.standard_normal(multimode.shape).astype(onp.float32)
    d = rng.standard_normal(multimode.shape)
    d *= onp.linalg.norm(multimode) / onp.linalg.norm(d)
    g = onp.asarray(tess.vector_jacobian_product(inputs=inputs, vjp_inputs=["v0"], vjp_outputs=["result"],
                                                 cotangent_vector={"result": w})["v0"], float)
    errors = []
    for h in (1e-3, 3e-4, 1e-4):
        plus, minus = (multimode + h * d).astype(onp.float32), (multimode - h * d).astype(onp.float32)
        step = (plus.astype(float) - minus.astype(float)) / (2 * h)
        fp = onp.asarray(tess.apply({**inputs, "v0": plus})["result"], float)
        fm = onp.asarray(tess.apply({**inputs, "v0": minus})["result"], float)
        fd = float((((fp - fm) / (2 * h)) * w).sum())
        analytic = float((g * step).sum())
        errors.append(abs(fd - analytic) / abs(analytic))
    assert min(errors) < 1e-2, errors      # measured 3e-4 … 5e-3 by direction (float32 outputs)


def test_abstract_eval_gives_the_result_shape(tess):
    inputs = {"v0": {"shape": [32, 32, 1, 2], "dtype": "float32"}, "viscosity": {"shape": [1], "dtype": "float32"},
              "dt": {"shape": [1], "dtype": "float32"}, "steps": 3, "domain_extent": L}
    out = tess.abstract_eval(inputs)
    assert tuple(out["result"]["shape"]) == (32, 32, 1, 2)
    assert out.get("drag") is None


@pytest.mark.parametrize("change, message", [
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
      "boundary_conditions": {"y_lo": {"type": "no_slip"}, "y_hi": {"type": "no_slip"}}}, "boundary_conditions"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1}}, "obstacle"),
    ({"inflow_profile": onp.ones(8, onp.float32)}, "inflow_profile"),
    ({"v0": onp.zeros((8, 8, 2, 2), onp.float32)}, "v0: expected shape"),
    ({"dt": onp.array([-0.1], onp.float32)}, "dt: expected a positive"),
    ({"viscosity": onp.array([onp.nan], onp.float32)}, "viscosity"),
])
def test_unsupported_or_bad_input_names_the_input(tess, change, message):
    inputs = {**_inputs(onp.zeros((8, 8, 1, 2), onp.float32), 0.01, 0.01, 2), **change}
    with pytest.raises(Exception, match=message):
        tess.apply(inputs)
