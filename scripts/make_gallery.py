#!/usr/bin/env python3
"""Render the README gallery: decorated frames from each bundled scenario's video.

Runs every bundled scenario with the CLI (``run``, or ``optimize`` for those with an
``optimize:`` block) into ``--runs`` (reusing a folder that already has the video), then
writes ``docs/gallery/<name>.png``: two video frames side by side, as the video shows them
(axes, colorbar, time and step): halfway and the last one, or for an optimization the
last frame of its "before" and of its "after" video.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import imageio
import imageio.v3 as iio
import numpy as np

from fluidgrad.scenario import bundled_scenarios, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def frames_of(video, fractions):
    """The frames at ``fractions`` (0 the first, 1 the last) of ``video``."""
    reader = imageio.get_reader(video)
    n = reader.count_frames()
    return [reader.get_data(int(round(f * (n - 1)))) for f in fractions]


def strip(images, gap=8):
    """``images`` side by side, or one above the other if they are wide (the Kármán channel)."""
    axis = 0 if images[0].shape[1] > 1.5 * images[0].shape[0] else 1
    size = max(i.shape[1 - axis] for i in images)
    pad = [(0, gap), (0, 0)] if axis == 0 else [(0, 0), (0, gap)]
    padded = []
    for i in images:
        fill = [(0, 0), (0, size - i.shape[1])] if axis == 0 else [(0, size - i.shape[0]), (0, 0)]
        padded.append(np.pad(i, [(a[0] + b[0], a[1] + b[1]) for a, b in zip(pad, fill)] + [(0, 0)],
                             constant_values=255))
    out = np.concatenate(padded, axis=axis)
    return out[:-gap] if axis == 0 else out[:, :-gap]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/gallery", help="where to run the scenarios")
    p.add_argument("--out", default=str(ROOT / "docs" / "gallery"))
    p.add_argument("names", nargs="*", help="the scenarios to render (default: every bundled one)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names or sorted(bundled_scenarios()):
        scenario = load_scenario(name)
        folder = Path(args.runs) / name
        command = "optimize" if scenario.optimize else "run"
        fmt = scenario.output["video"]["format"]
        video = folder / (f"after.{fmt}" if scenario.optimize else f"{scenario.output['video']['field']}.{fmt}")
        if not video.exists():
            subprocess.run([sys.executable, "-m", "fluidgrad", command, name, "--out", str(folder), "--force",
                            "--quiet"], check=True)
        if scenario.optimize:
            images = frames_of(folder / f"before.{fmt}", [1]) + frames_of(video, [1])
        else:
            images = frames_of(video, [0.5, 1])
        iio.imwrite(out / f"{name}.png", strip(images))
        print(f"wrote {out / (name + '.png')}")


if __name__ == "__main__":
    main()
