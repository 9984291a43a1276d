"""The optimization problem a scenario's ``optimize:`` block describes, assembled from
the pieces of :mod:`fluidgrad.optimize` (parameters, losses, regularizers).

Part of the scenario layer: :meth:`Scenario.problem` and :meth:`Scenario.loss_target`
call these; the command line and tests go through them.
"""

from __future__ import annotations

from . import forces
from .errors import InputError
from .initial import density_field, velocity_field
from .optimize import (ControlForce, InflowProfile, InitialDensity, InitialVelocity, PhysicsParameter, Problem,
                       density_mse, effort, kinetic_energy, smoothness, velocity_mse)
from .optimize.parameters import physics_with


def parameters(scenario) -> list:
    """The parameters named by ``optimize.parameters``, in order."""
    spec = scenario.optimize
    out = []
    for name in spec["parameters"]:
        if name == "initial_velocity":
            out.append(InitialVelocity(spec["parametrization"], spec["smoothing"]))
        elif name == "initial_density":
            out.append(InitialDensity())
        elif name == "control_force":
            out.append(ControlForce(scenario.steps, spec["control"]["hold"], spec["control"]["coarsen"]))
        elif name == "inflow_profile":
            out.append(InflowProfile(spec["flow_rate"]))
        else:
            out.append(PhysicsParameter(name))
    return out


def loss_target(scenario, sim):
    """The target of a ``density_mse`` / ``velocity_mse`` loss in ``sim``'s array module
    and dtype (a density array or a tuple of face arrays); ``None`` for other losses."""
    loss = scenario.optimize["loss"]
    xp = sim.xp
    if loss["type"] == "density_mse":
        return xp.asarray(density_field(loss["target"], scenario.grid, scenario.base), dtype=sim.dtype)
    if loss["type"] == "velocity_mse":
        return tuple(xp.asarray(a, dtype=sim.dtype)
                     for a in velocity_field(loss["target"], sim.domain, scenario.base))
    return None


def loss_function(scenario, sim, target):
    """``loss(states, values)``: the scenario's loss averaged over the loss states, plus
    its regularization terms (scaled by the cell volume; an inflow profile's smoothness
    by the face area)."""
    kind = scenario.optimize["loss"]["type"]
    obstacle = scenario.optimize["loss"]["obstacle"]
    reg = scenario.optimize["regularization"]
    volume = sim.domain.grid.cell_volume

    def loss(states, values):
        total = 0.0
        for s in states:
            if kind == "density_mse":
                total = total + density_mse(s, target)
            elif kind == "velocity_mse":
                total = total + velocity_mse(s, target)
            elif kind in ("drag", "lift"):
                force = forces.drag if kind == "drag" else forces.lift
                total = total + force(s, sim.domain, physics_with(sim, values).viscosity, sim.dt, obstacle)
            else:
                total = total + kinetic_energy(s, volume)
        total = total / len(states)
        if reg["smoothness"]:
            for key in ("initial_velocity", "initial_density"):
                if key in values:
                    total = total + reg["smoothness"] * smoothness(values[key], sim.domain.dx) * volume
            if "inflow_profile" in values:
                area = sim.domain.dx ** (sim.ndim - 1)
                total = total + reg["smoothness"] * smoothness(values["inflow_profile"], sim.domain.dx) * area
        if reg["effort"] and "control_force" in values:
            total = total + reg["effort"] * effort(values["control_force"]) * volume
        return total

    return loss


def build_problem(scenario, sim, target=None) -> Problem:
    """The :class:`~fluidgrad.optimize.Problem` of ``scenario``'s ``optimize:`` block
    on ``sim`` (``target``: the loss target, computed when not given)."""
    if scenario.optimize is None:
        raise InputError(f"scenario {scenario.name!r} has no optimize: block", key="optimize")
    spec = scenario.optimize
    if target is None:
        target = loss_target(scenario, sim)
    return Problem(sim, scenario.initial_state(sim), parameters(scenario), loss_function(scenario, sim, target),
                   scenario.steps, loss_steps=spec["loss"]["times"], memory_budget=spec["memory_budget"])
