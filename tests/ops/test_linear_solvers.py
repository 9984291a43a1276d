"""Tests of the cell-centred Poisson operator and its solvers (fluidgrad.ops.linear_solvers)."""

import itertools

import numpy as np
import pytest

import fluidgrad.ops.multigrid as multigrid
from fluidgrad.ops.linear_solvers import (PoissonOperator, SolveInfo, solve_cg, solve_jacobi,
                                          solve_multigrid, v_cycle)


# --------------------------------------------------------------------------- helpers
def make_operator(shape, periodic=None, dirichlet_faces=(), solid=None, dtype=np.float64,
                  h=None, pass_fluid=True):
    """Face weights 0 on closed boundary faces, 2 on Dirichlet ones ((axis, 0|1) in
    ``dirichlet_faces``), 1 elsewhere, 0 on faces touching a ``solid`` cell; h = 1/shape[0]."""
    nd = len(shape)
    periodic = tuple(periodic or (False,) * nd)
    fluid = np.ones(shape, bool) if solid is None else ~solid
    weights = []
    for d in range(nd):
        if periodic[d]:
            w = np.ones(shape, dtype)
            open_ = fluid & np.roll(fluid, 1, axis=d)
        else:
            fshape = list(shape)
            fshape[d] += 1
            w = np.ones(fshape, dtype)
            lo, hi = [slice(None)] * nd, [slice(None)] * nd
            lo[d], hi[d] = 0, -1
            w[tuple(lo)] = 2.0 if (d, 0) in dirichlet_faces else 0.0
            w[tuple(hi)] = 2.0 if (d, 1) in dirichlet_faces else 0.0
            pad = np.ones([1 if e == d else n for e, n in enumerate(shape)], bool)
            open_ = np.concatenate([pad, fluid], axis=d) & np.concatenate([fluid, pad], axis=d)
        weights.append(np.where(open_, w, 0).astype(dtype))
    h = 1.0 / shape[0] if h is None else h
    return PoissonOperator(weights, h, fluid if (solid is not None and pass_fluid) else None)


def ball(shape, radius=0.2, centre=0.5):
    """A circular (spherical) obstacle in the unit box."""
    grids = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    return sum((g - centre) ** 2 for g in grids) < radius ** 2


def random_rhs(op, seed=0, consistent=True, dtype=np.float64):
    """Random right-hand side, zero on solid cells, mean-free on fluid cells if singular."""
    b = np.random.default_rng(seed).standard_normal(op.shape) * op.fluid
    if consistent and op.singular:
        b = op.remove_mean(b)
    return b.astype(dtype)


def reference_apply(op, p):
    """L p by loops over cells, straight from the definition."""
    out = np.zeros(op.shape)
    for c in itertools.product(*map(range, op.shape)):
        total = 0.0
        for d in range(op.ndim):
            w, n = op.conductances[d], op.shape[d]
            for side in (0, 1):                         # face c−½ (side 0), c+½ (side 1)
                k = c[d] + side
                face = c[:d] + ((k % n) if op.periodic[d] else k,) + c[d + 1:]
                m = c[d] + (1 if side else -1)
                if op.periodic[d]:
                    other = p[c[:d] + (m % n,) + c[d + 1:]]
                else:
                    other = p[c[:d] + (m,) + c[d + 1:]] if 0 <= m < n else 0.0
                total += w[face] * (other - p[c])
        out[c] = total / op.h ** 2
    return out


def dense(op):
    """The matrix of L, built by applying it to unit vectors."""
    n = op.size
    return np.stack([op.apply(np.eye(n)[i].reshape(op.shape)).ravel() for i in range(n)], axis=1)


def sym_error(f, op, seed=1):
    """|<f(b), c> - <b, f(c)>| / |<f(b), c>| for random b, c (inconsistent, nonzero on solids)."""
    rng = np.random.default_rng(seed)
    b, c = rng.standard_normal(op.shape), rng.standard_normal(op.shape)
    fb, fc = f(b), f(c)
    return abs(np.vdot(fb, c) - np.vdot(b, fc)) / abs(np.vdot(fb, c))


