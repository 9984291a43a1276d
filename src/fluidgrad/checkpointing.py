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

DEFAULT_MEMORY_BUDGET = 192 * 2 ** 20  # bytes of snapshots at most (plus one step's working arrays)
RESIDUALS_PER_STEP = 4  # a plain (un-checkpointed) step keeps about this many states
#: Without a ``memory_budget`` the snapshots are also capped, to as many as fit in
#: DEFAULT_SNAPSHOT_MEMORY or, if more, :func:`default_snapshots` (the fewest that reverse
#: the run in two recomputation sweeps, at least DEFAULT_SNAPSHOTS). Beyond that more
#: snapshots barely save work (T = 100: 2.85 step evaluations per step with 13, 2.82 with
#: 16, 2.50 with 48) but each costs a state: 48 snapshots took 192 MiB of a 512²
#: optimization's ~500 MB.
DEFAULT_SNAPSHOTS = 12
DEFAULT_SNAPSHOT_MEMORY = 36 * 2 ** 20


def beta(snapshots: int, sweeps: int) -> int:
    """Steps reversible with ``snapshots`` and ``sweeps`` recomputations: C(s+t, s)."""
    return math.comb(snapshots + sweeps, snapshots)


def sweeps_needed(steps: int, snapshots: int) -> int:
    """The smallest number of recomputation sweeps that reverses ``steps`` steps."""
    t = 0
    while beta(snapshots, t) < steps:
        t += 1
    return t


def default_snapshots(steps: int) -> int:
    """The snapshots used without a ``memory_budget`` (if they fit the default budget):
    the fewest that reverse ``steps`` steps in two sweeps, at least :data:`DEFAULT_SNAPSHOTS`."""
    # beta(s, 2) = (s + 1)(s + 2) / 2 >= steps
    s = max(1, math.isqrt(2 * max(int(steps), 1)) - 2)
    while beta(s, 2) < steps:
        s += 1
    return max(DEFAULT_SNAPSHOTS, s)


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


def snapshots_for_budget(memory_budget, state_bytes: int, steps: int | None = None, snapshot_bytes=None):
    """Snapshots that fit in ``memory_budget`` bytes (at least 2), each of
    ``snapshot_bytes`` (default ``state_bytes``); None when the whole un-checkpointed tape
    of ``steps`` steps fits (then nothing needs recomputing). Without a budget
    (``None``): :data:`DEFAULT_MEMORY_BUDGET`, and for a known ``steps`` no more snapshots
    than fit in :data:`DEFAULT_SNAPSHOT_MEMORY` or, if more, :func:`default_snapshots`."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else parse_bytes(memory_budget)
    if steps is not None and steps * RESIDUALS_PER_STEP * state_bytes <= budget:
        return None
    size = max(snapshot_bytes or state_bytes, 1)
    fit = max(2, budget // size)
    if memory_budget is None and steps is not None:
        return min(fit, max(default_snapshots(steps), DEFAULT_SNAPSHOT_MEMORY // size))
    return fit


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


def binomial_rollout(step_fn, state, steps: int, snapshots: int, params=None, start: int = 0, store=None,
                     snapshot=None):
    """``steps`` applications of ``step_fn(k, state, params)`` from step ``start``,
    differentiable with the binomial schedule for ``snapshots`` snapshots. ``params``
    (any tree, may hold differentiable values) is passed to every step. With ``store``
    (a :class:`DiskStore`) the snapshots live on disk instead of in memory.
    ``snapshot(state)``: what a snapshot keeps of a state, everything ``step_fn`` reads
    (e.g. a simulation state without its pressure, which the next step never reads);
    default the whole state."""
    if snapshots < 1:
        raise InputError("checkpointing needs at least one snapshot")
    sweeps = sweeps_needed(steps, snapshots)
    return _reverse(step_fn, state, start, steps, snapshots, sweeps, params, store, snapshot)


def _reverse(step_fn, state, start, length, snapshots, sweeps, params, store=None, snapshot=None):
    """Reverse ``length`` steps with ``(snapshots, sweeps)``: the recomputed first parts are
    nested (depth ≤ sweeps); the rest is a loop, so long runs never recurse deeply."""
    while length > 1:
        split = optimal_split(length, snapshots, sweeps)

        def first_part(s, p, start=start, split=split, snapshots=snapshots):
            return _reverse(step_fn, s, start, split, snapshots, sweeps - 1, p, store, snapshot)

        segment = recomputing_primitive(first_part, f"steps {start}-{start + split - 1}")
        segment.offload = store
        state = segment(state if snapshot is None else snapshot(state), params)
        start, length, snapshots = start + split, length - split, snapshots - 1
    if length == 1:
        state = step_fn(start, state, params)
    return state
