"""Function transforms: ``vjp``, ``grad``, ``value_and_grad``, ``elementwise_grad``,
``jvp`` and ``checkpoint``; the ``Tape`` context manager and ``tensor``.

Arguments may be nested containers of arrays (tuples, dicts, dataclasses); gradients
come back in the same structure. Python control flow inside a differentiated function
just works: the tape records what actually ran.
"""

from __future__ import annotations

import functools

from ..backend import xp_of
from .core import (CONSTANT, EAGER, DifferentiationError, ForwardTrace, Primitive,
                   ReverseTrace, backward_pass, is_differentiable, zeros_like_value)
from .core import raw as _raw
from .tensor import Tensor
from .tree import flatten, flatten_as, tree_map, unflatten


def _dtype_name(x):
    x = _raw(x)
    dtype = getattr(x, "dtype", None)
    return str(dtype) if dtype is not None else type(x).__name__


def _check_differentiable(x, what):
    leaves = flatten(x)[0]
    if not any(is_differentiable(leaf) for leaf in leaves):
        kinds = ", ".join(sorted({_dtype_name(leaf) for leaf in leaves})) or "nothing"
        raise DifferentiationError(
            f"{what} has dtype {kinds}; only floating-point (or complex) inputs can be "
            f"differentiated (cast it with .astype(float))")


def _box(trace, x, only=None):
    """``x`` with each floating-point leaf replaced by an input variable of ``trace``
    (with ``only``, a set of leaf indices, just those leaves)."""
    leaves, treedef = flatten(x)
    boxed = [trace.new_leaf(leaf) if is_differentiable(leaf) and (only is None or j in only) else leaf
             for j, leaf in enumerate(leaves)]
    return unflatten(treedef, boxed), boxed


def _unbox_output(trace, out):
    """Output leaves; this trace's Tensors replaced by their values."""
    leaves, treedef = flatten(out)
    values = [leaf._fg_value if type(leaf) is Tensor and leaf._trace is trace else leaf
              for leaf in leaves]
    return leaves, values, treedef


def _input_grads(boxed_leaves, originals, treedef, only=None):
    grads = []
    for j, (b, orig) in enumerate(zip(boxed_leaves, flatten(originals)[0])):
        if type(b) is Tensor and b._node.out_grads is not None:
            grads.append(b._node.out_grads[0])
            b._node.out_grads = None
        elif is_differentiable(orig) and (only is None or j in only):
            grads.append(zeros_like_value(orig))
        else:
            grads.append(None)
    return unflatten(treedef, grads)


def _vjp(fun, primals, retain_graph, only=None):
    """With ``only`` (one set of leaf indices, or None for all, per primal) just those
    leaves are differentiated."""
    trace = ReverseTrace()
    only = [None] * len(primals) if only is None else only
    boxed_args, boxed_leaves = [], []
    for p, o in zip(primals, only):
        b, leaves = _box(trace, p, o)
        boxed_args.append(b)
        boxed_leaves.append(leaves)
    out = fun(*boxed_args)
    out_leaves, values, out_treedef = _unbox_output(trace, out)

    def vjp_fn(cotangent):
        ct_leaves = flatten_as(out_treedef, cotangent) if out_treedef is not None else [cotangent]
        seeds = [(t, ct) for t, ct in zip(out_leaves, ct_leaves)
                 if type(t) is Tensor and t._trace is trace and ct is not None]
        backward_pass(trace, seeds, retain_graph)
        return tuple(_input_grads(leaves, p, flatten(p)[1], o) for leaves, p, o in zip(boxed_leaves, primals, only))

    return unflatten(out_treedef, values), vjp_fn


def vjp(fun, *primals):
    """``(fun(*primals), vjp_fn)``; ``vjp_fn(g)`` is the tuple ``(gᵀ ∂fun/∂primal_i)_i``,
    one entry per primal in the primal's structure. ``vjp_fn`` may be called repeatedly."""
    return _vjp(fun, primals, retain_graph=True)


