"""fluidgrad.jax.wrap: JAX transformations through fluidgrad's adjoints (check_grads in
float64, agreement with value_and_grad, jit, value_and_grad, vmap, dtypes)."""

import numpy as onp
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import fluidgrad.numpy as fnp  # noqa: E402
import fluidgrad.jax as fgj  # noqa: E402

from bridge_problem import loss_of, problem, reference_gradient  # noqa: E402


def _j(tree):
    return tuple(jnp.asarray(a) for a in tree)


def test_check_grads_of_a_rollout_with_walls_an_obstacle_and_maccormack():
    rollout, velocity, force, weights = problem()
    wrapped = fgj.wrap(rollout)
    w = (jnp.asarray(weights[0]), _j(weights[1]))
    check_grads(lambda v, f: loss_of(wrapped(v, f), w, jnp.sum), (_j(velocity), _j(force)),
                order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("transform", ["eager", "jit"])
def test_gradients_agree_with_value_and_grad_to_1e_12(transform):
    rollout, velocity, force, weights = problem()
    value, (g_v, g_f) = reference_gradient(rollout, velocity, force, weights)
    wrapped = fgj.wrap(rollout)
    w = (jnp.asarray(weights[0]), _j(weights[1]))
    value_and_grad = jax.value_and_grad(lambda v, f: loss_of(wrapped(v, f), w, jnp.sum), argnums=(0, 1))
    if transform == "jit":
        value_and_grad = jax.jit(value_and_grad)
    got, (j_v, j_f) = value_and_grad(_j(velocity), _j(force))
    assert abs(float(got) - float(value)) <= 1e-12 * abs(float(value))
    for ours, ref in ((j_v, g_v), (j_f, g_f)):
        for a, b in zip(ours, ref):
            assert onp.abs(onp.asarray(a) - b).max() <= 1e-12 * onp.abs(b).max()


def test_vmap_of_grad_matches_a_loop():
    wrapped = fgj.wrap(lambda x, w: {"s": fnp.sum(fnp.tanh(x @ w) ** 2)})
    rng = onp.random.default_rng(1)
    xs, w = jnp.asarray(rng.standard_normal((4, 3, 5))), jnp.asarray(rng.standard_normal((5, 2)))
    grad = jax.grad(lambda x: wrapped(x, w)["s"])
    batched = jax.jit(jax.vmap(grad))(xs)
    ref = jax.grad(lambda x: jnp.sum(jnp.tanh(x @ w) ** 2))
    for i in range(4):
        assert onp.abs(onp.asarray(batched[i] - ref(xs[i]))).max() < 1e-14


def test_a_batch_axis_runs_member_by_member():
    wrapped = fgj.wrap(lambda x: fnp.sum(x ** 3), batched=True)
    xs = jnp.arange(6.0).reshape(2, 3)
    assert onp.allclose(onp.asarray(wrapped(xs)), [9.0, 216.0])
    assert onp.allclose(onp.asarray(jax.grad(lambda x: wrapped(x).sum())(xs)), 3 * onp.asarray(xs) ** 2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtypes_are_kept(dtype):
    rollout, velocity, force, _ = problem(dtype=onp.dtype(dtype))
    wrapped = fgj.wrap(rollout)
    v, f = tuple(a.astype(dtype) for a in _j(velocity)), tuple(a.astype(dtype) for a in _j(force))
    density, vel = jax.jit(wrapped)(v, f)
    assert density.dtype == dtype and all(u.dtype == dtype for u in vel)
    g = jax.grad(lambda v: jnp.sum(wrapped(v, f)[0]))(v)
    assert all(a.dtype == dtype and bool(jnp.isfinite(a).all()) for a in g)


def test_a_vjp_called_twice_gives_the_same_gradient_and_frees_its_tape():
    wrapped = fgj.wrap(lambda x: fnp.sin(x) * x)
    x = jnp.linspace(0.0, 1.0, 5)
    y, vjp = jax.vjp(wrapped, x)
    first, = vjp(jnp.ones_like(y))
    second, = vjp(jnp.ones_like(y))  # the tape was used: recomputed
    assert onp.array_equal(onp.asarray(first), onp.asarray(second))
    assert onp.allclose(onp.asarray(first), onp.sin(onp.asarray(x)) + onp.asarray(x) * onp.cos(onp.asarray(x)))
    assert wrapped.bridge.live_tapes() == 0


def test_vmap_of_a_rollout_matches_a_loop():
    rollout, velocity, force, _ = problem()
    wrapped = fgj.wrap(rollout)
    v = _j(velocity)
    batch = tuple(jnp.stack([u, 0.5 * u, -u]) for u in v)
    density, _ = jax.vmap(wrapped, in_axes=(0, None))(batch, _j(force))
    for i, scale in enumerate((1.0, 0.5, -1.0)):
        ref = rollout(tuple(scale * onp.asarray(u) for u in velocity), force)[0]
        assert onp.abs(onp.asarray(density[i]) - ref).max() < 1e-13
