"""Primitives, traces and the reverse (tape) and forward (tangent) modes.

A *primitive* is a function with hand-written derivative rules: a VJP per argument
(``adj_x = Jᵀ g``) or one for all arguments, and a JVP (``dot_out = J dot_x``).
Calling a primitive on :class:`~fluidgrad.ad.tensor.Tensor` values hands the call to
the Tensor's *trace*:

* a reverse trace (a tape) records one :class:`Node` per primitive call, holding the
  inputs, the output and the rule; :func:`backward_pass` replays the nodes in reverse,
  accumulating cotangents with ``+=`` and freeing each node's residuals once used;
* a forward trace pushes a tangent through the JVP rule at once, with no tape.

Traces nest (each has a level; a call is handled by the highest level among its
arguments, which unwraps its own Tensors and calls the primitive again), so rules
written with differentiable operations give derivatives of any order.
"""

from __future__ import annotations

import functools
import itertools

import numpy as _np

from ..backend import raw, xp_of  # noqa: F401 (raw: the unwrapping of a Tensor, re-exported)
from ..errors import DifferentiationError, InputError  # noqa: F401 (DifferentiationError re-exported)
from .tensor import Tensor
from .tree import flatten, flatten_as, kind_of, unflatten


_node_ids = itertools.count()
_anomaly = {"on": False}


class detect_anomaly:
    """Within ``with detect_anomaly():`` every primitive's output (forward) and every
    adjoint (backward) is checked for NaN/Inf; the first one raises a
    ``FloatingPointError`` naming the primitive."""

    def __enter__(self):
        self._previous = _anomaly["on"]
        _anomaly["on"] = True
        return self

    def __exit__(self, *exc):
        _anomaly["on"] = self._previous
        return False


def _all_finite(tree) -> bool:
    for leaf in flatten(tree)[0]:
        while type(leaf) is Tensor:
            leaf = leaf._fg_value
        if getattr(getattr(leaf, "dtype", None), "kind", None) in ("f", "c") or isinstance(leaf, float):
            if not bool(xp_of(leaf).isfinite(leaf).all()):
                return False
    return True
_trace_levels = itertools.count(1)

#: fluidgrad's primitives with derivative rules, by name (the test suite checks each one).
REGISTRY: dict[str, "Primitive"] = {}


def is_differentiable(x) -> bool:
    """True for floating-point (or complex) arrays, numpy scalars, Python floats and Tensors."""
    if type(x) is Tensor:
        return True
    if isinstance(x, (float, complex)):
        return True
    return getattr(getattr(x, "dtype", None), "kind", None) in ("f", "c")


def zeros_like_value(x):
    """A zero of the same shape and dtype as ``x`` (a raw array or scalar)."""
    while type(x) is Tensor:
        x = x._fg_value
    if isinstance(x, (float, complex)):
        return type(x)(0)
    if type(x) is Stripped:
        return x.xp.zeros(x.shape, dtype=x.dtype)
    return xp_of(x).zeros_like(x)


def _add(a, b):
    """``a + b`` for cotangents, differentiable when either is a Tensor."""
    return a + b


# ---------------------------------------------------------------------------
# primitives


