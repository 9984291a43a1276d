"""The framework-neutral half of the PyTorch and JAX bridges (:mod:`fluidgrad.torch`,
:mod:`fluidgrad.jax`).

A framework calls a wrapped ``fn(*trees)`` with the flat list of its array leaves, as
numpy (or cupy) arrays that share the framework's memory; the trees' structure and their
other leaves (Python numbers, strings, None) are a *spec*, interned to an int so that it
can cross the framework's operator boundary. :meth:`Bridge.forward` runs ``fn`` on
fluidgrad's tape and keeps the VJP closure under an int *handle*; :meth:`Bridge.vjp`
replays it, ``(∂fn/∂x)ᵀ ḡ``: one backward pass over the tape, no forward recomputed, each
node's residuals freed as soon as they are used (as ``value_and_grad`` does). A second
backward pass through the same handle (torch's ``retain_graph=True``, a JAX VJP called
twice) recomputes the forward pass first.

With ``batched=True`` every array leaf carries a leading batch axis and ``fn`` runs once
per member (one tape each); the outputs are stacked along a new leading axis.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

from .ad.transforms import _vjp  # the VJP whose backward pass frees residuals as it goes
from .ad.tree import flatten, unflatten
from .backend import xp_of
from .errors import InputError

#: tapes no framework object owns (JAX residuals, torch.compile graphs): at most this
#: many wait for their backward pass before the oldest is dropped (a later backward
#: through a dropped tape recomputes its forward pass).
MAX_UNOWNED_TAPES = 64


class Bridge:
    """``fn`` on flat lists of arrays, with its tapes kept under int handles."""

    def __init__(self, fn, *, batched=False, name=None):
        if not callable(fn):
            raise InputError(f"wrap: expected a function, got {type(fn).__name__}")
        self.fn = fn
        self.batched = bool(batched)
        self.name = name or getattr(fn, "__name__", "fn")
        self._specs: list = []             # spec id -> (in treedef, leaf kinds, static leaves)
        self._spec_ids: dict = {}
        self._outputs: dict = {}           # (spec id, input metas) -> (out treedef, out metas)
        self._tapes: dict = {}             # handle -> (out treedef, [vjp_fn per member])
        self._unowned: OrderedDict = OrderedDict()
        self._handles = itertools.count()
        self._lock = threading.RLock()  # re-entrant: a lease's __del__ may run inside (GC)

    # -- trees <-> flat arrays ---------------------------------------------------------

    def split(self, args, kwargs, is_array, register=None):
        """``(array leaves, spec id)`` of the arguments ``args`` and ``kwargs``; a new
        structure is interned by ``register`` (default :meth:`register`)."""
        # keyword arguments join the tree only when given (torch.compile, tracing this,
        # finds the interned structure of plain positional calls, not of an empty dict)
        leaves, treedef = flatten((tuple(args), dict(kwargs)) if kwargs else tuple(args))
        arrays, statics, kinds = [], [], []
        for leaf in leaves:
            if is_array(leaf):
                arrays.append(leaf)
                kinds.append(True)
            else:
                statics.append(leaf)
                kinds.append(False)
        key = (treedef, tuple(kinds), tuple(statics), bool(kwargs))
        try:
            spec = self._spec_ids.get(key)
        except TypeError:
            kind = next(type(s).__name__ for s in statics if not _hashable(s))
            raise InputError(f"{self.name}: an argument leaf of type {kind} is neither an array "
                             f"nor a hashable constant; pass it as a tensor") from None
        if spec is None:
            spec = (register or self.register)(key)
        return arrays, spec

    def register(self, key) -> int:
        """The id of the argument structure ``key`` (interned)."""
        with self._lock:
            if key not in self._spec_ids:
                self._spec_ids[key] = len(self._specs)
                self._specs.append(key)
            return self._spec_ids[key]

    def _call(self, spec, arrays):
        """``fn`` on the arguments of ``spec`` with ``arrays`` as their array leaves."""
        treedef, kinds, statics, has_kwargs = self._specs[spec]
        arrays, statics = iter(arrays), iter(statics)
        args = unflatten(treedef, [next(arrays) if k else next(statics) for k in kinds])
        args, kwargs = args if has_kwargs else (args, {})
        return self.fn(*args, **kwargs)

    # -- forward and backward ----------------------------------------------------------

    def forward(self, spec, arrays, needs, record):
        """``(output arrays, handle)``; with ``record`` the tape of the inputs flagged in
        ``needs`` is kept under ``handle`` (else the handle is -1)."""
        members = _members(arrays, self.batched)
        outs, vjps, treedef = [], [], None
        for member in members:
            if record and any(needs):
                out, vjp_fn = self._record(spec, member, needs)
                vjps.append(vjp_fn)
            else:
                out = self._call(spec, member)
            leaves, treedef = flatten(out)
            outs.append([_as_array(leaf, member) for leaf in leaves])
        flat = [xp_of(*column).stack(column) for column in zip(*outs)] if self.batched else outs[0]
        flat = _unaliased(flat, arrays)
        self._outputs[(spec, _metas(arrays))] = (treedef, _metas(flat))
        if not vjps:
            return flat, -1
        handle = next(self._handles)
        with self._lock:
            self._tapes[handle] = (treedef, vjps)
            self._unowned[handle] = None
            while len(self._unowned) > MAX_UNOWNED_TAPES:
                self._tapes.pop(self._unowned.popitem(last=False)[0], None)
        return flat, handle

    def _record(self, spec, arrays, needs):
        def of_differentiated(diff):
            it = iter(diff)
            full = [next(it) if n else a for a, n in zip(arrays, needs)]
            return self._call(spec, full)

        diff = [a for a, n in zip(arrays, needs) if n]
        return _vjp(of_differentiated, (diff,), retain_graph=False)

    def vjp(self, handle, cotangents, spec, arrays, needs):
        """Gradients of the inputs flagged in ``needs`` (None for the others), in their
        dtypes, for the output cotangents (None: zero). The tape is used up; a handle
        whose tape is gone (used, or dropped) recomputes its forward pass."""
        with self._lock:
            entry = self._tapes.pop(handle, None)
            self._unowned.pop(handle, None)
        if entry is None:
            _, fresh = self.forward(spec, arrays, needs, record=True)
            with self._lock:
                self._unowned.pop(fresh, None)
                entry = self._tapes.pop(fresh)
        treedef, vjps = entry
        members = _members(arrays, self.batched)
        grads = []
        for b, (vjp_fn, member) in enumerate(zip(vjps, members)):
            cts = [None if c is None else (c[b] if self.batched else c) for c in cotangents]
            diff_grads = vjp_fn(unflatten(treedef, cts) if treedef is not None else cts[0])[0]
            grads.append(_grads_like(diff_grads, member, needs))
        if self.batched:
            grads = [[None if column[0] is None else xp_of(*column).stack(column) for column in zip(*grads)]]
        fresh = iter(_unaliased([g for g in grads[0] if g is not None],
                                list(arrays) + [c for c in cotangents if c is not None]))
        return [None if g is None else next(fresh) for g in grads[0]]

    # -- handles -----------------------------------------------------------------------

    def own(self, handle):
        """A lease on ``handle``'s tape: unused, it lives until the lease is
        garbage-collected (torch: with the autograd graph)."""
        with self._lock:
            self._unowned.pop(handle, None)
        return _Lease(self, handle)

    def release(self, handle):
        with self._lock:
            self._tapes.pop(handle, None)
            self._unowned.pop(handle, None)

    def live_tapes(self) -> int:
        return len(self._tapes)

    # -- shapes without running on the framework's data ---------------------------------

    def outputs_of(self, spec, metas, xp=None):
        """``(out treedef, [(shape, dtype)])`` for inputs of ``metas`` (shape, dtype) pairs;
        learnt from an earlier call, else by running ``fn`` once on zeros (cached)."""
        key = (spec, tuple(metas))
        if key not in self._outputs:
            import numpy
            xp = xp or numpy
            zeros = [xp.zeros(shape, dtype=dtype) for shape, dtype in metas]
            self.forward(spec, zeros, [False] * len(zeros), record=False)
        return self._outputs[key]


class _Lease:
    __slots__ = ("bridge", "handle")

    def __init__(self, bridge, handle):
        self.bridge, self.handle = bridge, handle

    def __del__(self):
        try:
            self.bridge.release(self.handle)
        except Exception:  # noqa: BLE001 - at interpreter exit the bridge may be half torn down
            pass


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _members(arrays, batched):
    if not batched:
        return [arrays]
    sizes = {a.shape[0] if a.ndim else None for a in arrays}
    if len(sizes) != 1 or None in sizes:
        raise InputError(f"batched: every array needs the same leading batch size, got shapes "
                         f"{', '.join(str(tuple(a.shape)) for a in arrays)}")
    return [[a[b] for a in arrays] for b in range(sizes.pop())]


def _as_array(leaf, inputs):
    """An output leaf as an array of the inputs' array module (scalars become 0-d)."""
    if type(leaf).__name__ == "ndarray":  # numpy's or cupy's
        return leaf
    return xp_of(*inputs).asarray(leaf)


def _unaliased(outs, inputs):
    """``outs`` with each array that shares memory with an input or an earlier output
    copied (framework operators may not return views of their inputs)."""
    fresh = []
    for out in outs:
        xp = xp_of(out)
        if any(xp_of(o) is xp and xp.may_share_memory(out, o) for o in list(inputs) + fresh):
            out = out.copy()
        fresh.append(out)
    return fresh


def _metas(arrays):
    return tuple((tuple(a.shape), str(a.dtype)) for a in arrays)


def _grads_like(diff_grads, arrays, needs):
    it = iter(diff_grads)
    grads = []
    for a, n in zip(arrays, needs):
        if not n:
            grads.append(None)
            continue
        g = next(it)
        xp = xp_of(a)
        grads.append(xp.zeros_like(a) if g is None else xp.asarray(g).astype(a.dtype, copy=False))
    return grads
