"""Every GPU kernel (:mod:`fluidgrad.ops.gpu`) against the array-API reference, forward,
VJP and JVP, on every 2-D boundary configuration of ``kernel_cases``, float64 to 1e-12 and
float32 to 1e-5 relative (to the reference's largest magnitude).

Marked ``gpu_sim``: with ``NUMBA_ENABLE_CUDASIM=1`` (set before numba starts) the kernels
run in numba's CUDA simulator on numpy arrays; on a machine with a GPU (cupy and
numba-cuda installed, no simulator) on cupy arrays, through the dispatch rule. Skipped
otherwise, and where numba-cuda is not installed.
"""

import os

import numpy as onp
import pytest

pytest.importorskip("numba_cuda")

from fluidgrad.ad.tree import flatten  # noqa: E402
from fluidgrad.backend import to_numpy  # noqa: E402
from fluidgrad.ops import advection, dispatch, gpu, interpolation, multigrid, poisson, pressure  # noqa: E402

from ops import domains  # noqa: E402
from ops.kernel_cases import CASES  # noqa: E402

pytestmark = pytest.mark.gpu_sim

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
TOLERANCE = {onp.float64: 1e-12, onp.float32: 1e-5}


def _device():
    """numpy in the simulator, cupy on a GPU; skip if neither runs the kernels."""
    if SIMULATED:
        return onp
    if not gpu.available():
        pytest.skip("no GPU and not in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    import cupy
    return cupy


def _to(tree, xp, dtype):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_to(t, xp, dtype) for t in tree)
    return None if tree is None else xp.asarray(onp.asarray(tree, dtype=dtype))


