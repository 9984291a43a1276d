"""The numba side of the fused CPU kernels: the switch, the compilation decorators, the
thread policy and how a kernel's rows are split over threads.

A kernel that has a serial and a parallel form is written once, with ``prange`` loops
over row blocks, and compiled twice by :func:`twin` (``prange`` is ``range`` outside
parallel mode): the serial form gets one block, the parallel form one per thread. Which
form runs is :func:`parallel`'s rule, the only one: a kernel over ``cells`` points runs
on several threads from its own ``minimum`` on (below it starting the threads costs more
than it saves).

Threads (:func:`threads`): numba's pool has one per core this process may use (its CPU
affinity, capped by a container's CPU quota; :func:`thread_policy`), and the kernels run
on as many as are free right now (:class:`~.cores.FreeCores`), so a machine shared with
other busy processes slows a run down about as much as it takes cores away, not 10-40×.
``FLUIDGRAD_THREADS=N`` or ``--threads N`` fixes the count.

``FLUIDGRAD_NUMBA=0`` (read at import) or numba missing turns the fused kernels off; the
array-API reference runs instead (see :mod:`.dispatch`). Compiled kernels are cached on
disk, so only the first process pays the compilation.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import types

import numpy as onp

from ..errors import InputError
from .cores import FreeCores, usable_cores


def requested_threads(text=None, what="FLUIDGRAD_THREADS"):
    """The thread count ``text`` asks for (``FLUIDGRAD_THREADS`` if None): a positive
    integer, or empty / ``auto`` for :func:`usable_cores`; an InputError otherwise."""
    text = os.environ.get("FLUIDGRAD_THREADS", "") if text is None else str(text)
    if text.strip().lower() in ("", "auto"):
        return usable_cores()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{what}={text!r}: expected a positive number of threads or 'auto'")
    return n


def thread_policy():
    """Set numba's thread pool (``NUMBA_NUM_THREADS``, unless set) to :func:`requested_threads`
    before numba starts (an invalid FLUIDGRAD_THREADS falls back to the usable cores here
    and is reported by the command line). Without effect once numba is imported."""
    if "numba" not in sys.modules and "NUMBA_NUM_THREADS" not in os.environ:
        try:
            n = requested_threads()
        except InputError:
            n = usable_cores()
        os.environ["NUMBA_NUM_THREADS"] = str(n)


thread_policy()

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


def row(fun):
    """:func:`jit`, but called, not inlined: the loop over one row (or plane) of a kernel.
    A parallel kernel's body stays one call, so numba's parallel passes, whose cost grows
    fast with the body, see a few statements (this cut the first compilation ~4×); the
    serial and parallel forms of a :func:`twin` share the compiled row; and a call per row
    costs nothing next to the row's work."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy")(fun)


def pjit(fun):
    """:func:`jit` with ``parallel=True``: ``prange`` loops run on several threads."""
    if numba is None:
        return fun
    return numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(fun)


@contextlib.contextmanager
def watch_compilation(on_start=None):
    """Record what numba compiles while the block runs: yields ``{"seconds": wall seconds,
    "kernels": names}`` (kept up to date); ``on_start(name, done)`` is called as each
    kernel begins to compile. Cache loads are not compilations and are not counted."""
    record = {"seconds": 0.0, "kernels": []}
    if numba is None:
        yield record
        return
    from numba.core import event

    class Listener(event.Listener):
        depth, t0 = 0, 0.0

        def on_start(self, ev):
            if self.depth == 0:
                self.t0 = time.perf_counter()
                if on_start is not None:
                    on_start(ev.data["dispatcher"].py_func.__name__, len(record["kernels"]))
            self.depth += 1

        def on_end(self, ev):
            self.depth -= 1
            if self.depth == 0:
                record["seconds"] += time.perf_counter() - self.t0
                record["kernels"].append(ev.data["dispatcher"].py_func.__name__)

    with event.install_listener("numba:compile", Listener()):
        yield record


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


_threads = {}  # "n": the kernels' threads now, "ident": the thread numba was told, "free": a FreeCores


def threads() -> int:
    """The threads a parallel kernel runs on now (asking numba costs a microsecond per
    kernel call, so fluidgrad keeps the count itself).

    Fixed where ``FLUIDGRAD_THREADS`` or :func:`set_threads` says; otherwise the cores that
    are free for this process (:class:`~.cores.FreeCores`, re-estimated every 0.1 s):
    beside another busy process a 2-core machine runs the kernels on one thread, which
    keeps their speed, where two threads would wait at every join for the one the
    scheduler gave away (3-12× slower). With several threads, BLAS is limited to one:
    BLAS threads spin between calls and fight the kernels' threads for the cores (a
    65536-element ``vdot`` after a parallel kernel took 8 ms instead of 7 µs on 2 cores)."""
    n = _threads.get("n")
    if n is None:
        return _start()
    free = _threads.get("free")
    if free is not None and time.monotonic() >= free.next:
        n = _use(free.update())
    if _threads["ident"] != threading.get_ident():  # numba's count is per calling thread
        _use(n, force=True)
    return n


def _start(adapt=None):
    """Settle the count: ``FLUIDGRAD_THREADS`` fixes it (unless ``adapt``), else it adapts."""
    most = numba.config.NUMBA_NUM_THREADS if numba is not None else 1
    text = os.environ.get("FLUIDGRAD_THREADS", "").strip().lower()
    try:
        n = min(requested_threads(), most)
    except InputError:  # reported by the command line; here: adapt
        n, text = min(usable_cores(), most), ""
    if adapt:
        n, text = min(usable_cores(), most), ""
    _threads["free"] = FreeCores.create(most) if text in ("", "auto") and most > 1 else None
    return _use(n, force=True)


def set_threads(n) -> int:
    """Run the parallel kernels on ``n`` threads from now on (at most numba's pool,
    ``NUMBA_NUM_THREADS``), or on the free cores again if ``n`` is ``"auto"``; returns
    the count in effect."""
    if str(n).strip().lower() == "auto":
        _threads.pop("n", None)
        return _start(adapt=True)
    threads()
    _threads["free"] = None
    return _use(int(n), force=True)


def _use(n, force=False):
    """Make ``n`` (clamped to numba's pool) the kernels' thread count."""
    most = numba.config.NUMBA_NUM_THREADS if numba is not None else 1
    n = max(1, min(int(n), most))
    if n == _threads.get("n") and not force:
        return n
    if numba is not None:
        if "launched" in _threads:
            numba.set_num_threads(n)
        else:
            with _openmp_count_kept():
                numba.set_num_threads(n)  # the first call starts numba's thread pool
            _threads["launched"] = True
    _threads["n"], _threads["ident"] = n, threading.get_ident()
    _blocks.clear()
    if n > 1 and "blas" not in _threads:
        _single_threaded_blas()
    return n


@contextlib.contextmanager
def _openmp_count_kept():
    """Keep every loaded OpenMP runtime's thread count across the block: numba's OpenMP
    layer sets it to its pool size when it starts, which would undo, e.g., a
    ``torch.set_num_threads`` (torch shares the runtime)."""
    try:
        import threadpoolctl
        before = [(lib, lib.get_num_threads()) for lib in threadpoolctl.ThreadpoolController().lib_controllers
                  if lib.user_api == "openmp"]
    except Exception:  # noqa: BLE001 - threadpoolctl absent or unable to read a library
        before = []
    yield
    for lib, count in before:
        if count is not None and lib.get_num_threads() != count:
            lib.set_num_threads(count)


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
