#!/usr/bin/env python3
"""Frames per second of :func:`fluidgrad.render.render_frames` (mp4), frames from a FrameSpool.

Cases: density at 128² and 512² (a moving Gaussian blob over smooth ripples, and the same
with 5 % per-cell noise, the encoder's worst case), speed with arrows at 64² (the
lid cavity's grid), vorticity on the Kármán grid (192×48). Every case renders the whole
video (colour limits, frame images, H.264 encoding) and reports frames per second of that
whole call; the best of ``--repeat`` runs. Run it against another checkout's sources with
``PYTHONPATH=/that/checkout/src`` to compare (the new keywords are only passed where the
installed ``render_frames`` accepts them).

    PYTHONPATH=src python scripts/bench_render.py [--frames 40] [--repeat 2]
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from pathlib import Path

import numpy as np


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
    from fluidgrad.render import FrameSpool, render_frames
    rng = np.random.default_rng(0)
    spool = FrameSpool(folder)
    vel = FrameSpool(folder) if arrows else None
    for f in blob_frames(nx, ny, count, rng, noise):
        spool.append(f if field in ("density", "speed") else f - f.mean())
        if arrows:
            gy, gx = np.gradient(f.astype(np.float64))
            vel.append((gx.astype(np.float32), -gy.astype(np.float32)))
    params = inspect.signature(render_frames).parameters
    extra = {}
    if "times" in params:
        extra["times"] = [0.01 * k for k in range(count)]
    if "steps" in params:
        extra["steps"] = [k for k in range(count)]
    if "extent" in params:
        extra["extent"] = (1.0, ny / nx)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        path = render_frames(spool, field, Path(folder) / f"{name}.mp4", fps=30, velocities=vel, **extra)
        best = min(best, time.perf_counter() - t0)
    import imageio.v3 as iio
    shape = next(iio.imiter(path)).shape
    spool.close()
    if vel is not None:
        vel.close()
    return {"case": name, "grid": [nx, ny], "frames": count, "seconds": round(best, 3),
            "frames_per_second": round(count / best, 1), "video": f"{shape[1]}x{shape[0]}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import fluidgrad.render as render
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, field, nx, ny, arrows, noise in [("density 128²", "density", 128, 128, False, 0.0),
                                                   ("density 128², noisy", "density", 128, 128, False, 0.05),
                                                   ("density 512²", "density", 512, 512, False, 0.0),
                                                   ("density 512², noisy", "density", 512, 512, False, 0.05),
                                                   ("speed 64² + arrows", "speed", 64, 64, True, 0.0),
                                                   ("vorticity 192x48", "vorticity", 192, 48, False, 0.0)]:
            rows.append(case(name, field, nx, ny, args.frames, arrows, folder, args.repeat, noise))
            r = rows[-1]
            print(f"{r['case']:<24} {r['frames_per_second']:>7.1f} frames/s  ({r['frames']} frames in "
                  f"{r['seconds']:.2f} s, video {r['video']})", flush=True)
    print(json.dumps({"render": str(Path(render.__file__).resolve()), "rows": rows}))


if __name__ == "__main__":
    main()
