"""Bounded-memory reverse mode over many time steps: binomial (Revolve) checkpointing.

With ``s`` snapshots and ``t`` recomputation sweeps one can reverse
``β(s, t) = C(s + t, s)`` steps (Griewank & Walther 2000); ``s = 20``, ``t = 4`` covers
10,626 steps. The schedule is built from nested recomputing segments: to reverse
``l ≤ β(s, t)`` steps, the first ``m`` steps (:func:`optimal_split`) become one tape node
that keeps only its input state (a snapshot) and is re-run, with ``(s, t - 1)``, when the
backward pass reaches it; the other ``l - m`` steps are reversed with ``(s - 1, t)``.
The number of step evaluations is the minimum possible (Revolve's ``t l - β(s+1, t-1)``
forward steps plus the taped one): e.g. 3.99 per step for ``T = 2000, s = 20`` and 4.80
for ``T = 10,000, s = 20``.
At any moment at most ``s`` states are held, plus one step's residuals; with a
:class:`DiskStore` the snapshots are kept in files instead (for very long runs).
"""

from __future__ import annotations

import itertools
import math
import re
import tempfile
from pathlib import Path

import numpy as onp

from .ad.transforms import recomputing_primitive
from .errors import InputError

DEFAULT_MEMORY_BUDGET = 192 * 2 ** 20  # bytes of snapshots (plus working arrays: a 512² gradient peaks < 300 MB)
RESIDUALS_PER_STEP = 4  # a plain (un-checkpointed) step keeps about this many states


def beta(snapshots: int, sweeps: int) -> int:
    """Steps reversible with ``snapshots`` and ``sweeps`` recomputations: C(s+t, s)."""
    return math.comb(snapshots + sweeps, snapshots)


def sweeps_needed(steps: int, snapshots: int) -> int:
    """The smallest number of recomputation sweeps that reverses ``steps`` steps."""
    t = 0
    while beta(snapshots, t) < steps:
        t += 1
    return t


def parse_bytes(value) -> int:
    """``'1GB'``, ``'512 MiB'``, ``2e9`` -> bytes."""
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(value))
    if not m:
        raise InputError(f"expected a size like '1GB' (got {value!r})", key="optimize.checkpointing.memory_budget")
    number, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if binary else 1000
    return int(number * base ** " KMGT".index(unit or " "))


def snapshots_for_budget(memory_budget, state_bytes: int, steps: int | None = None):
    """Snapshots that fit in ``memory_budget`` bytes (at least 2); None when the whole
    un-checkpointed tape of ``steps`` steps fits (then nothing needs recomputing)."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else parse_bytes(memory_budget)
    if steps is not None and steps * RESIDUALS_PER_STEP * state_bytes <= budget:
        return None
    return max(2, budget // max(state_bytes, 1))


class DiskStore:
    """Snapshots as ``.npy`` files in ``folder`` (a temporary folder by default);
    each file is deleted when its snapshot is no longer referenced."""

    def __init__(self, folder=None):
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="fluidgrad-snapshots-")
        self.folder = Path(folder or self._tmp.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ids = itertools.count()

    def save(self, array):
        from .backend import backend_name, to_numpy
        path = self.folder / f"snapshot-{next(self._ids)}.npy"
        onp.save(path, to_numpy(array))
        return _DiskArray(path, array.shape, array.dtype, backend_name(array))


class _DiskArray:
    """A snapshot on disk: ``load()`` reads it back (to its original backend)."""

    __slots__ = ("path", "shape", "dtype", "backend")

    def __init__(self, path, shape, dtype, backend):
        self.path, self.shape, self.dtype, self.backend = path, shape, dtype, backend

    def load(self):
        from .backend import to_backend
        return to_backend(onp.load(self.path), self.backend)

    def __del__(self):
        try:
            self.path.unlink(missing_ok=True)
        except Exception:
            pass


def optimal_split(length: int, snapshots: int, sweeps: int) -> int:
    """Steps in the first (recomputed) segment when reversing ``length ≤ β(s, t)`` steps:
    the rest must be reversible with one snapshot less (``length - m ≤ β(s-1, t)``), the
    first part with one sweep less (``m ≤ β(s, t-1)``); within that range ``β(s, t-2)``
    minimizes the step evaluations (checked against brute force in the tests)."""
    lo = max(1, length - beta(snapshots - 1, sweeps))
    hi = min(length - 1, beta(snapshots, sweeps - 1))
    return max(lo, min(hi, beta(snapshots, sweeps - 2) if sweeps >= 2 else 1))


def binomial_rollout(step_fn, state, steps: int, snapshots: int, params=None, start: int = 0, store=None):
    """``steps`` applications of ``step_fn(k, state, params)`` from step ``start``,
    differentiable with the binomial schedule for ``snapshots`` snapshots. ``params``
    (any tree, may hold differentiable values) is passed to every step. With ``store``
    (a :class:`DiskStore`) the snapshots live on disk instead of in memory."""
    if snapshots < 1:
        raise InputError("checkpointing needs at least one snapshot")
    sweeps = sweeps_needed(steps, snapshots)
    return _reverse(step_fn, state, start, steps, snapshots, sweeps, params, store)


def _reverse(step_fn, state, start, length, snapshots, sweeps, params, store=None):
    """Reverse ``length`` steps with ``(snapshots, sweeps)``: the recomputed first parts are
    nested (depth ≤ sweeps); the rest is a loop, so long runs never recurse deeply."""
    while length > 1:
        split = optimal_split(length, snapshots, sweeps)

        def first_part(s, p, start=start, split=split, snapshots=snapshots):
            return _reverse(step_fn, s, start, split, snapshots, sweeps - 1, p, store)

        segment = recomputing_primitive(first_part, f"steps {start}-{start + split - 1}")
        segment.offload = store
        state = segment(state, params)
        start, length, snapshots = start + split, length - split, snapshots - 1
    if length == 1:
        state = step_fn(start, state, params)
    return state
