"""One member of a sweep, run where a Dask worker (or this process) runs it: the same
steps as ``fluidgrad run`` (an untimed warm-up step, then the rollout with blow-up
checks), so a member's final fields equal that command's ``result.npz`` bit for bit.

A member that fails (a blow-up, a solver that does not converge, any fluidgrad error) is
a result too: ``status`` ``"failed"`` and its one-line ``error``; the sweep goes on.
"""

from __future__ import annotations

import time

import numpy as onp

from ..errors import FluidgradError

#: the scalar metrics of every member (NaN where a failed member has none)
METRICS = ("wall_seconds", "steps_per_second", "max_divergence")


def run_member(scenario, overrides: dict, what: str = "run") -> dict:
    """``{"status", "error", "fields": {name: array}, "metrics": {name: float}}`` of the
    scenario ``scenario`` (a path or bundled name) with ``overrides``."""
    from ..scenario import load_scenario
    if what != "run":
        raise NotImplementedError(f"sweep --what {what}: not built yet (only run)")
    try:
        loaded = load_scenario(scenario, overrides)
        sim = loaded.simulation()
        state = loaded.initial_state(sim)
        sim.step(state)  # untimed warm-up, as `fluidgrad run` (compiles on first use)
        t0 = time.perf_counter()
        final = _simulate(sim, state, loaded.steps)
        seconds = time.perf_counter() - t0
    except (FluidgradError, FloatingPointError, ArithmeticError) as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "fields": {}, "metrics": {name: onp.nan for name in METRICS}}
    from ..cli import _max_divergence
    return {"status": "done", "error": "", "fields": final_fields(final, sim),
            "metrics": {"wall_seconds": seconds, "steps_per_second": loaded.steps / seconds if seconds > 0 else onp.nan,
                        "max_divergence": float(_max_divergence(final, sim.domain))}}


def _simulate(sim, state, steps):
    from ..simulation import check_finite
    with onp.errstate(all="ignore"):  # a blow-up is caught by check_finite, not printed
        return sim.rollout(state, steps, monitor=check_finite, checkpoint=False)


def final_fields(state, sim) -> dict:
    """The final fields as ``fluidgrad run`` writes them (float64 numpy): density,
    pressure and the MAC velocity components ``u``, ``v`` (, ``w``)."""
    from ..backend import to_numpy
    fields = {"density": to_numpy(state.density).astype(float), "pressure": to_numpy(state.pressure).astype(float)}
    for d, name in enumerate("uvw"[: sim.domain.ndim]):
        fields[name] = to_numpy(state.velocity[d]).astype(float)
    return fields
