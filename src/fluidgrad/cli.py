"""The ``fluidgrad`` command line: run | optimize | gradcheck | render | check | list.

Exit codes: 0 success; 2 bad input (a one-line message per problem, naming the key
path; no traceback); 1 a failure while running (the message says where); 130
interrupted (an optimization has saved its resume state first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as onp
import yaml

from . import __version__
from .errors import BAD_INPUT, FluidgradError, InputError, UsageError  # noqa: F401 (re-exported)


def _err(message):
    print(f"fluidgrad: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------
# shared pieces


def _overrides(args) -> dict:
    from .scenario import load_yaml
    out = {}
    for item in getattr(args, "set", None) or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE (e.g. grid.resolution=[32,32])")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError:
            raise UsageError(f"--set {key}: cannot parse value {value!r}") from None
    if getattr(args, "steps", None) is not None:
        out["time.steps"] = args.steps
    if getattr(args, "backend", None):
        out["backend"] = args.backend
    if getattr(args, "dtype", None):
        out["dtype"] = args.dtype
    return out


def _load(args):
    """The scenario, validated and checked (:meth:`Scenario.check`: backend, data files,
    fields on the grid) before any folder is made or anything simulated."""
    from .scenario import load_scenario
    scenario = load_scenario(args.scenario, _overrides(args))
    scenario.check()
    return scenario


def _prepare_out(args, scenario, allow_existing=False, default=None) -> Path:
    out = Path(args.out) if args.out else (default or Path("runs") / scenario.name)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not (args.force or allow_existing):
        raise UsageError(f"{out}: run folder exists and is not empty (use --force to overwrite, "
                         f"or --out for another folder)")
    missing = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    _created.extend(missing)
    return out


#: the folders this command created (innermost first): removed again if still empty at
#: its end, so an interrupted or failed command leaves no empty folder behind
_created = []


def _remove_empty_created():
    while _created:
        try:
            _created.pop(0).rmdir()  # only an empty folder: never anything written
        except OSError:
            pass


def _progress(total, args, desc, unit="step"):
    from tqdm import tqdm
    quiet = args.quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, leave=False, dynamic_ncols=True)


def _frame_of(state, field, domain):
    """A cell-centred 2-D/3-D numpy array of ``field`` for the video."""
    from .backend import to_numpy
    from .ops.stencils import face_to_center, vorticity
    if field == "density":
        return to_numpy(state.density)
    if field == "pressure":
        return to_numpy(state.pressure)
    if field == "speed":
        centers = face_to_center(state.velocity, domain=domain)
        return onp.sqrt(sum(to_numpy(c) ** 2 for c in centers))
    w = vorticity(state.velocity, domain=domain)
    if domain.ndim == 2:
        return to_numpy(w)
    return onp.sqrt(sum(to_numpy(c) ** 2 for c in w))


def _max_divergence(state, domain):
    from .backend import to_numpy
    from .ops.stencils import divergence
    div = to_numpy(divergence(state.velocity, domain=domain))
    fluid = domain.fluid
    return float(onp.abs(div[fluid]).max()) if fluid.any() else 0.0


def write_result(path: Path, state, sim, body_forces=None):
    """``result.npz``: density, cell-centred velocity, pressure, MAC faces, coordinates, t;
    with ``body_forces`` (rows of :func:`~fluidgrad.forces.force_record`, one a step) the
    obstacles' forces ``force[step, obstacle, part (pressure, viscous), axis]`` and ``force_t``."""
    import io

    from .backend import to_numpy
    from .ops.stencils import face_to_center
    from .atomic import atomic_write_bytes
    from .sweeps.run import final_fields
    domain = sim.domain
    arrays = {
        **final_fields(state, sim),  # density, pressure, u, v (, w): what a sweep stores too
        "velocity": onp.stack([to_numpy(c).astype(float) for c in face_to_center(state.velocity, domain=domain)]),
        "t": onp.float64(state.step * sim.dt),
        "step": onp.int64(state.step),
        "solid": domain.solid,
    }
    for d in range(domain.ndim):
        arrays["xyz"[d]] = domain.grid.cell_centers(d)
    if body_forces:
        arrays["force"] = onp.asarray(body_forces, dtype=float)
        arrays["force_t"] = (state.step - len(body_forces) + 1 + onp.arange(len(body_forces))) * sim.dt
    buffer = io.BytesIO()
    onp.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _centered_velocity(state, domain):
    from .backend import to_numpy
    from .ops.stencils import face_to_center
    return tuple(to_numpy(c) for c in face_to_center(state.velocity, domain=domain))


def _simulate(sim, state, steps, every, field, args, desc, physics=None, controls=None, force=None,
              arrows=False, folder=None, body_forces=None):
    """Run ``steps`` steps with progress and blow-up checks; returns (final, frames), the
    frames a :class:`_Frames` (``field`` and, with ``arrows``, the cell-centred velocity,
    spooled to a temporary file in ``folder``, not held in memory), or None without ``field``.
    ``body_forces``: a list that gets the obstacles' forces of every step
    (:func:`fluidgrad.forces.force_record`)."""
    from .forces import force_record
    from .render import FrameSpool
    from .simulation import check_finite

    frames = _Frames(FrameSpool(folder), FrameSpool(folder) if arrows else None, sim) if field else None

    def record(s):
        frames.fields.append(_frame_of(s, field, sim.domain))
        frames.steps.append(s.step)
        if arrows:
            frames.velocities.append(_centered_velocity(s, sim.domain))

    if field:
        record(state)
    bar = _progress(steps, args, desc)

    viscosity = (physics or sim.physics).viscosity

    def monitor(k, s):
        check_finite(k, s)
        if field and (k + 1) % every == 0:
            record(s)
        if body_forces is not None:
            body_forces.append(force_record(s, sim.domain, viscosity, sim.dt))
        bar.update(1)

    try:
        final = sim.rollout(state, steps, physics=physics, controls=controls, force=force, monitor=monitor,
                            checkpoint=False)
    finally:
        bar.close()
    return final, frames


