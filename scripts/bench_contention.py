#!/usr/bin/env python3
"""What a user's command costs on a shared machine: the same ``fluidgrad`` command alone
and beside a busy process, the ratio printed.

Commands (the CLI, as users run it, warm kernel cache; one untimed warm-up run first):

* ``run``: ``fluidgrad run taylor_green`` (64², 250 steps, MacCormack): the simulation's
  ``wall_seconds`` from metrics.json;
* ``optimize``: ``fluidgrad optimize smoke_target`` on 128² (periodic, 100 steps,
  ``--iterations 4``, no video): ``seconds_per_iteration`` from metrics.json;

and the whole command's wall time for both. Competitors (``--busy``): ``spin``, one
CPU-bound Python process (``while True: pass``); ``fluidgrad``, a second fluidgrad
simulation (smoke_plume, endless). Variants (``--variant NAME:K=V,K=V``) rerun everything
with other environment settings: by default fluidgrad's policy (the kernels on the cores
free for it), two fixed threads (``FLUIDGRAD_THREADS=2``: the policy before, numba's pool
of every core) and one thread. Other policies to compare, e.g. ``passive:FLUIDGRAD_THREADS=2,
OMP_WAIT_POLICY=PASSIVE`` (libgomp threads sleep at once instead of spinning ~3 ms).
Each number is the median of ``--repeat`` runs. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, headline  # noqa: E402

COMMANDS = {
    "run": (["run", "taylor_green"], "wall_seconds"),
    "optimize": (["optimize", "smoke_target", "--set", "grid.resolution=[128,128]", "--set", "output.video=null",
                  "--iterations", "4"], "seconds_per_iteration"),
}
BUSY = {
    "spin": [sys.executable, "-c", "while True: pass"],
    "fluidgrad": [sys.executable, "-m", "fluidgrad", "run", "smoke_plume", "--steps", "10000000", "--quiet",
                  "--force", "--set", "output.video=null"],
}
DEFAULT_VARIANTS = ["default:", "fixed 2:FLUIDGRAD_THREADS=2", "1 thread:FLUIDGRAD_THREADS=1"]


def parse_variant(text):
    name, _, settings = text.partition(":")
    env = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        env[key] = value
    return name, env


def timed(command, env, folder):
    """``(metric, wall seconds)`` of one ``fluidgrad`` command run in a fresh process."""
    out = Path(folder) / "out"
    argv = [sys.executable, "-m", "fluidgrad", *command[0], "--quiet", "--force", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics[command[1]], wall


def measure(command, env, busy, repeat, folder):
    """Medians of ``repeat`` runs of ``command``, beside ``busy`` (a command) if given."""
    competitor = None
    if busy:
        competitor = subprocess.Popen(busy + (["--out", str(Path(folder) / "busy")] if "fluidgrad" in busy else []),
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # let it start (and import) before the clock runs
    try:
        runs = [timed(command, env, folder) for _ in range(repeat)]
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    p.add_argument("--busy", nargs="+", default=["spin", "fluidgrad"], choices=list(BUSY))
    p.add_argument("--variant", action="append", metavar="NAME:K=V,...",
                   help=f"environment variant (repeatable; default {DEFAULT_VARIANTS})")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    info = describe()
    print(headline(info))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.commands:
            timed(COMMANDS[name], dict(os.environ), folder)  # warm-up: the kernel cache
            for label, settings in variants:
                env = {**os.environ, **settings}
                alone = measure(COMMANDS[name], env, None, args.repeat, folder)
                row = {"command": name, "variant": label, "env": settings, "alone": alone[0],
                       "alone_wall": alone[1]}
                for kind in args.busy:
                    busy = measure(COMMANDS[name], env, BUSY[kind], args.repeat, folder)
                    row[f"busy_{kind}"], row[f"busy_{kind}_wall"] = busy
                    row[f"ratio_{kind}"] = busy[0] / alone[0]
                rows.append(row)
                print_row(row, args.busy, rows)
    print(json.dumps({"benchmark": "contention", "machine": info, "repeat": args.repeat, "rows": rows}))


def print_row(row, kinds, rows):
    if len(rows) == 1:
        head = f"{'command':<9} {'variant':<10} {'alone s':>8} {'wall':>6}"
        for kind in kinds:
            head += f" {'+' + kind + ' s':>12} {'wall':>6} {'ratio':>6}"
        print(head + "  alone vs default")
    base = next(r for r in rows if r["command"] == row["command"])
    line = f"{row['command']:<9} {row['variant']:<10} {row['alone']:8.3f} {row['alone_wall']:6.2f}"
    for kind in kinds:
        line += f" {row[f'busy_{kind}']:12.3f} {row[f'busy_{kind}_wall']:6.2f} {row[f'ratio_{kind}']:6.2f}"
    print(line + f"  {row['alone'] / base['alone']:.2f}")


if __name__ == "__main__":
    main()
