"""fluidgrad.torch.wrap: torch autograd through fluidgrad's adjoints (float64 gradcheck,
agreement with value_and_grad, memory shared with numpy, dtypes, backward semantics,
batches, torch.compile, a model that trains)."""

import numpy as onp
import pytest

torch = pytest.importorskip("torch")

import fluidgrad as fg  # noqa: E402
import fluidgrad.numpy as fnp  # noqa: E402
import fluidgrad.torch as fgt  # noqa: E402
from fluidgrad.errors import InputError  # noqa: E402

from bridge_problem import loss_of, problem, reference_gradient  # noqa: E402


def _t(tree, requires_grad=False):
    return tuple(torch.from_numpy(onp.array(a)).requires_grad_(requires_grad) for a in tree)


def test_gradcheck_of_a_rollout_with_walls_an_obstacle_and_maccormack():
    rollout, velocity, force, _ = problem()
    wrapped = fgt.wrap(rollout)
    n_v = len(velocity)

    def flat(*leaves):  # gradcheck wants tensors in, tensors out
        density, vel = wrapped(leaves[:n_v], leaves[n_v:])
        return (density, *vel)

    inputs = _t(velocity, True) + _t(force, True)
    # fast mode: vᵀJu for random u, v against central differences (the full Jacobian,
    # 356 inputs × 258 outputs, takes ~1 min; it passes too)
    assert torch.autograd.gradcheck(flat, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_gradients_agree_with_value_and_grad_to_1e_12():
    rollout, velocity, force, weights = problem()
    value, (g_v, g_f) = reference_gradient(rollout, velocity, force, weights)
    wrapped = fgt.wrap(rollout)
    v, f = _t(velocity, True), _t(force, True)
    w = (torch.from_numpy(weights[0]), _t(weights[1]))
    loss = loss_of(wrapped(v, f), w, torch.sum)
    loss.backward()
    assert abs(loss.item() - float(value)) <= 1e-12 * abs(float(value))
    for tensors, arrays in ((v, g_v), (f, g_f)):
        for t, g in zip(tensors, arrays):
            assert onp.abs(t.grad.numpy() - g).max() <= 1e-12 * onp.abs(g).max()


def test_one_forward_and_one_fluidgrad_vjp_per_backward():
    calls = {"forward": 0}
    sin = fg.primitive(onp.sin)
    sin.defvjp(lambda g, ans, x: (calls.__setitem__("vjp", calls.get("vjp", 0) + 1), g * onp.cos(x))[1])

    def fn(x):
        calls["forward"] += 1
        return sin(x) * 2.0

    wrapped = fgt.wrap(fn)
    x = torch.linspace(0, 1, 7, dtype=torch.float64, requires_grad=True)
    wrapped(x).sum().backward()
    assert calls == {"forward": 1, "vjp": 1}
    assert torch.allclose(x.grad, 2 * torch.cos(x.detach()), rtol=0, atol=1e-15)


def test_a_second_backward_needs_retain_graph_as_in_torch():
    wrapped = fgt.wrap(lambda x: fnp.sum(x ** 3))
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = wrapped(x)
    y.backward(retain_graph=True)
    y.backward()  # the tape was used up: recomputed
    assert torch.equal(x.grad, torch.tensor([6.0, 24.0], dtype=torch.float64))  # accumulated twice
    y = wrapped(x)
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_the_tape_is_freed_with_the_autograd_graph_and_not_kept_without_grad():
    wrapped = fgt.wrap(lambda x: x * 2.0)
    x = torch.ones(3, requires_grad=True)
    y = wrapped(x)
    assert wrapped.bridge.live_tapes() == 1
    y.sum().backward()
    assert wrapped.bridge.live_tapes() == 0  # used up by the backward pass
    unused = wrapped(x)
    assert wrapped.bridge.live_tapes() == 1
    del unused  # never backwarded: freed with its graph
    assert wrapped.bridge.live_tapes() == 0
    with torch.no_grad():
        wrapped(x)
    wrapped(x.detach())
    assert wrapped.bridge.live_tapes() == 0


def test_cpu_tensors_share_memory_with_numpy_both_ways():
    seen = {}

    def fn(x):
        seen["in"] = fg.to_numpy(x).__array_interface__["data"][0]
        out = fnp.sin(x)
        seen["out"] = fg.to_numpy(out)
        return out

    x = torch.randn(256, 256, requires_grad=True)
    y = fgt.wrap(fn)(x)
    assert seen["in"] == x.data_ptr()
    assert y.data_ptr() == seen["out"].__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_are_kept_forward_and_backward(dtype):
    rollout, velocity, force, _ = problem(dtype=onp.float32 if dtype == torch.float32 else onp.float64)
    v = tuple(t.to(dtype).requires_grad_() for t in _t(velocity))
    f = tuple(t.to(dtype) for t in _t(force))
    density, vel = fgt.wrap(rollout)(v, f)
    assert density.dtype == dtype and all(u.dtype == dtype for u in vel)
    density.sum().backward()
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in v)


def test_outputs_that_alias_inputs_are_copied_and_constants_pass_through():
    wrapped = fgt.wrap(lambda x, options: {"same": x, "scaled": x * options["scale"]})
    x = torch.arange(4.0, requires_grad=True)
    out = wrapped(x, {"scale": 3.0})
    assert out["same"].data_ptr() != x.data_ptr() and torch.equal(out["same"], x.detach())
    (out["same"].sum() + out["scaled"].sum()).backward()
    assert torch.equal(x.grad, torch.full((4,), 4.0))