class _Frames:
    """A video's frames: ``fields`` (the field drawn) and ``velocities`` (for arrows, or
    None), each a :class:`~fluidgrad.render.FrameSpool`; ``steps``, the step of each frame,
    ``dt`` and the box ``size`` of ``sim`` (for the frames' time stamps and axes)."""

    __slots__ = ("fields", "velocities", "steps", "dt", "size")

    def __init__(self, fields, velocities, sim):
        self.fields, self.velocities, self.steps = fields, velocities, []
        self.dt, self.size = sim.dt, tuple(sim.domain.grid.size)

    def close(self):
        for spool in (self.fields, self.velocities):
            if spool is not None:
                spool.close()


def _video(frames, path, video, obstacle):
    """Render ``frames`` to ``path``, each stamped with its time ``t = step·dt`` and step;
    returns (the path written, the rendering's statistics: frames, frames per second)."""
    from .render import render_frames
    stats = {}
    try:
        path = render_frames(frames.fields, video["field"], path, colormap=video["colormap"],
                             fps=video["fps"], obstacle=obstacle, mode=video.get("projection", "slice"),
                             velocities=frames.velocities if video.get("arrows") else None,
                             times=[k * frames.dt for k in frames.steps], steps=frames.steps,
                             size=frames.size, stats=stats,
                             title={"before": "before optimization", "after": "after optimization"}.get(Path(path).stem))
    finally:
        frames.close()
    return path, stats


