"""fluidgrad as a Tesseract for Mosaic's ``navier-stokes-grid`` domain.

Inputs and outputs are Mosaic's canonical schemas
(``mosaic_shared.problems.navier_stokes_grid``), differentiable in ``v0``,
``viscosity``, ``dt`` and ``inflow_profile`` (inputs) and ``result``, ``drag``
(outputs). Load it in-process with
``tesseract_core.Tesseract.from_tesseract_api("tesseract/navier-stokes-grid/tesseract_api.py")``
or build the image with ``tesseract build tesseract/navier-stokes-grid``.

How the schema maps onto fluidgrad:

* ``v0`` ``(N, N, 1, 2)``: the velocity at the points of the box of side
  ``domain_extent`` (``h = domain_extent / N``); fluidgrad's cell ``(i, j)``, centred at
  ``(i + ½, j + ½)·h``, holds Mosaic's point ``(i, j)``. Each
  component goes to its MAC faces by :mod:`fluidgrad.collocated`'s exact half-cell
  Fourier shift and comes back by the inverse shift, so the map costs nothing
  (a neighbour average would cost ``sin²(π/N)`` per round trip).
* one step of length ``dt``: MacCormack advection, implicit viscosity, FFT pressure
  projection, in float64; ``result`` is the velocity after ``steps`` steps.
* ``dt`` is differentiable through an exact rescaling of time: with ``s = dt/dt₀``
  (``dt₀`` the value of ``dt``, held constant, so ``s = 1`` and only its derivative
  matters), the step of length ``dt`` on ``u`` equals the step of length ``dt₀`` on
  ``w = s·u`` with viscosity ``s·ν`` (advection is positively homogeneous in the
  advected field and linear in the departure distance ``dt·u = dt₀·w``; viscosity and
  projection are linear), so ``result = run_{dt₀}(s·v0; s·ν) / s``.
* ``boundary_conditions``: periodic → periodic, no_slip → no-slip wall, neumann → outflow
  (zero-gradient velocity, p = 0), dirichlet → no-slip / moving wall / inflow by its value;
  ``obstacle`` → a fluidgrad circle or box (fractions of ``domain_extent``);
  ``inflow_profile`` → ``Physics.inflow_profile`` on x_lo (x_hi, periodic or neumann,
  becomes the outflow). On bounded axes the point ↔ face map is second order (cell
  centres, :mod:`fluidgrad.collocated`).
* ``drag``: ``-F_x`` (the x-force on the fluid, Mosaic's sign) of
  :func:`fluidgrad.forces.total_forces`, averaged over the last ``max(1, steps // 2)``
  steps as Mosaic's reference solvers do; in the rescaled run it is divided by ``s²``.
* VJP and JVP are fluidgrad's reverse and forward modes through the checkpointed
  rollout (one tape node per kernel, adjoint solves, no unrolled iterations).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np


def _import_canonical_schemas():
    """Mosaic's canonical schemas: from ``mosaic_shared`` (installed on its own, as in
    the image) or from the copy that the ``mosaic-bench`` distribution ships inside
    its ``mosaic`` package (``mosaic/mosaic_shared``, which imports itself as
    ``mosaic_shared``)."""
    try:
        from mosaic_shared.problems import navier_stokes_grid
    except ModuleNotFoundError:
        spec = importlib.util.find_spec("mosaic")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "Mosaic's canonical schemas are missing: install mosaic-shared "
                "(or mosaic-bench, which ships it)") from None
        sys.path.append(list(spec.submodule_search_locations)[0])
        from mosaic_shared.problems import navier_stokes_grid
    from mosaic_shared.schema_types import make_differentiable
    return navier_stokes_grid.InputSchema, navier_stokes_grid.OutputSchema, make_differentiable


_CanonicalInput, _CanonicalOutput, _make_differentiable = _import_canonical_schemas()

import fluidgrad  # noqa: E402
from fluidgrad import InputError, Physics, Simulation, jvp, stop_gradient, vjp  # noqa: E402
from fluidgrad import numpy as fnp  # noqa: E402
from fluidgrad import forces  # noqa: E402
from fluidgrad.boundaries import Boundaries, Domain, Obstacle  # noqa: E402
from fluidgrad.collocated import collocated_to_mac, mac_to_collocated  # noqa: E402
from fluidgrad.grid import Grid  # noqa: E402
from fluidgrad.ops import PressureSolve, advect_velocity  # noqa: E402

#: the inputs and outputs derivatives flow through
DIFFERENTIABLE_INPUTS = ("v0", "viscosity", "dt", "inflow_profile")
DIFFERENTIABLE_OUTPUTS = ("result", "drag")


class InputSchema(_make_differentiable(_CanonicalInput, list(DIFFERENTIABLE_INPUTS))):
    """Mosaic's canonical navier-stokes-grid inputs."""


