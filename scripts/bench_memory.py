#!/usr/bin/env python3
"""Peak memory of a real ``fluidgrad optimize`` run, by phase, against the gradient alone.

Runs, each in a fresh subprocess (so every number is that process's own high-water RSS):

* the command ``fluidgrad optimize SCENARIO --set grid.resolution=[N,N] --set time.steps=T
  --dtype float32 --iterations 1`` (default: smoke_target, 512², 100 steps);
* the same command with each phase timed and measured: before each phase the kernel's
  high-water mark is reset (``/proc/self/clear_refs``), after it ``VmHWM`` and ``VmRSS``
  are read, so a phase's peak is its own (imports, setup, the before video, the
  optimization, the loss plot, the after video, the panel);
* the gradient alone: the scenario's problem, one ``value_and_grad`` (what
  ``scripts/bench_cpu.py`` measures), as absolute peak RSS and as peak minus the RSS
  before the call.

Prints a table and one JSON line (``peak_rss_mb``, ``gradient_peak_rss_mb``, their ratio,
the gradient's step evaluations, the CPU model from ``machine.py``). "MB" here is MiB
(the kernel's kB / 1024).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe, headline  # noqa: E402

MB = 1024 * 1024


def cpu_model() -> str:
    return describe()["cpu"]


def _status(key) -> float:
    """``VmHWM``/``VmRSS`` of this process, MB."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def command(args, out):
    return ["optimize", args.scenario, "--set", f"grid.resolution=[{args.n},{args.n}]",
            "--set", f"time.steps={args.steps}", "--dtype", args.dtype, "--iterations", "1",
            "--out", out, "--force", "--quiet"]


def run_child(mode, args, out):
    """Run this script in ``mode`` in a subprocess; returns (its JSON, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--scenario", args.scenario, "--n", str(args.n),
                           "--steps", str(args.steps), "--dtype", args.dtype, "--out", out],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_memory: {mode} failed:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), seconds


def child_command(args):
    from fluidgrad import cli
    code = cli.main(command(args, args.out))
    print(json.dumps({"exit": code, "peak_mb": _status("VmHWM")}))
    sys.exit(code)


def child_phases(args):
    """The command with each phase measured (peak and RSS after), by wrapping cli's pieces."""
    phases = []

    def measure(name, fun):
        def wrapped(*a, **k):
            _reset_peak()
            before, t0 = _status("VmRSS"), time.perf_counter()
            try:
                return fun(*a, **k)
            finally:
                phases.append({"phase": name, "rss_before_mb": before, "peak_mb": _status("VmHWM"),
                               "rss_after_mb": _status("VmRSS"), "seconds": time.perf_counter() - t0})
        return wrapped

    _reset_peak()
    t0 = time.perf_counter()
    import numpy  # noqa: F401
    from fluidgrad import cli, optimize, render
    phases.append({"phase": "import fluidgrad, numpy", "rss_before_mb": 0.0, "peak_mb": _status("VmHWM"),
                   "rss_after_mb": _status("VmRSS"), "seconds": time.perf_counter() - t0})
    counts = {"before": 0}

    def rollout_frames(*a, **k):
        counts["before"] += 1
        return measure("rollout frames (before)" if counts["before"] == 1 else "rollout frames (after)",
                       original_rollout_frames)(*a, **k)

    def video(*a, **k):
        name = "encode video (before)" if "before" in str(a[1]) else "encode video (after)"
        return measure(name, original_video)(*a, **k)

    original_rollout_frames, original_video = cli._rollout_frames, cli._video
    cli._rollout_frames, cli._video = rollout_frames, video
    optimize.run = measure("optimization (1 iteration)", optimize.run)
    render.plot_loss = measure("loss plot (matplotlib)", render.plot_loss)
    render.render_panel = measure("panel", render.render_panel)
    code = cli.main(command(args, args.out))
    print(json.dumps({"exit": code, "phases": phases, "peak_mb": max(p["peak_mb"] for p in phases)}))


def child_gradient(args):
    """One value_and_grad of the scenario's problem (no videos, no plots); also counts the
    step evaluations (the checkpointing's recomputation)."""
    from fluidgrad.scenario import load_scenario
    scenario = load_scenario(args.scenario, {"grid.resolution": [args.n, args.n], "time.steps": args.steps,
                                             "dtype": args.dtype})
    sim = scenario.simulation()
    problem = scenario.problem(sim, scenario.loss_target(sim))
    x0 = problem.flatten(problem.initial_raw())
    count = [0]
    step = type(sim).step

    def counted(self, *a, **k):
        count[0] += 1
        return step(self, *a, **k)

    type(sim).step = counted
    base = _status("VmRSS")
    problem.value_and_grad(x0)
    print(json.dumps({"base_mb": base, "peak_mb": _status("VmHWM"), "increment_mb": _status("VmHWM") - base,
                      "step_evaluations": count[0]}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="smoke_target")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=["command", "phases", "gradient"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        {"command": child_command, "phases": child_phases, "gradient": child_gradient}[args.child](args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        # the first child compiles (and caches) the kernels; each measurement is its own process
        run_child("gradient", args, os.path.join(tmp, "warm"))
        grad, _ = run_child("gradient", args, os.path.join(tmp, "g"))
        cmd, cmd_seconds = run_child("command", args, os.path.join(tmp, "c"))
        phases, _ = run_child("phases", args, os.path.join(tmp, "p"))
    print(f"fluidgrad optimize {args.scenario} {args.n}x{args.n}, {args.steps} steps, {args.dtype}, 1 iteration; "
          f"{headline()}")
    print(f"  {'phase':<28} {'RSS before':>10} {'peak':>8} {'peak-before':>11} {'RSS after':>9} {'seconds':>8}")
    for ph in phases["phases"]:
        print(f"  {ph['phase']:<28} {ph['rss_before_mb']:10.0f} {ph['peak_mb']:8.0f} "
              f"{ph['peak_mb'] - ph['rss_before_mb']:11.0f} {ph['rss_after_mb']:9.0f} {ph['seconds']:8.2f}")
    print(f"  whole command: peak RSS {cmd['peak_mb']:.0f} MB ({cmd_seconds:.1f} s; {phases['peak_mb']:.0f} MB in the "
          f"phase run); gradient alone: peak RSS "
          f"{grad['peak_mb']:.0f} MB ({grad['increment_mb']:.0f} MB above the {grad['base_mb']:.0f} MB before the "
          f"call; {grad['step_evaluations']} step evaluations); command / gradient {cmd['peak_mb'] / grad['peak_mb']:.2f}")
    print(json.dumps({"scenario": args.scenario, "n": args.n, "steps": args.steps, "dtype": args.dtype,
                      "peak_rss_mb": round(cmd["peak_mb"], 1), "command_seconds": round(cmd_seconds, 1),
                      "gradient_peak_rss_mb": round(grad["peak_mb"], 1),
                      "gradient_increment_mb": round(grad["increment_mb"], 1),
                      "step_evaluations": grad["step_evaluations"],
                      "ratio": round(cmd["peak_mb"] / grad["peak_mb"], 3),
                      "phases": {ph["phase"]: round(ph["peak_mb"], 1) for ph in phases["phases"]},
                      "cpu": cpu_model()}))


if __name__ == "__main__":
    main()