def true_residual(op, b, p):
    """max |b − L p| over fluid cells (b made consistent first when singular)."""
    b = op.remove_mean(b * op.fluid) if op.singular else b
    return float(np.max(np.abs((b - op.apply(p)) * op.fluid)))


def factor_per_cycle(op, cycles=10):
    """Average residual (2-norm) reduction per V-cycle over the last 4 cycles."""
    b = random_rhs(op)
    p, norms = np.zeros(op.shape), []
    for _ in range(cycles):
        r = b - op.apply(p)
        norms.append(np.linalg.norm(r))
        p = p + v_cycle(op, r)
    return (norms[-1] / norms[-5]) ** 0.25


# Cases: name -> operator factory (2D and 3D, periodic, walls, outflow, obstacles, odd sizes).
CASES = {
    "2d_periodic_48x32": lambda: make_operator((48, 32), (True, True)),
    "2d_walls_30x30": lambda: make_operator((30, 30)),
    "2d_outflow_disk_64": lambda: make_operator((64, 64), dirichlet_faces={(0, 1)},
                                                solid=ball((64, 64))),
    "2d_walls_disk_17x16": lambda: make_operator((17, 16), solid=ball((17, 16), 0.25)),
    "2d_channel_periodic_x_disk": lambda: make_operator((64, 32), (True, False),
                                                        solid=ball((64, 32), 0.15)),
    "3d_outflow_sphere_24x20x12": lambda: make_operator(
        (24, 20, 12), dirichlet_faces={(0, 1)}, solid=ball((24, 20, 12), 0.25)),
    "3d_walls_16": lambda: make_operator((16, 16, 16)),
    "3d_periodic_16x8x8": lambda: make_operator((16, 8, 8), (True, True, True)),
}


@pytest.fixture(scope="module")
def operators():
    return {name: make() for name, make in CASES.items()}


# --------------------------------------------------------------------------- operator
TINY = [
    dict(shape=(5, 4)),
    dict(shape=(4, 5), periodic=(True, True)),
    dict(shape=(5, 4), periodic=(True, False), dirichlet_faces={(1, 1)}),
    dict(shape=(6, 5), dirichlet_faces={(0, 0), (1, 1)}, solid=ball((6, 5), 0.25)),
    dict(shape=(3, 4, 3), dirichlet_faces={(2, 0)}),
    dict(shape=(4, 3, 4), periodic=(True, False, True), solid=ball((4, 3, 4), 0.3)),
]


@pytest.mark.parametrize("spec", TINY)
def test_apply_matches_definition_and_is_symmetric_nsd(spec):
    op = make_operator(**spec)
    mat = dense(op)
    p = np.random.default_rng(0).standard_normal(op.shape)
    np.testing.assert_allclose(op.apply(p), reference_apply(op, p), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mat, mat.T, rtol=0, atol=1e-10 * np.abs(mat).max())
    assert np.linalg.eigvalsh(mat).max() <= 1e-9 * np.abs(mat).max()
    np.testing.assert_allclose(np.diag(mat), op.diagonal().ravel())
    solid = ~op.fluid.ravel()
    assert not mat[solid].any() and not mat[:, solid].any()
    assert not op.diagonal().ravel()[solid].any()
    assert (op.diagonal().ravel()[~solid] < 0).all()
    expect_singular = not spec.get("dirichlet_faces")
    assert op.singular == expect_singular
    if op.singular:
        np.testing.assert_allclose(mat @ op.fluid.ravel().astype(float), 0, atol=1e-9)


def test_operator_attributes_and_closing_solid_faces():
    solid = ball((8, 6), 0.3)
    op = make_operator((8, 6), (True, False), {(1, 0)}, solid=solid)
    assert op.shape == (8, 6) and op.ndim == 2 and op.periodic == (True, False)
    assert op.h == 1 / 8 and not op.singular and op.fluid.dtype == bool
    # weights given open on faces next to solids are closed by the operator
    open_all = [np.ones((8, 6)), np.ones((8, 7))]
    op2 = PoissonOperator(open_all, 1 / 8, ~solid)
    np.testing.assert_array_equal(op2.apply(np.ones((8, 6)))[solid], 0)
    assert (op2.diagonal()[solid] == 0).all()
    with pytest.raises(ValueError):
        PoissonOperator([np.ones((8, 6)), np.ones((8, 5))], 1.0)


