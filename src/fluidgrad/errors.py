"""The errors fluidgrad raises on purpose: one base, a subclass per layer.

Every class also derives from the builtin a caller would expect (``ValueError`` for bad
input, ``RuntimeError`` for a failure while running), so ``except ValueError`` keeps
working. ``key`` names the scenario key at fault where there is one (``None`` elsewhere);
library messages never carry YAML key paths: the scenario layer adds them.
"""

from __future__ import annotations


class FluidgradError(Exception):
    """Base of every error fluidgrad raises on purpose."""

    def __init__(self, message="", key=None):
        super().__init__(message)
        self.key = key


class InputError(FluidgradError, ValueError):
    """An argument a library function cannot accept (an unknown name, a wrong shape)."""


class UnknownNameError(InputError):
    """A name that is not in its table (a scheme, a solver, a boundary kind)."""

    def __init__(self, what, name, choices, key=None):
        self.what, self.name, self.choices = what, name, tuple(choices)
        super().__init__(f"unknown {what} {name!r} (expected one of {', '.join(self.choices)})", key)


class BackendError(FluidgradError, RuntimeError):
    """An array backend that cannot be used here (cupy without a GPU, ...)."""


class SolveError(FluidgradError, RuntimeError):
    """A linear solve that did not converge."""


class SimulationError(FluidgradError, RuntimeError):
    """A simulation that blew up (non-finite values), naming the step and the field."""


def unknown(what, name, table, key=None):
    """``table[name]``, or :class:`UnknownNameError` listing the table's names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(what, name, table, key) from None
