"""The optimization loop: records every iteration, saves its resume state atomically
after each one, and resumes exactly.

After iteration ``k`` the folder holds ``history.json`` (one object per completed
iteration: ``iteration``, ``loss``, ``grad_norm``, ``seconds``) and ``resume.npz`` (the
optimizer's whole state). Both are written to a temporary file and renamed, so a crash
or SIGKILL never leaves them half-written; Ctrl-C (KeyboardInterrupt) propagates after
the last completed iteration has been saved.

The run stops before ``iterations`` when the optimizer's tolerances say it has converged
(:func:`~.optimizers.stop_reason`: relative decrease ≤ ``ftol``, gradient norm ≤
``gtol`` × the initial one) or its line search finds no lower loss; ``stop_reason`` says
which, and is saved with the resume state, so a resumed run stops the same way.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as onp

from ..atomic import atomic_write_bytes, atomic_write_json
from ..errors import ResumeError  # noqa: F401 (re-exported)
from .optimizers import stop_reason

RESUME_FILE = "resume.npz"
HISTORY_FILE = "history.json"


@dataclasses.dataclass
class OptimizationResult:
    x: onp.ndarray
    raw: list
    history: list
    initial_loss: float
    final_loss: float
    stop_reason: str = ""  # why the run ended (converged, or the iteration limit)


def _save_resume(folder: Path, state: dict, iteration: int, start: dict, signature: str, stopped=None):
    import io
    arrays = {f"state_{k}": onp.asarray(v) for k, v in state.items()}
    buffer = io.BytesIO()
    onp.savez(buffer, iteration=iteration, initial_loss=start["loss"], initial_grad_norm=start["grad_norm"],
              signature=signature, stop_reason=stopped or "", **arrays)
    atomic_write_bytes(folder / RESUME_FILE, buffer.getvalue())


def _load_resume(folder: Path, signature: str):
    with onp.load(folder / RESUME_FILE) as data:
        if str(data["signature"]) != signature:
            raise ResumeError(f"{folder / RESUME_FILE}: saved by a different optimization "
                              f"({data['signature']}), not {signature}")
        state = {k[len("state_"):]: data[k] for k in data.files if k.startswith("state_")}
        state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        start = {"loss": float(data["initial_loss"]),
                 "grad_norm": float(data["initial_grad_norm"]) if "initial_grad_norm" in data.files else None}
        stopped = str(data["stop_reason"]) if "stop_reason" in data.files else ""
        return state, int(data["iteration"]), start, stopped or None


def signature(problem, optimizer) -> str:
    """What a resume state must match: parameter layout and optimizer."""
    names = ",".join(p.name for p in problem.parameters)
    return f"{type(optimizer).__name__}[{names}] size={problem.size} steps={problem.steps}"


def run(problem, optimizer, iterations: int, folder=None, *, resume=False, callback=None):
    """Run up to ``iterations`` iterations of ``optimizer`` on ``problem``, fewer when it
    converges (the result's ``stop_reason`` says why it stopped).

    With ``folder``, the history and the resume state are saved after every iteration;
    ``resume=True`` continues from them. ``callback(record)`` sees each iteration's record.
    """
    folder = Path(folder) if folder is not None else None
    sig = signature(problem, optimizer)
    history, stopped = [], None
    if resume and folder is not None and (folder / RESUME_FILE).exists():
        state, start, initial, stopped = _load_resume(folder, sig)
        if (folder / HISTORY_FILE).exists():
            history = json.loads((folder / HISTORY_FILE).read_text())[:start]
        if initial["grad_norm"] is None:  # a resume state saved before the tolerances existed
            initial["grad_norm"] = history[0]["grad_norm"] if history else float(onp.linalg.norm(state["g"]))
    else:
        x0 = problem.flatten(problem.initial_raw())
        f0, g0 = problem.value_and_grad(x0)
        state, start = optimizer.init(x0, f0, g0), 0
        initial = {"loss": f0, "grad_norm": float(onp.linalg.norm(g0))}
    clock = {"t": time.perf_counter()}

    def save(k):
        if folder is not None:
            _save_resume(folder, state, k, initial, sig, stopped)
            atomic_write_json(folder / HISTORY_FILE, history)

    def finish_iteration(new_state):
        """Record (and save) one iteration; returns the reason to stop, or None."""
        nonlocal state, stopped
        k = history[-1]["iteration"] if history else start
        new_state = dict(new_state)
        stalled = new_state.pop("stop", None)
        if stalled:  # no step was taken: nothing to record
            state, stopped = new_state, stalled
            save(k)
            return stopped
        f_old, state = float(state["f"]), new_state
        record = {"iteration": k + 1, "loss": float(state["f"]),
                  "grad_norm": float(onp.linalg.norm(state["g"])),
                  "seconds": time.perf_counter() - clock["t"]}
        history.append(record)
        if onp.isfinite(record["loss"]):
            stopped = stop_reason(optimizer, f_old, record["loss"], record["grad_norm"], initial["grad_norm"])
        save(k + 1)
        if callback is not None:
            callback(record)
        if not onp.isfinite(record["loss"]):
            raise FloatingPointError(f"iteration {k + 1}: the loss is {record['loss']}")
        clock["t"] = time.perf_counter()
        return stopped

    if stopped is None and start < iterations:
        if hasattr(optimizer, "minimize"):  # an optimizer that runs its own loop (scipy)
            own = optimizer.minimize(state, problem.value_and_grad, iterations - start, finish_iteration)
            if own and not stopped:  # scipy ended early on its own (e.g. a failed line search)
                stopped = own
                save(history[-1]["iteration"] if history else start)
        else:
            for _ in range(start, iterations):
                if finish_iteration(optimizer.step(state, problem.value_and_grad)):
                    break
    x = onp.asarray(state["x"])
    done = history[-1]["iteration"] if history else start
    reason = stopped or f"reached the iteration limit ({done} of {iterations})"
    return OptimizationResult(x, problem.unflatten(x), history, initial["loss"], float(state["f"]), reason)
