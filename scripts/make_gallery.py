#!/usr/bin/env python3
"""Render the README gallery: a strip of frames from each bundled scenario's video.

Runs every bundled scenario with the CLI (``run``, or ``optimize`` for those with an
``optimize:`` block, whose "after" video is used) into ``--runs`` (reusing a folder
that already has the video), then writes ``docs/gallery/<name>.png``: four frames
side by side (the last frame of each optimization "before" and "after" for those).
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


def frames_of(video, count):
    reader = imageio.get_reader(video)
    n = reader.count_frames()
    picks = np.linspace(0, n - 1, count).round().astype(int)
    return [reader.get_data(int(i)) for i in picks]


def strip(images, gap=4):
    height = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, height - i.shape[0]), (0, gap), (0, 0)), constant_values=255) for i in images]
    return np.concatenate(padded, axis=1)[:, :-gap]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/gallery", help="where to run the scenarios")
    p.add_argument("--out", default=str(ROOT / "docs" / "gallery"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(bundled_scenarios()):
        scenario = load_scenario(name)
        folder = Path(args.runs) / name
        command = "optimize" if scenario.optimize else "run"
        fmt = scenario.output["video"]["format"]
        video = folder / (f"after.{fmt}" if scenario.optimize else f"{scenario.output['video']['field']}.{fmt}")
        if not video.exists():
            subprocess.run([sys.executable, "-m", "fluidgrad", command, name, "--out", str(folder), "--force",
                            "--quiet"], check=True)
        if scenario.optimize:
            images = [frames_of(folder / f"before.{fmt}", 2)[-1], frames_of(video, 2)[-1]]
        else:
            images = frames_of(video, 4)
        iio.imwrite(out / f"{name}.png", strip(images))
        print(f"wrote {out / (name + '.png')}")


if __name__ == "__main__":
    main()