class Primitive:
    """A function with hand-written VJP and JVP rules; one tape node per call.

    Rules receive the primal output ``ans`` and all positional arguments, plus the
    keyword-only arguments, which are static (never differentiated)::

        vjp rule:  rule(g, ans, *args, **kwargs) -> adjoint of one argument
        jvp rule:  rule(dot, ans, *args, **kwargs) -> contribution to dot_ans

    A VJP rule may declare what it reads (``needs``: argument positions and/or
    ``"ans"``); the tape then keeps only those arrays and replaces the others by a
    :class:`Stripped` stand-in that has just ``shape`` and ``dtype``. Without a
    declaration everything is kept.
    """

    def __init__(self, fun, name=None, *, linear=False, register=False):
        self.fun = fun
        self.name = name or getattr(fun, "__name__", repr(fun))
        self.linear = linear
        self.vjps: dict[int, object] = {}
        self.vjp_all = None
        self.jvps: dict[int, object] = {}
        self.jvp_all = None
        self.transpose_argnum = None
        self.offload = None  # a store with save(array) -> handle, handle.load(): inputs kept off memory
        #: vjp_all also gets ``traced=``: the ``(argnum, leaf index or -1)`` of each input
        #: that was a Tensor of the tape (a recomputation re-traces exactly those)
        self.vjp_traced = False
        self.needs: dict[int, frozenset] | None = {}  # argnum -> what its VJP reads
        self._keep_cache: dict = {}
        self._register = register
        functools.update_wrapper(self, fun, updated=())
        if linear:  # linear in argument 0: the tangent map is the function itself
            self.defjvp(self._linear_jvp)

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __get__(self, obj, objtype=None):  # so a primitive can serve as a method
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        if kwargs:
            kwargs = _check_static(self, kwargs)
        top = _top_trace(args)
        if top is None:
            return self.fun(*args, **kwargs)
        return top.process(self, args, kwargs)

    # -- rule registration -------------------------------------------------

    def _register_rule(self):
        if self._register:
            other = REGISTRY.get(self.name)
            if other is not None and other is not self:
                raise InputError(f"two primitives named {self.name!r}")
            REGISTRY[self.name] = self

    def defvjp(self, *rules, argnums=None, needs=None):
        """Register ``rules[k]`` as the VJP for argument ``argnums[k]`` (default 0, 1, ...).
        ``needs[k]`` lists what ``rules[k]`` reads: argument positions, ``"*args"`` (all
        of them) and/or ``"ans"``."""
        argnums = range(len(rules)) if argnums is None else argnums
        for k, (i, rule) in enumerate(zip(argnums, rules)):
            if rule is not None:
                self.vjps[i] = rule
                self._set_needs(i, None if needs is None else needs[k])
        self._register_rule()
        return self

    def defvjp_all(self, rule=None, *, needs=None):
        """Register one rule ``rule(g, ans, *args, **kw) -> tuple of adjoints`` (None = zero),
        reading what ``needs`` lists (default: everything). Usable as a decorator."""
        if rule is None:
            return lambda r: self.defvjp_all(r, needs=needs)
        self.vjp_all = rule
        self.needs = None if needs is None else {"all": frozenset(needs)}
        self._keep_cache.clear()
        self._register_rule()
        return rule

    def _set_needs(self, argnum, needs):
        if self.needs is not None and needs is not None:
            self.needs[argnum] = frozenset(needs)
        elif self.needs is not None:
            self.needs = None  # a rule without a declaration: keep everything
        self._keep_cache.clear()

    def kept(self, argnums):
        """What the tape must keep for the VJPs of ``argnums`` (None = everything)."""
        keep = self._keep_cache.get(argnums, _MISSING)
        if keep is _MISSING:
            if self.needs is None:
                keep = None
            elif "all" in self.needs:
                keep = self.needs["all"]
            else:
                keep = frozenset().union(*[self.needs.get(i, frozenset()) for i in argnums])
                if any(i not in self.needs for i in argnums):
                    keep = None
            self._keep_cache[argnums] = keep
        return keep

    def defjvp(self, *rules, argnums=None):
        """Register ``rules[k]`` as the JVP contribution of argument ``argnums[k]``."""
        argnums = range(len(rules)) if argnums is None else argnums
        for i, rule in zip(argnums, rules):
            if rule is not None:
                self.jvps[i] = rule
        return self

    def defjvp_all(self, rule):
        """Register ``rule(dots, ans, *args, **kw) -> dot_ans``; ``dots[i]`` is None for
        arguments without a tangent."""
        self.jvp_all = rule
        return rule

    def deftranspose(self, transpose, argnum=0):
        """For a primitive linear in argument ``argnum``: its transpose
        ``transpose(g, *args, **kw)`` is the VJP (``adj_x = Aᵀ g``)."""
        self.transpose_argnum = argnum
        self.vjps[argnum] = lambda g, ans, *args, **kw: transpose(g, *args, **kw)
        self._set_needs(argnum, ())  # a linear map's transpose needs only the shape of its input
        self._register_rule()
        return transpose

    def _linear_jvp(self, dot, ans, *args, **kwargs):
        return self(dot, *args[1:], **kwargs)

    @property
    def has_vjp(self) -> bool:
        return self.vjp_all is not None or bool(self.vjps)

    # -- rule application --------------------------------------------------

    def apply_vjp(self, g, ans, args, kwargs, argnums, traced=None):
        """Adjoints of the arguments ``argnums``, as a dict argnum -> adjoint (or None);
        ``traced``: the node's traced inputs, for a rule that asks (``vjp_traced``)."""
        if self.vjp_all is not None:
            adjs = (self.vjp_all(g, ans, *args, traced=traced, **kwargs) if self.vjp_traced
                    else self.vjp_all(g, ans, *args, **kwargs))
            if not isinstance(adjs, (tuple, list)) or len(adjs) != len(args):
                raise DifferentiationError(
                    f"VJP of {self.name!r} must return one adjoint per positional argument "
                    f"({len(args)}), got {type(adjs).__name__}")
            return {i: adjs[i] for i in argnums}
        out = {}
        for i in argnums:
            rule = self.vjps.get(i)
            if rule is None:
                raise DifferentiationError(
                    f"primitive {self.name!r} has no VJP rule for argument {i}; it cannot be "
                    f"differentiated in reverse mode")
            out[i] = rule(g, ans, *args, **kwargs)
        return out

    def apply_jvp(self, dots, ans, args, kwargs):
        """``dot_ans``, the tangent of the output, from the tangents ``dots`` of the inputs."""
        if self.jvp_all is not None:
            return self.jvp_all(dots, ans, *args, **kwargs)
        total = None
        for i, dot in enumerate(dots):
            if dot is None:
                continue
            rule = self.jvps.get(i)
            if rule is None:
                raise DifferentiationError(
                    f"primitive {self.name!r} has no JVP rule for argument {i}; it cannot be "
                    f"differentiated in forward mode")
            part = rule(dot, ans, *args, **kwargs)
            total = part if total is None else _tree_add(total, part)
        return total