def test_remove_mean():
    op = make_operator((8, 8), solid=ball((8, 8), 0.3))
    x = np.random.default_rng(0).standard_normal(op.shape) + 3
    y = op.remove_mean(x)
    assert abs(y[op.fluid].mean()) < 1e-14 and not y[~op.fluid].any()
    np.testing.assert_allclose(y[op.fluid], x[op.fluid] - x[op.fluid].mean())
    nonsingular = make_operator((8, 8), dirichlet_faces={(0, 0)})
    assert nonsingular.remove_mean(x) is x


def test_coarsen():
    op = make_operator((16, 12), (False, True), {(0, 1)}, solid=ball((16, 12), 0.2))
    c = op.coarsen()
    assert c.shape == (8, 6) and c.h == 2 * op.h and c.periodic == op.periodic
    assert c.conductances[0].shape == (9, 6) and c.conductances[1].shape == (8, 6)
    assert (c.conductances[0][-1] == 2).all() and (c.conductances[0][0] == 0).all()
    assert not c.singular and op.coarsen() is c
    np.testing.assert_array_equal(c.fluid, op.fluid.reshape(8, 2, 6, 2).any(axis=(1, 3)))
    assert make_operator((17, 16)).coarsen() is None
    assert make_operator((8, 2)).coarsen() is None
    assert make_operator((4, 4, 6)).coarsen().shape == (2, 2, 3)