def _return_freed_memory():
    """Hand the heap's freed pages back to the system (glibc's ``malloc_trim``): after a
    gradient, ~70 MiB of freed arrays otherwise stay in this process's RSS under what follows."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _write_json(path, obj):
    from .atomic import atomic_write_json
    atomic_write_json(path, obj)


# ---------------------------------------------------------------------------
# commands


def cmd_check(args) -> int:
    scenario = _load(args)
    if not args.quiet:
        g = scenario.grid
        print(f"ok: {scenario.name} ({g.ndim}-D {'x'.join(map(str, g.resolution))}, {scenario.steps} steps"
              f"{', with an optimize block' if scenario.optimize else ''})")
    return 0


def cmd_list(args) -> int:
    from .scenario import bundled_scenarios, load_scenario
    scenarios = bundled_scenarios()
    if not scenarios:
        print("no scenarios yet")
    width = max((len(n) for n in scenarios), default=0)
    for name in sorted(scenarios):
        try:
            description = load_scenario(scenarios[name]).description.strip().splitlines()[0]
        except Exception as exc:  # a broken bundled file should not hide the others
            description = f"(invalid: {str(exc).splitlines()[0]})"
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_run(args) -> int:
    scenario = _load(args)
    out = _prepare_out(args, scenario)
    sim = scenario.simulation()
    state = scenario.initial_state(sim)
    video = scenario.output["video"]
    field = video["field"] if video else None
    if video:
        from .render import warm_up
        warm_up()  # the video's fonts and figure machinery load while the simulation runs
    sim.step(state)  # untimed warm-up: compiles the fused kernels on first use
    t0, compiled0 = time.perf_counter(), compile_seconds()
    body_forces = [] if sim.domain.obstacles else None
    final, frames = _simulate(sim, state, scenario.steps, scenario.output["every"], field, args,
                              f"{scenario.name}", arrows=bool(video and video.get("arrows")), folder=out,
                              body_forces=body_forces)
    seconds = time.perf_counter() - t0 - (compile_seconds() - compiled0)  # the simulation's own time
    write_result(out / "result.npz", final, sim, body_forces)
    metrics = {"name": scenario.name, "steps": scenario.steps, "wall_seconds": seconds,
               "steps_per_second": scenario.steps / seconds if seconds > 0 else None,
               "max_divergence": _max_divergence(final, sim.domain), "backend": sim.backend,
               "dtype": str(sim.dtype), "grid": list(scenario.grid.resolution), "dt": scenario.dt,
               "t": final.step * scenario.dt, "compile_seconds": compile_seconds()}
    if body_forces:
        from .forces import summary
        metrics["obstacles"] = summary(body_forces, sim.domain, _flow_speed(sim))
    _write_json(out / "metrics.json", metrics)  # before the video: a failed render keeps it
    written = ["result.npz", "metrics.json"]
    if video:
        path, stats = _video(frames, out / f"{field}.{video['format']}", video, sim.domain.solid)
        metrics["render"] = {path.name: stats}
        _write_json(out / "metrics.json", metrics)
        written.append(path.name)
    if not args.quiet:
        g = scenario.grid
        print(f"Ran {scenario.name}: {scenario.steps} steps on a {'x'.join(map(str, g.resolution))} grid "
              f"({sim.backend}, {sim.dtype}) in {seconds:.1f} s{_compile_note()}, "
              f"{metrics['steps_per_second']:.1f} steps/s; "
              f"max |div u| = {metrics['max_divergence']:.2e}. Wrote {', '.join(written)} to {out}/.")
    return 0


def _flow_speed(sim):
    """The speed of the flow into the box (the inflow face's normal velocity), or None."""
    try:
        return abs(sim.domain.inflow_velocity())
    except InputError:
        return None


def cmd_sweep(args) -> int:
    """Every member of the sweep on Dask; ``DIR/sweep.zarr`` written as members finish."""
    from .sweeps import parse_vary, sweep_store
    from .sweeps.members import expand
    vary = {}
    for item in args.vary or []:
        key, values = parse_vary(item)
        if key in vary:
            raise UsageError(f"--vary {key}: given twice")
        vary[key] = values
    total = len(expand(vary, args.zip))  # also refuses an empty or unzippable --vary
    scenario = _load(args)
    out = _prepare_out(args, scenario, allow_existing=args.resume, default=Path("runs") / scenario.name / "sweep")
    client = None
    address = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        from dask.distributed import Client
        try:
            client = Client(address)
        except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, timed out, malformed
            raise UsageError(f"--scheduler {address}: cannot connect ({str(exc).splitlines()[0]})") from None
    failed = []
    bar = _progress(total, args, f"sweep {scenario.name}", unit="member")

    def on_member(index, result):
        if result["status"] != "done":
            failed.append(f"member {index}: {result['error']}")
        bar.update(1)

    t0 = time.perf_counter()
    try:
        sweep_store(args.scenario, vary, zipped=args.zip, what=args.what, client=client, out=out,
              overrides=_overrides(args), resume=args.resume, workers=args.workers,
              threads_per_worker=args.threads_per_worker, record_every=args.record_every, on_member=on_member)
    finally:
        bar.close()
        if client is not None:
            client.close()
    if not args.quiet:
        print(f"Swept {scenario.name}: {total} members in {time.perf_counter() - t0:.1f} s; "
              f"{len(failed)} failed. Wrote {out / 'sweep.zarr'}.")
    for line in failed:
        _err(line)
    return 1 if failed else 0


def build_problem(scenario, sim):
    """``(problem, loss target, fluidgrad.numpy)``: kept for old callers; the problem is
    assembled by the scenario layer (:meth:`Scenario.problem`)."""
    from . import numpy as fnp
    target = scenario.loss_target(sim)
    return scenario.problem(sim, target), target, fnp


def _rollout_frames(problem, raw, field, every, args, desc, arrows=False, folder=None, body_forces=None):
    """The frames of the rollout that uses parameters ``raw`` (no differentiation)."""
    _, state, physics, controls, force = problem.setup(raw)
    state = problem.sim.make_incompressible(state)  # so the first frame shows the projected flow
    return _simulate(problem.sim, state, problem.steps, every, field, args, desc, physics=physics,
                     controls=controls, force=force, arrows=arrows, folder=folder, body_forces=body_forces)


def loss_change(initial, final, eps=onp.finfo(float).eps) -> str:
    """How the loss changed, in words: ``r× lower`` (r = initial / final), ``rose r×``,
    ``unchanged``, or ``down to round-off`` once final ≤ eps · initial (where r would be
    a meaningless huge number)."""
    if not (onp.isfinite(initial) and onp.isfinite(final)):
        return "not finite"
    if final == initial:
        return "unchanged"
    if final > initial:
        return f"rose {final / initial:.3g}x" if initial > 0 else f"rose by {final - initial:.3g}"
    if final == 0 and initial > 0:
        return "down to 0"
    if final < 0 or initial < 0:
        return f"lowered by {initial - final:.3g}"
    if final <= eps * initial:
        return f"down to round-off: {final / initial:.1e} of the initial"
    return f"{initial / final:.3g}x lower"


def cmd_optimize(args) -> int:
    import io

    from .backend import to_numpy
    from .optimize import make_optimizer, run
    from .atomic import atomic_write_bytes
    from .optimize.loop import RESUME_FILE, check_resume
    scenario = _load(args)
    if scenario.optimize is None:
        raise UsageError(f"{args.scenario}: the scenario has no optimize: block")
    out = _prepare_out(args, scenario, allow_existing=args.resume)
    if args.resume and not (out / RESUME_FILE).exists():
        raise UsageError(f"--resume: no {RESUME_FILE} in {out}")
    sim = scenario.simulation()
    target = scenario.loss_target(sim)
    problem = scenario.problem(sim, target)
    spec = scenario.optimize["optimizer"]
    optimizer = make_optimizer(spec["type"], **spec["options"])
    iterations = args.iterations or spec["iterations"]
    if args.resume:  # before anything is written to the folder
        check_resume(out, problem, optimizer, scenario.settings())
    video = scenario.output["video"]
    field = video["field"] if video else None
    bar = _progress(iterations, args, f"optimize {scenario.name}", unit="it")

    def on_iteration(record):
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3e}")

    compiled0 = compile_seconds()
    try:
        if args.resume:
            done = json.loads((out / "history.json").read_text()) if (out / "history.json").exists() else []
            bar.update(len(done))
        result = run(problem, optimizer, iterations, out, resume=args.resume, callback=on_iteration,
                     settings=scenario.settings())
    finally:
        bar.close()
    _return_freed_memory()  # the gradient's freed arrays, before the videos and plots
    raw = result.raw
    arrays = {}
    for p, leaves in zip(problem.parameters, raw):
        for i, leaf in enumerate(leaves):
            arrays[f"{p.name}_{i}" if len(leaves) > 1 else p.name] = to_numpy(leaf)
    values = problem.values(raw)
    if "initial_velocity" in values:
        for d, u in enumerate(values["initial_velocity"]):
            arrays[f"initial_velocity_{'uvw'[d]}"] = to_numpy(u)
    if "inflow_profile" in values:  # the profile the simulation used (the raw one rescaled to the flow rate)
        arrays["inflow_velocity"] = to_numpy(values["inflow_profile"])
    buffer = io.BytesIO()
    onp.savez_compressed(buffer, **arrays)
    atomic_write_bytes(out / "params.npz", buffer.getvalue())
    renders = {}  # each video's rendering statistics, for metrics.json
    loss_kind = scenario.optimize["loss"]["type"]
    body_forces = {"before": [], "after": []} if loss_kind in ("drag", "lift") else {}
    before_final = None
    # the before video after the optimization: its rollout and the video encoder (matplotlib)
    # would otherwise raise the memory the optimization's peak sits on
    if (video and not (args.resume and (out / f"before.{video['format']}").exists())) or body_forces:
        # the initial point as the optimization evaluates it (the simulation's dtype: a float32
        # run's video is a float32 rollout, not a float64 one at twice the memory)
        x0 = problem.unflatten(problem.flatten(problem.initial_raw()))
        before_final, frames = _rollout_frames(problem, x0, field, scenario.output["every"], args, "before",
                                               video and video.get("arrows"), folder=out,
                                               body_forces=body_forces.get("before"))  # frames spooled to a file
        if frames is not None:
            path, renders[path.name] = _video(frames, out / f"before.{video['format']}", video, sim.domain.solid)
        del frames, x0
    from .render import plot_loss, render_panel
    plot_loss([{"iteration": 0, "loss": result.initial_loss, "grad_norm": result.initial_grad_norm}]
              + result.history, out / "loss.png")
    if video or body_forces:
        final, frames = _rollout_frames(problem, raw, field, scenario.output["every"], args, "after",
                                        video and video.get("arrows"), folder=out,
                                        body_forces=body_forces.get("after"))
        if frames is not None:
            path, renders[path.name] = _video(frames, out / f"after.{video['format']}", video, sim.domain.solid)
    else:
        final = problem.states(raw)[0][-1]
    if target is not None and loss_kind == "density_mse":
        _return_freed_memory()  # the rollouts' freed arrays, before matplotlib draws the panel
        render_panel(to_numpy(target), to_numpy(final.density), out / "panel.png", obstacle=sim.domain.solid,
                     size=sim.domain.grid.size, iteration=len(result.history), loss=result.final_loss,
                     t=problem.steps * sim.dt)
    force_metrics = (_force_outputs(body_forces, problem, raw, before_final, final, field, out, loss_kind)
                     if body_forces else {})
    seconds = [h["seconds"] for h in result.history]
    loop_compiling = compile_seconds() - compiled0  # in the iterations' times: not the optimizer's cost
    metrics = {"name": scenario.name, "initial_loss": result.initial_loss, "final_loss": result.final_loss,
               "iterations": len(result.history), "stop_reason": result.stop_reason,
               "seconds_per_iteration": max(sum(seconds) - loop_compiling, 0.0) / len(seconds) if seconds else None,
               "compile_seconds": compile_seconds(),
               "optimizer": spec["type"], "parameters": scenario.optimize["parameters"],
               "backend": sim.backend, "dtype": str(sim.dtype)}
    metrics.update(force_metrics)
    if renders:
        metrics["render"] = renders
    _write_json(out / "metrics.json", metrics)
    if not args.quiet:
        print(f"Optimized {scenario.name}: {', '.join(scenario.optimize['parameters'])} with {spec['type']}, "
              f"{len(result.history)} iterations ({metrics['seconds_per_iteration'] or 0:.2f} s each"
              f"{_compile_note()}), stopped: "
              f"{result.stop_reason}; loss {result.initial_loss:.4g} -> {result.final_loss:.4g} "
              f"({loss_change(result.initial_loss, result.final_loss, onp.finfo(sim.dtype).eps)}). Wrote params.npz, "
              f"history.json, loss.png, metrics.json{', before/after videos' if video else ''} to {out}/.")
    return 0


