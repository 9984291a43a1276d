"""fluidgrad inside PyTorch: :func:`wrap` turns a function fluidgrad can differentiate
into a torch operator whose backward is fluidgrad's VJP.

    step = fluidgrad.torch.wrap(lambda v: sim.step(state.replace(velocity=v)).velocity)
    u, v = step((u0, v0))            # torch tensors in and out, same tree structure
    (u ** 2).sum().backward()        # u0.grad, v0.grad: one fluidgrad backward pass

The operator is registered with ``torch.library.custom_op`` (backward by
``register_autograd``, shapes by ``register_fake``), so ``torch.compile`` keeps it in its
graph as one opaque node. CPU tensors reach ``fn`` as numpy arrays sharing their memory
(no copy, either way); CUDA tensors go to cupy by DLPack and stay on the device. The
dtype of every tensor is kept. Needs the extra ``fluidgrad[torch]``.
"""

from __future__ import annotations

import itertools
import re
from typing import List, Optional

import numpy as np
import torch
from torch._subclasses.fake_tensor import is_fake

from .ad.tree import unflatten
from .bridge import Bridge
from .errors import InputError

__all__ = ["wrap"]

_op_numbers = itertools.count()


def wrap(fn, *, batched=False, name=None):
    """``fn`` (pytrees of arrays in and out) as a function of torch tensors that torch
    autograd differentiates (reverse mode). A backward pass uses fluidgrad's tape up, freeing
    it as it goes; a second one (``retain_graph=True``) recomputes the forward pass first.
    Wrap once and call many times: each ``wrap`` registers an operator
    ``fluidgrad::<name>_<n>``.

    * Tensor leaves (and numpy arrays, made tensors) are ``fn``'s array inputs; other
      leaves (numbers, strings, None) are passed through as constants.
    * ``batched=True``: every tensor has a leading batch axis; ``fn`` runs once per
      member (each with its own tape) and the outputs are stacked along that axis.
    * Under ``torch.compile`` the operator is one node of the graph. The first trace of
      new input shapes runs ``fn`` once on zeros to learn its output shapes, unless an
      eager call already did; a new argument structure (tree, constants) is a graph break
      the first time, so ``fullgraph=True`` needs one call with that structure before.
    """
    bridge = Bridge(fn, batched=batched, name=name)
    op_name = f"fluidgrad::{_identifier(bridge.name)}_{next(_op_numbers)}"

    @torch.library.custom_op(op_name, mutates_args=())
    def forward(xs: List[torch.Tensor], spec: int, needs: List[bool], record: bool) -> List[torch.Tensor]:
        outs, handle = bridge.forward(spec, [_to_array(x) for x in xs], needs, record)
        return [_to_tensor(o) for o in outs] + [torch.tensor(handle, dtype=torch.int64)]

    @forward.register_fake
    def _(xs, spec, needs, record):
        device = xs[0].device if xs else torch.device("cpu")
        _, metas = bridge.outputs_of(spec, _metas(xs), _array_module(device))
        return ([torch.empty(shape, dtype=_torch_dtype(dtype), device=device) for shape, dtype in metas]
                + [torch.empty((), dtype=torch.int64)])

    @torch.library.custom_op(op_name + "_vjp", mutates_args=())
    def backward_op(handle: torch.Tensor, cotangents: List[Optional[torch.Tensor]], xs: List[torch.Tensor],
                    spec: int, needs: List[bool]) -> List[torch.Tensor]:
        grads = bridge.vjp(int(handle), [None if c is None else _to_array(c) for c in cotangents],
                           spec, [_to_array(x) for x in xs], needs)
        return [_to_tensor(g) for g, n in zip(grads, needs) if n]

    @backward_op.register_fake
    def _(handle, cotangents, xs, spec, needs):
        return [torch.empty_like(x) for x, n in zip(xs, needs) if n]

    def setup_context(ctx, inputs, output):
        xs, spec, needs, _ = inputs
        handle = output[-1]
        ctx.spec, ctx.needs = spec, needs
        # eager: an unused tape is freed with the autograd graph; compiled: by the bound
        ctx.lease = None if is_fake(handle) else bridge.own(int(handle))
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(handle, *xs)  # torch then refuses a backward after in-place edits

    def backward(ctx, grads):
        handle, *xs = ctx.saved_tensors
        computed = iter(backward_op(handle, list(grads[:-1]), xs, ctx.spec, ctx.needs))
        return [next(computed) if n else None for n in ctx.needs], None, None, None

    torch.library.register_autograd(op_name, backward, setup_context=setup_context)

    # torch.compile defers the side effects of the code it traces; a new argument
    # structure must be interned for real (a graph break, once per structure)
    register = torch.compiler.disable(bridge.register)

    def wrapped(*args, **kwargs):
        arrays, spec = bridge.split(args, kwargs, _is_array, register)
        xs = [a if isinstance(a, torch.Tensor) else torch.as_tensor(a) for a in arrays]
        needs = [bool(x.requires_grad) for x in xs]
        flat = forward(xs, spec, needs, torch.is_grad_enabled() and any(needs))
        treedef, _ = bridge.outputs_of(spec, _metas(xs))
        return unflatten(treedef, flat[:-1])

    wrapped.__name__ = wrapped.__qualname__ = bridge.name
    wrapped.__doc__ = getattr(fn, "__doc__", None)
    wrapped.bridge = bridge
    wrapped.operator = forward
    return wrapped


def _identifier(name: str) -> str:
    name = re.sub(r"\W+", "_", name).strip("_") or "fn"
    return name if not name[0].isdigit() else "fn_" + name


def _is_array(leaf) -> bool:
    return isinstance(leaf, (torch.Tensor, np.ndarray))


def _to_array(t: torch.Tensor):
    """The numpy (CPU) or cupy (CUDA) array sharing ``t``'s memory."""
    t = t.detach()
    if t.device.type == "cpu":
        try:
            return t.resolve_conj().resolve_neg().numpy()
        except TypeError:
            raise InputError(f"fluidgrad.torch: tensors of dtype {t.dtype} have no numpy "
                             f"equivalent; use float32 or float64") from None
    if t.device.type == "cuda":
        import cupy
        return cupy.from_dlpack(t)
    raise InputError(f"fluidgrad.torch: tensors on device {t.device} are not supported (cpu or cuda)")


def _to_tensor(a) -> torch.Tensor:
    """The tensor sharing the numpy or cupy array ``a``'s memory."""
    if isinstance(a, np.ndarray):
        if not a.flags.writeable or any(s < 0 for s in a.strides):
            a = a.copy()
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


def _metas(xs):
    return [(tuple(int(n) for n in x.shape), _numpy_dtype(x.dtype)) for x in xs]


_DTYPES = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64",
           torch.complex64: "complex64", torch.complex128: "complex128", torch.bool: "bool",
           torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.int64: "int64",
           torch.uint8: "uint8"}
_TORCH_DTYPES = {name: dtype for dtype, name in _DTYPES.items()}


def _numpy_dtype(dtype: torch.dtype) -> str:
    """The numpy dtype name of a torch dtype (a table: this runs under fake tensor modes)."""
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise InputError(f"fluidgrad.torch: tensors of dtype {dtype} have no numpy "
                         f"equivalent; use float32 or float64") from None


def _torch_dtype(dtype: str) -> torch.dtype:
    return _TORCH_DTYPES[dtype]


def _array_module(device: torch.device):
    if device.type == "cuda":
        import cupy
        return cupy
    return np
