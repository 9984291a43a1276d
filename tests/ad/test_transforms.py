"""The user-facing transforms: grad, value_and_grad, elementwise_grad, vjp, jvp,
checkpoint, Tape and Tensor.backward, on plain arrays and on nested containers."""

import dataclasses
import math

import numpy as onp
import pytest

import fluidgrad as fg
import fluidgrad.numpy as np
from fluidgrad.testing import check_grad, check_vjp


def test_seed_demo_backward():
    x = fg.tensor(onp.ones((2, 2)), requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    assert onp.array_equal(x.grad, onp.full((2, 2), 4.5))


def test_grad_of_tanh_value():
    assert abs(fg.grad(np.tanh)(1.0) - 0.41997434161402603) <= 1e-12


def _tanh_derivatives(t):
    """The first six derivatives of tanh as polynomials in t = tanh(x)."""
    s = 1 - t * t
    return [s, -2 * t * s, s * (6 * t * t - 2), 8 * t * s * (2 - 3 * t * t),
            s * (120 * t ** 4 - 120 * t * t + 16), -16 * t * s * (45 * t ** 4 - 60 * t * t + 17)]


def test_first_six_derivatives_of_tanh():
    expected = _tanh_derivatives(math.tanh(1.0))
    d = np.tanh
    for order in range(6):
        d = fg.grad(d)
        assert abs(d(1.0) - expected[order]) <= 1e-10 * max(1.0, abs(expected[order])), order


def test_elementwise_grad_nested_matches_analytic_on_arrays():
    x = onp.linspace(-2, 2, 7)
    t = onp.tanh(x)
    d2 = fg.elementwise_grad(fg.elementwise_grad(np.tanh))(x)
    onp.testing.assert_allclose(d2, -2 * t * (1 - t * t), rtol=1e-12, atol=1e-14)


def _loss(x, w):
    h = np.tanh(x @ w)
    return np.sum(h ** 2) / h.size + np.mean(np.exp(-x))


def test_all_interfaces_agree():
    rng = onp.random.default_rng(0)
    x0, w = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    g_grad = fg.grad(_loss)(x0, w)
    value, g_vag = fg.value_and_grad(_loss)(x0, w)
    out, vjp_fn = fg.vjp(lambda x: _loss(x, w), x0)
    (g_vjp,) = vjp_fn(1.0)
    with fg.Tape() as tape:
        x = tape.watch(x0)
        loss = _loss(x, w)
    tape.backward(loss)
    g_tape = x.grad
    xt = fg.tensor(x0, requires_grad=True)
    _loss(xt, w).backward()
    for g in (g_vag, g_vjp, g_tape, xt.grad):
        onp.testing.assert_allclose(g, g_grad, rtol=1e-14, atol=1e-14)
    assert value == pytest.approx(out, rel=1e-14)
    check_grad(_loss, x0, w, rtol=1e-6)


def test_argnums_tuple_and_has_aux():
    def f(a, b):
        return np.sum(a * b), {"note": "aux"}

    a, b = onp.arange(3.0), onp.arange(3.0) + 1
    (value, aux), (ga, gb) = fg.value_and_grad(f, (0, 1), has_aux=True)(a, b)
    assert value == 8.0 and aux == {"note": "aux"}
    onp.testing.assert_array_equal(ga, b)
    onp.testing.assert_array_equal(gb, a)
    g, aux = fg.grad(f, has_aux=True)(a, b)
    onp.testing.assert_array_equal(g, b)


def test_control_flow_loops_recursion_and_closures():
    def power_by_recursion(x, n):
        return 1.0 if n == 0 else x * power_by_recursion(x, n - 1)

    def f(x):
        total = 0.0
        for k in range(4):
            if k % 2:
                total = total + power_by_recursion(x, k)
            else:
                total = total - np.sin(x) * k
        scale = 3.0
        return (lambda y: scale * y)(total)

    x = 0.7
    expected = 3 * (1 + 3 * x ** 2 - 2 * math.cos(x))
    assert fg.grad(f)(x) == pytest.approx(expected, rel=1e-14)


@dataclasses.dataclass(frozen=True)
class State:
    density: object
    velocity: tuple
    step: int = 0


def test_gradients_of_nested_containers_keep_their_structure():
    rng = onp.random.default_rng(1)
    s = State(rng.standard_normal((4, 4)), (rng.standard_normal((5, 4)), rng.standard_normal((4, 5))), 3)

    def energy(state):
        u, v = state.velocity
        return np.sum(u ** 2) + 2 * np.sum(v ** 2) + np.sum(state.density) * state.step

    g = fg.grad(energy)(s)
    assert isinstance(g, State) and g.step is None
    onp.testing.assert_allclose(g.velocity[0], 2 * s.velocity[0])
    onp.testing.assert_allclose(g.velocity[1], 4 * s.velocity[1])
    onp.testing.assert_allclose(g.density, onp.full((4, 4), 3.0))
    out, dot = fg.jvp(energy, (s,), (State(onp.ones((4, 4)), (onp.zeros((5, 4)), onp.zeros((4, 5)))),))
    assert dot == pytest.approx(48.0)


def test_jvp_matches_vjp_on_a_composite_function():
    rng = onp.random.default_rng(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))

    def f(a, b):
        return np.stack([np.tanh(a @ b), np.max(a, axis=1) * np.roll(b, 1)[:3]], axis=-1)

    r = check_vjp(f, a, b)
    assert r.dot_product_error < 1e-12 and r.finite_difference_error < 1e-6


