#!/usr/bin/env python3
"""Throughput of ``fluidgrad sweep`` (members per minute) on this machine.

The sweep (default): taylor_green at 64², 200 steps, 16 members (4 viscosities × 4
amplitudes), float64. Measured, each from a fresh process, whole commands (start-up,
cluster and kernel loading included):

* ``sweep, 2 workers`` and ``sweep, 1 worker``: ``fluidgrad sweep ... --workers N
  --threads-per-worker 1``;
* ``shell loop``: ``fluidgrad run`` once per member, one after the other;
* beyond the fixed cost (start-up, cluster, store: a sweep of one member per worker),
  the marginal seconds per member, 1 worker ((T(16) − T(1)) / 15) against 2 ((T(16) −
  T(2)) / 14);
* the per-member scheduling overhead: the 1-worker marginal seconds against one member's
  own simulation seconds (``wall_seconds`` in the store), as a fraction.

Prints a table (members per minute, ratios) and one JSON line with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

VISCOSITIES = "0.01,0.02,0.03,0.04"
AMPLITUDES = "0.5,0.75,1.0,1.25"


def fluidgrad(*args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fluidgrad", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: fluidgrad {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    common = ["taylor_green", "--set", f"grid.resolution=[{args.n},{args.n}]", "--steps", str(args.steps), "--quiet"]
    vary = ["--vary", f"physics.viscosity={VISCOSITIES}", "--vary", f"initial.velocity.amplitude={AMPLITUDES}"]
    members = 16
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    fluidgrad("run", *common, "--out", str(folder / "warm"))  # the kernel cache, as after an install

    seconds = {}
    for workers in (2, 1):
        seconds[f"sweep, {workers} worker{'s' if workers > 1 else ''}"] = fluidgrad(
            "sweep", *common, *vary, "--workers", str(workers), "--out", str(folder / f"w{workers}"))
    # the fixed cost (start-up, cluster, store) from sweeps of one member per worker
    one = fluidgrad("sweep", *common, "--vary", "physics.viscosity=0.01", "--workers", "1", "--out", str(folder / "one"))
    two = fluidgrad("sweep", *common, "--vary", "physics.viscosity=0.01,0.02", "--workers", "2",
                    "--out", str(folder / "two"))
    start = time.perf_counter()
    for i, nu in enumerate(VISCOSITIES.split(",")):
        for j, amp in enumerate(AMPLITUDES.split(",")):
            fluidgrad("run", *common, "--set", f"physics.viscosity={nu}", "--set", f"initial.velocity.amplitude={amp}",
                      "--out", str(folder / f"loop{i}{j}"), "--threads", "1")
    seconds["shell loop"] = time.perf_counter() - start

    import xarray as xr
    member_seconds = statistics.median(xr.open_zarr(folder / "w1" / "sweep.zarr")["wall_seconds"].values.tolist())
    marginal = (seconds["sweep, 1 worker"] - one) / (members - 1)
    marginal_two = (seconds["sweep, 2 workers"] - two) / (members - 2)
    overhead = marginal / member_seconds - 1
    steady = marginal / marginal_two  # members per second beyond the fixed cost, 2 workers vs 1

    info = machine.describe()
    print(f"# {machine.headline(info)}")
    print(f"# taylor_green {args.n}², {args.steps} steps, {members} members; whole commands, kernels cached")
    print(f"{'mode':<18} {'seconds':>8} {'members/min':>12}")
    rate = {name: members / s * 60 for name, s in seconds.items()}
    for name, s in seconds.items():
        print(f"{name:<18} {s:8.2f} {rate[name]:12.1f}")
    two_vs_one = rate["sweep, 2 workers"] / rate["sweep, 1 worker"]
    two_vs_loop = rate["sweep, 2 workers"] / rate["shell loop"]
    print(f"2 workers vs 1: {two_vs_one:.2f}× whole command, {steady:.2f}× beyond the fixed cost "
          f"({one:.2f} s with 1 worker, {two:.2f} s with 2); 2 workers vs the shell loop: {two_vs_loop:.2f}×")
    print(f"per member: {marginal:.3f} s in the 1-worker sweep against {member_seconds:.3f} s of simulation "
          f"(overhead {overhead:+.1%})")
    print(json.dumps({"benchmark": "sweep", "machine": info, "n": args.n, "steps": args.steps, "members": members,
                      "seconds": seconds, "members_per_minute": rate, "two_vs_one": two_vs_one,
                      "two_vs_one_beyond_fixed_cost": steady, "fixed_seconds": {"1 worker": one, "2 workers": two},
                      "two_vs_shell_loop": two_vs_loop, "member_seconds": member_seconds,
                      "marginal_seconds_per_member": marginal, "overhead": overhead}))


if __name__ == "__main__":
    main()
