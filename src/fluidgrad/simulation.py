"""A time step composed from the kernels, and differentiable rollouts.

One step (``Simulation.step``)::

    closed faces → sources → advection → forces (buoyancy, vorticity confinement, control)
            → viscosity → pressure projection

Every stage is a kernel primitive (or a few differentiable array operations), so a step
is differentiable in the state, in the control force and in the physical parameters
(viscosity, buoyancy, vorticity confinement, source rates), which may be passed as
Tensors or traced values. ``rollout`` differentiates long runs in bounded memory with
the binomial (Revolve) checkpointing schedule of :mod:`fluidgrad.checkpointing`.

A step first sets the velocity on closed faces (walls, inflow faces, faces touching an
obstacle) to its prescribed value (:func:`~fluidgrad.ops.close_faces`): whatever a
state holds there has no effect, and its gradient there is exactly zero.
"""

from __future__ import annotations

import dataclasses

import numpy as onp

from .ad.core import Primitive
from .backend import get_backend
from .boundaries import Domain
from .errors import InputError, SimulationError, SolveError, UnknownNameError
from .ops.advection import SCHEMES
from .ops import (PressureSolve, add_source, advect_state, apply_force, buoyancy, close_faces,
                  diffuse_velocity, impose, project, project_fixed, vorticity_confinement)


@dataclasses.dataclass(frozen=True)
class State:
    """The fluid at one instant: MAC ``velocity`` (a tuple of face arrays, one per axis),
    cell-centred ``density`` and ``pressure``, and the number of steps taken."""

    velocity: tuple
    density: object
    pressure: object = None
    step: int = 0

    def replace(self, **changes) -> "State":
        """A copy with some fields changed (``state.replace(velocity=...)``)."""
        unknown = changes.keys() - _STATE_FIELDS
        if unknown:
            raise TypeError(f"State has no field {sorted(unknown)[0]!r}")
        new = object.__new__(State)  # dataclasses.replace costs ~4 µs, a fifth of a small step
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new


_STATE_FIELDS = frozenset(f.name for f in dataclasses.fields(State))


def check_finite(k, state):
    """Raise :class:`SimulationError` if ``state`` (after step ``k``) holds NaN or Inf;
    usable as a rollout ``monitor``."""
    from .backend import xp_of
    fields = [("density", state.density)] + [(f"velocity[{d}]", u) for d, u in enumerate(state.velocity)]
    for name, value in fields:
        raw = getattr(value, "_fg_value", value)
        if not bool(xp_of(raw).isfinite(raw).all()):
            raise SimulationError(f"the simulation blew up at step {k + 1}: {name} is not finite "
                                  f"(try a smaller time.dt)")


class AdjointMonitor:
    """Collects the norm of the state's adjoint after each step during the backward
    pass (``norms[k]`` for step ``k``), and stops at the first non-finite one."""

    def __init__(self):
        self.norms = {}

    def __call__(self, k, g):
        from .backend import to_numpy
        leaves = [x for x in (g.density, *g.velocity) if x is not None]
        norm = float(sum(float((to_numpy(x).astype(float) ** 2).sum()) for x in leaves)) ** 0.5
        self.norms[k] = norm
        if not onp.isfinite(norm):
            raise FloatingPointError(f"backward pass: the adjoint of the state after step {k + 1} "
                                     f"is not finite")


def _identity(state, *, k, monitor):
    """``state`` unchanged; during the backward pass ``monitor(k, adjoint)`` sees its adjoint."""
    return state


def _probe_vjp(g, ans, state, *, k, monitor):
    monitor(k, g)
    return g


probe = Primitive(_identity, "adjoint_probe", register=True)
probe.defvjp(_probe_vjp, needs=((),))
probe.defjvp(lambda dot, ans, state, *, k, monitor: dot)


@dataclasses.dataclass(frozen=True)
class Physics:
    """Physical parameters; each may be a number or a differentiable value."""

    viscosity: object = 0.0
    buoyancy: tuple = (0.0, 0.0)
    vorticity_confinement: object = 0.0
    source_rate: object = None  # overrides every source's rate (e.g. an inflow speed)
    #: the normal velocity on the inflow face, one value per face cell (overrides the face's own)
    inflow_profile: object = None


