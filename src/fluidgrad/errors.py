"""The errors fluidgrad raises on purpose: one base, a subclass per kind of fault.

Every class also derives from the builtin a caller would expect (``ValueError`` for bad
input, ``RuntimeError`` for a failure while running, ``TypeError`` for a derivative that
cannot be taken, ``AssertionError`` for a failed gradient check), so ``except
ValueError`` keeps working. ``key`` names the scenario key at fault where there is one
(``None`` elsewhere); library messages never carry YAML key paths: the scenario layer
composes ``key.path: message`` from ``key``.

| class                  | builtin base    | raised for                                      |
|------------------------|-----------------|-------------------------------------------------|
| ``InputError``         | ValueError      | an argument a function cannot accept            |
| ``UnknownNameError``   | ValueError      | a name missing from its table                   |
| ``ScenarioError``      | ValueError      | a scenario with problems (``problems``)         |
| ``UsageError``         | ValueError      | bad command-line flags or files                 |
| ``ResumeError``        | ValueError      | a resume state of another optimization          |
| ``BackendError``       | RuntimeError    | an array backend that cannot be used            |
| ``SolveError``         | RuntimeError    | a linear solve that did not converge            |
| ``SimulationError``    | RuntimeError    | a simulation that blew up                       |
| ``DifferentiationError`` | TypeError     | a derivative that cannot be computed            |
| ``GradientCheckError`` | AssertionError  | a derivative rule that fails its check          |
"""

from __future__ import annotations

import difflib


def _rebuild(cls, args, state):
    """Unpickle an error without calling its ``__init__`` (whose signature varies)."""
    exc = Exception.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class FluidgradError(Exception):
    """Base of every error fluidgrad raises on purpose; ``key`` is the scenario key at
    fault (dotted, e.g. ``boundaries.y_hi.velocity``) or ``None``."""

    def __init__(self, message="", key=None):
        super().__init__(message)
        self.key = key

    def __reduce__(self):  # errors cross process boundaries (sweeps): keep key and fields
        return _rebuild, (type(self), self.args, self.__dict__)


class InputError(FluidgradError, ValueError):
    """An argument a library function cannot accept (an unknown name, a wrong shape)."""


class UnknownNameError(InputError):
    """A name that is not in its table (a scheme, a solver, a boundary kind);
    ``what``, ``name`` and ``choices`` say which table and name."""

    def __init__(self, what, name, choices, key=None):
        self.what, self.name, self.choices = what, name, tuple(choices)
        hint = difflib.get_close_matches(str(name), [str(c) for c in self.choices], n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        super().__init__(f"unknown {what} {name!r} (expected one of {', '.join(map(str, self.choices))}){extra}",
                         key)


class ScenarioError(InputError):
    """A scenario has problems: ``problems`` lists each as ``key.path: message``,
    ``keys`` the key path of each (``None`` for a problem of the file as a whole), and
    ``key`` is the key path of the first."""

    def __init__(self, problems, source=None, keys=None):
        self.problems = list(problems)
        self.keys = list(keys) if keys is not None else [None] * len(self.problems)
        self.source = source
        super().__init__("\n".join(self.problems), self.keys[0] if self.keys else None)


class UsageError(InputError):
    """Bad command-line flags or files (the command line exits with code 2)."""


class ResumeError(InputError):
    """The saved resume state does not belong to this optimization; ``problems`` (when
    given) lists each difference on a line of its own."""

    def __init__(self, message="", key=None, problems=None):
        super().__init__(message or "\n".join(problems or ()), key)
        if problems:
            self.problems = list(problems)


class BackendError(FluidgradError, RuntimeError):
    """An array backend that cannot be used here (cupy without a GPU, ...)."""


class SolveError(FluidgradError, RuntimeError):
    """A linear solve that did not converge."""


class SimulationError(FluidgradError, RuntimeError):
    """A simulation that blew up (non-finite values), naming the step and the field."""


class DifferentiationError(FluidgradError, TypeError):
    """A derivative was asked for that cannot be computed (missing rule, bad input)."""


class GradientCheckError(FluidgradError, AssertionError):
    """A derivative rule disagrees with its transpose or with finite differences."""


#: errors that mean bad input (the command line exits with 2); other FluidgradErrors
#: are failures while running (exit 1)
BAD_INPUT = (InputError, BackendError)


def unknown(what, name, table, key=None):
    """``table[name]``, or :class:`UnknownNameError` listing the table's names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(what, name, table, key) from None


__all__ = ["BAD_INPUT", "BackendError", "DifferentiationError", "FluidgradError", "GradientCheckError",
           "InputError", "ResumeError", "ScenarioError", "SimulationError", "SolveError", "UnknownNameError",
           "UsageError", "unknown"]
