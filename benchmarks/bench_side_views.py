"""Memory and time to make a 2D network's training planes of a z-stack, side views included.

    python benchmarks/bench_side_views.py [--shape 64 1024 1024] [--stretch 4] [--painted 3]

A ``Z x Y x X`` uint16 stack (random values: what is measured is the planes' making, not
what is learnt) with ``--painted`` XY slices labelled whole (background and two classes)
goes through ``volume_training.stack_training_planes`` with Z ``--stretch`` times
coarser than Y and X, as the CLI and napari's Train panel call it. The default shape at
the default stretch is the largest stack that still trains on side views
(``SIDE_VIEW_VOXELS`` resampled voxels). Each run is a child process; its peak resident
memory (``VmHWM``) above what it held with the stack and labels in memory, the seconds,
and the planes made (and their bytes) go to ``--out`` as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from machine import append_record, machine_info

CHILD = """
import json, sys, time
import numpy as np
from napari_unet_cat.volume_training import stack_training_planes

def peak_mb():
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

shape, stretch, painted = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
stack = rng.integers(0, 4000, shape, dtype=np.uint16)
labels = np.zeros(shape, np.uint16)
for z in np.linspace(0, shape[0] - 1, painted + 2)[1:-1].round().astype(int):
    labels[z] = rng.integers(0, 3, shape[1:], dtype=np.uint16)
held = peak_mb()
started = time.perf_counter()
images, labs, names, axes, sources, note = stack_training_planes(
    [stack], [labels], ["stack"], ["ZYX"], voxel_size=(stretch, 1.0, 1.0)
)
print(json.dumps({
    "seconds": round(time.perf_counter() - started, 1),
    "peak_above_input_mb": round(peak_mb() - held),
    "input_mb": round(held),
    "planes": len(images),
    "side_planes": sum(" xy " not in n for n in names),
    "planes_mb": round(sum(a.nbytes + b.nbytes for a, b in zip(images, labs)) / 2**20),
    "note": note,
}))
"""

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 1024, 1024], metavar=("Z", "Y", "X"))
    parser.add_argument("--stretch", type=float, default=4.0, help="how many times coarser Z is than Y and X")
    parser.add_argument("--painted", type=int, default=3, help="XY slices labelled")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "side-views.json")
    args = parser.parse_args()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args.shape), str(args.stretch), str(args.painted)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result, flush=True)
    settings = {"shape": args.shape, "stretch": args.stretch, "painted": args.painted}
    append_record(args.out, {"benchmark": "side_views", "machine": machine_info(), "settings": settings, **result})


if __name__ == "__main__":
    main()
