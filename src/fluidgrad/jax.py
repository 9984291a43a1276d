"""fluidgrad inside JAX: :func:`wrap` turns a function fluidgrad can differentiate into
a JAX function whose VJP is fluidgrad's.

    step = fluidgrad.jax.wrap(lambda v: sim.step(state.replace(velocity=v)).velocity)
    loss = lambda v: jnp.sum(step(v)[0] ** 2)
    jax.jit(jax.value_and_grad(loss))((u0, v0))

A ``jax.custom_vjp`` whose forward and VJP are ``jax.pure_callback`` calls into numpy
(``vmap_method="sequential"``: under ``jax.vmap`` the members run one after the other),
so it works under ``jax.jit``, ``jax.grad``, ``jax.value_and_grad`` and ``jax.vmap``.
Called on concrete arrays (no transformation tracing them) it runs directly. The dtype
of every array is kept (float64 needs ``jax_enable_x64``). Needs the extra
``fluidgrad[jax]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .ad.tree import unflatten
from .ad.core import is_differentiable as differentiable
from .bridge import Bridge

__all__ = ["wrap"]


def wrap(fn, *, batched=False, name=None):
    """``fn`` (pytrees of arrays in and out) as a function of JAX arrays, differentiable
    by ``jax.grad``/``jax.vjp`` (reverse mode) and usable under ``jax.jit`` and ``jax.vmap``.

    * Array leaves (JAX or numpy) are ``fn``'s inputs; other leaves (numbers, strings,
      None) are constants.
    * ``batched=True``: every array has a leading batch axis; ``fn`` runs once per member.
    * Traced with new input shapes before any concrete call, ``fn`` runs once on zeros
      to learn its output shapes (``pure_callback`` needs them up front).
    * The tape of a forward pass is replayed by its first VJP; a second VJP through the
      same residuals (``jax.vjp``'s function called twice) recomputes the forward pass.
    """
    bridge = Bridge(fn, batched=batched, name=name)
    functions = {}

    def wrapped(*args, **kwargs):
        arrays, spec = bridge.split(args, kwargs, _is_array)
        xs = [jnp.asarray(a) for a in arrays]
        if spec not in functions:
            functions[spec] = _custom_vjp(bridge, spec)
        flat = functions[spec](*xs)
        treedef, _ = bridge.outputs_of(spec, _metas(xs))
        return unflatten(treedef, list(flat))

    wrapped.__name__ = wrapped.__qualname__ = bridge.name
    wrapped.__doc__ = getattr(fn, "__doc__", None)
    wrapped.bridge = bridge
    return wrapped


def _custom_vjp(bridge, spec):
    """The ``jax.custom_vjp`` of ``bridge.fn`` for the argument structure ``spec``."""

    def output_structs(xs):
        _, metas = bridge.outputs_of(spec, _metas(xs))
        return [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in metas]

    def run(*xs):
        return bridge.forward(spec, xs, [False] * len(xs), record=False)[0]

    def run_recorded(*xs):
        flat, handle = bridge.forward(spec, xs, [differentiable(x) for x in xs], record=True)
        return (*flat, np.asarray(handle, dtype=np.int32))

    @jax.custom_vjp
    def function(*xs):
        return tuple(_call(run, lambda: output_structs(xs), xs))

    def forward(*xs):
        structs = lambda: output_structs(xs) + [jax.ShapeDtypeStruct((), np.int32)]  # noqa: E731
        *flat, handle = _call(run_recorded, structs, xs)
        return tuple(flat), (handle, xs)

    def backward(residuals, cotangents):
        handle, xs = residuals
        needs = [differentiable(x) for x in xs]
        used = [i for i, c in enumerate(cotangents) if differentiable(c)]

        def vjp(handle, *args):
            cts, arrays = args[:len(used)], args[len(used):]
            full = [None] * len(cotangents)
            for i, c in zip(used, cts):
                full[i] = c
            return [g for g in bridge.vjp(int(handle), full, spec, list(arrays), needs) if g is not None]

        structs = lambda: [jax.ShapeDtypeStruct(x.shape, x.dtype) for x, n in zip(xs, needs) if n]  # noqa: E731
        grads = iter(_call(vjp, structs, [handle, *[cotangents[i] for i in used], *xs]))
        return tuple(next(grads) if n else None for n in needs)

    function.defvjp(forward, backward)
    return function


def _call(callback, structs, args):
    """``callback`` on numpy arrays: directly when ``args`` are concrete, else through
    ``jax.pure_callback`` with the result shapes ``structs()``."""
    if not any(isinstance(a, jax.core.Tracer) for a in args):
        return [jnp.asarray(o) for o in callback(*[np.asarray(a) for a in args])]

    def on_host(*arrays):  # numpy arrays (or, under vmap's sequential method, JAX arrays)
        return [np.asarray(o) for o in callback(*[np.asarray(a) for a in arrays])]

    return jax.pure_callback(on_host, structs(), *args, vmap_method="sequential")


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray))


def _metas(xs):
    return [(tuple(x.shape), str(np.dtype(x.dtype))) for x in xs]