def _agree(got, want, dtype):
    for a, b in zip(flatten(got)[0], flatten(want)[0], strict=True):
        a, b = to_numpy(a), to_numpy(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = max(float(onp.abs(b).max()), 1e-30)
        assert float(onp.abs(a - b).max()) <= TOLERANCE[dtype] * scale


def _lopsided_3d():
    """A 3-D box whose two sides differ on every axis (``kernel_cases``' 3-D domains treat
    the sides of axis 2 alike), so that a ghost rule applied on the wrong side shows; the
    pressure's rules differ across axes 0 and 2 (outflow on one side)."""
    from fluidgrad.boundaries import Boundaries, Domain
    spec = {"x_lo": "outflow", "x_hi": {"type": "inflow", "velocity": [-1.0, 0.3, 0.2]},
            "y_lo": "no_slip", "y_hi": "free_slip",
            "z_lo": "outflow", "z_hi": {"type": "no_slip", "velocity": [0.5, -0.4, 0.0]}}
    return Domain(domains.make("periodic", 3).grid, Boundaries.from_dict(spec, 3))


#: The simulator runs a Python thread per point (~0.5 ms each), so the 3-D tests are thinned:
#: every 3-D domain in float64, float32 on every other one (FLOAT32_3D); the advection
#: kernels at one location per domain, in turn (each location on two domains), padding
#: there and at the cell centres; red-black smoothing two sweeps at once; the tangents one
#: at a time only in 2-D and float64.
LOCATIONS_3D = {"periodic": "face2", "no_slip": "center", "free_slip": "face0", "moving_wall": "face1",
                "inflow_outflow": "face2", "mixed": "center", "obstacle": "face0", "lopsided": "face1"}
FLOAT32_3D = ("periodic", "free_slip", "inflow_outflow", "obstacle")


def _dtypes(name, ndim):
    """The dtypes a domain is tested in (see :data:`FLOAT32_3D`)."""
    return (onp.float64, onp.float32) if ndim == 2 or name in FLOAT32_3D else (onp.float64,)


def _lopsided_case():
    from ops.kernel_cases import Case, velocity
    domain = _lopsided_3d()
    return Case(lambda rng: (rng.standard_normal(domain.face_shape(1)), velocity(domain, rng)),
                kwargs={"domain": domain, "dt": 0.6 * domains.H, "location": 1}, id="face1-lopsided-3d")


def _advection_cases():
    """(seed, case, dtype): every 2-D case of ``kernel_cases`` in both dtypes; in 3-D those
    of :data:`LOCATIONS_3D` (and the lopsided box)."""
    out = []
    for seed, case in enumerate([*CASES["semi_lagrangian"], _lopsided_case()]):
        if case.kwargs.get("backtrace", "euler") != "euler":
            continue
        location, name = case.id.split("-", 1)
        name = name.rsplit("-", 1)[0]
        ndim = case.kwargs["domain"].ndim
        if ndim == 3 and LOCATIONS_3D[name] != location:
            continue
        out += [pytest.param(seed, case, dtype, id=f"{case.id}-{dtype.__name__}") for dtype in _dtypes(name, ndim)]
    return out


def _tangents(kw, dtype, dot_q, dot_u):
    """Both tangents, and each alone (in 2-D, float64)."""
    if dtype is not onp.float64 or kw["domain"].ndim == 3:
        return ((dot_q, dot_u),)
    return ((dot_q, dot_u), (dot_q, None), (None, dot_u))


def _inputs(seed, case, dtype, xp):
    rng = onp.random.default_rng(seed)
    q, velocity = case.make(rng)
    g, dot_q = rng.standard_normal(q.shape), rng.standard_normal(q.shape)
    dot_u = tuple(rng.standard_normal(u.shape) for u in velocity)
    host = [_to(x, onp, dtype) for x in (q, velocity, g, dot_q, dot_u)]
    return case.kwargs, host, [_to(x, xp, dtype) for x in host]


@pytest.mark.parametrize("seed, case, dtype", _advection_cases())
def test_semi_lagrangian_forward_vjp_jvp_agree_with_the_reference(seed, case, dtype):
    xp = _device()
    kw, (q, velocity, g, dot_q, dot_u), (dq, dvelocity, dg, ddot_q, ddot_u) = _inputs(seed, case, dtype, xp)
    with dispatch.use_reference():
        want = advection._semi_lagrangian_reference(q, velocity, **kw)
        want_vjp = advection._semi_lagrangian_vjp_reference(g, want, q, velocity, **kw)
        want_jvp = [advection._semi_lagrangian_jvp_reference(dots, want, q, velocity, **kw)
                    for dots in _tangents(kw, dtype, dot_q, dot_u)]
    with dispatch.record() as ran:
        _agree(gpu.semi_lagrangian(dq, dvelocity, **kw), want, dtype)
        _agree(gpu.semi_lagrangian_vjp(dg, None, dq, dvelocity, **kw), want_vjp, dtype)
        for dots, expected in zip(_tangents(kw, dtype, ddot_q, ddot_u), want_jvp, strict=True):
            _agree(gpu.semi_lagrangian_jvp(dots, None, dq, dvelocity, **kw), expected, dtype)
    if xp is not onp:  # on a GPU the dispatch rule picks these kernels, padding included
        assert advection.semi_lagrangian_forward.choose(dq, dvelocity, **kw)[0] == "gpu"
        assert "gpu" in ran.ran("pad_field") or kw["domain"].all_periodic


@pytest.mark.parametrize("seed, case, dtype", _advection_cases())
def test_maccormack_forward_vjp_jvp_agree_with_the_reference(seed, case, dtype):
    xp = _device()
    kw, (q, velocity, g, dot_q, dot_u), (dq, dvelocity, dg, ddot_q, ddot_u) = _inputs(seed, case, dtype, xp)
    with dispatch.use_reference():
        want = advection._maccormack_reference(q, velocity, **kw)
        want_vjp = advection._maccormack_vjp_reference(g, want, q, velocity, **kw)
        want_jvp = [advection._maccormack_jvp_reference(dots, want, q, velocity, **kw)
                    for dots in _tangents(kw, dtype, dot_q, dot_u)]
    _agree(gpu.maccormack(dq, dvelocity, **kw), want, dtype)
    _agree(gpu.maccormack_vjp(dg, None, dq, dvelocity, **kw), want_vjp, dtype)
    for dots, expected in zip(_tangents(kw, dtype, ddot_q, ddot_u), want_jvp, strict=True):
        _agree(gpu.maccormack_jvp(dots, None, dq, dvelocity, **kw), expected, dtype)
    if xp is not onp:
        assert advection.maccormack_forward.choose(dq, dvelocity, **kw)[0] == "gpu"
        assert advection.maccormack_vjp.choose(dg, None, dq, dvelocity, **kw)[0] == "gpu"
        assert advection.maccormack_jvp.choose((ddot_q, ddot_u), None, dq, dvelocity, **kw)[0] == "gpu"


def _padding_cases():
    named = [(name, ndim, domains.make(name, ndim)) for name, ndim in domains.ALL] + [("lopsided", 3, _lopsided_3d())]
    def locations(name, ndim):
        if ndim == 2:
            return ("center", 0, 1)
        face = LOCATIONS_3D[name]
        return ("center",) if face == "center" else ("center", int(face[-1]))
    return [pytest.param(domain, loc, dtype, id=f"{loc}-{name}-{ndim}d-{dtype.__name__}") for name, ndim, domain in named
            for loc in locations(name, ndim) for dtype in _dtypes(name, ndim)]


@pytest.mark.parametrize("domain, location, dtype", _padding_cases())
def test_padding_and_its_transpose_agree_with_the_reference(domain, location, dtype):
    xp = _device()
    rng = onp.random.default_rng(7)
    shape = domain.grid.shape if location == "center" else domain.face_shape(location)
    q = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(interpolation.padded_lattice(domain, location).shape).astype(dtype)
    for homogeneous in (False, True):
        _agree(gpu.pad_field(xp.asarray(q), domain, location, homogeneous),
               interpolation._pad_field_reference(q, domain, location, homogeneous), dtype)
    _agree(gpu.pad_field_transpose(xp.asarray(g), domain, location),
           interpolation._pad_field_transpose_reference(g, domain, location), dtype)
    if xp is not onp and not domain.all_periodic:  # on a GPU the dispatch rule picks these kernels
        assert interpolation.pad_field.choose(xp.asarray(q), domain, location)[0] == "gpu"


def _outflow_sides():
    """Outflow on the sides ``kernel_cases`` keeps closed (x_lo, y_lo, y_hi), so that every
    ghost rule of the projection's passes meets an open face."""
    from fluidgrad.boundaries import Boundaries, Domain
    from ops import domains
    spec = {"x_lo": "outflow", "x_hi": {"type": "inflow", "velocity": [-1.0, 0.3]}, "y": "outflow"}
    return Domain(domains.make("periodic", 2).grid, Boundaries.from_dict(spec, 2))


def _projection_cases():
    """Every 2-D case of ``kernel_cases`` (each solver) and the outflow sides, in both
    dtypes; every 3-D domain and the lopsided box with the default solver (the solve
    between the passes is the reference's own), float32 as :data:`FLOAT32_3D`."""
    two = [(case.id, case.kwargs) for case in CASES["project"] if case.kwargs["domain"].ndim == 2]
    for solver in ("auto", "cg", "jacobi"):
        settings = pressure.PressureSolve(solver, tolerance=1e-13, adjoint_tolerance=1e-14, iterations=20)
        two.append((f"{solver}-outflow_sides-2d", {"domain": _outflow_sides(), "solve": settings}))
    out = [pytest.param(kw, dtype, id=f"{tag}-{dtype.__name__}") for tag, kw in two for dtype in (onp.float64, onp.float32)]
    settings = pressure.PressureSolve("auto", tolerance=1e-13, adjoint_tolerance=1e-14)
    three = [(name, domains.make(name, 3)) for name, ndim in domains.ALL if ndim == 3] + [("lopsided", _lopsided_3d())]
    out += [pytest.param({"domain": domain, "solve": settings}, dtype, id=f"auto-{name}-3d-{dtype.__name__}")
            for name, domain in three for dtype in _dtypes(name, 3)]
    return out


@pytest.mark.parametrize("kw, dtype", _projection_cases())
def test_projection_forward_vjp_jvp_agree_with_the_reference(kw, dtype):
    """The projection with its stencil passes on the device (the solve between them is the
    reference's own), forward, VJP and JVP, every solver of ``kernel_cases``."""
    xp = _device()
    domain = kw["domain"]
    rng = onp.random.default_rng(5)
    velocity = tuple(_to(rng.standard_normal(s), onp, dtype) for s in domain.velocity_shapes)
    g = (tuple(_to(rng.standard_normal(u.shape), onp, dtype) for u in velocity),
         _to(rng.standard_normal(domain.grid.shape), onp, dtype))
    with dispatch.use_reference():
        want = pressure._project_reference(velocity, **kw)
        want_vjp = pressure._project_vjp_reference(g, want, velocity, **kw)
        want_jvp = pressure._project_jvp_reference((g[0],), want, velocity, **kw)
    dvelocity, dg = _to(velocity, xp, dtype), _to(g, xp, dtype)
    _agree(gpu.project(dvelocity, **kw), want, dtype)
    _agree(gpu.project_vjp(dg, None, dvelocity, **kw), want_vjp, dtype)
    _agree(gpu.project_jvp((dg[0],), None, dvelocity, **kw), want_jvp, dtype)
    if xp is not onp:  # on a GPU the dispatch rule picks these kernels
        assert pressure.project_forward.choose(dvelocity, **kw)[0] == "gpu"
        assert pressure.project_vjp.choose(dg, None, dvelocity, **kw)[0] == "gpu"
        assert pressure.project_jvp.choose((dg[0],), None, dvelocity, **kw)[0] == "gpu"


def _poisson_inputs(name, dtype, xp, ndim=2):
    """The pressure Laplacian of the domain ``name`` for host and device arrays, a
    right-hand side and a start on its fluid cells (host, device)."""
    domain = domains.make(name, ndim)
    rng = onp.random.default_rng(3)
    b, x0 = (_to(rng.standard_normal(domain.grid.shape) * domain.fluid, onp, dtype) for _ in range(2))
    db, dx0 = _to(b, xp, dtype), _to(x0, xp, dtype)
    return (pressure.poisson_operator(domain, b), b, x0), (pressure.poisson_operator(domain, db), db, dx0)


POISSON_DOMAINS = [pytest.param(name, ndim, dtype, id=f"{name}-{ndim}d-{dtype.__name__}")
                   for name, ndim in domains.ALL for dtype in _dtypes(name, ndim)]  # obstacles too


@pytest.mark.parametrize("name, ndim, dtype", POISSON_DOMAINS)
def test_poisson_apply_agrees_with_the_reference(name, ndim, dtype):
    xp = _device()
    (op, b, x0), (dop, db, dx0) = _poisson_inputs(name, dtype, xp, ndim)
    for x, dx in ((b, db), (x0, dx0)):
        _agree(gpu.poisson_apply(dop, dx), op._apply_reference(x), dtype)
    if xp is not onp:  # on a GPU the dispatch rule picks this kernel
        assert poisson.poisson_apply.choose(dop, db)[0] == "gpu"


@pytest.mark.parametrize("name, ndim, dtype", POISSON_DOMAINS)
def test_jacobi_sweeps_agree_with_the_reference(name, ndim, dtype):
    """From zero and from a start (left as it was), one sweep and several."""
    xp = _device()
    (op, b, x0), (dop, db, dx0) = _poisson_inputs(name, dtype, xp, ndim)
    kept = to_numpy(dx0).copy()
    for sweeps in (1, 2, 3):  # 3: a spare buffer reused
        for x, dx in ((None, None), (x0, dx0)):
            with dispatch.use_reference():
                want = poisson._jacobi_sweeps_reference(op, b, x, sweeps, 0.8)
            _agree(gpu.jacobi_sweeps(dop, db, dx, sweeps, 0.8), want, dtype)
    assert onp.array_equal(to_numpy(dx0), kept)
    if xp is not onp:
        assert poisson.jacobi_sweeps.choose(dop, db, dx0, 5, 0.8)[0] == "gpu"


@pytest.mark.parametrize("name, ndim, dtype", POISSON_DOMAINS)
def test_red_black_gauss_seidel_agrees_with_the_reference(name, ndim, dtype):
    """Both colour orders, from zero and from a start (left as it was), one sweep and two."""
    xp = _device()
    (op, b, x0), (dop, db, dx0) = _poisson_inputs(name, dtype, xp, ndim)
    if any(p and n % 2 for p, n in zip(op.periodic, op.shape)):
        assert not gpu.supports_red_black(dop, db, dx0, 2, True)
        pytest.skip("an odd periodic axis: no 2-colouring, the rule declines the kernel (the reference runs)")
    kept = to_numpy(dx0).copy()
    for sweeps in ((1, 2) if ndim == 2 else (2,)):
        for reverse in (False, True):
            for x, dx in ((None, None), (x0, dx0)):
                with dispatch.use_reference():
                    want = multigrid._gauss_seidel_reference(op, b, x, sweeps, reverse)
                _agree(gpu.red_black(dop, db, dx, sweeps, reverse), want, dtype)
    assert onp.array_equal(to_numpy(dx0), kept)
    if xp is not onp:
        assert multigrid._gauss_seidel.choose(dop, db, dx0, 2, True)[0] == "gpu"


def _even_domain(name, ndim):
    """``domains.make(name, ndim)``, in 3-D on an 8×6×4 grid (one that coarsens)."""
    if ndim == 2:
        return domains.make(name, 2)
    from fluidgrad.boundaries import Domain, Obstacle
    shape = (8, 6, 4)
    obstacles = ([Obstacle("sphere", center=tuple(n * domains.H / 2 for n in shape), radius=1.6 * domains.H)]
                 if name == "obstacle" else [])
    return Domain(domains._grid(shape), domains.make(name, 3).boundaries, obstacles)


@pytest.mark.parametrize("name, ndim, dtype", POISSON_DOMAINS)
def test_multigrid_transfers_agree_with_the_reference(name, ndim, dtype):
    """Prolongation and restriction between the pressure Laplacian and its coarsening."""
    xp = _device()
    domain = _even_domain(name, ndim)
    rng = onp.random.default_rng(11)
    fine = pressure.poisson_operator(domain, onp.zeros(domain.grid.shape, dtype=dtype))
    dfine = pressure.poisson_operator(domain, xp.zeros(domain.grid.shape, dtype=dtype))
    coarse, dcoarse = fine.coarsen(), dfine.coarsen()
    e = _to(rng.standard_normal(coarse.shape), onp, dtype)
    r = _to(rng.standard_normal(fine.shape), onp, dtype)
    _agree(gpu.prolong(dfine, dcoarse, xp.asarray(e)), multigrid._prolong_reference(fine, coarse, e), dtype)
    _agree(gpu.restrict(dfine, dcoarse, xp.asarray(r)), multigrid._restrict_reference(fine, coarse, r), dtype)
    if xp is not onp:  # on a GPU the dispatch rule picks these kernels
        assert multigrid._prolong.choose(dfine, dcoarse, xp.asarray(e))[0] == "gpu"
        assert multigrid._restrict.choose(dfine, dcoarse, xp.asarray(r))[0] == "gpu"


@pytest.mark.parametrize("solve", ["cg", "multigrid"])
def test_solver_loops_on_the_gpu_kernels_reach_the_reference_solution(solve, monkeypatch):
    """CG (preconditioned by a V-cycle) and multigrid V-cycles with every Poisson kernel
    a GPU kernel (in the simulator the rule is let take its host arrays), convergence
    checked every 4 iterations, reach the reference's solution."""
    from fluidgrad.ops import linear_solvers
    xp = _device()
    if xp is onp:  # the simulator's arrays are numpy's: let the rule send them to the GPU kernels
        monkeypatch.setattr(gpu, "_on_device", lambda a, dtype=None: a.dtype.kind == "f"
                            and (dtype is None or a.dtype == dtype))
    monkeypatch.setattr(multigrid, "MAX_COARSE_CELLS", 16)  # 8×6 -> 4×3: a two-level V-cycle
    domain = domains.make("obstacle", 2)
    b = onp.random.default_rng(8).standard_normal(domain.grid.shape) * domain.fluid
    run = getattr(linear_solvers, f"solve_{solve}")
    with dispatch.use_reference():
        want, info = run(pressure.poisson_operator(domain, b), b, 1e-11)
    dop = pressure.poisson_operator(domain, xp.asarray(b))
    with dispatch.record() as ran:
        got, dinfo = run(dop, xp.asarray(b), 1e-11, check_every=4)
    assert info.converged and dinfo.converged and dinfo.iterations % 4 == 0
    for name in ("poisson.apply", "multigrid.red_black", "multigrid.prolong", "multigrid.restrict"):
        assert ran.ran(name) == {"gpu"}, (name, ran.summary())
    assert float(onp.abs(to_numpy(got) - want).max()) <= 1e-9 * float(onp.abs(want).max())


def test_the_rule_sends_only_device_arrays_to_the_gpu_kernels():
    kw, (q, velocity, *_), _ = _inputs(0, CASES["semi_lagrangian"][0], onp.float64, onp)
    assert advection.semi_lagrangian_forward.choose(q, velocity, **kw)[0] != "gpu"
    assert not gpu.supports((q, *velocity), kw["domain"])
    assert interpolation.pad_field.choose(q, kw["domain"], "center")[0] != "gpu"
    assert advection.maccormack_forward.choose(q, velocity, **kw)[0] != "gpu"
    domain = kw["domain"]
    assert pressure.project_forward.choose(velocity, domain=domain)[0] != "gpu"
    g = (velocity, q)
    assert pressure.project_vjp.choose(g, None, velocity, domain=domain)[0] != "gpu"
    assert pressure.project_jvp.choose((velocity,), None, velocity, domain=domain)[0] != "gpu"
    (op, b, x0), _ = _poisson_inputs("obstacle", onp.float64, onp)
    assert poisson.poisson_apply.choose(op, b)[0] != "gpu"
    assert poisson.jacobi_sweeps.choose(op, b, x0, 5, 0.8)[0] != "gpu"
    assert multigrid._gauss_seidel.choose(op, b, x0, 2, True)[0] != "gpu"
    assert multigrid._restrict.choose(op, op.coarsen(), b)[0] != "gpu"