# --------------------------------------------------------------------------- solvers
SOLVERS = {
    "cg_multigrid": lambda op, b, tol: solve_cg(op, b, tol),
    "cg_jacobi": lambda op, b, tol: solve_cg(op, b, tol, preconditioner="jacobi"),
    "multigrid": lambda op, b, tol: solve_multigrid(op, b, tol),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_solvers_reach_tolerance(operators, case, solver):
    op = operators[case]
    b = random_rhs(op, seed=3)
    tol = 1e-8                                    # absolute; b ~ 1
    p, info = SOLVERS[solver](op, b, tol)
    assert isinstance(info, SolveInfo) and info.converged and info.residual <= tol
    assert true_residual(op, b, p) <= tol
    assert p.dtype == np.float64 and p.shape == op.shape
    assert not p[~op.fluid].any()
    if op.singular:
        assert abs(p[op.fluid].mean()) <= 1e-12 * np.abs(p).max()


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_singular_solve_is_pseudo_inverse(operators, solver):
    """An inconsistent b is solved as b − mean(b); the result is mean-free."""
    op = operators["2d_walls_disk_17x16"]
    b = random_rhs(op, seed=4, consistent=False) + 0.7 * op.fluid
    p, info = SOLVERS[solver](op, b, 1e-8)
    assert info.converged and true_residual(op, b, p) <= 1e-8
    mat = dense(op)
    expect = (np.linalg.pinv(mat) @ (op.remove_mean(b)).ravel()).reshape(op.shape)
    # pinv over the whole grid includes solid cells as zero rows/columns: same pseudo-inverse
    np.testing.assert_allclose(p, expect, atol=1e-8 * np.abs(expect).max() * 1e3)


def test_solve_jacobi_converges_on_a_small_grid():
    op = make_operator((8, 8), dirichlet_faces={(0, 0)}, h=1.0)
    b = random_rhs(op)
    p, info = solve_jacobi(op, b, 3000, tolerance=1e-8)
    assert info.iterations == 3000 and info.converged and true_residual(op, b, p) <= 1e-8
    p_short, info_short = solve_jacobi(op, b, 5, tolerance=1e-8)
    assert not info_short.converged and info_short.residual > 1e-8


def test_solver_options(operators):
    op = operators["2d_outflow_disk_64"]
    b = random_rhs(op, seed=5)
    p, info = solve_cg(op, b, 1e-7, relative=True, check_every=3)
    assert info.converged and true_residual(op, b, p) <= 1e-7 * np.abs(b).max()
    assert info.iterations % 3 == 0
    # a converged starting guess needs no iteration
    p2, info2 = solve_cg(op, b, 1e-6, x0=p)
    assert info2.iterations == 0 and info2.converged
    p3, info3 = solve_multigrid(op, b, 1e-6, x0=p)
    assert info3.iterations == 0
    # b = 0 gives p = 0 at once
    for solve in (solve_cg, solve_multigrid):
        z, zinfo = solve(op, np.zeros(op.shape))
        assert zinfo.iterations == 0 and not z.any()
    # unpreconditioned CG and an iteration cap
    _, info4 = solve_cg(op, b, 1e-6, preconditioner=None)
    assert info4.converged
    _, info5 = solve_cg(op, b, 1e-12, max_iterations=2, preconditioner="jacobi")
    assert info5.iterations == 2 and not info5.converged
    with pytest.raises(ValueError):
        solve_cg(op, b, preconditioner="ilu")


# --------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("case", list(CASES))
def test_jacobi_and_v_cycle_are_symmetric_linear_maps(operators, case):
    op = operators[case]
    assert sym_error(lambda b: solve_jacobi(op, b, 7)[0], op) <= 1e-12
    assert sym_error(lambda b: v_cycle(op, b), op) <= 1e-12
    rng = np.random.default_rng(2)
    b, c = rng.standard_normal(op.shape), rng.standard_normal(op.shape)
    np.testing.assert_allclose(v_cycle(op, b + 2 * c), v_cycle(op, b) + 2 * v_cycle(op, c),
                               atol=1e-12 * np.abs(v_cycle(op, b)).max())
    b = random_rhs(op, seed=6)
    assert np.vdot(b, v_cycle(op, b)) < 0          # negative definite, like L⁺
    assert not v_cycle(op, b)[~op.fluid].any()


@pytest.mark.parametrize("case", ["2d_outflow_disk_64", "2d_walls_30x30",
                                  "3d_outflow_sphere_24x20x12"])
def test_tight_solves_are_symmetric(operators, case):
    op = operators[case]
    tight = dict(tolerance=1e-12, relative=True)
    assert sym_error(lambda b: solve_cg(op, b, **tight)[0], op) <= 1e-9
    assert sym_error(lambda b: solve_cg(op, b, preconditioner="jacobi", **tight)[0], op) <= 1e-9
    assert sym_error(lambda b: solve_multigrid(op, b, **tight)[0], op) <= 1e-9


@pytest.mark.parametrize("sparse", [True, False])
def test_coarse_fallback_is_symmetric_and_converges(monkeypatch, sparse):
    """Sizes that stop halving above the dense-solve limit use a sparse LU coarse solve
    (numpy) or a Chebyshev one."""
    monkeypatch.setattr(multigrid, "MAX_DENSE_CELLS", 100)
    monkeypatch.setattr(multigrid, "SPARSE_COARSE", sparse)
    op = make_operator((52, 36), dirichlet_faces={(0, 1)}, solid=ball((52, 36), 0.2))
    assert multigrid._hierarchy(op)[-1].size > 100
    assert sym_error(lambda b: v_cycle(op, b), op) <= 1e-12
    b = random_rhs(op)
    p, info = solve_cg(op, b, 1e-8)
    assert info.converged and info.iterations <= 15 and true_residual(op, b, p) <= 1e-8
    op = make_operator((15, 13))                   # no coarsening at all, singular
    assert sym_error(lambda b: v_cycle(op, b), op) <= 1e-12
    p, info = solve_multigrid(op, random_rhs(op), 1e-8)
    assert info.converged and info.iterations <= 15


@pytest.mark.parametrize("shape, options", [
    ((26, 18), dict(dirichlet_faces={(0, 1)}, solid=ball((26, 18), 0.2))),
    ((26, 18), dict(periodic=(True, False))),                       # singular
    ((15, 13), dict(periodic=(True, True))),                        # singular, odd periodic sides
    ((10, 8, 6), dict(dirichlet_faces={(2, 0)}, solid=ball((10, 8, 6), 0.25))),
])
def test_the_sparse_coarse_solve_is_the_pseudo_inverse(monkeypatch, shape, options):
    """The sparse LU coarsest solve equals the dense L⁺ b (the null space pinned, then
    projected out) on consistent right-hand sides."""
    monkeypatch.setattr(multigrid, "MAX_DENSE_CELLS", 0)
    op = make_operator(shape, **options)
    b = random_rhs(op, seed=3)
    dense = np.reshape(multigrid._dense_inverse(op, np.float64) @ b.reshape(-1), shape)
    sparse = multigrid._coarse_solve(op, b)
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-10 * np.abs(dense).max())
    np.testing.assert_allclose(op.apply(sparse), b, rtol=0, atol=1e-9 * np.abs(b).max())
    assert not sparse[~op.fluid].any()


