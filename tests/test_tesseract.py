"""fluidgrad's Tesseract for Mosaic's navier-stokes-grid domain, loaded in-process.

The Tesseract speaks Mosaic's float32 schema. Its VJP and JVP are checked against
central differences (best step of a U-curve) of the same forward map evaluated in
float64, because float32 outputs put a floor of ~1e-4 under any finite difference
(checked separately, through ``apply`` itself)."""

import importlib.util
import re
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
    return onp.asarray(api._Problem(inputs).forward()[0])[:, :, None, :]


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
      "boundary_conditions": {"x_lo": {"type": "periodic"}, "x_hi": {"type": "no_slip"}}},
     "x_lo and x_hi must both be periodic or neither"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
      "boundary_conditions": {"z_lo": {"type": "no_slip"}, "z_hi": {"type": "no_slip"}}}, "boundary_conditions.z_lo"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
      "boundary_conditions": {"x_lo": {"type": "neumann", "value": [1.0, 0.0]}, "x_hi": {"type": "neumann"},
                              "y_lo": {"type": "no_slip"}, "y_hi": {"type": "no_slip"}}}, "x_lo: a neumann face takes no value"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
      "boundary_conditions": {"x_lo": {"type": "dirichlet", "value": [1.0, 0.0, 0.0]}, "x_hi": {"type": "neumann"},
                              "y_lo": {"type": "no_slip"}, "y_hi": {"type": "no_slip"}}}, "x_lo.value: expected 2"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
      "boundary_conditions": {"x_lo": {"type": "dirichlet", "value": [1.0, 0.0]}, "x_hi": {"type": "no_slip"},
                              "y_lo": {"type": "no_slip"}, "y_hi": {"type": "no_slip"}},
      "inflow_profile": onp.ones(8, onp.float32)}, "inflow_profile: x_hi must let the inflow out"),
    ({"obstacle": {"shape": "box", "center": [0.5, 0.5], "radius": 0.1}}, "obstacle: a box needs 2 positive half_widths"),
    ({"obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.001}}, "obstacle: covers no cell"),
    ({"inflow_profile": onp.ones(7, onp.float32)}, r"inflow_profile: expected shape \(8,\)"),
    ({"v0": onp.zeros((8, 8, 2, 2), onp.float32)}, "v0: expected shape"),
    ({"dt": onp.array([-0.1], onp.float32)}, "dt: expected a positive"),
    ({"viscosity": onp.array([onp.nan], onp.float32)}, "viscosity"),
])
def test_unsupported_or_bad_input_names_the_input_in_one_line(tess, change, message):
    inputs = {**_inputs(onp.zeros((8, 8, 1, 2), onp.float32), 0.01, 0.01, 2), **change}
    with pytest.raises(Exception, match=message) as info:
        tess.apply(inputs)
    # the in-process Tesseract wraps the traceback around it; the error itself is one line
    line = [ln for ln in str(info.value).splitlines() if ln.startswith("fluidgrad.errors.InputError: ")]
    assert line and re.search(message, line[0]), str(info.value)


def test_a_boundary_type_outside_mosaics_schema_is_refused_by_the_schema(tess):
    inputs = {**_inputs(onp.zeros((8, 8, 1, 2), onp.float32), 0.01, 0.01, 2),
              "obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
              "boundary_conditions": {"y_lo": {"type": "robin"}, "y_hi": {"type": "robin"}}}
    with pytest.raises(Exception, match="boundary_conditions"):
        tess.apply(inputs)


# -- a channel with a cylinder ---------------------------------------------------------------

CHANNEL_N = 32
#: Mosaic's drag_opt set-up (its make_inputs: x periodic, y no-slip walls, the inflow
#: profile on x_lo, a uniform v0 at U_mean), shortened to a few steps
CHANNEL = {"viscosity": 0.0025, "dt": 0.02, "steps": 8, "domain_extent": 1.0, "U": 0.5,
           "obstacle": {"shape": "cylinder", "center": [0.5, 0.5], "radius": 0.1},
           "boundary_conditions": {"x_lo": {"type": "periodic"}, "x_hi": {"type": "periodic"},
                                   "y_lo": {"type": "no_slip"}, "y_hi": {"type": "no_slip"}}}