def _force_outputs(body_forces, problem, raw, before, after, field, out, kind) -> dict:
    """For a drag or lift loss: ``drag.png`` (the force against time before and after, the
    loss's window shaded, and the inflow profiles), ``panel.png`` (the final ``field``
    before | after), and the metrics (per obstacle, before and after; the change of the
    loss's time average)."""
    from .backend import to_numpy
    from .forces import force_components, summary
    from .render import plot_forces, render_panel
    sim = problem.sim
    dt, domain = sim.dt, sim.domain
    window = (problem.loss_steps[0], problem.loss_steps[-1])
    series, averages = {}, {}
    for label, records in body_forces.items():
        records = onp.asarray(records)
        values = onp.array([sum(force_components(r[k].sum(axis=0), domain)[kind] for k in range(r.shape[0]))
                            for r in records])
        steps = 1 + onp.arange(len(values))
        series[label] = (steps * dt, values)
        averages[label] = float(values[onp.isin(steps, problem.loss_steps)].mean())
    profiles = None
    values = {"before": problem.values(problem.initial_raw()), "after": problem.values(raw)}
    if "inflow_profile" in values["after"]:
        axis, _ = domain.inflow_face
        along = next(a for a in range(domain.ndim) if a != axis)
        positions = domain.grid.cell_centers(along)
        profiles = {label: (positions, _profile_line(to_numpy(v["inflow_profile"]))) for label, v in values.items()}
    plot_forces(series, out / "drag.png", window=(window[0] * dt, window[1] * dt), profiles=profiles,
                component=kind)
    shown = field or "speed"
    render_panel(_frame_of(before, shown, domain), _frame_of(after, shown, domain), out / "panel.png",
                 obstacle=domain.solid, size=domain.grid.size, t=problem.steps * dt, field=shown,
                 names=("before", "after"))
    speed = _flow_speed(sim)
    return {"obstacles": {label: summary(records, domain, speed) for label, records in body_forces.items()},
            f"{kind}_before": averages["before"], f"{kind}_after": averages["after"],
            f"{kind}_change": averages["after"] / averages["before"] - 1 if averages["before"] else None}