def test_a_grid_that_stops_halving_early_solves_fast():
    """440×82 cells (Schäfer-Turek's 41·2^k across) coarsen to 220×41 and no further: the
    sparse coarsest solve keeps a CG+multigrid solve at the iterations of a halving grid."""
    op = make_operator((440, 82), dirichlet_faces={(0, 1)}, solid=ball((440, 82), 0.05))
    assert multigrid._hierarchy(op)[-1].shape == (220, 41)
    b = random_rhs(op)
    p, info = solve_cg(op, b, 1e-8)
    assert info.converged and info.iterations <= 10 and true_residual(op, b, p) <= 1e-8
    assert ("sparse-lu", np.dtype(np.float64).str) in multigrid._hierarchy(op)[-1]._aux


# --------------------------------------------------------------------------- multigrid efficiency
@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("periodic", [True, False])
def test_v_cycle_convergence_factor(n, periodic):
    op = make_operator((n, n), (periodic, periodic))
    assert factor_per_cycle(op) <= 0.25


def test_v_cycle_convergence_factor_3d_and_obstacle():
    assert factor_per_cycle(make_operator((32, 32, 32), dirichlet_faces={(0, 1)},
                                          solid=ball((32, 32, 32), 0.25))) <= 0.3
    assert factor_per_cycle(make_operator((128, 128), dirichlet_faces={(0, 1)},
                                          solid=ball((128, 128)))) <= 0.25


def test_multigrid_preconditioner_beats_jacobi():
    op = make_operator((128, 128), dirichlet_faces={(0, 1)}, solid=ball((128, 128)))
    b = random_rhs(op)
    _, mg = solve_cg(op, b, 1e-8, relative=True)
    _, jac = solve_cg(op, b, 1e-8, relative=True, preconditioner="jacobi")
    assert mg.converged and jac.converged
    assert mg.iterations <= jac.iterations / 3
    assert mg.iterations <= 12


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("op_dtype", [np.float32, np.float64])
def test_float32_stays_float32(op_dtype):
    op = make_operator((32, 24), dirichlet_faces={(0, 1)}, solid=ball((32, 24)), dtype=op_dtype)
    b = random_rhs(op, dtype=np.float32)
    assert op.apply(b).dtype == np.float32 and v_cycle(op, b).dtype == np.float32
    for solve in (lambda: solve_cg(op, b, 1e-4, relative=True),
                  lambda: solve_cg(op, b, 1e-4, relative=True, preconditioner="jacobi"),
                  lambda: solve_multigrid(op, b, 1e-4, relative=True),
                  lambda: solve_jacobi(op, b, 10)):
        p, info = solve()
        assert p.dtype == np.float32
    p, info = solve_cg(op, b, 1e-4, relative=True)
    assert info.converged and true_residual(op, b.astype(np.float64), p) <= 2e-4 * np.abs(b).max()
    singular = make_operator((16, 16), dtype=op_dtype)
    b = random_rhs(singular, dtype=np.float32)
    assert singular.remove_mean(b).dtype == np.float32
    assert solve_multigrid(singular, b, 1e-4, relative=True)[0].dtype == np.float32


