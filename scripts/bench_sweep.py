#!/usr/bin/env python3
"""Throughput of ``fluidgrad sweep`` (members per minute) on this machine.

The sweep (default): taylor_green at 64², 200 steps, 16 members (4 viscosities × 4
amplitudes), float64. Measured from fresh processes, whole commands (start-up, cluster
and kernel loading included), ``--repeat`` times interleaved (a busy neighbour on a
shared machine then weighs on every mode alike); medians and ranges are printed:

* ``sweep, 2 workers`` and ``sweep, 1 worker``: ``fluidgrad sweep ... --workers N
  --threads-per-worker 1``;
* ``shell loop``: ``fluidgrad run --threads 1`` once per member, one after the other (once);
* the fixed cost (start-up, cluster, store: a sweep of one member per worker) and beyond
  it the marginal seconds per member, 1 worker ((T(16) − T(1)) / 15) against 2 ((T(16) −
  T(2)) / 14): their ratio is the throughput ratio once the fixed cost is paid;
* the per-member scheduling overhead: the 1-worker marginal seconds against one member's
  own simulation seconds (``wall_seconds`` in the store), as a fraction;
* in steady state, from this process (``fluidgrad.sweep`` on a ``LocalCluster``, 32
  members): members per second between the completions once every worker has finished
  its first (2 workers vs 1), and the scheduling overhead per member, the median of
  (time between two completions − the later member's own ``wall_seconds``) on 1 worker
  against the median ``wall_seconds``;
* the machine's own bound: the same members run in one plain process, then in two side
  by side (no Dask): 2 × the solo time / the pair's time is what two workers could gain
  at best at that moment.

Prints a table and one JSON line with the CPU model and the load averages.
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

import machine  # noqa: E402

VISCOSITIES = "0.01,0.02,0.03,0.04"
AMPLITUDES = "0.5,0.75,1.0,1.25"
PLAIN = """
import sys
from fluidgrad.sweeps.run import run_member
settings = {{"grid.resolution": [{n}, {n}], "time.steps": {steps}}}
run_member("taylor_green", {{**settings, "time.steps": 1}})  # imports and kernels, as a worker's first member
for i in range({members}):
    run_member("taylor_green", {{**settings, "physics.viscosity": 0.01 * (1 + i % 4)}})
