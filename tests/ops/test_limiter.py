"""MacCormack's continuous limiter and the rule at interpolation kinks: continuity
across cell faces, bounds, one derivative at a kink on every path, mirror symmetry."""

import itertools

import numpy as onp
import pytest

from fluidgrad.boundaries import Boundaries, Domain, Obstacle
from fluidgrad.grid import Grid
from fluidgrad.ops import PressureSolve, use_reference
from fluidgrad.ops import interpolation as interp
from fluidgrad.ops.advection import maccormack, semi_lagrangian
from fluidgrad.ops.limiter import NodalBounds, clamp_shares
from fluidgrad.simulation import Physics, Simulation, Source

from ops import domains

PATHS = ("fused", "reference")


def _on(path, fun, *args, **kwargs):
    if path == "reference":
        with use_reference():
            return fun(*args, **kwargs)
    return fun(*args, **kwargs)


def _periodic(shape):
    grid = Grid(shape, tuple(n * domains.H for n in shape))
    return Domain(grid, Boundaries.periodic(len(shape)))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(10, 8), (6, 5, 4)])
def test_maccormack_is_continuous_where_departure_points_cross_a_sample(shape, path):
    """A uniform velocity that moves every departure point exactly onto a sample line:
    nudging it by ±ε changes the result by O(ε). Clamping to the departure cell's
    corners (the old limiter) jumps there by O(1) wherever the clamp is active."""
    domain = _periodic(shape)
    q = onp.random.default_rng(0).standard_normal(shape)
    dt = 0.1
    cells = [1.0, 0.37, 0.21][:len(shape)]  # displacement in cells along each axis
    base = [c * domain.dx / dt for c in cells]

    def advected(nudge):
        u = tuple(onp.full(s, base[d] + (nudge if d == 0 else 0.0)) for d, s in enumerate(domain.velocity_shapes))
        return _on(path, maccormack.fun, q, u, dt=dt, domain=domain)

    eps = 1e-9 * domain.dx / dt
    jump = onp.abs(advected(eps) - advected(-eps)).max()
    assert jump <= 10 * 2e-9 * onp.abs(q).max(), jump


@pytest.mark.parametrize("shape", [(12, 10), (6, 7, 5)])
def test_maccormack_stays_within_the_samples_around_the_departure_point(shape):
    """No new extrema: with a uniform velocity the departure point of sample i is
    i - cΔt/h; the result lies within the 4ᵈ samples around it."""
    domain = _periodic(shape)
    rng = onp.random.default_rng(1)
    q = rng.standard_normal(shape)
    dt = 0.1
    shift = rng.uniform(-2.5, 2.5, len(shape))
    u = tuple(onp.full(s, shift[d] * domain.dx / dt) for d, s in enumerate(domain.velocity_shapes))
    out = maccormack.fun(q, u, dt=dt, domain=domain)
    onp.testing.assert_allclose(out, _on("reference", maccormack.fun, q, u, dt=dt, domain=domain), atol=1e-13)
    for index in itertools.product(*map(range, shape)):
        base = [int(onp.floor(i - s)) for i, s in zip(index, shift)]
        block = q[onp.ix_(*[onp.arange(b - 1, b + 3) % n for b, n in zip(base, shape)])]
        assert block.min() - 1e-14 <= out[index] <= block.max() + 1e-14, index


def test_nodal_bounds_share_a_tie_equally():
    """m = min over 3×3 neighbours; a bound attained by k samples sends 1/k of its
    cotangent to each (the tangent is the mean of theirs): transpose and tangent agree."""
    qp = onp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [4.0, 5.0, 6.0]])
    bounds = NodalBounds(qp, (False, False))
    assert bounds.lo[0, 0] == 0.0 and bounds.count_lo[0, 0] == 2
    dot = onp.zeros_like(qp)
    dot[0, 0] = 1.0
    onp.testing.assert_allclose(bounds.tangent(dot)[0][0, 0], 0.5)
    rng = onp.random.default_rng(2)
    dot, adj_lo, adj_hi = rng.standard_normal((3, 3, 3))
    dot_lo, dot_hi = bounds.tangent(dot)
    lhs = (dot_lo * adj_lo).sum() + (dot_hi * adj_hi).sum()
    assert abs(lhs - (dot * bounds.transpose(adj_lo, adj_hi)).sum()) <= 1e-14