def test_checkpoint_gives_the_same_gradient_and_records_one_node():
    rng = onp.random.default_rng(3)
    w = rng.standard_normal((6, 6)) * 0.3

    def layer(x, w):
        return np.tanh(x @ w) + 0.1 * x

    segment = fg.checkpoint(layer)

    def plain(x, w):
        for _ in range(5):
            x = layer(x, w)
        return np.sum(x ** 2)

    def checkpointed(x, w):
        for _ in range(5):
            x = segment(x, w)
        return np.sum(x ** 2)

    x0 = rng.standard_normal((3, 6))
    g_plain = fg.grad(plain, (0, 1))(x0, w)
    g_ckpt = fg.grad(checkpointed, (0, 1))(x0, w)
    for a, b in zip(g_plain, g_ckpt, strict=True):
        onp.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)
    with fg.Tape() as tape:
        x = tape.watch(x0)
        for _ in range(5):
            x = segment(x, w)
    assert len(tape) == 5
    check_vjp(segment, x0, w)


def test_checkpoint_rejects_differentiable_closures():
    def f(x):
        return fg.checkpoint(lambda y: y * x)(np.sin(x)).sum()

    with pytest.raises(fg.DifferentiationError, match="not passed as an argument"):
        fg.grad(f)(onp.ones(3))


def test_tape_records_one_node_per_primitive_and_frees_residuals():
    with fg.Tape() as tape:
        x = tape.watch(onp.arange(4.0))
        y = np.sin(x) * 2 + 1
        loss = np.sum(y)
    assert len(tape) == 4
    tape.backward(loss)
    onp.testing.assert_allclose(x.grad, 2 * onp.cos(onp.arange(4.0)))
    assert all(node.args is not None and node.ans is not None for node in tape.nodes)
    with pytest.raises(fg.DifferentiationError, match="already freed"):
        tape.backward(loss)