@dataclasses.dataclass(frozen=True)
class Source:
    """Inject ``rate`` per unit time of density, or hold the velocity at ``value``,
    inside the cell ``mask`` (a boolean array)."""

    field: str
    mask: object
    rate: object = 1.0
    value: tuple | None = None


class Simulation:
    """Incompressible Navier-Stokes with a passive (buoyant) density on a MAC grid."""

    def __init__(self, domain: Domain, dt: float, physics: Physics = Physics(), *,
                 advection: str = "maccormack", pressure: PressureSolve = PressureSolve(),
                 sources=(), implicit_viscosity: bool = True, backend: str = "numpy",
                 dtype=onp.float64):
        if not dt > 0:
            raise InputError(f"must be positive (got {dt})", key="time.dt")
        if advection not in SCHEMES:
            raise UnknownNameError("advection scheme", advection, SCHEMES, key="advection")
        self.domain = domain
        self.dt = float(dt)
        self.physics = physics
        self.advection = advection
        self.pressure = pressure
        self.sources = tuple(sources)
        self.implicit_viscosity = implicit_viscosity
        self.xp = get_backend(backend)
        self.backend = backend
        self.dtype = onp.dtype(dtype)
        pressure.resolved(domain)  # reject impossible solver choices now

    @property
    def ndim(self) -> int:
        return self.domain.ndim

    # -- states ----------------------------------------------------------------

    def zeros_state(self) -> State:
        xp, dt = self.xp, self.dtype
        return State(tuple(xp.zeros(s, dtype=dt) for s in self.domain.velocity_shapes),
                     xp.zeros(self.domain.grid.shape, dtype=dt),
                     xp.zeros(self.domain.grid.shape, dtype=dt))

    def initial_state(self, velocity=None, density=None) -> State:
        """A state from arrays (numpy or of this backend; cast to the dtype); missing
        fields are zero. The velocity is projected to be divergence-free. An
        :class:`InputError` names an argument of the wrong shape, a dtype that is not real
        numbers, or non-finite values."""
        velocity, density = self.check_fields(velocity, density)
        state = self.zeros_state()
        if density is not None:
            state = state.replace(density=density)
        if velocity is not None:
            v, p = project(velocity, domain=self.domain, solve=self.pressure)
            state = state.replace(velocity=v, pressure=p)
        return state

    def check_fields(self, velocity=None, density=None):
        """``(velocity, density)`` as arrays of this backend and dtype, checked as
        :meth:`initial_state` says (``None`` stays ``None``)."""
        if density is not None:
            density = self._field(density, "density", self.domain.grid.shape)
        if velocity is not None:
            shapes = self.domain.velocity_shapes
            if isinstance(velocity, (str, bytes)) or not hasattr(velocity, "__len__") or len(velocity) != len(shapes):
                got = f"{len(velocity)}" if hasattr(velocity, "__len__") else type(velocity).__name__
                raise InputError(f"velocity: expected {len(shapes)} face arrays (one per axis, shapes "
                                 f"{', '.join(map(str, shapes))}), got {got}")
            velocity = tuple(self._field(u, f"velocity[{d}]", s) for d, (u, s) in enumerate(zip(velocity, shapes)))
        return velocity, density

    def _field(self, value, name, shape):
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            try:
                value = onp.asarray(value)
            except (ValueError, TypeError):
                raise InputError(f"{name}: expected an array of shape {tuple(shape)}, "
                                 f"got {type(value).__name__}") from None
        if tuple(value.shape) != tuple(shape):
            raise InputError(f"{name}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
        if onp.dtype(value.dtype).kind not in "biuf":
            raise InputError(f"{name}: expected real numbers, got dtype {value.dtype}")
        with onp.errstate(over="ignore", invalid="ignore"):  # an overflow to Inf is reported below
            out = self.xp.asarray(value, dtype=self.dtype)
        if not bool(self.xp.isfinite(out).all()):
            raise InputError(f"{name}: holds values that are not finite (NaN or Inf) in {self.dtype}")
        return out

    # -- one step -----------------------------------------------------------------

    def apply_sources(self, state: State, dt, physics: Physics) -> State:
        density, velocity = state.density, state.velocity
        for src in self.sources:
            mask = self.xp.asarray(src.mask)
            if src.field == "density":
                rate = src.rate if physics.source_rate is None else physics.source_rate
                density = add_source(density, mask, rate, dt)
            else:
                velocity = tuple(impose(u, self._face_mask(mask, d), src.value[d])
                                 for d, u in enumerate(velocity))
        return state.replace(density=density, velocity=velocity)

    def _face_mask(self, mask, axis):
        from .ops.stencils import center_to_face
        return center_to_face(mask.astype(self.dtype), domain=self.domain, axis=axis) > 0.25

    def advect(self, state: State, dt) -> State:
        (density,), velocity = advect_state((state.density,), state.velocity, dt=dt, domain=self.domain,
                                            scheme=self.advection)
        return state.replace(density=density, velocity=velocity)

    def apply_forces(self, state: State, dt, physics: Physics, force=None) -> State:
        velocity = state.velocity
        if _nonzero(physics.buoyancy):
            velocity = apply_force(velocity, buoyancy(state.density, physics.buoyancy, domain=self.domain), dt)
        if _nonzero(physics.vorticity_confinement):
            f = vorticity_confinement(velocity, physics.vorticity_confinement, domain=self.domain)
            velocity = apply_force(velocity, f, dt)
        if force is not None:
            velocity = apply_force(velocity, force, dt)
        return state.replace(velocity=velocity)

    def apply_viscosity(self, state: State, dt, physics: Physics) -> State:
        if not _nonzero(physics.viscosity):
            return state
        velocity = diffuse_velocity(state.velocity, physics.viscosity, dt=dt, domain=self.domain,
                                    implicit=self.implicit_viscosity)
        return state.replace(velocity=velocity)

    def make_incompressible(self, state: State, fixed=None) -> State:
        """Project ``state``'s velocity; ``fixed``: the closed faces' values, if not the domain's."""
        if fixed is None:
            velocity, pressure = project(state.velocity, domain=self.domain, solve=self.pressure)
        else:
            velocity, pressure = project_fixed(state.velocity, fixed, domain=self.domain, solve=self.pressure)
        return state.replace(velocity=velocity, pressure=pressure)

    def step(self, state: State, physics: Physics | None = None, force=None) -> State:
        """One time step; ``physics`` overrides the parameters (differentiable values
        allowed), ``force`` is a control force on the faces (a tuple, one per axis)."""
        physics = self.physics if physics is None else physics
        dt = self.dt
        fixed = None
        if physics.inflow_profile is not None:
            fixed = self.domain.fixed_velocity_with(physics.inflow_profile)
        state = state.replace(velocity=close_faces(state.velocity, self.domain, fixed))
        state = self.apply_sources(state, dt, physics)
        state = self.advect(state, dt)
        state = self.apply_forces(state, dt, physics, force)
        state = self.apply_viscosity(state, dt, physics)
        try:
            state = self.make_incompressible(state, fixed)
        except SolveError as exc:
            raise SimulationError(f"step {state.step + 1}: {exc}{self._blow_up_hint(state)}") from None
        return state.replace(step=state.step + 1)

    def _blow_up_hint(self, state) -> str:
        """What a failed pressure solve says about the flow: the CFL number ``max|u| dt / dx``
        of the velocity it was given (a blow-up if it is huge or not finite)."""
        from .backend import to_numpy
        with onp.errstate(over="ignore", invalid="ignore"):
            speed = max(float(onp.abs(to_numpy(u)).max()) for u in state.velocity)  # to_numpy unwraps Tensors
        cfl = speed * self.dt / self.domain.dx
        if onp.isfinite(cfl) and cfl < 1e3:
            return f" (CFL number {cfl:.3g}; try pressure.max_iterations or another pressure.solver)"
        return f" — the velocity blew up (max |u| {speed:.3g}, CFL number {cfl:.3g}); reduce time.dt"

    # -- many steps -----------------------------------------------------------------

    def rollout(self, state: State, steps: int, *, physics: Physics | None = None, controls=None,
                force=None, checkpoint=True, memory_budget=None, snapshots=None, record_every=None,
                monitor=None, start=0, adjoint_monitor=None, snapshot_dir=None):
        """Run ``steps`` steps; differentiable in the state, ``physics`` and ``controls``.

        * ``force(k, controls)`` gives the control force of step ``k`` from the control
          parameters ``controls`` (any tree of arrays); e.g. a held force is
          ``force=lambda k, c: c``.
        * ``checkpoint`` (default): the backward pass keeps at most ``snapshots`` states
          (or as many as ``memory_budget`` bytes hold; by default
          :func:`~fluidgrad.checkpointing.default_snapshots`, within 192 MiB) and recomputes
          the rest by the binomial schedule; when the whole tape fits the budget nothing is
          recomputed. Snapshots hold the velocity and density (not the pressure).
        * ``record_every``: return the list of states every that many steps (the initial
          state first) instead of the final state.
        * ``monitor(k, state)`` is called after each step of the forward pass
          (:func:`check_finite` stops a blow-up there).
        * ``adjoint_monitor(k, adjoint_state)`` (e.g. an :class:`AdjointMonitor`) is called
          for each step during the backward pass: per-step adjoint norms.
        * ``snapshot_dir``: keep the checkpoint snapshots as files there (``True``: a
          temporary folder) instead of in memory, for very long runs.
        """
        from .checkpointing import DiskStore, binomial_rollout, snapshots_for_budget
        if not isinstance(state, State):
            raise InputError(f"state: expected a State, got {type(state).__name__}")
        if isinstance(steps, bool) or not isinstance(steps, (int, onp.integer)) or steps < 0:
            raise InputError(f"steps: expected a non-negative integer, got {steps!r}")
        if force is not None and not callable(force):
            raise InputError(f"force: expected a function force(k, controls), got {type(force).__name__}")
        if record_every:
            states = [state]
            for offset in range(0, steps, record_every):
                n = min(record_every, steps - offset)
                states.append(self.rollout(
                    states[-1], n, physics=physics, controls=controls, force=force,
                    checkpoint=checkpoint, memory_budget=memory_budget, snapshots=snapshots,
                    monitor=monitor, start=start + offset, adjoint_monitor=adjoint_monitor,
                    snapshot_dir=snapshot_dir))
            return states

        def step_fn(k, s, params):
            phys, ctrl = params
            out = self.step(s, phys, force(k, ctrl) if force is not None else None)
            if monitor is not None:
                monitor(k, out)
            if adjoint_monitor is not None:
                out = probe(out, k=k, monitor=adjoint_monitor)
            return out

        params = (self.physics if physics is None else physics, controls)
        if checkpoint and snapshots is None:
            snapshots = snapshots_for_budget(memory_budget, self.state_bytes(), steps, self.snapshot_bytes())
        if not checkpoint or snapshots is None:
            for k in range(start, start + steps):
                state = step_fn(k, state, params)
            return state
        store = DiskStore(None if snapshot_dir is True else snapshot_dir) if snapshot_dir else None
        return binomial_rollout(step_fn, state, steps, snapshots, params, start, store, snapshot=_without_pressure)

    def state_bytes(self) -> int:
        """Bytes of one state (velocity + density + pressure)."""
        cells = self.domain.grid.num_cells
        faces = sum(int(onp.prod(s)) for s in self.domain.velocity_shapes)
        return (faces + 2 * cells) * self.dtype.itemsize

    def snapshot_bytes(self) -> int:
        """Bytes of one checkpoint snapshot: velocity + density (a step never reads the
        pressure, so snapshots leave it out)."""
        cells = self.domain.grid.num_cells
        faces = sum(int(onp.prod(s)) for s in self.domain.velocity_shapes)
        return (faces + cells) * self.dtype.itemsize


def _without_pressure(state):
    """What a checkpoint snapshot keeps of ``state``: all a step reads (it recomputes the
    pressure from the velocity)."""
    return state.replace(pressure=None) if isinstance(state, State) else state


def _nonzero(value) -> bool:
    """False only for a plain number (or numbers) equal to zero: traced values count."""
    if hasattr(value, "_fg_value") or hasattr(value, "shape"):
        return True
    if isinstance(value, (tuple, list)):
        return any(_nonzero(v) for v in value)
    return value != 0


__all__ = ["AdjointMonitor", "Physics", "Simulation", "SimulationError", "Source", "State",
           "check_finite"]