# --------------------------------------------------------------------------- failing solves end early
@pytest.mark.parametrize("solver", ["cg", "cg_jacobi", "multigrid"])
def test_a_solve_below_round_off_stalls_early_instead_of_running_to_max_iterations(solver):
    """b ~ 1e28 (a blown-up velocity's divergence) with an absolute tolerance of 1e-5: the
    residual stagnates at round-off (~1e13); the watch stops once STALL_ITERATIONS
    iterations have not halved it (it used to run all 10000)."""
    from fluidgrad.ops.poisson import STALL_ITERATIONS
    op = make_operator((32, 32), solid=ball((32, 32)))
    b = 1e28 * random_rhs(op, seed=5)
    kind = {"cg": dict(preconditioner="multigrid"), "cg_jacobi": dict(preconditioner="jacobi"), "multigrid": {}}
    solve = solve_multigrid if solver == "multigrid" else solve_cg
    p, info = solve(op, b, 1e-5, max_iterations=10_000, **kind[solver])
    assert not info.converged and info.reason == "stalled"
    assert STALL_ITERATIONS <= info.iterations <= 2 * STALL_ITERATIONS, info  # round-off noise may halve it once
    assert 1e10 < info.residual < 1e-6 * np.abs(b).max()  # round-off of 1e28, far above the tolerance


@pytest.mark.parametrize("solver", ["cg", "multigrid"])
def test_a_non_finite_or_growing_residual_is_divergence(solver):
    import warnings
    op = make_operator((16, 16), solid=ball((16, 16)))
    b = random_rhs(op, seed=6)
    b[3, 3] = np.inf
    solve = solve_multigrid if solver == "multigrid" else solve_cg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        p, info = solve(op, b, 1e-8)
    assert not info.converged and info.reason == "diverged" and info.iterations <= 1
    # the watch itself: 1e8 × the initial residual, or NaN, is divergence; slow progress is not
    from fluidgrad.ops.poisson import STALL_ITERATIONS, Watch
    assert Watch(1.0).check(1, 1.1e8) == "diverged" and Watch(1.0).check(1, float("nan")) == "diverged"
    w = Watch(1.0)
    assert all(w.check(k, 0.999 ** k) == "" for k in range(1, 5000))  # slow: halves every 693 iterations
    assert Watch(1.0).check(STALL_ITERATIONS, 0.6) == "stalled"


@pytest.mark.parametrize("solve", [solve_cg, solve_multigrid], ids=["cg", "multigrid"])
def test_solves_on_device_arrays_read_the_residual_every_k_iterations(solve, monkeypatch):
    """On device arrays (the strict stand-in for cupy) a solve reads its residual on the
    host (a synchronisation on a GPU) every ``CHECK_EVERY`` iterations, not every one, and
    still reaches the tolerance; the host solve checks every iteration."""
    import strict_device
    from fluidgrad.ops.linear_solvers import CHECK_EVERY
    solid = np.zeros((32, 32), bool)
    solid[12:18, 10:16] = True
    host = make_operator((32, 32), dirichlet_faces={(0, 0)}, solid=solid, h=1.0)
    b = random_rhs(host, seed=3)
    want, info = solve(host, b, 1e-10)
    reads = []
    for name in ("__float__", "__bool__", "__int__", "get"):
        real = getattr(strict_device.ndarray, name)
        monkeypatch.setattr(strict_device.ndarray, name,
                            lambda self, *a, _real=real, **k: reads.append(1) or _real(self, *a, **k))
    with strict_device.installed() as cupy:
        monkeypatch.setitem(CHECK_EVERY, cupy.__name__, 4)
        op = PoissonOperator([cupy.asarray(w) for w in host.conductances], host.h, cupy.asarray(host.fluid))
        db = cupy.asarray(b)
        solve(op, db, 1e-10)  # the first solve builds the hierarchy and the coarsest inverse
        reads.clear()
        p, dinfo = solve(op, db, 1e-10)
        n_reads = len(reads)
        p = cupy.asnumpy(p)
    assert info.converged and dinfo.converged and dinfo.iterations >= info.iterations >= 4
    assert dinfo.iterations % 4 == 0 and dinfo.iterations < info.iterations + 4
    assert n_reads <= dinfo.iterations // 4 + 3, (n_reads, dinfo.iterations)
    assert true_residual(host, b, p) <= 1e-10
    np.testing.assert_allclose(p, want, atol=1e-9 * np.abs(want).max())
