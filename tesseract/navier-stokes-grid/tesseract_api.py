"""fluidgrad as a Tesseract for Mosaic's ``navier-stokes-grid`` domain.

Inputs and outputs are Mosaic's canonical schemas
(``mosaic_shared.problems.navier_stokes_grid``), differentiable in ``v0``,
``viscosity``, ``dt`` and ``inflow_profile`` (inputs) and ``result``, ``drag``
(outputs). Load it in-process with
``tesseract_core.Tesseract.from_tesseract_api("tesseract/navier-stokes-grid/tesseract_api.py")``
or build the image with ``tesseract build tesseract/navier-stokes-grid``.

How the schema maps onto fluidgrad:

* ``v0`` ``(N, N, 1, 2)``: the velocity at the points ``(i, j)·h`` of the periodic box
  of side ``domain_extent`` (``h = domain_extent / N``). fluidgrad's cell ``(i, j)``
  holds Mosaic's point ``(i, j)`` (a periodic box has no preferred origin). Each
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
from fluidgrad.boundaries import Boundaries, Domain  # noqa: E402
from fluidgrad.collocated import collocated_to_mac, mac_to_collocated  # noqa: E402
from fluidgrad.grid import Grid  # noqa: E402
from fluidgrad.ops import advect_velocity  # noqa: E402

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
        self._refuse_unsupported(inputs)
        self.obstacle = None
        domain = Domain(Grid((n, n), (extent, extent)), Boundaries.periodic(2))
        self.domain = domain
        self.sim = _VelocitySimulation(domain, self.dt0, Physics(viscosity=nu), advection="maccormack")
        self.primals = {"v0": v0[:, :, 0, :].astype(np.float64),
                        "viscosity": np.asarray(inputs.viscosity, dtype=np.float64).reshape(1),
                        "dt": np.asarray(inputs.dt, dtype=np.float64).reshape(1)}

    @staticmethod
    def _refuse_unsupported(inputs):
        if not inputs.boundary_conditions.is_fully_periodic:
            raise InputError("boundary_conditions: only the fully periodic box is supported by this "
                             "fluidgrad Tesseract so far (walls and inflow need an obstacle and fluidgrad's "
                             "inflow_profile, not yet available)")
        if inputs.obstacle is not None:
            raise InputError("obstacle: not supported by this fluidgrad Tesseract yet (needs fluidgrad.forces "
                             "for the drag)")
        if inputs.inflow_profile is not None:
            raise InputError("inflow_profile: not supported by this fluidgrad Tesseract yet (needs "
                             "fluidgrad's Physics.inflow_profile)")

    # the differentiable map (v0, ν, dt) -> result, written with fluidgrad operations
    def run(self, v0, viscosity, dt):
        scale = dt / stop_gradient(dt)          # 1, carrying dt's derivative
        s = scale[0]
        faces = collocated_to_mac((v0[:, :, 0] * s, v0[:, :, 1] * s), self.domain)
        state = self.sim.zeros_state().replace(velocity=faces)
        physics = Physics(viscosity=viscosity[0] * s)
        state = self.sim.rollout(state, self.steps, physics=physics, memory_budget=MEMORY_BUDGET)
        ux, uy = mac_to_collocated(state.velocity, self.domain)
        return fnp.stack([ux / s, uy / s], axis=-1)

    def forward(self):
        p = self.primals
        return self.run(p["v0"], p["viscosity"], p["dt"])


def _as_result(cells):
    """``(N, N, 2)`` → Mosaic's ``(N, N, 1, 2)`` float32."""
    return np.asarray(fluidgrad.to_numpy(cells))[:, :, None, :].astype(np.float32)


_ORDER = ("v0", "viscosity", "dt")


def _check_names(names, allowed, what):
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise InputError(f"{what}: {unknown[0]!r} is not differentiable here "
                         f"(choose from {', '.join(allowed)})")


# -- endpoints -----------------------------------------------------------------------------


def apply(inputs: InputSchema) -> OutputSchema:
    """Run ``steps`` steps from ``v0``; ``drag`` is None (no obstacle)."""
    problem = _Problem(inputs)
    return OutputSchema(result=_as_result(problem.forward()), drag=None)


def vector_jacobian_product(inputs: InputSchema, vjp_inputs: set[str], vjp_outputs: set[str],
                            cotangent_vector: dict[str, Any]) -> dict[str, Any]:
    """``cotangentᵀ ∂outputs/∂inputs`` by fluidgrad's reverse mode through the rollout."""
    _check_names(vjp_inputs, DIFFERENTIABLE_INPUTS, "vjp_inputs")
    _check_names(vjp_outputs, DIFFERENTIABLE_OUTPUTS, "vjp_outputs")
    problem = _Problem(inputs)
    if "drag" in vjp_outputs:
        raise InputError("vjp_outputs: 'drag' is None without an obstacle, so it has no derivative")
    p = problem.primals
    _, vjp_fn = vjp(problem.run, p["v0"], p["viscosity"], p["dt"])
    g = np.asarray(cotangent_vector["result"], dtype=np.float64)
    if g.shape != (problem.n, problem.n, 1, 2):
        raise InputError(f"cotangent_vector.result: expected shape {(problem.n, problem.n, 1, 2)}, got {g.shape}")
    adjoints = dict(zip(_ORDER, vjp_fn(g[:, :, 0, :]), strict=True))
    out = {}
    for name in vjp_inputs:
        if name == "v0":
            out[name] = np.asarray(adjoints["v0"])[:, :, None, :].astype(np.float32)
        else:
            out[name] = np.asarray(adjoints[name], dtype=np.float32).reshape(1)
    return out


def jacobian_vector_product(inputs: InputSchema, jvp_inputs: set[str], jvp_outputs: set[str],
                            tangent_vector: dict[str, Any]) -> dict[str, Any]:
    """``∂outputs/∂inputs · tangent`` by fluidgrad's forward mode through the rollout."""
    _check_names(jvp_inputs, DIFFERENTIABLE_INPUTS, "jvp_inputs")
    _check_names(jvp_outputs, DIFFERENTIABLE_OUTPUTS, "jvp_outputs")
    problem = _Problem(inputs)
    if "drag" in jvp_outputs:
        raise InputError("jvp_outputs: 'drag' is None without an obstacle, so it has no derivative")
    p = problem.primals
    tangents = []
    for name in _ORDER:
        if name in jvp_inputs:
            t = np.asarray(tangent_vector[name], dtype=np.float64).reshape(np.shape(inputs.v0) if name == "v0" else (1,))
            tangents.append(t[:, :, 0, :] if name == "v0" else t)
        else:
            tangents.append(np.zeros_like(p[name]))
    _, dot = jvp(problem.run, (p["v0"], p["viscosity"], p["dt"]), tangents)
    return {name: _as_result(dot) for name in jvp_outputs}


def abstract_eval(abstract_inputs):
    """Output shapes from input shapes: ``result`` as ``v0``; ``drag`` ``(1,)`` with an
    obstacle, else None."""
    shape = tuple(abstract_inputs.v0.shape)
    if len(shape) != 4 or shape[0] != shape[1] or shape[2:] != (1, 2):
        raise InputError(f"v0: expected shape (N, N, 1, 2) (a 2-D field on a square grid), got {shape}")
    _Problem._refuse_unsupported(abstract_inputs)
    return {"result": {"shape": shape, "dtype": "float32"}, "drag": None}
