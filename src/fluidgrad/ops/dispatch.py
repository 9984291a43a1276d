"""Which implementation of a kernel runs: every kernel lists its implementations here,
and one rule picks one.

Implementations, by kind:

* ``reference`` — written once against the array API (numpy and cupy); the oracle the
  tests compare the others with; always there;
* ``fused`` — compiled CPU kernels (numba, :mod:`.compiled`) for numpy arrays;
* ``gpu`` — the slot for device kernels on cupy arrays.

The rule: the first of ``gpu``, ``fused`` that the kernel has, that is switched on and
whose ``supports(*args, **kwargs)`` accepts the arguments; else the reference. An
implementation that exists but declines falls back visibly: a debug message on the
``fluidgrad.ops`` logger, and the choice is what :func:`record` shows. Nothing else in
the package decides between implementations.

``use_reference()`` forces the reference everywhere (tests compare against it);
``FLUIDGRAD_NUMBA=0`` switches the fused kernels off for the whole process.
"""

from __future__ import annotations

import collections
import contextlib
import logging

from . import compiled

log = logging.getLogger("fluidgrad.ops")

KINDS = ("gpu", "fused", "reference")  # the order the rule tries them in
KERNELS = {}  # name -> Kernel, every kernel of the package

_forced = {"reference": 0}
_records = []


class Kernel:
    """A kernel's implementations: ``reference(*args, **kwargs)`` and the accelerated ones
    registered with :meth:`implementation`; calling the kernel runs the one the rule picks."""

    __slots__ = ("name", "reference", "accelerated")

    def __init__(self, name, reference):
        if name in KERNELS:
            raise ValueError(f"kernel {name!r} is defined twice")
        self.name, self.reference, self.accelerated = name, reference, ()
        KERNELS[name] = self

    def implementation(self, kind, supports):
        """Decorator: ``fun`` implements this kernel where ``supports(*args, **kwargs)``."""
        if kind not in KINDS[:-1]:
            raise ValueError(f"unknown implementation kind {kind!r} (expected gpu or fused)")

        def register(fun):
            entries = dict((k, (f, s)) for k, f, s in self.accelerated)
            entries[kind] = (fun, supports)
            self.accelerated = tuple((k, *entries[k]) for k in KINDS if k in entries)
            return fun
        return register

    def kinds(self):
        """The kinds of implementation this kernel has, in the rule's order."""
        return tuple(k for k, _, _ in self.accelerated) + ("reference",)

    def choose(self, *args, **kwargs):
        """``(kind, function)`` the rule picks for these arguments."""
        if not _forced["reference"]:
            for kind, fun, supports in self.accelerated:
                if _switched_on(kind):
                    if supports(*args, **kwargs):
                        return kind, fun
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("%s: the %s implementation does not support these arguments; "
                                  "the reference runs", self.name, kind)
        return "reference", self.reference

    def __call__(self, *args, **kwargs):
        kind, fun = self.choose(*args, **kwargs)
        if _records:
            for ran in _records:
                ran[self.name][kind] += 1
        return fun(*args, **kwargs)

    def __repr__(self):
        return f"Kernel({self.name!r}: {', '.join(self.kinds())})"


def _switched_on(kind) -> bool:
    return compiled.enabled() if kind == "fused" else True


@contextlib.contextmanager
def use_reference():
    """Run the array-API reference of every kernel inside the block."""
    _forced["reference"] += 1
    try:
        yield
    finally:
        _forced["reference"] -= 1


class Record(dict):
    """Which implementation ran, per kernel: ``record[name][kind]`` = number of calls."""

    def __missing__(self, name):
        out = self[name] = collections.Counter()
        return out

    def ran(self, name):
        """The kinds that ran for kernel ``name`` (a set; empty if it did not run)."""
        return {k for k, n in self.get(name, {}).items() if n}

    def summary(self):
        """``{kernel: {kind: calls}}`` as plain dicts, sorted by kernel name."""
        return {name: dict(self[name]) for name in sorted(self)}


@contextlib.contextmanager
def record():
    """Count which implementation each kernel call inside the block ran (nestable)."""
    ran = Record()
    _records.append(ran)
    try:
        yield ran
    finally:
        _records.remove(ran)