def _channel_inputs(profile=None, v0=None, **change):
    n, c = CHANNEL_N, {**CHANNEL, **change}
    if v0 is None:
        v0 = onp.zeros((n, n, 1, 2), onp.float32)
        v0[..., 0] = c["U"]
    if profile is None:
        profile = onp.full(n, c["U"], onp.float32)
    return {"v0": onp.asarray(v0, onp.float32), "viscosity": onp.array([c["viscosity"]], onp.float32),
            "dt": onp.array([c["dt"]], onp.float32), "steps": c["steps"], "domain_extent": c["domain_extent"],
            "obstacle": c["obstacle"], "boundary_conditions": c["boundary_conditions"],
            "inflow_profile": onp.asarray(profile, onp.float32)}


def _channel64(api, inputs, v0, nu, dt, profile):
    """(result, drag) of the channel in float64."""
    base = api.InputSchema.model_validate(inputs)
    exact = base.model_copy(update={"v0": onp.asarray(v0, float), "viscosity": onp.array([nu], float),
                                    "dt": onp.array([dt], float), "inflow_profile": onp.asarray(profile, float)})
    result, drag = api._Problem(exact).forward()
    return onp.asarray(result)[:, :, None, :], float(onp.asarray(drag)[0])


def _profile():
    y = (onp.arange(CHANNEL_N) + 0.5) / CHANNEL_N
    return (CHANNEL["U"] * (1 + 0.3 * onp.sin(2 * onp.pi * y))).astype(onp.float32)