def test_a_batch_axis_runs_member_by_member():
    wrapped = fgt.wrap(lambda x, w: fnp.sum(fnp.tanh(x @ w)), batched=True)
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, 2, dtype=torch.float64, requires_grad=True)
    y = wrapped(x, w)
    assert y.shape == (5,)
    y.sum().backward()
    ref_x, ref_w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    torch.tanh(ref_x @ ref_w).sum().backward()
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-14) and torch.allclose(w.grad, ref_w.grad, atol=1e-14)


def test_unsupported_dtype_is_a_one_line_error():
    with pytest.raises(InputError, match="bfloat16"):
        fgt.wrap(lambda x: x * 2.0)(torch.ones(3, dtype=torch.bfloat16))


def test_torch_compile_keeps_the_operator_in_one_graph():
    layer = torch.nn.Linear(6, 6).double()
    wrapped = fgt.wrap(lambda h: fnp.sum(fnp.tanh(h) ** 2, axis=-1))

    def model(inp):
        return wrapped(layer(inp)).sum()

    inp = torch.randn(4, 6, dtype=torch.float64)
    layer.zero_grad()
    torch.compile(model, backend="aot_eager")(inp).backward()  # a new structure: one graph break
    compiled = layer.weight.grad.clone()
    layer.zero_grad()
    model(inp).backward()
    assert torch.allclose(layer.weight.grad, compiled, rtol=1e-13, atol=0)
    layer.zero_grad()
    torch.compile(model, fullgraph=True, backend="aot_eager")(inp).backward()  # now one graph
    assert torch.allclose(layer.weight.grad, compiled, rtol=1e-13, atol=0)
    assert wrapped.bridge.live_tapes() <= 1


def test_a_network_with_a_fluidgrad_layer_trains():
    torch.manual_seed(0)
    rollout, velocity, force, weights = problem()
    wrapped = fgt.wrap(rollout)
    shapes = [u.shape for u in velocity]
    net = torch.nn.Linear(2, sum(int(onp.prod(s)) for s in shapes)).double()
    v = _t(velocity)
    target = torch.from_numpy(rollout(velocity, force)[0])  # reachable: the control ``force``
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        flat = net(torch.tensor([1.0, 0.0], dtype=torch.float64))
        parts = torch.split(flat, [int(onp.prod(s)) for s in shapes])
        control = tuple(p.reshape(s) for p, s in zip(parts, shapes))
        density, _ = wrapped(v, control)
        loss = ((density - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses


@pytest.mark.gpu
def test_cuda_tensors_stay_on_the_device_and_match_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    wrapped = fgt.wrap(lambda x: fnp.sum(fnp.sin(x) ** 2))
    x = torch.randn(64, 64, dtype=torch.float64, device="cuda", requires_grad=True)
    y = wrapped(x)
    assert y.device.type == "cuda"
    y.backward()
    assert x.grad.device.type == "cuda"
    x_cpu = x.detach().cpu().requires_grad_()
    wrapped(x_cpu).backward()
    assert torch.allclose(x.grad.cpu(), x_cpu.grad, rtol=1e-12, atol=1e-14)


def test_integer_inputs_and_keyword_arguments():
    wrapped = fgt.wrap(lambda x, idx, scale=1.0: {"y": fnp.sum(x[idx] ** 2) * scale, "n": idx * 2})
    x = torch.arange(5.0, requires_grad=True)
    out = wrapped(x, torch.tensor([0, 2]), scale=3.0)
    out["y"].backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, 12.0, 0.0, 0.0]))
    assert torch.equal(out["n"], torch.tensor([0, 4]))


@pytest.mark.gpu
def test_a_network_with_a_fluidgrad_layer_trains_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.simulation import Simulation
    torch.manual_seed(0)
    grid = Grid((32, 32), (1.0, 1.0))
    sim = Simulation(Domain(grid, Boundaries.periodic(2)), dt=0.02, backend="cupy", dtype=onp.float32)
    x, y = grid.mesh()
    density = torch.from_numpy(onp.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.01).astype(onp.float32)).cuda()
    target = torch.roll(density, 6, dims=0)
    state = sim.initial_state()
    rollout = fgt.wrap(lambda d, f: sim.rollout(state.replace(density=d), 20, controls=f,
                                                force=lambda k, c: c).density)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, padding=2, padding_mode="circular"), torch.nn.Tanh(),
                              torch.nn.Conv2d(8, 2, 5, padding=2, padding_mode="circular")).cuda()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        fx, fy = net(density[None, None])[0]
        out = rollout(density, (fx, fy))
        assert out.device.type == "cuda"
        loss = ((out - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_fluidgrad_threads_leave_torchs_thread_count_alone():
    """numba's OpenMP layer resets the OpenMP thread count when it starts; torch shares it."""
    import subprocess
    import sys
    code = ("import torch; torch.set_num_threads(1); assert torch.get_num_threads() == 1\n"
            "import fluidgrad\n"
            "from fluidgrad.ops import compiled\n"
            "compiled.set_threads(2)\n"
            "s = fluidgrad.load_scenario('taylor_green'); sim = s.simulation(); sim.step(s.initial_state(sim))\n"
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
