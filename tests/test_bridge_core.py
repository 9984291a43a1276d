"""The framework-neutral bridge (fluidgrad.bridge) and the promise that the core never
imports torch or jax."""

import subprocess
import sys

import numpy as onp
import pytest

import fluidgrad.numpy as fnp
from fluidgrad.bridge import MAX_UNOWNED_TAPES, Bridge
from fluidgrad.errors import InputError


def test_the_core_imports_neither_torch_nor_jax():
    code = ("import sys, fluidgrad, fluidgrad.cli, fluidgrad.bridge\n"
            "s = fluidgrad.load_scenario('taylor_green'); sim = s.simulation(); sim.step(s.initial_state(sim))\n"
            "print(sorted(m for m in ('torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_forward_and_vjp_on_flat_arrays():
    bridge = Bridge(lambda x, opts: {"y": fnp.sin(x) * opts["k"]})
    x = onp.linspace(0.0, 1.0, 4)
    arrays, spec = bridge.split((x, {"k": 2.0}), lambda leaf: isinstance(leaf, onp.ndarray))
    assert len(arrays) == 1
    (y,), handle = bridge.forward(spec, arrays, [True], record=True)
    assert onp.allclose(y, 2 * onp.sin(x))
    (g,) = bridge.vjp(handle, [onp.ones(4)], spec, arrays, [True])
    assert onp.allclose(g, 2 * onp.cos(x))
    assert bridge.live_tapes() == 0  # unowned: used once


def test_unowned_tapes_are_bounded_and_a_dropped_one_recomputes():
    calls = []
    bridge = Bridge(lambda x: (calls.append(1), x * x)[1])
    x = onp.arange(3.0)
    arrays, spec = bridge.split((x,), lambda leaf: True)
    first = bridge.forward(spec, arrays, [True], record=True)[1]
    for _ in range(MAX_UNOWNED_TAPES):
        bridge.forward(spec, arrays, [True], record=True)
    assert bridge.live_tapes() == MAX_UNOWNED_TAPES
    n = len(calls)
    (g,) = bridge.vjp(first, [onp.ones(3)], spec, arrays, [True])
    assert len(calls) == n + 1 and onp.allclose(g, 2 * x)


def test_unhashable_constants_are_a_one_line_error():
    bridge = Bridge(lambda x, extra: x)
    with pytest.raises(InputError, match="set"):
        bridge.split((onp.ones(2), [{1, 2}]), lambda leaf: isinstance(leaf, onp.ndarray))


def test_batches_need_one_leading_size():
    bridge = Bridge(lambda x, y: x + y, batched=True)
    arrays, spec = bridge.split((onp.ones((2, 3)), onp.ones((3, 3))), lambda leaf: True)
    with pytest.raises(InputError, match="leading batch size"):
        bridge.forward(spec, arrays, [False, False], record=False)