def _argnums_tuple(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _one_cotangent(value):
    value = _raw(value)
    if isinstance(value, (float, complex)):
        return type(value)(1)
    return xp_of(value).ones_like(value)


def _restrict(fun, argnums, args, kwargs, name):
    """``fun`` as a function of the arguments ``argnums`` only (checked to be
    differentiable), the others fixed to ``args``; and those arguments' values."""
    nums = _argnums_tuple(argnums)
    for i in nums:
        if i >= len(args):
            raise DifferentiationError(f"{name}: argnums {i} but only {len(args)} positional "
                                       f"arguments were given")
        _check_differentiable(args[i], f"{name}: argument {i}")

    def partial(*diff_args):
        full = list(args)
        for i, a in zip(nums, diff_args):
            full[i] = a
        return fun(*full, **kwargs)

    return partial, [args[i] for i in nums]


def _value_and_grad(fun, argnums, has_aux, args, kwargs, name):
    partial, primals = _restrict(fun, argnums, args, kwargs, name)
    holder = {}

    def main_output(*diff_args):
        out = partial(*diff_args)
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise DifferentiationError(f"{name} with has_aux=True needs the function to "
                                           f"return a pair (output, aux)")
            out, holder["aux"] = out
        shape = getattr(out, "shape", ())
        if shape != ():
            raise DifferentiationError(
                f"{name} needs a function with a scalar output, but it returned shape {shape}; "
                f"use elementwise_grad or vjp for non-scalar outputs")
        if flatten(out)[1] is not None:
            raise DifferentiationError(f"{name} needs a function with a scalar output, but it "
                                       f"returned a {type(out).__name__}")
        return out

    value, vjp_fn = _vjp(main_output, primals, retain_graph=False)
    grads = vjp_fn(_one_cotangent(value))
    grads = grads[0] if isinstance(argnums, int) else grads
    if has_aux:
        return (value, holder["aux"]), grads
    return value, grads


def value_and_grad(fun, argnums=0, has_aux=False):
    """``f -> (f(x), ∇f(x))`` for a scalar-valued ``f``, the gradient with respect to
    ``argnums`` as in :func:`grad` (default 0: the first positional argument only). With
    ``has_aux=True`` ``f`` returns ``(value, aux)`` and the result is ``((value, aux), grad)``."""
    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        return _value_and_grad(fun, argnums, has_aux, args, kwargs, "value_and_grad")
    return value_and_grad_fun


def grad(fun, argnums=0, has_aux=False):
    """``f -> ∇f``: the gradient of a scalar-valued ``f`` with respect to ``argnums``
    (an int, or a tuple for a tuple of gradients); nests for higher derivatives.

    By default (``argnums=0``) only the **first** positional argument is differentiated
    and the others are held fixed: ``grad(f)(x, w)`` is ``∂f/∂x``; ``grad(f, argnums=1)``
    gives ``∂f/∂w`` and ``grad(f, argnums=(0, 1))`` the pair."""
    @functools.wraps(fun)
    def grad_fun(*args, **kwargs):
        value, g = _value_and_grad(fun, argnums, has_aux, args, kwargs, "grad")
        return (g, value[1]) if has_aux else g
    return grad_fun


def elementwise_grad(fun, argnums=0):
    """``f -> x ↦ ones ᵀ ∂f/∂x``: for elementwise ``f`` this is the derivative at each
    point (the sum of the Jacobian's rows in general). ``x`` is the argument ``argnums``
    (default 0: the first)."""
    @functools.wraps(fun)
    def elementwise_grad_fun(*args, **kwargs):
        partial, primals = _restrict(fun, argnums, args, kwargs, "elementwise_grad")
        out, vjp_fn = _vjp(partial, primals, retain_graph=False)
        grads = vjp_fn(tree_map(_one_cotangent, out))
        return grads[0] if isinstance(argnums, int) else grads
    return elementwise_grad_fun


def jvp(fun, primals, tangents):
    """Forward mode: ``(fun(*primals), J·tangents)`` with no tape."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise DifferentiationError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    trace = ForwardTrace()
    boxed = []
    for p, t in zip(primals, tangents):
        leaves, treedef = flatten(p)
        t_leaves = flatten_as(treedef, t) if treedef is not None else [t]
        items = []
        for leaf, dot in zip(leaves, t_leaves):
            if dot is not None and is_differentiable(leaf):
                if getattr(_raw(dot), "shape", ()) != getattr(_raw(leaf), "shape", ()):
                    raise DifferentiationError(
                        f"jvp: tangent of shape {getattr(dot, 'shape', ())} for a primal of "
                        f"shape {getattr(leaf, 'shape', ())}")
                items.append(trace.new_input(leaf, dot))
            else:
                items.append(leaf)
        boxed.append(unflatten(treedef, items))
    out = fun(*boxed)
    leaves, treedef = flatten(out)
    values, dots = [], []
    for leaf in leaves:
        if type(leaf) is Tensor and leaf._trace is trace:
            values.append(leaf._fg_value)
            dots.append(leaf._tangent)
        else:
            values.append(leaf)
            dots.append(zeros_like_value(leaf) if is_differentiable(leaf) else None)
    return unflatten(treedef, values), unflatten(treedef, dots)


def stop_gradient(x):
    """``x`` (any tree) with every Tensor replaced by its value: no derivative flows."""
    return tree_map(_raw, x)


def recomputing_primitive(fun, name=None, register=False):
    """``fun`` as a single primitive whose VJP re-runs ``fun`` under a local tape and
    whose JVP pushes tangents through it: exact derivatives, one tape node, and only the
    inputs (and output) kept. Keyword arguments are static."""
    name = name or getattr(fun, "__name__", "fun")
    prim = Primitive(lambda *args, **kwargs: fun(*args, **kwargs), name, register=register)

    @prim.defvjp_all(needs=("*args",))
    def _recompute_vjp(g, ans, *args, traced=None, **kwargs):
        # re-traced are only the inputs that were traced when it first ran: a constant
        # stays a constant (a zero coefficient boxed would switch its term on, see
        # Simulation.step), and no cotangent is computed for it
        only = None if traced is None else [
            None if (i, -1) in traced else {j for k, j in traced if k == i} for i in range(len(args))]
        _, vjp_fn = _vjp(functools.partial(fun, **kwargs), args, retain_graph=False, only=only)
        grads = vjp_fn(g)
        return tuple(gr if any(is_differentiable(x) for x in flatten(a)[0]) else None
                     for gr, a in zip(grads, args))

    prim.vjp_traced = True

    @prim.defjvp_all
    def _forward_jvp(dots, ans, *args, **kwargs):
        tangents = [tree_map(zeros_like_value, a) if d is None else d for d, a in zip(dots, args)]
        return jvp(functools.partial(fun, **kwargs), args, tangents)[1]

    return prim


def checkpoint(fun):
    """``fun`` as one tape node that keeps only its inputs and output; the backward pass
    re-runs ``fun`` under a local tape. Trades one extra forward for memory.
    Keyword arguments are static; values to differentiate must be positional."""
    segment = recomputing_primitive(fun, f"checkpoint({getattr(fun, '__name__', 'fun')})")

    @functools.wraps(fun)
    def checkpointed(*args, **kwargs):
        return segment(*args, **kwargs)

    return checkpointed


# ---------------------------------------------------------------------------
# the PyTorch-style and warp-style interfaces

_recording: list[ReverseTrace] = []


def tensor(data, requires_grad=False, dtype=None):
    """A Tensor holding ``data`` (a numpy or cupy array, or anything numpy accepts).
    With ``requires_grad=True`` it is an input whose ``.grad`` is filled by
    ``backward()``; it is recorded on the innermost active ``Tape`` if there is one."""
    data = _raw(data)
    xp = xp_of(data)
    value = xp.asarray(data, dtype=dtype)
    if not requires_grad:
        return Tensor(value, CONSTANT)
    if value.dtype.kind not in "fc":
        raise DifferentiationError(f"only floating-point tensors can require gradients, "
                                   f"got dtype {value.dtype}")
    trace = _recording[-1] if _recording else EAGER
    return trace.new_leaf(value)


class Tape(ReverseTrace):
    """A tape: ``with Tape() as tape: x = tape.watch(a); loss = f(x)`` then
    ``tape.backward(loss)`` fills ``x.grad``. One node per primitive call, in call
    order (``len(tape)``); ``backward`` replays them in reverse."""

    fills_grad = True

    def __init__(self):
        super().__init__()

    def __enter__(self):
        _recording.append(self)
        return self

    def __exit__(self, *exc):
        _recording.remove(self)
        return False

    def __len__(self):
        return len(self.nodes)

    def watch(self, x):
        """``x`` (an array or a tree of arrays) as input variables recorded on this tape."""
        _check_differentiable(x, "Tape.watch: the value")
        return _box(self, x)[0]

    def backward(self, loss, gradient=None, retain_graph=False):
        """Accumulate d(loss)/d(input) into ``.grad`` of every watched input."""
        if type(loss) is not Tensor or loss._trace is not self:
            raise DifferentiationError("Tape.backward: the loss was not computed from "
                                       "values watched by this tape")
        if gradient is None:
            if loss.shape != ():
                raise DifferentiationError(f"Tape.backward needs a gradient for a non-scalar "
                                           f"loss of shape {loss.shape}")
            gradient = _one_cotangent(loss)
        for leaf in backward_pass(self, [(loss, _raw(gradient))], retain_graph):
            g = leaf.out_grads[0]
            leaf.out_grads = None
            t = leaf.tensor
            t.grad = g if t.grad is None else t.grad + g

    def gradient(self, loss, sources):
        """d(loss)/d(sources) for a tree of watched Tensors, without touching ``.grad``."""
        saved = [(leaf.tensor, leaf.tensor.grad) for leaf in self.leaf_nodes]
        for t, _ in saved:
            t.grad = None
        self.backward(loss, retain_graph=True)
        out = tree_map(lambda s: s.grad if s.grad is not None else zeros_like_value(s), sources)
        for t, g in saved:
            t.grad = g
        return out

    def zero(self):
        """Reset ``.grad`` of every watched input."""
        for leaf in self.leaf_nodes:
            leaf.tensor.grad = None

    def reset(self):
        """Forget all recorded nodes (the watched inputs stay)."""
        self.nodes.clear()