def _tree_add(a, b):
    if kind_of(a) is None:
        return _add(a, b)
    la, td = flatten(a)
    lb = flatten_as(td, b)
    return unflatten(td, [x if y is None else y if x is None else _add(x, y) for x, y in zip(la, lb)])


def primitive(fun=None, *, name=None, linear=False, register=False):
    """Decorator: turn ``fun`` into a :class:`Primitive` (then add rules with ``.defvjp``).
    ``register=True`` lists it in :data:`REGISTRY` (fluidgrad's own primitives are all
    registered, and the test suite checks every registered one)."""
    if fun is None:
        return lambda f: Primitive(f, name, linear=linear, register=register)
    return Primitive(fun, name, linear=linear, register=register)


def differentiable_primitives() -> dict[str, Primitive]:
    """All registered primitives that have a VJP rule, by name."""
    return {name: p for name, p in REGISTRY.items() if p.has_vjp}


def _check_static(prim, kwargs):
    for key, value in kwargs.items():
        if type(value) is Tensor:
            if value._trace.level >= 0:
                raise DifferentiationError(
                    f"{prim.name}: keyword argument {key!r} is static and cannot be "
                    f"differentiated; pass the value positionally")
            kwargs = dict(kwargs)
            kwargs[key] = value._fg_value
    return kwargs


# ---------------------------------------------------------------------------
# traces


def _leaves_of(a):
    """The leaves of the container ``a`` (a tuple of leaves is its own list of leaves)."""
    if type(a) is tuple:
        for c in a:
            if type(c) is not Tensor and kind_of(c) is not None:
                return flatten(a)[0]
        return a
    return flatten(a)[0]


def _top_trace(args):
    """The trace of highest level among the Tensors in ``args`` (None if there are none)."""
    top = None
    for a in args:
        if type(a) is Tensor:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
        elif kind_of(a) is not None:
            for leaf in _leaves_of(a):
                if type(leaf) is Tensor:
                    t = leaf._trace
                    if top is None or t.level > top.level:
                        top = t
    return top


