"""Peak memory of a 3D model's prediction at 1x and 4x a volume: it should not grow.

    python benchmarks/bench_volume_memory.py WORK [--side 1024 --depths 128 512]

A small 3D instance model is trained for ``--train-seconds`` on synthetic nuclei volumes,
then, for each depth, a ``depth x side x side`` uint16 volume of synthetic nuclei (one
64x128x128 volume tiled, on disk, memory-mapped) is segmented straight into a TIFF
(``predict_to_tiff``, ``--output`` classes or objects) by a child process whose peak resident memory is read
(its ``VmHWM``) when it ends. Records, one JSON line in ``--out``: per depth the volume's size, seconds
and peak RSS, and the ratio of the peaks. WORK needs room for the volumes (2 bytes a
voxel) and their masks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import append_record, machine_info

CHILD = """
import sys, time, numpy as np
from napari_unet_cat.loading import load_model
model = load_model(sys.argv[1])
volume = np.load(sys.argv[2], mmap_mode="r")
t0 = time.perf_counter()
model.predict_to_tiff(volume, sys.argv[3], axes="ZYX", output=sys.argv[4])
seconds = time.perf_counter() - t0
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
print(seconds, int(peak) / 1024)
"""


def make_model(path: Path, seconds: float) -> None:
    from napari_unet_cat.synthetic import make_volume
    from napari_unet_cat.training import train

    pairs = [make_volume((32, 64, 64), seed=i) for i in range(4)]
    model = train(
        [v for v, _ in pairs], [m for _, m in pairs], axes="ZYX", ndim=3, label_mode="instances", epochs=1000,
        time_budget_s=seconds, patch_size=32, base_filters=4, depth=3, preset="light",
    )  # fmt: skip
    model.save(path)


def make_volume_file(path: Path, depth: int, side: int) -> None:
    """A memory-mapped ``.npy`` volume of synthetic nuclei, written tile by tile."""
    from napari_unet_cat.synthetic import make_volume

    tile, _ = make_volume((64, 128, 128), seed=7, n_objects=(20, 30))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(depth, side, side))
    for z in range(0, depth, 64):
        slab = np.tile(tile.astype(np.uint16) * 200, (1, side // 128, side // 128))
        out[z : z + 64] = slab[: min(64, depth - z)]
    out.flush()
    del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--depths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--train-seconds", type=float, default=30.0)
    parser.add_argument(
        "--output",
        choices=("classes", "instances"),
        default="classes",
        help="classes: the engine's own memory; instances: plus the objects held until complete",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "volume-memory.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "model3d.keras"
    make_model(model, args.train_seconds)
    runs = []
    for depth in args.depths:
        volume = args.work / f"volume_{depth}.npy"
        make_volume_file(volume, depth, args.side)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(model), str(volume), str(args.work / f"out_{depth}.tif"), args.output],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds, peak_mb = map(float, done.stdout.strip().splitlines()[-1].split())
        run = {
            "shape": [depth, args.side, args.side],
            "gigavoxels": round(depth * args.side**2 / 1e9, 3),
            "predict_s": round(seconds, 1),
            "wall_s": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(peak_mb),  # the child's own high-water mark (VmHWM)
        }
        print(json.dumps(run), flush=True)
        runs.append(run)
        volume.unlink()
    record = {"benchmark": "volume-memory", "output": args.output, **machine_info(), "runs": runs}
    if len(runs) >= 2:
        record["peak_ratio"] = round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3)
    print(json.dumps(record), flush=True)
    append_record(args.out, record)


if __name__ == "__main__":
    main()
