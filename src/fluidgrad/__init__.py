"""fluidgrad: a differentiable Navier-Stokes fluid simulator with hand-written adjoints."""

__version__ = "0.1.0"

from .ad import (DifferentiationError, Primitive, Tape, Tensor, checkpoint, detect_anomaly, elementwise_grad,
                 grad, jvp, primitive, register_tree, stop_gradient, tensor, value_and_grad, vjp)
from .backend import get_backend, to_numpy, xp_of
from .errors import (BackendError, FluidgradError, GradientCheckError, InputError, ResumeError,  # noqa: E402
                     ScenarioError, SimulationError, SolveError, UnknownNameError, UsageError)
from . import numpy, testing  # noqa: E402
from .scenario import load_scenario  # noqa: E402
from .simulation import Physics, Simulation, State  # noqa: E402
from . import forces  # noqa: E402

__all__ = ["BackendError", "DifferentiationError", "FluidgradError", "GradientCheckError", "InputError",
           "ResumeError", "ScenarioError", "SimulationError", "SolveError", "UnknownNameError", "UsageError",
           "detect_anomaly", "Primitive", "Tape", "Tensor", "checkpoint",
           "elementwise_grad", "forces", "get_backend", "grad", "jvp", "numpy", "primitive",
           "register_tree", "stop_gradient", "tensor", "testing", "to_numpy", "value_and_grad",
           "vjp", "xp_of", "load_scenario", "Physics", "Simulation", "State"]


def __getattr__(name):
    """``fluidgrad.sweep``, imported on first use (its Dask and xarray stay optional)."""
    if name == "sweep":
        from .sweeps import sweep
        return sweep
    raise AttributeError(f"module 'fluidgrad' has no attribute {name!r}")
