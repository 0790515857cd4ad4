"""Run every benchmark, one after the other (each alone on the machine, as their ratios need).

Usage:
    python benchmarks/run.py --data PATH/TO/nuclei [--quick]

``--quick`` shrinks each benchmark to a smoke run of a few minutes in all (one seed,
half-minute trainings on 20 images scored on 8, fewer rounds and sizes); the figures in
docs/benchmarks.md come from the full run. The napari benchmark needs a display: on
Linux without one, run this under ``xvfb-run -a``; it is skipped (and said so) when no
display is found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and test/ (nuclei)")
    parser.add_argument("--quick", action="store_true", help="a few minutes in all")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder for the JSON results")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    suffix = "-quick" if args.quick else ""
    data = str(args.data)
    runs = [
        ["bench_speed.py", *quick, "--out", str(args.results / f"speed{suffix}.json")],
        ["bench_train_speed.py", data, *quick, "--out", str(args.results / f"train_speed{suffix}.json")],
        ["bench_accuracy.py", data, *quick, "--out", str(args.results / f"accuracy{suffix}.json")],
        ["bench_instances.py", data, *quick],  # writes instances(-quick).json itself
        ["bench_strokes.py", "--data", data, *quick, "--out", str(args.results / f"strokes{suffix}.json")],
        ["bench_presets.py", data, *quick, "--out", str(args.results / f"presets{suffix}.json")],
        ["bench_finetune.py", data, *quick, "--out", str(args.results / f"finetune{suffix}.json")],
    ]
    if os.environ.get("DISPLAY") or sys.platform != "linux":
        napari_out = ["--out", str(args.results / f"napari{suffix}.json")]
        runs.append(["bench_napari_sample.py", "--epochs", "3" if args.quick else "30", *napari_out])
        if not args.quick:
            viewer = ["--image", "nuclei", "--data", data, "--stop-after", "3", "--until-iou", "2", "--epochs", "8"]
            runs.append(["bench_napari_sample.py", *viewer, *napari_out])
    else:
        print("no display: skipping bench_napari_sample.py (run under xvfb-run -a)")
    failed = []
    for run in runs:
        print(f"\n=== {' '.join(run)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / run[0]), *run[1:]])
        print(f"=== {run[0]}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(run[0])
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
