"""Gradient-based optimization through simulations: parameters, losses, optimizers and
a resumable loop."""

from .losses import density_mse, effort, kinetic_energy, smoothness, velocity_mse
from .loop import OptimizationResult, ResumeError, run
from .optimizers import OPTIMIZERS, Adam, GradientDescent, LBFGS, ScipyLBFGSB, make_optimizer
from .parameters import ControlForce, InflowProfile, InitialDensity, InitialVelocity, PhysicsParameter
from .problem import Problem

__all__ = ["Adam", "ControlForce", "InflowProfile", "GradientDescent", "InitialDensity", "InitialVelocity", "LBFGS",
           "OPTIMIZERS", "OptimizationResult", "PhysicsParameter", "Problem", "ResumeError",
           "ScipyLBFGSB", "density_mse", "effort", "kinetic_energy", "make_optimizer", "run",
           "smoothness", "velocity_mse"]