def _unbox_args(trace, args):
    """``args`` with this trace's Tensors replaced by their values, and a list of
    ``(argnum, leaf index or -1, tensor)`` for each Tensor replaced."""
    new_args = list(args)
    found = []
    for i, a in enumerate(args):
        if type(a) is Tensor:
            if a._trace is trace:
                new_args[i] = a._fg_value
                found.append((i, -1, a))
            elif a._trace.level < 0:  # a constant Tensor: just its value
                new_args[i] = a._fg_value
        elif kind_of(a) is not None:
            leaves, treedef = flatten(a)
            changed = False
            for j, leaf in enumerate(leaves):
                if type(leaf) is Tensor and (leaf._trace is trace or leaf._trace.level < 0):
                    leaves[j] = leaf._fg_value
                    if leaf._trace is trace:
                        found.append((i, j, leaf))
                    changed = True
            if changed:
                new_args[i] = unflatten(treedef, leaves)
    return new_args, found


def _check_no_leak(trace, prim, leaf):
    if type(leaf) is Tensor and leaf._trace.level >= trace.level:
        raise DifferentiationError(
            f"{prim.name}: the output depends on a differentiable value that was not passed "
            f"as an argument (a closure?); pass it as an argument instead")


class Trace:
    """Base class: a level and a way to process primitive calls."""

    level = 0

    def process(self, prim, args, kwargs):
        raise NotImplementedError


class ConstantTrace(Trace):
    """Tensors that do not require gradients: results are wrapped, nothing is recorded."""

    level = -1

    def process(self, prim, args, kwargs):
        new_args, _ = _unbox_args(self, args)
        ans = prim(*new_args, **kwargs)
        leaves, treedef = flatten(ans)
        return unflatten(treedef, [Tensor(x, self) if hasattr(x, "dtype") else x for x in leaves])


class Node:
    """One recorded primitive call: rule, inputs, output and links to the input nodes.

    A leaf node (``prim is None``) stands for an input variable. ``parents`` lists
    ``(argnum, leaf index or -1, parent node, parent output index)``; ``out_grads`` holds
    the cotangents accumulated so far for each output leaf.
    """

    __slots__ = ("prim", "args", "kwargs", "ans", "parents", "argnums", "out_treedef", "n_out",
                 "out_grads", "id", "tensor")

    def __init__(self, prim, args, kwargs, ans, parents, out_treedef, n_out):
        self.prim = prim
        self.args = args
        self.kwargs = kwargs
        self.ans = ans
        self.parents = parents
        self.argnums = tuple(dict.fromkeys(p[0] for p in parents))  # inputs needing adjoints
        self.out_treedef = out_treedef
        self.n_out = n_out
        self.out_grads = None
        self.id = next(_node_ids)
        self.tensor = None

    def __repr__(self):
        return f"<node {self.prim.name if self.prim else 'leaf'} #{self.id}>"


_FREED = object()
_MISSING = object()


class Stripped:
    """Stands in on the tape for an input the VJP does not read: only shape and dtype."""

    __slots__ = ("shape", "dtype", "xp")

    def __init__(self, value):
        self.shape = value.shape
        self.dtype = value.dtype
        self.xp = _np if type(value) is _np.ndarray else xp_of(value)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<value not kept on the tape: shape {self.shape}, {self.dtype}>"


def _is_float_array(x):
    return getattr(getattr(x, "dtype", None), "kind", None) in ("f", "c") and hasattr(x, "shape")


def _strip_unneeded(prim, args, ans, argnums):
    """The inputs and output to store on a node: those the VJP will not read are
    replaced by their shape and dtype, so the arrays can be freed early."""
    if prim.offload is not None:  # keep the float inputs in the store (e.g. on disk) instead
        store = prim.offload
        args = [unflatten(td, [store.save(x) if _is_float_array(x) else x for x in leaves])
                for leaves, td in (flatten(a) for a in args)]
        return args, _strip_tree(ans)
    keep = prim.kept(argnums)
    if keep is None:
        return args, ans
    stored = args if "*args" in keep else [a if i in keep else _strip_tree(a) for i, a in enumerate(args)]
    if "ans" not in keep:
        ans = _strip_tree(ans)
    return stored, ans