def _profile_line(profile):
    """A 1-D view of an inflow profile (3-D: the mean over the third axis)."""
    return profile if profile.ndim == 1 else profile.mean(axis=1)


def _horizons(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--horizons {text!r}: expected comma-separated step counts, e.g. 5,10,20,40,80") from None
    if not values or min(values) < 1:
        raise UsageError(f"--horizons {text!r}: expected positive step counts, e.g. 5,10,20,40,80")
    return values


def _gradcheck_one(args, steps, bar):
    """Load the scenario (with ``steps`` steps if given) and run the full gradient check."""
    from .ad.transforms import jvp
    from .testing import DEFAULT_STEPS, gradient_check
    if steps is not None:
        args.steps = steps
    scenario = _load(args)
    if scenario.optimize is None:
        raise UsageError(f"{args.scenario}: the scenario has no optimize: block to check")
    sim = scenario.simulation(dtype="float64")
    problem = scenario.problem(sim)
    x0 = problem.flatten(problem.initial_raw())
    rng = onp.random.default_rng(args.seed)
    x = x0 + args.perturb * max(float(onp.abs(x0).max(initial=0.0)), 1.0) * rng.standard_normal(x0.size)

    def value(y):
        return problem.objective(problem.unflatten(y))

    def forward(v):
        return float(jvp(problem.objective, (problem.unflatten(x),), (problem.unflatten(v),))[1])

    f, g = problem.value_and_grad(x)
    bar.update(1)
    report = gradient_check(value, x, g, value=f, jvp=forward, directions=args.directions, steps=DEFAULT_STEPS,
                            rtol=args.fd_tolerance, min_cosine=args.min_cosine, jvp_rtol=args.tolerance,
                            require_taylor=args.require_taylor, seed=args.seed + 1, progress=bar.update)
    return scenario, sim, report


def cmd_gradcheck(args) -> int:
    from .render import plot_gradcheck
    from .testing import DEFAULT_STEPS
    horizons = _horizons(args.horizons) if args.horizons else None
    if args.directions < 1:
        raise UsageError(f"--directions {args.directions}: expected at least 1")
    scenario = _load(args)  # validate everything and refuse a used folder before any simulation
    if scenario.optimize is None:
        raise UsageError(f"{args.scenario}: the scenario has no optimize: block to check")
    out = _prepare_out(args, scenario, default=Path("runs") / scenario.name / "gradcheck")
    runs = horizons or [None]
    per_check = 1 + args.directions * (2 * len(DEFAULT_STEPS) + 1)
    bar = _progress(per_check * len(runs), args, f"gradcheck {scenario.name}", unit="eval")
    t0 = time.perf_counter()
    checks = []
    try:
        for steps in runs:
            bar.set_postfix(horizon=steps if steps is not None else scenario.steps)
            scen, sim, report = _gradcheck_one(args, steps, bar)
            checks.append((scen.steps, report))
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    passed = all(r.passed for _, r in checks)
    opt = scenario.optimize
    data = {"scenario": scenario.name, "parameters": opt["parameters"], "size": checks[0][1].size,
            "steps": [s for s, _ in checks] if horizons else checks[0][0], "dtype": "float64",
            "advection": getattr(scenario, "advection", None), "perturb": args.perturb, "seed": args.seed,
            "tolerances": {"fd": args.fd_tolerance, "min_cosine": args.min_cosine, "jvp": args.tolerance},
            "passed": passed, "smooth": all(r.smooth for _, r in checks), "seconds": seconds,
            "checks": [{"horizon": s, **r.to_dict()} for s, r in checks]}
    if not isinstance(data["advection"], (str, type(None))):
        data["advection"] = str(data["advection"])
    _write_json(out / "gradcheck.json", data)
    title = f"gradcheck {scenario.name}" + (f" (perturb {args.perturb:g}, seed {args.seed})")
    plot_gradcheck([r for _, r in checks] if horizons else checks[0][1], out / "gradcheck.png",
                   horizons=[s for s, _ in checks] if horizons else None, title=title)
    if not args.quiet or not passed:
        _print_gradcheck(scenario, checks, horizons, args, out, seconds, passed)
    return 0 if passed else 1


def _print_gradcheck(scenario, checks, horizons, args, out, seconds, passed):
    first = checks[0][1]
    print(f"gradcheck {scenario.name}: {first.size} parameters ({', '.join(scenario.optimize['parameters'])}), "
          f"float64, {args.directions} random directions, point = initial parameters"
          + (f" + {args.perturb:g}·N(0,1)" if args.perturb else ""))
    if not horizons:
        steps, r = checks[0]
        print(f"  {steps} steps: loss {r.value:.6g}, |g| {r.grad_norm:.4g}")
        print(r.summary())
    else:
        print(f"  {'steps':>6} {'loss':>11} {'|g|':>10} {'best FD err':>11} {'cosine':>12} {'JVP/VJP':>9} "
              f"{'Taylor dec':>10} {'plateaus':>8}  result")
        for steps, r in checks:
            plateaus = sum(d.plateau is not None for d in r.directions)
            print(f"  {steps:>6} {r.value:11.4e} {r.grad_norm:10.3e} {r.best_error:11.2e} {r.cosine:12.8f} "
                  f"{r.jvp_error:9.1e} {r.taylor_decades:10.1f} {plateaus:>5}/{len(r.directions):<2}  "
                  f"{'ok' if r.passed else 'FAILED'}")
        for steps, r in checks:
            if r.diagnosis:
                print(f"  {steps} steps: {r.diagnosis}")
        print(f"  tolerances: best-step FD error <= {args.fd_tolerance:g}, cosine >= {args.min_cosine:g}, "
              f"JVP vs VJP <= {args.tolerance:g}")
    print(f"{'PASSED' if passed else 'FAILED'} in {seconds:.1f} s; wrote gradcheck.json, gradcheck.png to {out}/")


def _sweep_member(path, member):
    """Member ``member``'s final fields from a ``sweep.zarr``, as a result file has them."""
    try:
        import xarray as xr
        ds = xr.open_zarr(path)
    except Exception as exc:  # noqa: BLE001 - xarray absent, or not a store
        raise UsageError(f"{path}: not a sweep store ({exc})") from None
    count = ds.sizes.get("member", 0)
    if member is None or not 0 <= member < count:
        raise UsageError(f"{path}: --member must be one of 0..{count - 1} (got {member})")
    status = str(ds["status"].values[member])
    if status != "done":
        raise UsageError(f"{path}: member {member} is {status}, it has no fields")
    if "density" not in ds:
        raise UsageError(f"{path}: a sweep of --what {ds.attrs.get('what')}, it has no fields")

    def final(name):  # with --record-every, the last snapshot is the final state
        field = ds[name][member]
        return (field.isel(time=-1) if "time" in field.dims else field).values

    arrays = {name: final(name) for name in ("density", "pressure")}
    centred = []
    for d, name in enumerate("uvw"[: arrays["density"].ndim]):
        faces = final(name)
        n = arrays["density"].shape[d]
        upper = onp.take(faces, onp.arange(1, n + 1) % faces.shape[d], axis=d)  # periodic: wraps
        centred.append(0.5 * (onp.take(faces, onp.arange(n), axis=d) + upper))
    arrays["velocity"] = onp.stack(centred)
    return arrays


def cmd_render(args) -> int:
    from .errors import InputError
    from .render import _colormap, render_frames, render_png, vorticity_from_centered
    if args.colormap is not None:
        try:
            _colormap(args.colormap)
        except InputError as exc:
            raise UsageError(f"--colormap {args.colormap}: {exc}") from None
    path = Path(args.result)
    if path.suffix == ".zarr" and path.is_dir():
        arrays = _sweep_member(path, args.member)
        arrays.update(_sweep_member_setting(path, args.member))
        path = path.with_name(f"{path.stem}_member{args.member}.zarr")  # names the default output
    elif not path.is_file():
        raise UsageError(f"{path}: file not found")
    else:
        if args.member is not None:
            raise UsageError(f"--member: only for a sweep.zarr (got {path})")
        try:
            data = onp.load(path)
            arrays = {k: data[k] for k in data.files}
        except Exception as exc:
            raise UsageError(f"{path}: not a result file ({exc})") from None
    field = args.field
    ndim = arrays["density"].ndim if "density" in arrays else None
    coords = [arrays.get(a) for a in "xyz"[:ndim or 0]]
    dx = 2 * float(coords[0][0]) if coords and coords[0] is not None and coords[0].size else 1.0  # centres (i + ½) h
    if field in ("speed", "vorticity"):
        velocity = arrays.get("velocity")
        if velocity is None:
            values = None
        elif field == "speed":
            values = onp.sqrt((velocity ** 2).sum(axis=0))
        else:  # the video's stencil: central differences, wrapping along periodic axes (n faces, not n + 1)
            faces = [arrays.get(c) for c in "uvw"[: velocity.shape[0]]]
            periodic = [f is not None and f.shape[d] == velocity.shape[1 + d] for d, f in enumerate(faces)]
            values = vorticity_from_centered(velocity, dx, periodic)
    else:
        values = arrays.get(field)
    if values is None:
        raise UsageError(f"{path}: has no {field!r} field (has {', '.join(sorted(arrays))})")
    out = Path(args.out) if args.out else path.with_name(f"{path.stem}_{field}.png")
    if out.exists() and not args.force:
        raise UsageError(f"{out}: exists (use --force to overwrite)")
    solid = arrays.get("solid")
    size = tuple(n * dx for n in values.shape) if all(c is not None for c in coords) and coords else None
    t = float(arrays["t"]) if arrays.get("t") is not None else None
    step = int(arrays["step"]) if arrays.get("step") is not None else None  # result files since #18
    if out.suffix == ".png":
        render_png(values, field, out, colormap=args.colormap, obstacle=solid, mode=args.mode, size=size, t=t,
                   step=step)
    elif out.suffix in (".mp4", ".gif"):
        render_frames([values], field, out, colormap=args.colormap, obstacle=solid, mode=args.mode, size=size,
                      times=None if t is None else [t], steps=None if step is None else [step])
    else:
        raise UsageError(f"--out {out}: expected a .png, .mp4 or .gif file")
    if not args.quiet:
        print(f"Wrote {out}")
    return 0


def _sweep_member_setting(path, member):
    """What the pictures of a sweep member need beyond its fields, as a result file has it:
    the cell-centre coordinates, its time ``t`` and ``step`` and its ``solid`` cells (from the stored
    scenario, its overrides and the member's values; left out where they cannot be had)."""
    import xarray as xr

    from .scenario import load_yaml, parse_scenario, read_yaml
    out = {}
    with xr.open_zarr(path) as ds:
        for name in "xyz":
            if name in ds.coords:
                out[name] = ds[name].values
        try:
            values = {}
            for key in json.loads(ds.attrs.get("varied", "[]")):
                value = ds[key].values[member].item()
                values[key] = load_yaml(value) if isinstance(value, str) else value  # lists were stored as YAML
            scenario = parse_scenario(read_yaml(ds.attrs["scenario"]), None,
                                      {**json.loads(ds.attrs.get("overrides", "{}")), **values})
            out["t"], out["step"] = onp.float64(scenario.steps * scenario.dt), onp.int64(scenario.steps)
            out["solid"] = scenario.domain().solid
        except Exception:  # noqa: BLE001 - e.g. a scenario reading files next to it: the fields alone
            pass
    return out


def _default_cmap(field):
    from .render import DEFAULT_COLORMAPS
    return DEFAULT_COLORMAPS[field]


# ---------------------------------------------------------------------------
# the parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), as the contract asks for bad flags."""

    def error(self, message):
        self.exit(2, f"fluidgrad: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fluidgrad",
                                     description="A differentiable Navier-Stokes fluid simulator.")
    parser.add_argument("--version", action="version", version=f"fluidgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p, out=True):
        p.add_argument("scenario", help="a YAML file or the name of a bundled scenario")
        if out:
            p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<scenario name>/)")
            p.add_argument("--force", action="store_true", help="overwrite an existing non-empty output folder")
        p.add_argument("--backend", choices=["numpy", "cupy"], help="array backend (default: the scenario's)")
        p.add_argument("--dtype", choices=["float32", "float64"], help="float type (default: the scenario's)")
        p.add_argument("--steps", type=int, metavar="N", help="override time.steps")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any scenario key, e.g. --set grid.resolution=[32,32] (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
        p.add_argument("--threads", metavar="N", help="threads of the CPU kernels: a number or 'auto' (the cores "
                                                       "this process may use; default: FLUIDGRAD_THREADS or auto)")

    p = sub.add_parser("run", help="simulate a scenario",
                       description="Simulate a scenario; writes result.npz, metrics.json and a video.")
    common(p)
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("optimize", help="run the scenario's gradient-based optimization",
                       description="Optimize as the scenario's optimize: block says; writes params.npz, "
                                   "history.json, loss.png, before/after videos, metrics.json and a resume state.")
    common(p)
    p.add_argument("--iterations", type=int, metavar="N", help="override optimize.optimizer.iterations")
    p.add_argument("--resume", action="store_true", help="continue from the resume state in the output folder")
    p.set_defaults(handler=cmd_optimize)
    p = sub.add_parser("sweep", help="run many members (varied keys) on Dask into one Zarr store",
                       description="Run every member of a parameter sweep (the product of the --vary values, "
                                   "or with --zip their pairs) on Dask; writes DIR/sweep.zarr as members finish.")
    common(p)
    p.add_argument("--vary", action="append", metavar="KEY=VALUES",
                   help="a varied key: a,b,c | A..B (integers) | linspace(a,b,n) | logspace(a,b,n) (repeatable)")
    p.add_argument("--zip", action="store_true", help="pair the varied keys' values instead of their product")
    p.add_argument("--what", default="run", choices=["run", "gradient", "optimize"],
                   help="what each member does: run (final fields), gradient (the loss of the optimize: block "
                        "and its gradient), optimize (that optimization: final loss, iterations, parameters, "
                        "fields) (default run)")
    p.add_argument("--record-every", type=int, metavar="K",
                   help="with --what run: snapshots of the fields every K steps along a time dimension")
    p.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default: cores // threads per worker)")
    p.add_argument("--threads-per-worker", type=int, default=1, metavar="K",
                   help="kernel threads of each local worker (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (default: DASK_SCHEDULER_ADDRESS, else a LocalCluster)")
    p.add_argument("--resume", action="store_true", help="run only the members not yet done in DIR/sweep.zarr")
    p.set_defaults(handler=cmd_sweep)
    p = sub.add_parser("gradcheck", help="check the scenario's gradient (U-curves of finite differences, "
                                         "subspace cosine, JVP vs VJP, Taylor rate)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="""\
Check the adjoint gradient g of the scenario's loss (float64) at the initial parameters
moved by --perturb, along --directions random unit directions v:
  * U-curve: central differences at 15 relative steps h = 1e-2 ... 1e-9 against <g, v>;
    each direction passes on its best step (error <= --fd-tolerance). A plateau is three
    or more steps whose successive estimates agree to --fd-tolerance; none means the loss looks
    non-smooth there (the steps cross kinks, e.g. of interpolation or limiters);
  * the cosine between V^T g and the best-step estimates (>= --min-cosine);
  * forward mode (JVP) against <g, v> (<= --tolerance);
  * the Taylor remainder |f(x+hv) - f(x) - h<g, v>|: rate 2 over the range reported.
--horizons repeats all of it for each rollout length. Writes gradcheck.json and
gradcheck.png (default folder runs/<scenario>/gradcheck/); exit 1 if a check fails.""")
    common(p, out=False)
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<scenario name>/gradcheck/)")
    p.add_argument("--force", action="store_true", help="overwrite an existing non-empty output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbation and the directions")
    p.add_argument("--perturb", type=float, default=1e-2, metavar="R",
                   help="check at x0 + R·max(|x0|,1)·N(0,1) (default 1e-2: at zero velocity or force, the usual "
                        "initial guess, departure points sit on interpolation kinks and the MacCormack limiter "
                        "is not differentiable at local extrema; 0 checks at x0)")
    p.add_argument("--directions", type=int, default=4, metavar="N", help="random directions (default 4)")
    p.add_argument("--horizons", metavar="N,N,...",
                   help="repeat the check for these rollout lengths, e.g. 5,10,20,40,80")
    p.add_argument("--tolerance", type=float, default=1e-8, help="JVP vs VJP relative tolerance (default 1e-8)")
    p.add_argument("--fd-tolerance", type=float, default=1e-5,
                   help="best-step FD vs adjoint relative tolerance (default 1e-5)")
    p.add_argument("--min-cosine", type=float, default=0.9999, help="subspace cosine threshold (default 0.9999)")
    p.add_argument("--require-taylor", action="store_true",
                   help="also fail unless some direction shows a Taylor rate of 2 ± 0.1 over a decade of h inside its plateau")
    p.set_defaults(handler=cmd_gradcheck)
    p = sub.add_parser("render", help="render a saved result as PNG or video",
                       description="Render a field of a result.npz (or of a sweep.zarr member) to a PNG, or a "
                                   "one-frame mp4/gif, as a video frame shows it: axes in box units, a labelled "
                                   "colorbar, the time, obstacles in gray.")
    p.add_argument("result", help="a result.npz written by 'fluidgrad run', or a sweep.zarr (with --member)")
    p.add_argument("--member", type=int, metavar="I", help="the member of a sweep.zarr to render")
    p.add_argument("--out", metavar="FILE", help="output .png/.mp4/.gif (default: next to the result)")
    p.add_argument("--field", default="density", choices=["density", "vorticity", "speed", "pressure"],
                   help="the field drawn, as a video can show it (default density; vorticity and speed from the "
                        "cell-centred velocity)")
    p.add_argument("--colormap", help="a matplotlib colormap (default: the field's; diverging for the signed "
                                      "vorticity and pressure, whose limits are symmetric about 0)")
    p.add_argument("--mode", default="slice", choices=["slice", "max"],
                   help="3-D: the middle z-plane (default) or the maximum over z")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(handler=cmd_render)
    p = sub.add_parser("check", help="validate a scenario", description="Validate a scenario and exit.")
    p.add_argument("scenario", help="a YAML file or the name of a bundled scenario")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any scenario key before checking, as run does (repeatable)")
    p.add_argument("--steps", type=int, metavar="N", help="override time.steps")
    p.add_argument("--quiet", action="store_true", help="no 'ok' line (the exit status says it)")
    p.set_defaults(handler=cmd_check)
    p = sub.add_parser("list", help="the bundled scenarios", description="List the bundled scenarios.")
    p.set_defaults(handler=cmd_list)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its one-line usage error
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    _created.clear()
    try:
        return _handle(args)
    finally:
        _remove_empty_created()


def command() -> int:
    """The ``fluidgrad`` command (``python -m fluidgrad``): :func:`main`, then the
    process's objects frozen out of the garbage collector (``gc.freeze``), so that exiting
    does not walk them all once more (numba's, dask's and scipy's modules): a 1-member
    sweep took 6.7 s here, 1.1 s of it exiting; now 5.6 s. Not for :func:`main` called in
    a longer-lived process."""
    code = main()
    import gc
    gc.freeze()
    return code


def _handle(args) -> int:
    try:
        _settle_threads(args)
        # a blow-up overflows before it is caught (check_finite, the solvers' watch, the
        # loss check), which report it with its step: no numpy RuntimeWarnings on the way
        with _compilation(args), onp.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return args.handler(args)
    except FluidgradError as exc:  # bad input -> 2; a failure while running -> 1
        for line in getattr(exc, "problems", None) or [str(exc)]:
            _err(line)
        return 2 if isinstance(exc, BAD_INPUT) else 1
    except FloatingPointError as exc:
        _err(str(exc))
        return 1
    except (KeyboardInterrupt, SystemError) as exc:
        if not _interrupted(exc):
            raise
        _err("interrupted" + (" (resume state saved; continue with --resume)"
                              if args.command == "optimize" else ""))
        return 130


_COMPILING = {}  # "record": this command's kernel compilation so far (see _compilation)


@contextlib.contextmanager
def _compilation(args):
    """Say when the CPU kernels compile (a first run on a machine, or a new dtype), and
    how long it took; :data:`_COMPILING` holds the running record for the summaries."""
    from .ops.compiled import watch_compilation
    quiet = getattr(args, "quiet", False)

    def started(name, done):
        if done == 0 and not quiet:
            _err("compiling the CPU kernels this command needs (once per machine and dtype; later runs load "
                 "them from the cache) ...")

    with watch_compilation(started) as record:
        _COMPILING["record"] = record
        try:
            yield
        finally:
            if record["kernels"] and not quiet:
                _err(f"compiled {len(record['kernels'])} kernels in {record['seconds']:.1f} s")


def compile_seconds() -> float:
    """Seconds this command has spent compiling kernels so far."""
    record = _COMPILING.get("record")
    return record["seconds"] if record else 0.0


def _compile_note() -> str:
    """`` (+N s compiling kernels)`` for a summary line, if this command compiled any."""
    seconds = compile_seconds()
    return f" (+{seconds:.1f} s compiling kernels, once)" if seconds >= 0.05 else ""


def _settle_threads(args):
    """``--threads`` (else ``FLUIDGRAD_THREADS``) for the CPU kernels; a bad value is bad input."""
    from .ops import compiled
    flag = getattr(args, "threads", None)
    if flag is not None:
        compiled.requested_threads(flag, "--threads")
        compiled.set_threads(flag)
    elif "FLUIDGRAD_THREADS" in os.environ:
        compiled.requested_threads()


def _interrupted(exc) -> bool:
    """Ctrl-C, also when it arrived inside compiled code (numba re-raises it as a
    SystemError caused by the KeyboardInterrupt)."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main"]