def test_channel_drag_is_finite_and_the_force_on_the_fluid(tess, api):
    profile = _profile()
    out = tess.apply(_channel_inputs(profile))
    drag = onp.asarray(out["drag"])
    assert drag.shape == (1,) and drag.dtype == onp.float32 and onp.isfinite(drag).all()
    assert drag[0] < 0                 # Mosaic's sign: the force on the fluid, against a +x flow
    assert onp.asarray(out["result"]).shape == (CHANNEL_N, CHANNEL_N, 1, 2)
    # it is fluidgrad.forces' force on the body, averaged over the last steps // 2 steps
    inputs = api.InputSchema.model_validate(_channel_inputs(profile))
    problem = api._Problem(inputs)
    sim, domain = problem.sim, problem.domain
    faces = api.collocated_to_mac(tuple(onp.asarray(inputs.v0, float)[:, :, 0, d] for d in range(2)), domain)
    physics = api.Physics(viscosity=problem.primals["viscosity"][0], inflow_profile=problem.primals["inflow_profile"])
    states = sim.rollout(sim.zeros_state().replace(velocity=faces), CHANNEL["steps"], physics=physics, record_every=1)
    tail = states[-(CHANNEL["steps"] // 2):]
    mean = onp.mean([float(api.forces.drag(s, domain, physics.viscosity, sim.dt)) for s in tail])
    onp.testing.assert_allclose(-drag[0], mean, rtol=1e-5)
    # a faster inflow pushes harder
    assert tess.apply(_channel_inputs(2 * profile))["drag"][0] < 1.5 * drag[0]


def _generic_v0():
    """Mosaic's uniform v0 plus a small random field: an exactly uniform flow sits on the
    kinks of MacCormack's limiter (every neighbourhood's min = max), where central
    differences average two one-sided derivatives (measured 5 % off the VJP at one step)."""
    v0 = onp.zeros((CHANNEL_N, CHANNEL_N, 1, 2))
    v0[..., 0] = CHANNEL["U"]
    return v0 + 0.05 * onp.random.default_rng(7).standard_normal(v0.shape)


def test_channel_drag_vjp_and_jvp_match_central_differences(tess, api):
    profile = _profile()
    inputs = _channel_inputs(profile, v0=_generic_v0())
    v0 = inputs["v0"].astype(float)
    nu, dt, prof = float(inputs["viscosity"][0]), float(inputs["dt"][0]), profile.astype(float)
    rng = onp.random.default_rng(5)
    w_result = rng.standard_normal(v0.shape).astype(onp.float32)
    names = ["inflow_profile", "v0", "viscosity", "dt"]
    grads = tess.vector_jacobian_product(inputs=inputs, vjp_inputs=names, vjp_outputs=["drag"],
                                         cotangent_vector={"drag": onp.ones(1, onp.float32)})
    directions = {"inflow_profile": (rng.standard_normal(CHANNEL_N) * 0.1).astype(onp.float32),
                  "v0": (rng.standard_normal(v0.shape) * 0.1).astype(onp.float32),
                  "viscosity": onp.array([0.3 * nu], onp.float32), "dt": onp.array([0.3 * dt], onp.float32)}
    zero = {"inflow_profile": 0 * prof, "v0": 0 * v0, "viscosity": 0.0, "dt": 0.0}
    errors = {}
    for name in names:
        d = {**zero, name: onp.asarray(directions[name], float) if name in ("inflow_profile", "v0")
             else float(directions[name][0])}
        analytic = float((onp.asarray(grads[name], float) * onp.asarray(directions[name], float)).sum())
        errs = []
        for h in STEPS:
            plus = _channel64(api, inputs, v0 + h * d["v0"], nu + h * d["viscosity"], dt + h * d["dt"],
                              prof + h * d["inflow_profile"])[1]
            minus = _channel64(api, inputs, v0 - h * d["v0"], nu - h * d["viscosity"], dt - h * d["dt"],
                               prof - h * d["inflow_profile"])[1]
            errs.append(abs((plus - minus) / (2 * h) - analytic) / abs(analytic))
        errors[name] = (_best(errs), STEPS[int(onp.argmin(errs))])
    print("drag VJP vs central differences (best error, step):", errors)
    assert all(e <= 1e-5 for e, _ in errors.values()), errors
    # JVP (all inputs at once, both outputs) against the VJP with cotangents on both
    # outputs: in float64 (fluidgrad's modes on the Tesseract's map), where they agree to
    # rounding; the endpoints' float32 outputs agree with those to float32
    problem = api._Problem(api.InputSchema.model_validate(inputs))
    primals = [problem.primals[k] for k in problem.names]
    dirs = [onp.asarray(directions[k], float).reshape(problem.primals[k].shape) if k != "v0"
            else onp.asarray(directions[k], float)[:, :, 0, :] for k in problem.names]
    w_drag = onp.array([0.7])
    _, vjp_fn = api.vjp(problem.run, *primals)
    adj = vjp_fn((w_result.astype(float)[:, :, 0, :], w_drag))
    _, (d_result, d_drag) = api.jvp(problem.run, primals, dirs)
    lhs = float((onp.asarray(d_result) * w_result[:, :, 0, :]).sum() + onp.asarray(d_drag)[0] * w_drag[0])
    rhs = sum(float((onp.asarray(a) * d).sum()) for a, d in zip(adj, dirs))
    print("float64: <J v, w> vs <v, Jᵀ w>:", lhs, rhs, abs(lhs - rhs) / abs(rhs))
    assert abs(lhs - rhs) <= 1e-10 * abs(rhs)
    tangent = tess.jacobian_vector_product(inputs=inputs, jvp_inputs=names, jvp_outputs=["result", "drag"],
                                           tangent_vector=directions)
    onp.testing.assert_allclose(onp.asarray(tangent["drag"], float), onp.asarray(d_drag), rtol=1e-5)
    onp.testing.assert_allclose(onp.asarray(tangent["result"], float)[:, :, 0, :], onp.asarray(d_result),
                                rtol=1e-5, atol=1e-6 * onp.abs(onp.asarray(d_result)).max())
    both = tess.vector_jacobian_product(inputs=inputs, vjp_inputs=names, vjp_outputs=["result", "drag"],
                                        cotangent_vector={"result": w_result, "drag": w_drag.astype(onp.float32)})
    for k, a in zip(problem.names, adj):
        got = onp.asarray(both[k], float).reshape(onp.shape(a) if k != "v0" else onp.shape(a)[:2] + (1, 2))
        want = onp.asarray(a) if k != "v0" else onp.asarray(a)[:, :, None, :]
        onp.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * onp.abs(want).max())


def test_drag_is_none_and_refuses_derivatives_without_an_obstacle(tess):
    inputs = _inputs(onp.zeros((8, 8, 1, 2), onp.float32), 0.01, 0.01, 2)
    assert tess.apply(inputs)["drag"] is None
    with pytest.raises(Exception, match="'drag' is None without an obstacle"):
        tess.vector_jacobian_product(inputs=inputs, vjp_inputs=["v0"], vjp_outputs=["drag"],
                                     cotangent_vector={"drag": onp.ones(1, onp.float32)})