def test_clamp_shares_its_derivative_as_central_differences_measure():
    """All to the active argument; ½ each at a tie of c with one bound; all to c where c
    and both bounds coincide; a bound alone past which c lies even where lo == hi."""
    c = onp.array([0.0, 2.0, 0.5, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0])
    lo = onp.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    hi = onp.array([2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    r, (s_c, s_lo, s_hi) = clamp_shares(c, lo, hi)
    onp.testing.assert_array_equal(r, [1.0, 1.0, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    onp.testing.assert_array_equal(s_c, [0, 0, 1, 0.5, 1, 0.5, 1, 0, 0])
    onp.testing.assert_array_equal(s_lo, [1, 0, 0, 0.5, 0, 0, 0, 0, 1])
    onp.testing.assert_array_equal(s_hi, [0, 1, 0, 0, 0, 0.5, 0, 1, 0])


def test_at_rest_the_velocity_advects_itself_with_derivative_one():
    """MacCormack of u by u at u = 0: ``MC(h v, h v) = h v + O(h²)``, so its derivative
    is the identity. Every sample ties both bounds there (all zero); the bounds' shares
    would blur the perturbation over the neighbours."""
    domain = _periodic((8, 6))
    rng = onp.random.default_rng(6)
    zero = tuple(onp.zeros(s) for s in domain.velocity_shapes)
    for path in PATHS:
        for d, s in enumerate(domain.velocity_shapes):
            g = rng.standard_normal(s)
            adj_q, adj_u = _on(path, maccormack.vjp_all, g, None, zero[d], zero, dt=0.1, domain=domain, location=d)
            onp.testing.assert_allclose(adj_q, g, atol=1e-14)


@pytest.mark.parametrize("periodic", [True, False])
def test_slope_on_a_sample_is_the_mean_of_the_one_sided_slopes(periodic):
    lattice = interp.Lattice((5,), (0.0,), (periodic,), 1.0)
    q = onp.array([0.0, 1.0, 4.0, 9.0, 16.0])
    s = onp.array([2.0, 2.5, 0.0, 4.0, 4.5, -0.5])
    slope = interp.slope(q, interp.stencil(lattice, (s,)))[0]
    if periodic:
        expected = [4.0, 5.0, (1.0 - 16.0) / 2, (0.0 - 9.0) / 2, -16.0, -16.0]
    else:  # ends: half the inner slope; beyond: clamped, 0
        expected = [4.0, 5.0, 0.5, 3.5, 0.0, 0.0]
    onp.testing.assert_allclose(slope, expected)


def _with_obstacle(name, ndim):
    base = domains.make(name, ndim)
    center = tuple(n * domains.H / 2 for n in base.grid.shape)
    ob = Obstacle("circle" if ndim == 2 else "sphere", center=center, radius=1.6 * domains.H)
    return Domain(base.grid, base.boundaries, [ob])


def _best_step_error(f, adjoint, hs=10.0 ** -onp.arange(2, 10)):
    """The smallest relative error of central differences over the steps ``hs``."""
    return min(abs((f(h) - f(-h)) / (2 * h) - adjoint) for h in hs) / abs(adjoint)


@pytest.mark.parametrize("scheme", [semi_lagrangian, maccormack], ids=lambda p: p.name)
@pytest.mark.parametrize("name, ndim", domains.ALL)
def test_at_zero_velocity_every_path_takes_the_same_derivative(name, ndim, scheme):
    """Zero velocity on the closed faces (or everywhere): departure points sit exactly on
    samples, at the interpolant's kinks. The fused and reference VJPs (and the JVP)
    agree to round-off there; for semi-Lagrangian advection they also agree with central
    differences (the mean of the one-sided slopes is what those measure). MacCormack's
    limiter at a local extremum at rest is not differentiable (no linear rule matches
    central differences in every direction); it takes the documented shares."""
    domain = _with_obstacle(name, ndim)
    rng = onp.random.default_rng(3)
    q = rng.standard_normal(domain.grid.shape)
    g = rng.standard_normal(domain.grid.shape)
    kw = dict(dt=0.1, domain=domain)
    v = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    for scale in (1.0, 0.0):
        u = tuple(scale * rng.standard_normal(s) * m for s, m in zip(domain.velocity_shapes, domain.open_faces))
        fused_q, fused_u = scheme.vjp_all(g, None, q, u, **kw)
        ref_q, ref_u = _on("reference", scheme.vjp_all, g, None, q, u, **kw)
        assert onp.abs(fused_q - ref_q).max() <= 1e-12
        assert max(onp.abs(a - b).max() for a, b in zip(fused_u, ref_u, strict=True)) <= 1e-12
        adjoint = sum(float((a * b).sum()) for a, b in zip(ref_u, v, strict=True))
        tangent = _on("reference", scheme.jvp_all, (None, v), None, q, u, **kw)
        assert abs(float((tangent * g).sum()) - adjoint) <= 1e-12 * abs(adjoint)
        if scheme is semi_lagrangian:
            def loss(h):
                return float((scheme.fun(q, tuple(a + h * b for a, b in zip(u, v)), **kw) * g).sum())
            assert _best_step_error(loss, adjoint) <= 1e-6


def _mirror_plume(scheme):
    """Smoke from a source rising in a closed box around a circle on its mirror axis."""
    grid = Grid((40, 40), (1.0, 1.0))
    domain = Domain(grid, Boundaries.closed(2, "no_slip"), [Obstacle("circle", center=(0.5, 0.5), radius=0.15)])
    x, y = grid.mesh()
    source = Source("density", (onp.abs(x - 0.5) < 0.1) & (y < 0.15), rate=1.0)
    sim = Simulation(domain, 0.02, Physics(buoyancy=(0.0, 1.0), viscosity=1e-3), advection=scheme,
                     pressure=PressureSolve(solver="cg", tolerance=1e-13), sources=[source])
    return sim, sim.initial_state()


@pytest.mark.parametrize("scheme", ["maccormack", "semi_lagrangian"])
def test_a_mirror_symmetric_plume_stays_symmetric(scheme):
    """Clamping to the departure cell's corners broke the symmetry by round-off-sized
    velocities choosing different cells (3.5e-11 after 40 steps, 3.5e-9 after 80)."""
    sim, state = _mirror_plume(scheme)
    for k in range(80):
        state = sim.step(state)
        asymmetry = onp.abs(state.density - state.density[::-1]).max()
        if k + 1 in (2, 40):
            assert asymmetry <= 1e-12, (k + 1, asymmetry)
    assert asymmetry <= 1e-8
    assert state.density.max() > 1.0  # the plume is still there
