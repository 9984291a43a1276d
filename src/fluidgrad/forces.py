"""Forces the fluid exerts on obstacles: drag and lift, pressure and viscous parts.

A body is a set of solid cells; its surface is every cell face between one of its cells
and a fluid cell (faces on the box boundary excluded). Per unit fluid density (the
kinematic pressure is ``p / Δt`` in the units of the projection's ``p``), with ``A = h^(d-1)``
the area of a face:

* pressure: ``F_p = -Σ_faces P_f n A`` - the fluid cell's pressure ``P_f`` pushing along
  ``-n``, ``n`` the body's outward normal. Along a row through the body this telescopes
  to the pressure drop across it, so the body's pressure volume is the faces it holds
  (half a cell more than its cells on each side; fluid at rest under a body force ``g``
  pushes it with exactly ``-g`` times that);
* viscous: ``F_v,d = ν (A / h) Σ_q (2 n_q + m_q) (u_q - U_d)`` over the open faces ``q``
  of component ``d``: the viscous flux of the scheme's no-slip walls
  (:class:`~fluidgrad.ops.diffusion.ObstacleWalls`) - ``n_q`` neighbours of ``q`` across
  another axis lie in the body (shear, the wall half a cell away: ghost ``2U - u``),
  ``m_q`` along axis ``d`` are the body's closed faces (normal stress, the wall a cell
  away); ``U`` the body's velocity. The flux is that of the viscous step, whose velocity
  the projection then changed by ``-M ∇p``: ``u_q`` is read as ``u + M ∇p`` (the state's
  velocity and pressure), so the two parts add up to the momentum the body takes from
  the fluid in a step (in a steady flow driven by a body force: that force, exactly).

Both are sums of static weights times the state's arrays, so every force is linear in
``(pressure, velocity)`` and differentiable (a loss may use :func:`drag` or
:func:`lift` directly). Drag is the component along the flow axis (the normal of the
inflow face, pointing into the box, or +x when there is none); lift the component along
the next axis (2-D: the one in-plane normal; 3-D: ``lift`` is y, ``side`` is z).
"""

from __future__ import annotations

import dataclasses

import numpy as onp

from . import numpy as fnp
from .backend import xp_of
from .ops.diffusion import ObstacleWalls
from .ops.stencils import _take, gradient


@dataclasses.dataclass(frozen=True)
class BodyWeights:
    """Static weights of one obstacle: ``pressure[d]`` (cell array) and ``shear[d]``
    (array on the faces of axis d), with ``F_d = Σ pressure[d]·P + ν Σ shear[d]·(u_d - U_d)``
    (``U = velocity``, the obstacle's)."""

    pressure: tuple
    shear: tuple
    velocity: tuple


def body_weights(domain) -> tuple:
    """The :class:`BodyWeights` of every obstacle of ``domain`` (cached on it)."""
    key = ("body-weights",)
    out = domain._cache.get(key)
    if out is None:
        fluid = ~domain.solid
        out = domain._cache[key] = tuple(_weights(domain, ob.cells(domain.grid) & domain.solid, fluid, ob)
                                         for ob in domain.obstacles)
    return out


def _weights(domain, body, fluid, obstacle) -> BodyWeights:
    nd, h = domain.ndim, domain.dx
    area = h ** (nd - 1)
    pressure = [onp.zeros(domain.grid.shape) for _ in range(nd)]
    for n in range(nd):
        # faces normal to n: fluid below a body cell pushes it +n, fluid above it -n
        fluid_lo, fluid_hi = domain._neighbour_cells(fluid, n)
        body_lo, body_hi = domain._neighbour_cells(body, n)
        pressure[n] += area * (_low_cells(fluid_lo & body_hi, n, domain.periodic(n))
                               - _high_cells(fluid_hi & body_lo, n, domain.periodic(n)))
    shear = []
    for d in range(nd):
        walls = ObstacleWalls(domain, d, body)
        shear.append(area / h * walls.open * (2 * walls.count + walls.own))
    velocity = tuple(obstacle.velocity) if obstacle.velocity is not None else (0.0,) * nd
    return BodyWeights(tuple(pressure), tuple(shear), velocity)


def _low_cells(faces, axis, periodic):
    """A mask on the faces normal to ``axis`` (face k between cells k - 1 and k) moved to
    each face's low cell."""
    return (onp.roll(faces, -1, axis) if periodic else _take(faces, axis, slice(1, None))).astype(float)


def _high_cells(faces, axis, periodic):
    """A mask on the faces normal to ``axis`` moved to each face's high cell."""
    return (faces if periodic else _take(faces, axis, slice(0, -1))).astype(float)


def obstacle_forces(state, domain, viscosity, dt):
    """``(pressure, viscous)``: two lists, one entry per obstacle, each a list of the
    ``ndim`` force components on it (differentiable values, per unit fluid density)."""
    pressure_parts, viscous_parts = [], []
    p = state.pressure
    viscous = tuple(u + g for u, g in zip(state.velocity, gradient(p, domain=domain)))  # before the projection
    for w in _weights_like(domain, p):
        pressure_parts.append([fnp.sum(w.pressure[d] * p) / dt for d in range(domain.ndim)])
        viscous_parts.append([viscosity * fnp.sum(w.shear[d] * (u - w.velocity[d])) for d, u in enumerate(viscous)])
    return pressure_parts, viscous_parts