def _strip_tree(tree):
    """``tree`` with every float array replaced by its shape and dtype."""
    if type(tree) is tuple:  # the common case (velocities), without flattening
        return tuple([_strip_tree(x) for x in tree])
    if kind_of(tree) is None:
        return Stripped(tree) if _is_float_array(tree) else tree
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [Stripped(x) if _is_float_array(x) else x for x in leaves])


class ReverseTrace(Trace):
    """Records nodes for reverse mode. With ``nodes`` a list, it is a tape that keeps
    them in call order; with ``nodes=None`` (the eager, PyTorch-style trace) the graph is
    found from the output by following parents."""

    #: whether leaf nodes point back to their Tensor (to fill ``.grad``); functional
    #: transforms read gradients from the nodes and avoid that reference cycle, so
    #: their inputs are freed as soon as the transform is done
    fills_grad = False

    def __init__(self, level=None, nodes=()):
        self.level = next(_trace_levels) if level is None else level
        self.nodes = [] if nodes == () else nodes
        self.leaf_nodes = [] if self.nodes is not None else None

    def new_leaf(self, value):
        """A Tensor on this trace that is an input variable."""
        node = Node(None, None, None, None, (), None, 1)
        t = Tensor(value, self, node, 0)
        if self.fills_grad:
            node.tensor = t
        if self.leaf_nodes is not None:
            self.leaf_nodes.append(node)
        return t

    def process(self, prim, args, kwargs):
        new_args, found = _unbox_args(self, args)
        ans = prim(*new_args, **kwargs)
        if _anomaly["on"] and not _all_finite(ans):
            raise FloatingPointError(f"forward pass: {prim.name} produced NaN or Inf")
        parents = tuple((i, j, t._node, t._index) for i, j, t in found)
        if kind_of(ans) is None:
            _check_no_leak(self, prim, ans)
            if not is_differentiable(ans):
                return ans
            node = Node(prim, new_args, kwargs, ans, parents, None, 1)
            node.args, node.ans = _strip_unneeded(prim, new_args, ans, node.argnums)
            out = Tensor(ans, self, node, 0)
        else:
            leaves, treedef = flatten(ans)
            node = Node(prim, new_args, kwargs, ans, parents, treedef, len(leaves))
            node.args, node.ans = _strip_unneeded(prim, new_args, ans, node.argnums)
            boxed = []
            for k, leaf in enumerate(leaves):
                _check_no_leak(self, prim, leaf)
                boxed.append(Tensor(leaf, self, node, k) if is_differentiable(leaf) else leaf)
            out = unflatten(treedef, boxed)
        if self.nodes is not None:
            self.nodes.append(node)
        return out


class ForwardTrace(Trace):
    """Forward mode: each Tensor carries a tangent, pushed through JVP rules at once."""

    def __init__(self):
        self.level = next(_trace_levels)

    def new_input(self, value, tangent):
        return Tensor(value, self, tangent=tangent)

    def process(self, prim, args, kwargs):
        new_args, found = _unbox_args(self, args)
        dots = [None] * len(args)
        by_arg: dict[int, list] = {}
        for i, j, t in found:
            if j < 0:
                dots[i] = t._tangent
            else:
                by_arg.setdefault(i, []).append((j, t._tangent))
        for i, pairs in by_arg.items():
            leaves, treedef = flatten(new_args[i])
            tangents = [zeros_like_value(x) if is_differentiable(x) else None for x in leaves]
            for j, dot in pairs:
                tangents[j] = dot
            dots[i] = unflatten(treedef, tangents)
        ans = prim(*new_args, **kwargs)
        dot_ans = prim.apply_jvp(dots, ans, new_args, kwargs)
        if kind_of(ans) is None:
            _check_no_leak(self, prim, ans)
            return ans if dot_ans is None else Tensor(ans, self, tangent=dot_ans)
        leaves, treedef = flatten(ans)
        dot_leaves = flatten_as(treedef, dot_ans)
        out = []
        for leaf, dot in zip(leaves, dot_leaves):
            _check_no_leak(self, prim, leaf)
            out.append(leaf if dot is None or not is_differentiable(leaf)
                       else Tensor(leaf, self, tangent=dot))
        return unflatten(treedef, out)


