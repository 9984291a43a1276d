"""Cross-backend agreement on an NVIDIA GPU (cupy) against the numpy backend: every
kernel's forward and VJP, a checkpointed rollout gradient, and the smoke_target
optimization. Skipped cleanly without cupy and a GPU."""

import numpy as onp
import pytest

import fluidgrad as fg
from fluidgrad.ad.tree import flatten, tree_map
from fluidgrad.backend import to_numpy

from ad.test_primitives import PRIMITIVES, _random_like
from ops.kernel_cases import CASES as KERNEL_CASES

pytestmark = pytest.mark.gpu

TOLERANCE = {onp.float64: 1e-10, onp.float32: 1e-4}
PARAMS = [pytest.param(name, k, dtype, id=f"{name}-{case.id or k}-{dtype.__name__}")
          for name in sorted(KERNEL_CASES) if name != "adjoint_probe"
          for k, case in enumerate(KERNEL_CASES[name]) for dtype in (onp.float64, onp.float32)]


def _to(tree, xp, dtype):
    return tree_map(lambda x: xp.asarray(x, dtype=dtype) if isinstance(x, onp.ndarray) and x.dtype.kind == "f"
                    else x, tree)


def _agree(gpu, cpu, tol):
    for a, b in zip(flatten(gpu)[0], flatten(cpu)[0], strict=True):
        if hasattr(b, "shape") and getattr(b, "dtype", None) is not None and b.dtype.kind == "f":
            a = to_numpy(a)
            scale = max(float(onp.abs(b).max()), 1e-30)
            assert float(onp.abs(a - b).max()) <= tol * scale


@pytest.mark.parametrize("name, k, dtype", PARAMS)
def test_kernel_forward_and_vjp_agree_with_numpy(name, k, dtype):
    import cupy
    prim, case = PRIMITIVES[name], KERNEL_CASES[name][k]
    args = case.make(onp.random.default_rng(k))
    cpu_args, gpu_args = _to(list(args), onp, dtype), _to(list(args), cupy, dtype)
    cpu = prim(*cpu_args, **case.kwargs)
    gpu = prim(*gpu_args, **case.kwargs)
    _agree(gpu, cpu, TOLERANCE[dtype])
    g = _to(_random_like(cpu, onp.random.default_rng(1)), onp, dtype)
    argnums = tuple(i for i, a in enumerate(cpu_args) if any(getattr(x, "dtype", onp.int8).kind == "f"
                                                             for x in flatten(a)[0]))
    adj_cpu = prim.apply_vjp(g, cpu, cpu_args, case.kwargs, argnums)
    adj_gpu = prim.apply_vjp(_to(g, cupy, dtype), gpu, gpu_args, case.kwargs, argnums)
    for i in argnums:
        _agree(adj_gpu[i], adj_cpu[i], TOLERANCE[dtype])


def test_checkpointed_rollout_gradient_agrees():
    scenario = fg.load_scenario("smoke_plume", {"grid.resolution": [24, 32]})
    grads = []
    for backend in ("numpy", "cupy"):
        sim = scenario.simulation(backend=backend)
        s0 = sim.initial_state(density=onp.random.default_rng(0).random(scenario.grid.shape))
        grads.append(fg.grad(lambda d: fg.numpy.sum(sim.rollout(s0.replace(density=d), 20, snapshots=3).density ** 2))(
            s0.density))
    onp.testing.assert_allclose(to_numpy(grads[1]), grads[0], rtol=1e-10, atol=1e-12)


def test_smoke_target_reaches_the_same_loss_on_the_gpu():
    from fluidgrad.optimize import make_optimizer, run
    scenario = fg.load_scenario("smoke_target")
    losses = []
    for backend in ("numpy", "cupy"):
        problem = scenario.problem(scenario.simulation(backend=backend))
        losses.append(run(problem, make_optimizer("lbfgs"), 10).final_loss)
    assert abs(losses[1] - losses[0]) <= 1e-4 * abs(losses[0])


def test_cli_run_on_the_gpu(tmp_path):
    from fluidgrad import cli
    assert cli.main(["run", "karman_vortex", "--backend", "cupy", "--steps", "10", "--set", "grid.resolution=[96,24]",
                     "--out", str(tmp_path), "--quiet"]) == 0