def _weights_like(domain, like):
    """:func:`body_weights` as arrays of ``like``'s module and dtype (cached on the domain)."""
    raw = getattr(like, "_fg_value", like)
    xp = xp_of(raw)
    key = ("body-weights", xp.__name__, raw.dtype)
    out = domain._cache.get(key)
    if out is None:
        out = domain._cache[key] = tuple(
            BodyWeights(tuple(xp.asarray(a, dtype=raw.dtype) for a in w.pressure),
                        tuple(xp.asarray(a, dtype=raw.dtype) for a in w.shear), w.velocity)
            for w in body_weights(domain))
    return out


def flow_axis(domain) -> tuple:
    """``(axis, sign)`` of the mean flow: into the box through the inflow face, else +x."""
    for axis, pair in enumerate(domain.boundaries.faces):
        for side, face in enumerate(pair):
            if face.kind == "inflow":
                return axis, (1 if side == 0 else -1)
    return 0, 1


def force_components(total, domain) -> dict:
    """``{'drag': .., 'lift': .. (, 'side': ..)}`` of one obstacle's force vector."""
    axis, sign = flow_axis(domain)
    others = [a for a in range(domain.ndim) if a != axis]
    out = {"drag": sign * total[axis], "lift": total[others[0]]}
    if domain.ndim == 3:
        out["side"] = total[others[1]]
    return out


def total_forces(state, domain, viscosity, dt) -> list:
    """Per obstacle, the total force vector (pressure + viscous) as a list of components."""
    pressure_parts, viscous_parts = obstacle_forces(state, domain, viscosity, dt)
    return [[a + b for a, b in zip(p, v)] for p, v in zip(pressure_parts, viscous_parts)]


def drag(state, domain, viscosity, dt, obstacle=None):
    """Drag on obstacle ``obstacle`` (index), or on all obstacles together (``None``)."""
    return _component(state, domain, viscosity, dt, obstacle, "drag")


def lift(state, domain, viscosity, dt, obstacle=None):
    """Lift on obstacle ``obstacle`` (index), or on all obstacles together (``None``)."""
    return _component(state, domain, viscosity, dt, obstacle, "lift")


def _component(state, domain, viscosity, dt, obstacle, name):
    forces = total_forces(state, domain, viscosity, dt)
    chosen = forces if obstacle is None else [forces[obstacle]]
    return sum(force_components(f, domain)[name] for f in chosen)


def force_record(state, domain, viscosity, dt) -> onp.ndarray:
    """``[obstacle, part, axis]`` float64 numpy array of the forces now (part 0 pressure,
    1 viscous): one row of a run's force time series."""
    from .backend import to_numpy
    pressure_parts, viscous_parts = obstacle_forces(state, domain, viscosity, dt)
    return onp.array([[[float(to_numpy(c)) for c in part] for part in (p, v)]
                      for p, v in zip(pressure_parts, viscous_parts)]).reshape(-1, 2, domain.ndim)


def frontal_size(obstacle, domain) -> float | None:
    """The obstacle's size across the flow: its diameter (2-D) or frontal area (3-D), for
    force coefficients ``C = 2F / (U² size)``; None for a mask."""
    axis, _ = flow_axis(domain)
    if obstacle.shape in ("circle", "sphere"):
        return 2 * obstacle.radius if domain.ndim == 2 else onp.pi * obstacle.radius ** 2
    if obstacle.shape == "box":
        extents = [hi - lo for a, (lo, hi) in enumerate(zip(obstacle.lower, obstacle.upper)) if a != axis]
        return float(onp.prod(extents))
    return None


def summary(records, domain, speed=None) -> list:
    """Per obstacle, what a run's force time series ``records`` (rows of
    :func:`force_record`) says: means over its last half (the transient left out), the
    final values, the lift's RMS about its mean, and, given the flow ``speed``, the drag and
    lift coefficients ``2F / (U² size)`` (:func:`frontal_size`)."""
    records = onp.asarray(records, dtype=float)
    if records.size == 0:
        return []
    late = records[len(records) // 2:]
    out = []
    for k, obstacle in enumerate(domain.obstacles):
        total = late[:, k].sum(axis=1)  # [step, axis]
        parts = {name: [force_components(row, domain) for row in late[:, k, part]]
                 for part, name in ((0, "pressure"), (1, "viscous"))}
        both = [force_components(row, domain) for row in total]
        drag, lift = onp.array([c["drag"] for c in both]), onp.array([c["lift"] for c in both])
        final = force_components(records[-1, k].sum(axis=0), domain)
        entry = {"drag_mean": float(drag.mean()), "lift_mean": float(lift.mean()),
                 "lift_rms": float(onp.sqrt(((lift - lift.mean()) ** 2).mean())),
                 "drag_final": float(final["drag"]), "lift_final": float(final["lift"]),
                 "pressure_drag_mean": float(onp.mean([c["drag"] for c in parts["pressure"]])),
                 "viscous_drag_mean": float(onp.mean([c["drag"] for c in parts["viscous"]]))}
        size = frontal_size(obstacle, domain)
        if speed and size:
            scale = 2.0 / (speed ** 2 * size)
            entry.update(drag_coefficient=entry["drag_mean"] * scale, lift_coefficient_rms=entry["lift_rms"] * scale,
                         lift_coefficient_max=float(onp.abs(lift).max()) * scale)
        out.append(entry)
    return out


__all__ = ["BodyWeights", "body_weights", "drag", "flow_axis", "force_components", "force_record", "frontal_size",
           "lift", "obstacle_forces", "summary", "total_forces"]
