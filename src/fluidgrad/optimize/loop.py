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

from ..atomic import atomic_write, atomic_write_json
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
    initial_grad_norm: float | None = None


def _save_resume(folder: Path, state: dict, iteration: int, start: dict, signature: str, stopped=None,
                 settings=None):
    arrays = {f"state_{k}": onp.asarray(v) for k, v in state.items()}
    if settings is not None:
        arrays["settings"] = onp.asarray(json.dumps(settings, sort_keys=True, default=str))

    def write(tmp):  # streamed to the file: no in-memory copy of the optimizer's state
        onp.savez(tmp, iteration=iteration, initial_loss=start["loss"], initial_grad_norm=start["grad_norm"],
                  signature=signature, stop_reason=stopped or "", **arrays)
    atomic_write(folder / RESUME_FILE, write)


def _leaves(value, path=""):
    """``(key path, value)`` of each leaf of nested JSON data; a list of plain values is a leaf."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def settings_differences(saved, now) -> list:
    """One line per key path whose value differs between ``saved`` and ``now``."""
    old, new = dict(_leaves(saved)), dict(_leaves(now))
    missing = object()
    lines = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b = new.get(key, missing), old.get(key, missing)
        if a != b:
            show = ["not set" if v is missing else repr(v) for v in (a, b)]
            lines.append(f"--resume: {key or 'the settings'} differs from the saved run ({show[0]} vs {show[1]})")
    return lines


def check_resume(folder, problem, optimizer, settings=None):
    """Raise :class:`ResumeError` unless ``folder``'s resume state was saved by this
    optimization (the same parameters and optimizer, and the same ``settings`` where
    both the state and the caller have them)."""
    _load_resume(Path(folder), signature(problem, optimizer), settings)


def _load_resume(folder: Path, signature: str, settings=None):
    import zipfile
    path = folder / RESUME_FILE
    try:
        with onp.load(path) as npz:
            data = {k: npz[k] for k in npz.files}
        saved = json.loads(str(data["settings"])) if "settings" in data else None
        saved_signature, iteration = str(data["signature"]), int(data["iteration"])
        start = {"loss": float(data["initial_loss"]),
                 "grad_norm": float(data["initial_grad_norm"]) if "initial_grad_norm" in data else None}
        stopped = str(data["stop_reason"]) if "stop_reason" in data else ""
    except (OSError, ValueError, KeyError, EOFError, AttributeError, zipfile.BadZipFile) as exc:
        raise ResumeError(f"{path}: not a resume state fluidgrad can read ({type(exc).__name__}: {exc})") from None
    if settings is not None and saved is not None:
        now = json.loads(json.dumps(settings, sort_keys=True, default=str))
        if isinstance(saved, dict) and isinstance(now, dict) and saved.get("name") != now.get("name"):
            raise ResumeError(f"--resume: {folder} holds a run of {saved.get('name')!r}, not of {now.get('name')!r}")
        lines = settings_differences(saved, now)
        if lines:
            raise ResumeError(problems=lines + ["--resume: continue with the saved run's settings, or start "
                                                "a new run in another --out folder"])
    if saved_signature != signature:
        raise ResumeError(f"{path}: saved by a different optimization ({saved_signature}), not {signature}")
    state = {k[len("state_"):]: v for k, v in data.items() if k.startswith("state_")}
    state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
    return state, iteration, start, stopped or None


def signature(problem, optimizer) -> str:
    """What a resume state must match: parameter layout and optimizer."""
    names = ",".join(p.name for p in problem.parameters)
    return f"{type(optimizer).__name__}[{names}] size={problem.size} steps={problem.steps}"


def run(problem, optimizer, iterations: int, folder=None, *, resume=False, callback=None, settings=None):
    """Run up to ``iterations`` iterations of ``optimizer`` on ``problem``, fewer when it
    converges (the result's ``stop_reason`` says why it stopped).

    With ``folder``, the history and the resume state are saved after every iteration;
    ``resume=True`` continues from them. ``callback(record)`` sees each iteration's record.
    ``settings`` (JSON data: what the problem was built from, e.g. a scenario's settings
    without its iteration count) is saved with the state, and a resume whose settings
    differ from the saved ones is refused (:class:`ResumeError`, one line per key).
    """
    folder = Path(folder) if folder is not None else None
    sig = signature(problem, optimizer)
    history, stopped = [], None
    if resume and folder is not None and (folder / RESUME_FILE).exists():
        state, start, initial, stopped = _load_resume(folder, sig, settings)
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
            _save_resume(folder, state, k, initial, sig, stopped, settings)
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
    return OptimizationResult(x, problem.unflatten(x), history, initial["loss"], float(state["f"]), reason,
                              initial["grad_norm"])
