#!/usr/bin/env python3
"""Frames per second of :func:`fluidgrad.render.render_frames` (mp4), this checkout against
a baseline commit, measured in the same run.

Cases: density at 128² and 512² (a moving Gaussian blob over smooth ripples, and the same
with 5 % per-cell noise, the encoder's worst case), speed with arrows at 64² (the
lid cavity's grid), vorticity on the Kármán grid (192×48). Every case renders the whole
video from a FrameSpool (colour limits, decorations, frame images, H.264 encoding) and
reports frames per second of that whole call, as ``metrics.json`` does; the first row is
each process's first render (4 frames of density at 32²: the imports and fonts it pays
for, which the other rows do not; then arrows are drawn once, untimed). The baseline
(default 9c23849, the last commit before the decorated frames) is unpacked with ``git
archive`` into a temporary folder; each round runs one worker process per source tree, in
alternating order, and every worker renders each case ``--repeat`` times after those.
The table gives the median over all renders of each case and the ratio new / baseline;
one JSON line follows, with the CPU (``machine.py``).

    python scripts/bench_render.py [--frames 40] [--rounds 3] [--repeat 3] [--baseline REV]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = [("density 128²", "density", 128, 128, False, 0.0),
         ("density 128², noisy", "density", 128, 128, False, 0.05),
         ("density 512²", "density", 512, 512, False, 0.0),
         ("density 512², noisy", "density", 512, 512, False, 0.05),
         ("speed 64² + arrows", "speed", 64, 64, True, 0.0),
         ("vorticity 192x48", "vorticity", 192, 48, False, 0.0)]


def blob_frames(nx, ny, count, rng, noise):
    """A Gaussian blob moving right over smooth ripples, plus ``noise`` × uniform noise per cell
    (noise is the encoder's worst case: every cell block's edges are new in every frame)."""
    x, y = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, ny / nx, ny), indexing="ij")
    for k in range(count):
        cx = 0.2 + 0.6 * k / max(count - 1, 1)
        f = np.exp(-((x - cx) ** 2 + (y - 0.5 * ny / nx) ** 2) / 0.02)
        f += 0.1 * np.sin(12 * x + 0.3 * k) * np.cos(9 * y - 0.2 * k)
        yield (f + noise * rng.random((nx, ny))).astype(np.float32)


def case(name, field, nx, ny, count, arrows, folder, repeat, noise=0.0):
    """Seconds of each of ``repeat`` renders of one case, and the video's size."""
    from fluidgrad.render import FrameSpool, render_frames
    rng = np.random.default_rng(0)
    spool = FrameSpool(folder)
    vel = FrameSpool(folder) if arrows else None
    for f in blob_frames(nx, ny, count, rng, noise):
        spool.append(f if field in ("density", "speed") else f - f.mean())
        if arrows:
            gy, gx = np.gradient(f.astype(np.float64))
            vel.append((gx.astype(np.float32), -gy.astype(np.float32)))
    params = inspect.signature(render_frames).parameters  # the baseline has none of these keywords
    extra = {key: value for key, value in (("times", [0.01 * k for k in range(count)]), ("steps", list(range(count))),
                                           ("size", (1.0, ny / nx))) if key in params}
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        path = render_frames(spool, field, Path(folder) / "video.mp4", fps=30, velocities=vel, **extra)
        seconds.append(time.perf_counter() - t0)
    import imageio.v3 as iio
    shape = next(iio.imiter(path)).shape
    spool.close()
    if vel is not None:
        vel.close()
    return {"case": name, "seconds": seconds, "video": f"{shape[1]}x{shape[0]}"}


FIRST = "first video (imports)"  # a process's first render: 4 frames of density at 32²


def worker(frames, repeat):
    """One source tree's renders of every case, after the process's first one (the warm-up:
    imports, fonts, glyphs; reported as its own row), as one JSON line."""
    with tempfile.TemporaryDirectory() as folder:
        rows = [{**case("warm-up", "density", 32, 32, 4, False, folder, 1), "case": FIRST}]
        case("warm-up", "speed", 32, 32, 4, True, folder, 1)  # and the arrows' first use
        rows += [case(name, field, nx, ny, frames, arrows, folder, repeat, noise)
                 for name, field, nx, ny, arrows, noise in CASES]
    print(json.dumps(rows))


def run_worker(src, frames, repeat):
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--worker", "--frames", str(frames), "--repeat", str(repeat)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="worker processes per source tree")
    parser.add_argument("--repeat", type=int, default=3, help="renders of each case per worker")
    parser.add_argument("--baseline", default="9c23849", help="the commit to compare with")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.frames, args.repeat)
    sys.path.insert(0, str(HERE))
    import machine
    info = machine.describe()
    print(f"# {machine.headline(info)}", flush=True)
    samples = {"baseline": {}, "new": {}}
    videos = {"baseline": {}, "new": {}}
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        trees = {"baseline": Path(old) / "src", "new": ROOT / "src"}
        for r in range(args.rounds):
            for which in (("baseline", "new") if r % 2 == 0 else ("new", "baseline")):
                for row in run_worker(trees[which], args.frames, args.repeat):
                    samples[which].setdefault(row["case"], []).extend(row["seconds"])
                    videos[which][row["case"]] = row["video"]
    rows = []
    print(f"{'case':<22} {'baseline':>9} {'new':>9}  new/baseline  (frames/s, median of {args.rounds}×{args.repeat} "
          f"renders of {args.frames} frames; baseline {args.baseline})")
    for name in [FIRST] + [c[0] for c in CASES]:
        count = 4 if name == FIRST else args.frames
        fps = {w: count / statistics.median(samples[w][name]) for w in samples}
        rows.append({"case": name, "baseline_fps": round(fps["baseline"], 1), "new_fps": round(fps["new"], 1),
                     "ratio": round(fps["new"] / fps["baseline"], 3), "baseline_video": videos["baseline"][name],
                     "new_video": videos["new"][name]})
        print(f"{name:<22} {fps['baseline']:>9.1f} {fps['new']:>9.1f}  {fps['new'] / fps['baseline']:>11.2f}x  "
              f"(video {videos['baseline'][name]} / {videos['new'][name]})", flush=True)
    print(json.dumps({"benchmark": "render", "machine": info, "baseline": args.baseline, "frames": args.frames,
                      "rounds": args.rounds, "repeat": args.repeat, "rows": rows}))


if __name__ == "__main__":
    main()