class OutputSchema(_make_differentiable(_CanonicalOutput, list(DIFFERENTIABLE_OUTPUTS))):
    """Mosaic's canonical navier-stokes-grid outputs (``drag`` is None without an obstacle)."""


# -- the problem -----------------------------------------------------------------------

#: the rollout's tape may take this much memory before steps are recomputed (checkpointing);
#: N = 128 and 100 steps fit, so their VJP recomputes nothing
MEMORY_BUDGET = 2 ** 30

#: the pressure solve on a box with walls or an obstacle (iterative there)
PRESSURE = PressureSolve(tolerance=1e-11, adjoint_tolerance=1e-12)


class _VelocitySimulation(Simulation):
    """A simulation without a passive density: Mosaic's state is the velocity alone, so
    only the velocity is advected (the density stays zero and is never touched)."""

    def advect(self, state, dt):
        velocity = advect_velocity(state.velocity, dt=dt, domain=self.domain, scheme=self.advection)
        return state.replace(velocity=velocity)



class _Problem:
    """The simulation an input describes, and the inputs it is differentiable in."""

    def __init__(self, inputs):
        v0 = np.asarray(inputs.v0)
        if v0.ndim != 4 or v0.shape[0] != v0.shape[1] or v0.shape[2:] != (1, 2):
            raise InputError(f"v0: expected shape (N, N, 1, 2) (a 2-D field on a square grid), "
                             f"got {v0.shape}")
        if v0.shape[0] < 2:
            raise InputError(f"v0: expected at least 2 points per axis, got {v0.shape[0]}")
        self.n = n = v0.shape[0]
        self.steps = int(inputs.steps)
        if self.steps < 0:
            raise InputError(f"steps: expected a non-negative integer, got {inputs.steps}")
        extent = float(inputs.domain_extent)
        if not (np.isfinite(extent) and extent > 0):
            raise InputError(f"domain_extent: expected a positive length, got {inputs.domain_extent}")
        self.dt0 = float(np.asarray(inputs.dt).reshape(-1)[0])
        if not (np.isfinite(self.dt0) and self.dt0 > 0):
            raise InputError(f"dt: expected a positive time step, got {self.dt0}")
        nu = float(np.asarray(inputs.viscosity).reshape(-1)[0])
        if not (np.isfinite(nu) and nu >= 0):
            raise InputError(f"viscosity: expected a non-negative number, got {nu}")
        spec = _boundary_spec(inputs)
        obstacles = _obstacles(inputs.obstacle, extent)
        grid = Grid((n, n), (extent, extent))
        boundaries = Boundaries.periodic(2) if spec is None else Boundaries.from_dict(spec, 2)
        self.domain = domain = Domain(grid, boundaries, obstacles)
        if obstacles and not domain.has_obstacles:
            raise InputError(f"obstacle: covers no cell centre of the {n}×{n} grid (enlarge it or refine the grid)")
        self.obstacle = bool(obstacles)
        if self.obstacle and self.steps < 1:
            raise InputError("steps: the drag on the obstacle needs at least one step")
        # walls and obstacles make the pressure solve iterative: solve it (and its adjoint)
        # to near rounding, so that the VJP is the JVP's transpose to ~1e-10, not ~1e-7
        self.sim = _VelocitySimulation(domain, self.dt0, Physics(viscosity=nu), advection="maccormack",
                                       pressure=PRESSURE if domain.has_closed_faces else PressureSolve())
        self.primals = {"v0": v0[:, :, 0, :].astype(np.float64),
                        "viscosity": np.asarray(inputs.viscosity, dtype=np.float64).reshape(1),
                        "dt": np.asarray(inputs.dt, dtype=np.float64).reshape(1)}
        # boundary velocities are velocities: the time rescaling multiplies them by s too.
        # The inflow face's normal velocity can carry s (as an inflow profile); any other
        # boundary velocity is a constant of the domain, so dt is then not differentiable.
        self.inflow_base = None
        self.dt_differentiable = True
        inflows = [f for pair in boundaries.faces for f in pair if f.kind == "inflow"]
        moving = [f for pair in boundaries.faces for f in pair
                  if f.kind == "no_slip" and f.velocity is not None and any(f.velocity)]
        if inputs.inflow_profile is not None:
            profile = np.asarray(inputs.inflow_profile, dtype=np.float64)
            if profile.shape != (n,):
                raise InputError(f"inflow_profile: expected shape ({n},) (one u_x per cell of the x_lo face), "
                                 f"got {profile.shape}")
            if not np.all(np.isfinite(profile)):
                raise InputError("inflow_profile: expected finite velocities")
            self.primals["inflow_profile"] = profile
        elif inflows:
            axis, side = domain.inflow_face if len(inflows) == 1 else (None, None)
            if axis is not None:
                self.inflow_base = np.full(domain.inflow_profile_shape, domain.inflow_velocity())
        tangential = [v for a, pair in enumerate(boundaries.faces) for f in pair if f.kind == "inflow"
                      for d, v in enumerate(f.velocity) if d != a and v != 0]
        if moving or len(inflows) > 1 or tangential:
            self.dt_differentiable = False
        self.names = tuple(self.primals)

    # the differentiable map (v0, ν, dt[, inflow_profile]) -> (result, drag), written with
    # fluidgrad operations
    def run(self, v0, viscosity, dt, profile=None):
        scale = dt / stop_gradient(dt)          # 1, carrying dt's derivative
        s = scale[0]
        faces = collocated_to_mac((v0[:, :, 0] * s, v0[:, :, 1] * s), self.domain)
        state = self.sim.zeros_state().replace(velocity=faces)
        if profile is not None:
            inflow = profile * s
        elif self.inflow_base is not None:
            inflow = self.inflow_base * s
        else:
            inflow = None
        nu = viscosity[0] * s
        physics = Physics(viscosity=nu, inflow_profile=inflow)
        drag = None
        if not self.obstacle:
            state = self.sim.rollout(state, self.steps, physics=physics, memory_budget=MEMORY_BUDGET)
        else:
            # Mosaic's reference solvers return the mean over the last max(1, steps // 2) steps
            tail = max(1, self.steps // 2)
            state = self.sim.rollout(state, self.steps - tail, physics=physics, memory_budget=MEMORY_BUDGET)
            total = 0.0
            for _ in range(tail):
                state = self.sim.rollout(state, 1, physics=physics, memory_budget=MEMORY_BUDGET)
                total = total + forces.total_forces(state, self.domain, nu, self.dt0)[0][0]
            # the force on the fluid along x (Mosaic's sign), back from the rescaled flow
            # (a force per unit density scales as a velocity squared)
            drag = fnp.reshape(-total / (tail * s * s), (1,))
        ux, uy = mac_to_collocated(state.velocity, self.domain)
        return fnp.stack([ux / s, uy / s], axis=-1), drag

    def forward(self):
        return self.run(*(self.primals[name] for name in self.names))


_BC_SIDES = (("x_lo", 0, 0), ("x_hi", 0, 1), ("y_lo", 1, 0), ("y_hi", 1, 1))


def _face_kind(name, face, axis):
    """fluidgrad's face for one Mosaic ``FaceBC``."""
    kind = getattr(face.type, "value", face.type)
    value = None if face.value is None else [float(v) for v in face.value]
    if kind == "periodic":
        return "periodic"
    if kind == "neumann":
        # zero normal derivative of the velocity: fluidgrad's outflow (which also holds p = 0 there)
        if value is not None:
            raise InputError(f"boundary_conditions.{name}: a neumann face takes no value")
        return "outflow"
    if kind == "no_slip":
        if value is not None and any(value):
            raise InputError(f"boundary_conditions.{name}: a no_slip face takes no velocity (use dirichlet)")
        return "no_slip"
    if kind == "dirichlet":
        if value is None or not any(value):
            return "no_slip"
        if len(value) != 2:
            raise InputError(f"boundary_conditions.{name}.value: expected 2 velocity components, got {len(value)}")
        if value[axis] == 0:
            return {"type": "no_slip", "velocity": value}          # a wall moving along itself
        return {"type": "inflow", "velocity": value}
    raise InputError(f"boundary_conditions.{name}: unsupported type {kind!r}")


def _boundary_spec(inputs):
    """fluidgrad's ``Boundaries.from_dict`` spec for Mosaic's ``GridBC`` (None: all
    periodic). With an ``inflow_profile`` x_lo becomes the inflow face and x_hi, which
    must be periodic or neumann, the outflow."""
    bc = inputs.boundary_conditions
    for name in ("z_lo", "z_hi"):
        if getattr(getattr(bc, name).type, "value", getattr(bc, name).type) != "periodic":
            raise InputError(f"boundary_conditions.{name}: a 2-D field has no z faces (leave them periodic)")
    spec = {name: _face_kind(name, getattr(bc, name), axis) for name, axis, _ in _BC_SIDES}
    for lo, hi in (("x_lo", "x_hi"), ("y_lo", "y_hi")):
        if (spec[lo] == "periodic") != (spec[hi] == "periodic"):
            raise InputError(f"boundary_conditions: {lo} and {hi} must both be periodic or neither")
    if inputs.inflow_profile is not None:
        x_hi = getattr(bc.x_hi.type, "value", bc.x_hi.type)
        if x_hi not in ("periodic", "neumann"):
            raise InputError(f"inflow_profile: x_hi must let the inflow out (periodic or neumann, made an "
                             f"outflow), got {x_hi!r}")
        spec["x_lo"] = {"type": "inflow", "velocity": [0.0, 0.0]}   # normal part: the profile
        spec["x_hi"] = "outflow"
    if all(v == "periodic" for v in spec.values()):
        return None
    return spec


def _obstacles(obstacle, extent):
    """fluidgrad's obstacles for Mosaic's ``GridObstacle`` (fractions of ``domain_extent``)."""
    if obstacle is None:
        return []
    shape = getattr(obstacle.shape, "value", obstacle.shape)
    center = [float(c) for c in obstacle.center]
    if len(center) != 2:
        raise InputError(f"obstacle.center: expected 2 coordinates for a 2-D field, got {len(center)}")
    center = tuple(c * extent for c in center)
    if shape == "cylinder":
        if obstacle.radius is None or not obstacle.radius > 0 or obstacle.half_widths is not None:
            raise InputError("obstacle: a cylinder needs a positive radius (and no half_widths)")
        return [Obstacle("circle", center=center, radius=float(obstacle.radius) * extent)]
    if shape == "box":
        hw = obstacle.half_widths
        if hw is None or len(hw) != 2 or not all(w > 0 for w in hw) or obstacle.radius is not None:
            raise InputError("obstacle: a box needs 2 positive half_widths (and no radius)")
        return [Obstacle("box", lower=tuple(c - w * extent for c, w in zip(center, hw)),
                         upper=tuple(c + w * extent for c, w in zip(center, hw)))]
    raise InputError(f"obstacle.shape: unsupported shape {shape!r}")


def _as_result(cells):
    """``(N, N, 2)`` → Mosaic's ``(N, N, 1, 2)`` float32."""
    return np.asarray(fluidgrad.to_numpy(cells))[:, :, None, :].astype(np.float32)


def _as_drag(drag):
    return None if drag is None else np.asarray(fluidgrad.to_numpy(drag), dtype=np.float32).reshape(1)


def _check_names(names, allowed, what):
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise InputError(f"{what}: {unknown[0]!r} is not differentiable here "
                         f"(choose from {', '.join(allowed)})")


def _check_request(problem, inputs_, outputs, what):
    """The requested derivatives exist for this input."""
    for name in inputs_:
        if name not in problem.names:
            raise InputError(f"{what}_inputs: {name!r} was not given, so it has no derivative")
    if "dt" in inputs_ and not problem.dt_differentiable:
        raise InputError(f"{what}_inputs: 'dt' is not differentiable with a moving wall, a tangential or a "
                         f"second inflow velocity (boundary velocities are not rescaled with dt)")
    if "drag" in outputs and not problem.obstacle:
        raise InputError(f"{what}_outputs: 'drag' is None without an obstacle, so it has no derivative")


# -- endpoints -----------------------------------------------------------------------------


def apply(inputs: InputSchema) -> OutputSchema:
    """Run ``steps`` steps from ``v0``; ``drag`` (with an obstacle) is the x-force on the
    fluid, averaged over the last ``max(1, steps // 2)`` steps; None without one."""
    problem = _Problem(inputs)
    result, drag = problem.forward()
    return OutputSchema(result=_as_result(result), drag=_as_drag(drag))


def vector_jacobian_product(inputs: InputSchema, vjp_inputs: set[str], vjp_outputs: set[str],
                            cotangent_vector: dict[str, Any]) -> dict[str, Any]:
    """``cotangentᵀ ∂outputs/∂inputs`` by fluidgrad's reverse mode through the rollout."""
    _check_names(vjp_inputs, DIFFERENTIABLE_INPUTS, "vjp_inputs")
    _check_names(vjp_outputs, DIFFERENTIABLE_OUTPUTS, "vjp_outputs")
    problem = _Problem(inputs)
    _check_request(problem, vjp_inputs, vjp_outputs, "vjp")
    n = problem.n
    g_result = np.zeros((n, n, 2))
    if "result" in vjp_outputs:
        g = np.asarray(cotangent_vector["result"], dtype=np.float64)
        if g.shape != (n, n, 1, 2):
            raise InputError(f"cotangent_vector.result: expected shape {(n, n, 1, 2)}, got {g.shape}")
        g_result = g[:, :, 0, :]
    g_drag = None
    if problem.obstacle:
        g_drag = np.zeros(1)
        if "drag" in vjp_outputs:
            g_drag = np.asarray(cotangent_vector["drag"], dtype=np.float64).reshape(-1)
            if g_drag.shape != (1,):
                raise InputError(f"cotangent_vector.drag: expected shape (1,), got {g_drag.shape}")
    _, vjp_fn = vjp(problem.run, *(problem.primals[name] for name in problem.names))
    adjoints = dict(zip(problem.names, vjp_fn((g_result, g_drag)), strict=True))
    out = {}
    for name in vjp_inputs:
        if name == "v0":
            out[name] = np.asarray(adjoints["v0"])[:, :, None, :].astype(np.float32)
        elif name == "inflow_profile":
            out[name] = np.asarray(adjoints[name], dtype=np.float32).reshape(n)
        else:
            out[name] = np.asarray(adjoints[name], dtype=np.float32).reshape(1)
    return out


def jacobian_vector_product(inputs: InputSchema, jvp_inputs: set[str], jvp_outputs: set[str],
                            tangent_vector: dict[str, Any]) -> dict[str, Any]:
    """``∂outputs/∂inputs · tangent`` by fluidgrad's forward mode through the rollout."""
    _check_names(jvp_inputs, DIFFERENTIABLE_INPUTS, "jvp_inputs")
    _check_names(jvp_outputs, DIFFERENTIABLE_OUTPUTS, "jvp_outputs")
    problem = _Problem(inputs)
    _check_request(problem, jvp_inputs, jvp_outputs, "jvp")
    p = problem.primals
    tangents = []
    for name in problem.names:
        if name in jvp_inputs:
            t = np.asarray(tangent_vector[name], dtype=np.float64)
            shape = np.shape(inputs.v0) if name == "v0" else p[name].shape
            if t.size != int(np.prod(shape)):
                raise InputError(f"tangent_vector.{name}: expected shape {tuple(shape)}, got {t.shape}")
            t = t.reshape(shape)
            tangents.append(t[:, :, 0, :] if name == "v0" else t)
        else:
            tangents.append(np.zeros_like(p[name]))
    _, (d_result, d_drag) = jvp(problem.run, tuple(p[name] for name in problem.names), tangents)
    out = {}
    for name in jvp_outputs:
        out[name] = _as_result(d_result) if name == "result" else _as_drag(d_drag)
    return out


def abstract_eval(abstract_inputs):
    """Output shapes from input shapes: ``result`` as ``v0``; ``drag`` ``(1,)`` with an
    obstacle, else None."""
    shape = tuple(abstract_inputs.v0.shape)
    if len(shape) != 4 or shape[0] != shape[1] or shape[2:] != (1, 2):
        raise InputError(f"v0: expected shape (N, N, 1, 2) (a 2-D field on a square grid), got {shape}")
    _boundary_spec(abstract_inputs)
    has_obstacle = bool(_obstacles(abstract_inputs.obstacle, float(abstract_inputs.domain_extent)))
    return {"result": {"shape": shape, "dtype": "float32"},
            "drag": {"shape": (1,), "dtype": "float32"} if has_obstacle else None}
