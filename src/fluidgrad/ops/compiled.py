"""The numba side of the fused CPU kernels: the switch, the compilation decorators, the
thread count and how a kernel's rows are split over threads.

A kernel that has a serial and a parallel form is written once, with ``prange`` loops
over row blocks, and compiled twice by :func:`twin` (``prange`` is ``range`` outside
parallel mode): the serial form gets one block, the parallel form one per thread. Which
form runs is :func:`parallel`'s rule, the only one: a kernel over ``cells`` points runs
on several threads from its own ``minimum`` on (below it starting the threads costs more
than it saves).

``FLUIDGRAD_NUMBA=0`` (read at import) or numba missing turns the fused kernels off; the
array-API reference runs instead (see :mod:`.dispatch`). Compiled kernels are cached on
disk, so only the first process pays the compilation.
"""

from __future__ import annotations

import math
import os
import types

import numpy as onp

try:  # numba is optional
    import numba
    from numba import prange
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None
    prange = range

_ENABLED = numba is not None and os.environ.get("FLUIDGRAD_NUMBA", "1") != "0"


def enabled() -> bool:
    """Whether the fused kernels may run: numba installed and not ``FLUIDGRAD_NUMBA=0``.
    The first call also settles the threads (see :func:`threads`)."""
    if _ENABLED and "n" not in _threads:
        threads()
    return _ENABLED


def jit(fun):
    """Compiled, cached on disk; no Python division checks; inlined into its callers."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(fun)


def pjit(fun):
    """:func:`jit` with ``parallel=True``: ``prange`` loops run on several threads."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(fun)


class Twin:
    """One kernel body compiled serial and parallel; :meth:`pick` chooses by size."""

    __slots__ = ("serial", "parallel", "minimum")

    def __init__(self, serial, parallel_, minimum):
        self.serial, self.parallel, self.minimum = serial, parallel_, minimum

    def pick(self, cells):
        """The parallel form for ``cells`` points at or above the kernel's minimum (and
        several threads), else the serial one."""
        return self.parallel if parallel(cells, self.minimum) else self.serial

    def split(self, cells):
        """``(form, parts)`` for a forward pass over ``cells`` points: the parallel form with
        one row block per thread, or the serial form with one block."""
        return (self.parallel, threads()) if parallel(cells, self.minimum) else (self.serial, 1)

    def for_blocks(self, blocks):
        """The form for the ``blocks`` of :func:`row_blocks` (one block: serial)."""
        return self.serial if blocks.shape[1] == 1 else self.parallel


def twin(minimum=2048):
    """Decorator: compile a kernel written with ``prange`` loops twice (see :class:`Twin`).
    The parallel copy gets a name of its own, so the two never share a cache entry."""
    def make(fun):
        copy = types.FunctionType(fun.__code__, fun.__globals__, fun.__name__ + "_parallel", fun.__defaults__,
                                  fun.__closure__)
        copy.__qualname__ = fun.__qualname__ + "_parallel"
        copy.__doc__ = fun.__doc__
        return Twin(jit(fun), pjit(copy), minimum)
    return make


_threads = {}


def threads() -> int:
    """numba's thread count, read once (asking costs a microsecond per kernel call).

    The first time there are several, BLAS is limited to one thread: between parallel
    kernels numba's OpenMP threads spin, and a threaded BLAS call then fights them for
    the cores (a 65536-element ``vdot`` after a parallel kernel took 8 ms instead of
    7 µs on 2 cores)."""
    n = _threads.get("n")
    if n is None:
        n = _threads["n"] = numba.get_num_threads() if numba is not None else 1
        if n > 1:
            _single_threaded_blas()
    return n


def _single_threaded_blas():
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a dependency; tolerate its absence
        return
    _threads["blas"] = threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def parallel(cells: int, minimum: int = 2048) -> bool:
    """Whether a kernel over ``cells`` points runs on several threads: from ``minimum``
    on, when there are several."""
    return cells >= minimum and threads() > 1


# -- row blocks of a parallel scatter ---------------------------------------------------
#
# Forward passes write only their own point. The VJPs scatter into rows within
# ``reach`` of the point's row (``reach`` bounds |Δt U| / h plus the stencil), so each
# thread's rows are one big block and a strip of 2·reach + 1 rows (:func:`row_blocks`):
# the big blocks never write the same rows and run in parallel, then the strips do.

def reach(padded, c):
    """How many rows away from its point's row a VJP may scatter: ``|Δt U| / h`` plus the
    stencil (``c = Δt/h``; ``padded``: the velocity components); None if the velocity is
    not finite or the grid too small for parallel kernels."""
    if not parallel(padded[0].size):
        return None
    return scatter_reach(padded, c)


def scatter_reach(padded, c):
    """:func:`reach` whatever the thread count and grid size (for :func:`split_rows`)."""
    top = max(max(float(u.max()), -float(u.min())) for u in padded)  # no temporaries
    return int(math.ceil(abs(c) * top)) + 3 if math.isfinite(top) else None


_blocks = {}


def row_blocks(shape, rows):
    """Row ranges ``blocks[colour, thread] = (start, stop)`` for a VJP over points of
    ``shape`` that scatters at most ``rows`` (see :func:`reach`) rows away. Colour 0 is one
    big block per thread, colour 1 the strips of 2·rows + 1 rows between them: blocks of
    one colour are more than 2·rows apart and never write the same rows; each colour runs
    in parallel, one after the other. One block of all rows (run serially) when the rows
    are too few to split or ``rows`` is None. Cached; read-only."""
    n0 = shape[0]
    key = (n0, rows if rows is not None and parallel(math.prod(shape)) else None)
    blocks = _blocks.get(key)
    if blocks is None:
        blocks = _blocks[key] = split_rows(n0, key[1], threads())
    return blocks


def split_rows(n0, rows, workers):
    """The blocks of :func:`row_blocks` for ``n0`` rows split over ``workers`` threads
    (uncached; tests split rows over several blocks on a machine with one thread)."""
    strip = None if rows is None else 2 * rows + 1
    if strip is None or n0 < workers * 3 * strip:
        return onp.array([[[0, n0]], [[n0, n0]]], dtype=onp.int64)
    cuts = [round(k * n0 / workers) for k in range(workers + 1)]  # strip k ends at cuts[k]
    blocks = onp.empty((2, workers, 2), dtype=onp.int64)
    for k in range(workers):
        blocks[0, k] = cuts[k], cuts[k + 1] - strip
        blocks[1, k] = cuts[k + 1] - strip, cuts[k + 1]
    return blocks
