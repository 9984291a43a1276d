"""One member of a sweep, run where a Dask worker (or this process) runs it, by the code
the single commands use:

* ``run``: the steps of ``fluidgrad run`` (an untimed warm-up step, once per worker and
  kind of member, then the rollout with blow-up checks), so a member's final fields equal
  that command's ``result.npz`` bit for bit;
* ``gradient``: the loss of the scenario's ``optimize:`` block and its gradient at the
  initial parameters (:meth:`~fluidgrad.optimize.Problem.value_and_grad`, as ``gradcheck``);
* ``optimize``: the block's optimization (:func:`fluidgrad.optimize.run`, as ``fluidgrad
  optimize``), then the rollout of the optimized parameters for the final fields.

Given a store, the member writes its own fields and vectors into its region there
(:func:`.store.member_writer`; with ``record_every``, each snapshot as the rollout passes
it) and returns only its scalars. A member that fails (a blow-up, a solver that does not
converge, any fluidgrad error) is a result too: ``status`` ``"failed"`` and its one-line
``error``; the sweep goes on.
"""

from __future__ import annotations

import math
import time

import numpy as onp

from ..errors import FluidgradError

#: what a member can do
WHAT = ("run", "gradient", "optimize")
#: the scalars each kind of member records (NaN, or "", where a failed member has none)
SCALARS = {"run": ("wall_seconds", "steps_per_second", "max_divergence"),
           "gradient": ("loss", "grad_norm", "wall_seconds"),
           "optimize": ("initial_loss", "final_loss", "iterations", "grad_norm", "stop_reason", "wall_seconds",
                        "seconds_per_iteration")}


def run_member(scenario, overrides: dict, what: str = "run", path=None, index=None, record_every=None) -> dict:
    """``{"status", "error", "metrics": {scalar: value}, "arrays": {name: array}}`` of the
    scenario ``scenario`` (a path or bundled name) with ``overrides``. With a store
    ``path``, the arrays go into member ``index``'s region there (``arrays`` is empty)."""
    from ..scenario import load_scenario
    write = None
    if path is not None:
        from .store import member_writer
        write = member_writer(path, index)
    try:
        loaded = load_scenario(scenario, overrides)
        sim = loaded.simulation()
        metrics, arrays = _KINDS[what](loaded, sim, write, record_every)
    except (FluidgradError, FloatingPointError, ArithmeticError) as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "arrays": {},
                "metrics": {name: "" if name == "stop_reason" else onp.nan for name in SCALARS[what]}}
    if write is not None:
        write(arrays)
        arrays = {}
    return {"status": "done", "error": "", "metrics": metrics, "arrays": arrays}


def _run(loaded, sim, write, record_every):
    from ..cli import _max_divergence
    state = loaded.initial_state(sim)
    kind = _kernel_kind(loaded.raw)
    if kind not in _WARM:  # untimed warm-up, as `fluidgrad run`: compiles (or loads) the kernels on first use
        sim.step(state)
        _WARM.add(kind)
    record = _recorder(sim, write, loaded.steps, record_every)
    t0 = time.perf_counter()
    final = _simulate(sim, state, loaded.steps, record)
    seconds = time.perf_counter() - t0
    metrics = {"wall_seconds": seconds, "steps_per_second": loaded.steps / seconds if seconds > 0 else onp.nan,
               "max_divergence": float(_max_divergence(final, sim.domain))}
    return metrics, ({} if record else final_fields(final, sim))


_WARM = set()  # the kinds of member (see _kernel_kind) this process has warmed up


def _kernel_kind(data):
    """The scenario ``data`` with every real number replaced by its type: what decides
    which kernels a run compiles and loads (a second member that differs only in its real
    values, a viscosity or an amplitude, finds them loaded and skips the warm-up step)."""
    if isinstance(data, dict):
        return tuple((k, _kernel_kind(v)) for k, v in data.items())
    if isinstance(data, (list, tuple)):
        return tuple(_kernel_kind(v) for v in data)
    return float if isinstance(data, float) else data


def _gradient(loaded, sim, write, record_every):
    problem = loaded.problem(sim)
    x = problem.flatten(problem.initial_raw())
    t0 = time.perf_counter()
    with onp.errstate(all="ignore"):
        loss, gradient = problem.value_and_grad(x)
    seconds = time.perf_counter() - t0
    if not (math.isfinite(loss) and onp.isfinite(gradient).all()):
        raise FloatingPointError(f"the loss or its gradient is not finite (loss {loss})")
    return ({"loss": loss, "grad_norm": float(onp.linalg.norm(gradient)), "wall_seconds": seconds},
            {"parameters": x, "gradient": gradient})


def _optimize(loaded, sim, write, record_every):
    from ..optimize import make_optimizer, run
    problem = loaded.problem(sim)
    spec = loaded.optimize["optimizer"]
    t0 = time.perf_counter()
    with onp.errstate(all="ignore"):
        result = run(problem, make_optimizer(spec["type"], **spec["options"]), spec["iterations"])
    seconds = time.perf_counter() - t0
    final = problem.states(result.raw)[0][-1]
    history = result.history
    metrics = {"initial_loss": result.initial_loss, "final_loss": result.final_loss, "iterations": len(history),
               "grad_norm": history[-1]["grad_norm"] if history else result.initial_grad_norm,
               "stop_reason": result.stop_reason, "wall_seconds": seconds,
               "seconds_per_iteration": seconds / len(history) if history else onp.nan}
    return metrics, {"parameters": result.x, **final_fields(final, sim)}


_KINDS = {"run": _run, "gradient": _gradient, "optimize": _optimize}


def _recorder(sim, write, steps, every):
    """``record(step, state)``: writes the state if ``--record-every every`` keeps that
    step; None without ``every``."""
    if not every:
        return None
    from .store import record_steps
    slot = {step: j for j, step in enumerate(record_steps(steps, every))}

    def record(step, state):
        if step in slot:
            write(final_fields(state, sim), time=slot[step])
    return record


def _simulate(sim, state, steps, record=None):
    from ..simulation import check_finite
    if record is not None:
        record(0, state)

    def monitor(k, s):
        check_finite(k, s)
        if record is not None:
            record(k + 1, s)
    with onp.errstate(all="ignore"):  # a blow-up is caught by check_finite, not printed
        return sim.rollout(state, steps, monitor=monitor, checkpoint=False)


def final_fields(state, sim) -> dict:
    """The fields of ``state`` as ``fluidgrad run`` writes its final ones (float64 numpy):
    density, pressure and the MAC velocity components ``u``, ``v`` (, ``w``)."""
    from ..backend import to_numpy
    fields = {"density": to_numpy(state.density).astype(float), "pressure": to_numpy(state.pressure).astype(float)}
    for d, name in enumerate("uvw"[: sim.domain.ndim]):
        fields[name] = to_numpy(state.velocity[d]).astype(float)
    return fields


def parameter_names(loaded) -> list:
    """The name of every entry of the scenario's flat raw parameter vector, in order:
    ``name`` for a scalar, ``name[i]`` for entry i of an array (flattened in C order), the
    leaves of a parameter with several numbered ``name_0``, ``name_1``."""
    sim = loaded.simulation()
    names = []
    for p in loaded.problem(sim).parameters:
        shapes = p.shapes(sim)
        for leaf, shape in enumerate(shapes):
            label = p.name if len(shapes) == 1 else f"{p.name}_{leaf}"
            size = math.prod(shape)
            names += [label] if size == 1 and not shape else [f"{label}[{i}]" for i in range(size)]
    return names