def test_backward_accumulates_and_retain_graph():
    x = fg.tensor(onp.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    onp.testing.assert_array_equal(x.grad, [4.0, 8.0])
    x.zero_grad()
    assert x.grad is None


def test_tape_gradient_leaves_grad_untouched():
    with fg.Tape() as tape:
        x = tape.watch(onp.array([1.0, 3.0]))
        loss = np.sum(x ** 3)
    g = tape.gradient(loss, x)
    onp.testing.assert_allclose(g, [3.0, 27.0])
    assert x.grad is None


def test_stop_gradient_and_nondifferentiable_functions_pass_through():
    def f(x):
        return np.sum(x * np.stop_gradient(x)) + np.sum(np.floor(x)) + np.argmax(x)

    x = onp.array([0.5, 1.5, -2.0])
    onp.testing.assert_allclose(fg.grad(f)(x), x)


def test_array_of_tensors_and_linspace_are_differentiable():
    def f(a):
        v = np.array([a, 2 * a, a ** 2])
        return np.sum(v * np.linspace(0.0, a, 3))

    a = 1.5
    # f = a*0 + 2a*(a/2) + a^2*a = a^2 + a^3
    assert fg.grad(f)(a) == pytest.approx(2 * a + 3 * a ** 2, rel=1e-14)


def test_indexing_duplicates_add_up():
    idx = onp.array([0, 0, 2])
    g = fg.grad(lambda x: np.sum(x[idx] ** 2))(onp.array([1.0, 2.0, 3.0]))
    onp.testing.assert_array_equal(g, [4.0, 0.0, 6.0])


@pytest.mark.parametrize("dtype", [onp.float32, onp.float64])
def test_dtype_is_kept_end_to_end(dtype):
    x = onp.linspace(0.1, 1.0, 8).astype(dtype)
    w = onp.ones(8)  # float64 weights must not upcast a float32 gradient

    def f(x):
        y = np.exp(np.sin(x) * 2.0) + np.maximum(x, 0.5) / np.sqrt(x)
        return np.sum(np.pad(y, 1, mode="wrap") ** 2) + np.mean(y * w.astype(dtype))

    value, g = fg.value_and_grad(f)(x)
    assert g.dtype == dtype and onp.asarray(value).dtype == dtype
    _, dot = fg.jvp(f, (x,), (onp.ones_like(x),))
    assert onp.asarray(dot).dtype == dtype
    t = fg.tensor(x, requires_grad=True)
    f(t).backward()
    assert t.grad.dtype == dtype


def test_higher_order_mixed_partials():
    def f(x, y):
        return np.sin(x) * y ** 3

    dfdxdy = fg.grad(lambda y: fg.grad(f, 0)(0.3, y))(2.0)
    assert dfdxdy == pytest.approx(math.cos(0.3) * 3 * 4.0, rel=1e-14)


def test_forward_over_reverse_hessian_vector_product():
    rng = onp.random.default_rng(4)
    a = rng.standard_normal((4, 4))
    a = a @ a.T

    def f(x):
        return 0.5 * x @ a @ x

    x, v = rng.standard_normal(4), rng.standard_normal(4)
    _, hv = fg.jvp(fg.grad(f), (x,), (v,))
    onp.testing.assert_allclose(hv, a @ v, rtol=1e-12)


# -- errors -------------------------------------------------------------------

def test_error_integer_input():
    with pytest.raises(fg.DifferentiationError, match=r"argument 0 has dtype int64; only floating-point"):
        fg.grad(lambda x: np.sum(x * 1.0))(onp.arange(3))
    with pytest.raises(fg.DifferentiationError, match="only floating-point tensors"):
        fg.tensor(onp.arange(3), requires_grad=True)


def test_error_non_scalar_output():
    with pytest.raises(fg.DifferentiationError, match=r"scalar output, but it returned shape \(3,\)"):
        fg.grad(lambda x: x * 2)(onp.ones(3))


def test_error_primitive_without_vjp():
    @fg.primitive
    def no_rules(x):
        return x * 2

    with pytest.raises(fg.DifferentiationError, match="'no_rules' has no VJP rule for argument 0"):
        fg.grad(lambda x: np.sum(no_rules(x)))(onp.ones(3))
    with pytest.raises(fg.DifferentiationError, match="'no_rules' has no JVP rule"):
        fg.jvp(no_rules, (onp.ones(3),), (onp.ones(3),))
    with pytest.raises(fg.DifferentiationError, match="'sort' has no VJP rule"):
        fg.grad(lambda x: np.sum(np.sort(x)))(onp.ones(3))


def test_error_wrong_vjp_shape_names_the_primitive():
    bad = fg.primitive(lambda x: x * 2, name="bad_shape")
    bad.defvjp(lambda g, ans, x: g[:1])
    with pytest.raises(fg.DifferentiationError, match=r"VJP of 'bad_shape' returned shape \(1,\)"):
        fg.grad(lambda x: np.sum(bad(x)))(onp.ones(3))


def test_error_inplace_assignment():
    t = fg.tensor(onp.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="in-place assignment"):
        t[0] = 2.0


def test_user_primitive_with_rules_is_checked_by_check_vjp():
    @fg.primitive
    def cube(x):
        return x ** 3

    cube.defvjp(lambda g, ans, x: g * 3 * x ** 2)
    cube.defjvp(lambda d, ans, x: d * 3 * x ** 2)
    r = check_vjp(cube, onp.linspace(0.1, 1, 5))
    assert r.dot_product_error < 1e-13


@dataclasses.dataclass(frozen=True)
class Polar:
    radius: object
    angle: object


def test_primitive_with_container_input_several_outputs_and_static_kwargs():
    @fg.primitive
    def to_polar(xy, *, scale):
        x, y = xy
        return Polar(scale * onp.hypot(x, y), onp.arctan2(y, x))

    @to_polar.defvjp_all
    def _vjp(g, ans, xy, *, scale):
        x, y = xy
        r2 = x * x + y * y
        r = np.sqrt(r2)
        adj_x = g.radius * scale * x / r - g.angle * y / r2
        adj_y = g.radius * scale * y / r + g.angle * x / r2
        return ((adj_x, adj_y),)

    @to_polar.defjvp_all
    def _jvp(dots, ans, xy, *, scale):
        (x, y), (dx, dy) = xy, dots[0]
        r2 = x * x + y * y
        return Polar(scale * (x * dx + y * dy) / np.sqrt(r2), (x * dy - y * dx) / r2)

    rng = onp.random.default_rng(5)
    xy = (rng.uniform(0.5, 1, 6), rng.uniform(0.5, 1, 6))
    r = check_vjp(to_polar, xy, kwargs={"scale": 2.0})
    assert r.dot_product_error < 1e-13 and r.finite_difference_error < 1e-7

    def loss(xy):
        p = to_polar(xy, scale=2.0)
        return np.sum(p.angle)  # only one output used: the other cotangent is zero

    gx, gy = fg.grad(loss)(xy)
    onp.testing.assert_allclose(gx, -xy[1] / (xy[0] ** 2 + xy[1] ** 2), rtol=1e-13)
    with pytest.raises(fg.DifferentiationError, match="keyword argument 'scale' is static"):
        fg.grad(lambda s: np.sum(to_polar(xy, scale=s).radius))(2.0)
