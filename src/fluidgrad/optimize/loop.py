"""The optimization loop: records every iteration, saves its resume state atomically
after each one, and resumes exactly.

After iteration ``k`` the folder holds ``history.json`` (one object per completed
iteration: ``iteration``, ``loss``, ``grad_norm``, ``seconds``) and ``resume.npz`` (the
optimizer's whole state). Both are written to a temporary file and renamed, so a crash
or SIGKILL never leaves them half-written; Ctrl-C (KeyboardInterrupt) propagates after
the last completed iteration has been saved.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as onp

from ..atomic import atomic_write_bytes, atomic_write_json
from ..errors import ResumeError  # noqa: F401 (re-exported)

RESUME_FILE = "resume.npz"
HISTORY_FILE = "history.json"


@dataclasses.dataclass
class OptimizationResult:
    x: onp.ndarray
    raw: list
    history: list
    initial_loss: float
    final_loss: float


def _save_resume(folder: Path, state: dict, iteration: int, initial_loss: float, signature: str):
    import io
    arrays = {f"state_{k}": onp.asarray(v) for k, v in state.items()}
    buffer = io.BytesIO()
    onp.savez(buffer, iteration=iteration, initial_loss=initial_loss, signature=signature, **arrays)
    atomic_write_bytes(folder / RESUME_FILE, buffer.getvalue())


def _load_resume(folder: Path, signature: str):
    with onp.load(folder / RESUME_FILE) as data:
        if str(data["signature"]) != signature:
            raise ResumeError(f"{folder / RESUME_FILE}: saved by a different optimization "
                              f"({data['signature']}), not {signature}")
        state = {k[len("state_"):]: data[k] for k in data.files if k.startswith("state_")}
        state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        return state, int(data["iteration"]), float(data["initial_loss"])


def signature(problem, optimizer) -> str:
    """What a resume state must match: parameter layout and optimizer."""
    names = ",".join(p.name for p in problem.parameters)
    return f"{type(optimizer).__name__}[{names}] size={problem.size} steps={problem.steps}"


def run(problem, optimizer, iterations: int, folder=None, *, resume=False, callback=None):
    """Run ``iterations`` iterations of ``optimizer`` on ``problem``.

    With ``folder``, the history and the resume state are saved after every iteration;
    ``resume=True`` continues from them. ``callback(record)`` sees each iteration's record.
    """
    folder = Path(folder) if folder is not None else None
    sig = signature(problem, optimizer)
    history = []
    if resume and folder is not None and (folder / RESUME_FILE).exists():
        state, start, initial_loss = _load_resume(folder, sig)
        if (folder / HISTORY_FILE).exists():
            history = json.loads((folder / HISTORY_FILE).read_text())[:start]
    else:
        x0 = problem.flatten(problem.initial_raw())
        f0, g0 = problem.value_and_grad(x0)
        state, start, initial_loss = optimizer.init(x0, f0, g0), 0, f0
    clock = {"t": time.perf_counter()}

    def finish_iteration(new_state):
        nonlocal state
        state = new_state
        k = history[-1]["iteration"] if history else start
        record = {"iteration": k + 1, "loss": float(state["f"]),
                  "grad_norm": float(onp.linalg.norm(state["g"])),
                  "seconds": time.perf_counter() - clock["t"]}
        history.append(record)
        if folder is not None:
            _save_resume(folder, state, k + 1, initial_loss, sig)
            atomic_write_json(folder / HISTORY_FILE, history)
        if callback is not None:
            callback(record)
        if not onp.isfinite(record["loss"]):
            raise FloatingPointError(f"iteration {k + 1}: the loss is {record['loss']}")
        clock["t"] = time.perf_counter()

    if hasattr(optimizer, "minimize"):  # an optimizer that runs its own loop (scipy)
        optimizer.minimize(state, problem.value_and_grad, iterations - start, finish_iteration)
    else:
        for _ in range(start, iterations):
            finish_iteration(optimizer.step(state, problem.value_and_grad))
    x = onp.asarray(state["x"])
    return OptimizationResult(x, problem.unflatten(x), history, initial_loss, float(state["f"]))