CONSTANT = ConstantTrace()
EAGER = ReverseTrace(level=0, nodes=None)
EAGER.fills_grad = True


# ---------------------------------------------------------------------------
# the backward pass


def _accumulate(node, index, g):
    grads = node.out_grads
    if grads is None:
        grads = node.out_grads = [None] * node.n_out
    current = grads[index]
    grads[index] = g if current is None else _add(current, g)


def _shape(x):
    return getattr(x, "shape", ())


def _cotangent(node):
    grads = node.out_grads
    if node.out_treedef is None:
        return grads[0]
    leaves = flatten(node.ans)[0]
    return unflatten(node.out_treedef, [
        g if g is not None else (zeros_like_value(x) if is_differentiable(x) else None)
        for g, x in zip(grads, leaves)])


def _graph_order(roots):
    """Nodes reachable from ``roots``, newest first (a reverse topological order)."""
    seen = set()
    stack = list(roots)
    nodes = []
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        nodes.append(node)
        for _, _, parent, _ in node.parents:
            if parent.id not in seen:
                stack.append(parent)
    nodes.sort(key=lambda n: n.id, reverse=True)
    return nodes


def backward_pass(trace, seeds, retain_graph=False):
    """Propagate the cotangents ``seeds`` (pairs of output Tensor and cotangent) back
    through ``trace``; returns the leaf nodes reached (their ``out_grads`` hold the
    gradients)."""
    for tensor, g in seeds:
        _accumulate(tensor._node, tensor._index, g)
    if trace.nodes is not None:
        order = reversed(trace.nodes)
        leaves = trace.leaf_nodes
    else:
        order = _graph_order([t._node for t, _ in seeds])
        leaves = [n for n in order if n.prim is None]
    for node in order:
        if node.out_grads is None or node.prim is None:
            continue
        if node.ans is _FREED:
            raise DifferentiationError(
                "backward through a graph whose residuals were already freed by an earlier "
                "backward(); pass retain_graph=True to the first call")
        g = _cotangent(node)
        node.out_grads = None
        args = node.args
        if node.prim.offload is not None:
            args = [unflatten(td, [x.load() if hasattr(x, "load") else x for x in leaves])
                    for leaves, td in (flatten(a) for a in args)]
        traced = frozenset((i, j) for i, j, _, _ in node.parents) if node.prim.vjp_traced else None
        adjs = node.prim.apply_vjp(g, node.ans, args, node.kwargs, node.argnums, traced)
        if _anomaly["on"] and not _all_finite(list(adjs.values())):
            raise FloatingPointError(f"backward pass: the VJP of {node.prim.name} produced NaN or Inf")
        flat_adjs = {}
        for i, j, parent, index in node.parents:
            adj = adjs[i]
            if adj is None:
                continue
            arg = args[i]
            if j >= 0:
                if i not in flat_adjs:
                    arg_leaves, arg_def = flatten(arg)
                    flat_adjs[i] = (arg_leaves, flatten_as(arg_def, adj))
                arg, adj = flat_adjs[i][0][j], flat_adjs[i][1][j]
                if adj is None:
                    continue
            if _shape(adj) != _shape(arg):
                raise DifferentiationError(
                    f"VJP of {node.prim.name!r} returned shape {_shape(adj)} for argument {i} "
                    f"of shape {_shape(arg)}")
            _accumulate(parent, index, adj)
        if not retain_graph:
            node.args = node.kwargs = node.ans = _FREED
    return [n for n in leaves if n.out_grads is not None]