"""


def fluidgrad(*args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fluidgrad", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: fluidgrad {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def plain_processes(count, n, steps, members):
    """Seconds for ``count`` plain processes side by side, each running ``members`` members."""
    env = {**os.environ, "FLUIDGRAD_THREADS": "1"}
    code = PLAIN.format(n=n, steps=steps, members=members)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    if any(p.wait() for p in procs):
        raise SystemExit("bench_sweep: a plain process failed")
    return time.perf_counter() - start


def steady(workers, n, steps, members=32):
    """``(members per second after the warm-up, median overhead seconds, median member seconds)``
    of a ``fluidgrad.sweep`` on a fresh LocalCluster of ``workers``."""
    import numpy as onp
    from fluidgrad.sweeps import sweep
    done = []
    ds = sweep("taylor_green", {"physics.viscosity": list(onp.linspace(0.01, 0.04, members))}, workers=workers,
               overrides={"grid.resolution": [n, n], "time.steps": steps},
               on_member=lambda i, r: done.append((time.perf_counter(), i)))
    own = ds["wall_seconds"].values
    times = [t for t, _ in done]
    rate = (len(times) - workers) / (times[-1] - times[workers - 1])
    gaps = [t1 - t0 - own[i] for (t0, _), (t1, i) in zip(done, done[1:])]
    return rate, statistics.median(gaps), float(onp.median(own))


def spread(values):
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--no-loop", action="store_true", help="skip the shell loop of fluidgrad run")
    args = parser.parse_args(argv)
    common = ["taylor_green", "--set", f"grid.resolution=[{args.n},{args.n}]", "--steps", str(args.steps), "--quiet"]
    vary = ["--vary", f"physics.viscosity={VISCOSITIES}", "--vary", f"initial.velocity.amplitude={AMPLITUDES}"]
    members = 16
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    fluidgrad("run", *common, "--out", str(folder / "warm"))  # the kernel cache, as after an install

    runs = {k: [] for k in ("w2", "w1", "one", "two", "solo", "pair")}
    load = [os.getloadavg()[0]]
    for r in range(args.repeat):
        for workers in (2, 1):
            runs[f"w{workers}"].append(fluidgrad("sweep", *common, *vary, "--workers", str(workers),
                                                 "--out", str(folder / f"w{workers}-{r}")))
        # the fixed cost (start-up, cluster, store) from sweeps of one member per worker
        runs["one"].append(fluidgrad("sweep", *common, "--vary", "physics.viscosity=0.01", "--workers", "1",
                                     "--out", str(folder / f"one-{r}")))
        runs["two"].append(fluidgrad("sweep", *common, "--vary", "physics.viscosity=0.01,0.02", "--workers", "2",
                                     "--out", str(folder / f"two-{r}")))
        runs["solo"].append(plain_processes(1, args.n, args.steps, 8))
        runs["pair"].append(plain_processes(2, args.n, args.steps, 8))
        for workers in (2, 1):
            rate, gap, own = steady(workers, args.n, args.steps)
            runs.setdefault(f"steady{workers}", []).append(rate)
            if workers == 1:
                runs.setdefault("gap", []).append(gap)
                runs.setdefault("own", []).append(own)
        load.append(os.getloadavg()[0])
    loop = None
    if not args.no_loop:
        start = time.perf_counter()
        for i, nu in enumerate(VISCOSITIES.split(",")):
            for j, amp in enumerate(AMPLITUDES.split(",")):
                fluidgrad("run", *common, "--set", f"physics.viscosity={nu}", "--set",
                          f"initial.velocity.amplitude={amp}", "--out", str(folder / f"loop{i}{j}"), "--threads", "1")
        loop = time.perf_counter() - start

    import zarr
    member_seconds = statistics.median(v for r in range(args.repeat)
                                       for v in zarr.open_group(str(folder / f"w1-{r}" / "sweep.zarr"),
                                                                mode="r")["wall_seconds"][:].tolist())
    keys = ("w1", "w2", "one", "two", "solo", "pair", "steady1", "steady2", "gap", "own")
    per = [{"two_vs_one": w1 / w2, "beyond_fixed": ((w1 - one) / (members - 1)) / ((w2 - two) / (members - 2)),
            "marginal": (w1 - one) / (members - 1), "bound": 2 * solo / pair, "steady": s2 / s1,
            "scheduling": gap / own}
           for w1, w2, one, two, solo, pair, s1, s2, gap, own in zip(*(runs[k] for k in keys))]
    med = {k: statistics.median(p[k] for p in per) for k in per[0]}
    overhead = med["marginal"] / member_seconds - 1

    info = machine.describe()
    print(f"# {machine.headline(info)}; load average {min(load):.1f}-{max(load):.1f} during the runs")
    print(f"# taylor_green {args.n}², {args.steps} steps, {members} members; whole commands, kernels cached; "
          f"median (range) of {args.repeat}")
    print(f"{'mode':<18} {'seconds':>20} {'members/min':>12}")
    seconds = {"sweep, 2 workers": runs["w2"], "sweep, 1 worker": runs["w1"]}
    if loop is not None:
        seconds["shell loop"] = [loop]
    rate = {name: members / statistics.median(s) * 60 for name, s in seconds.items()}
    for name, s in seconds.items():
        print(f"{name:<18} {spread(s):>20} {rate[name]:12.1f}")
    print(f"2 workers vs 1: {spread([p['two_vs_one'] for p in per])}× whole command, "
          f"{spread([p['beyond_fixed'] for p in per])}× beyond the fixed cost (fixed: {spread(runs['one'])} s with 1 worker, "
          f"{spread(runs['two'])} s with 2); the machine's bound, two plain processes vs one: "
          f"{spread([p['bound'] for p in per])}×")
    if loop is not None:
        print(f"2 workers vs the shell loop: {rate['sweep, 2 workers'] / rate['shell loop']:.2f}×")
    print(f"steady state (32 members, this process): 2 workers vs 1 {spread([p['steady'] for p in per])}× members "
          f"per minute; scheduling overhead per member {spread([100 * p['scheduling'] for p in per])} % "
          f"({statistics.median(runs['gap']) * 1e3:.1f} ms of {statistics.median(runs['own']):.3f} s)")
    print(f"cross-check from whole commands: {med['marginal']:.3f} s per member in the 1-worker sweep "
          f"((T(16) - T(1)) / 15) against {member_seconds:.3f} s of simulation, {overhead:+.1%} "
          f"(per repetition {spread([100 * (p['marginal'] / member_seconds - 1) for p in per])} %: the difference "
          f"of two whole commands carries their noise)")
    print(json.dumps({"benchmark": "sweep", "machine": info, "load_average": load, "n": args.n, "steps": args.steps,
                      "members": members, "seconds": seconds, "members_per_minute": rate, "runs": runs,
                      "per_repeat": per, "median": med, "member_seconds": member_seconds, "overhead": overhead}))


if __name__ == "__main__":  # the LocalCluster's workers import this file again
    main()
