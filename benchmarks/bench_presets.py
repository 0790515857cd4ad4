"""Choose the ``light`` preset by what a user gets: validation IoU after fixed CPU minutes.

Usage:
    python benchmarks/bench_presets.py DATA [--minutes 3] [--candidates 16x4x128 8x4x128 ...]
                                       [--out FILE] [--quick]

``DATA`` holds ``train/images`` and ``train/masks`` (the nuclei folder); ``test/`` is never
read. The training images are split once, by a seeded draw, into 170 for training and the
rest for validation (the split of the instance benchmark's "choose" part). Each candidate
network, ``WIDTHxDEPTHxPATCH`` (base filters, poolings, training patch side), is trained
with the CLI's defaults (``napari-unet-cat train --time-budget MINUTES``: batch 20, Adam at
the light preset's 1e-3, augmentation, the learning rate annealed over the budget) on the
training part, one after the other in this process, and then segments the validation
images whole. Reported per candidate: the validation images' foreground IoU (pooled over
all their pixels), the patches seen in training, the parameters, and prediction seconds.
The machine's bare-fit images/s is recorded beside them (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, bare_fit_images_per_second, machine_info, steal_seconds

CANDIDATES = ["16x4x128", "8x4x128", "24x4x128", "32x4x128", "16x3x128", "16x4x256"]
N_TRAIN = 170


def split(data: Path, root: Path, seed: int = 0) -> tuple[Path, list[Path]]:
    """Links to the training part in ``root``; the validation images' paths."""
    from napari_unet_cat.io import list_images

    paths = list_images(data / "train" / "images")
    order = np.random.default_rng(seed).permutation(len(paths))
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in order[:N_TRAIN]:
        p = paths[i]
        (root / "images" / p.name).symlink_to(p.resolve())
        (root / "masks" / p.name).symlink_to((data / "train" / "masks" / p.name).resolve())
    return root, [paths[i] for i in order[N_TRAIN:]]


def run_candidate(spec: str, train: Path, val: list[Path], data: Path, minutes: float, work: Path) -> dict:
    from napari_unet_cat.cli import main as cli
    from napari_unet_cat.io import read_image
    from napari_unet_cat.loading import load_model

    width, depth, patch = (int(v) for v in spec.split("x"))
    out = work / f"{spec}.keras"
    argv = ["train", "--images", str(train / "images"), "--masks", str(train / "masks"), "--out", str(out)]
    argv += ["--preset", "light", "--base-filters", str(width), "--depth", str(depth), "--patch-size", str(patch)]
    argv += ["--time-budget", f"{minutes:g}", "--epochs", "100000", "--val-fraction", "0"]
    if cli(argv):
        raise RuntimeError(f"training {spec} failed")
    model = load_model(out)
    inter = union = 0
    t0 = time.perf_counter()
    for path in val:
        pred = model.predict(read_image(path)[..., :3]) > 0
        truth = read_image(data / "train" / "masks" / path.name) > 0
        inter += int((pred & truth).sum())
        union += int((pred | truth).sum())
    seconds = time.perf_counter() - t0
    history = model.config.history
    return {
        "candidate": spec,
        "base_filters": width,
        "depth": depth,
        "patch": patch,
        "parameters": int(model.keras_model.count_params()),
        "epochs": len(history),
        "patches": int(sum(r.get("patches", 0) for r in history)),
        "val_foreground_iou": inter / union if union else 1.0,
        "predict_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per candidate")
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, help="WIDTHxDEPTHxPATCH")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/presets.json"))
    parser.add_argument("--quick", action="store_true", help="two tiny candidates, 5-second budgets")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.candidates = 5 / 60, ["8x2x64", "4x2x64"]
    from napari_unet_cat import __version__

    steal = steal_seconds()
    machine = machine_info()
    machine["bare_fit_images_per_second"] = round(bare_fit_images_per_second(), 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train, val = split(args.data, Path(tmp) / "train")
        if args.quick:
            val = val[:2]
        for spec in args.candidates:
            rows.append(run_candidate(spec, train, val, args.data, args.minutes, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    record = {
        "benchmark": "presets",
        "version": __version__,
        "machine": machine,
        "minutes": args.minutes,
        "validation_images": len(val),
        "steal_seconds": round(steal_seconds() - steal, 1),
        "quick": args.quick,
        "rows": rows,
    }
    append_record(args.out, record)


if __name__ == "__main__":
    main()
