"""StarDist 3D trained from scratch under a time budget: the baseline of bench_volumes.py.

Run it in an environment of its own, never the package's (StarDist is not a dependency):

    python -m venv sd && sd/bin/pip install "tensorflow==2.15.*" stardist tifffile
    sd/bin/python benchmarks/bench_stardist3d.py --real ../shared/data/nuclei3d/real \\
        --synthetic ../shared/data/nuclei3d/synthetic OUT [--budget 3]

The splits are bench_volumes.py's: each real volume is predicted by a network trained on
the other one, the synthetic ``test/`` volumes by one trained on ``train/``. StarDist's
own 3D recipe: 96 rays on a golden spiral shaped by the voxels' anisotropy, a grid that
pools Z less where Z is coarser, patches of 48x96x96 (smaller where a volume is), batch
2, flips and intensity jitter, 10% of the training volumes (or, with one, the same one)
for its thresholds. Objects go to ``OUT/<set>/<stem>.tif`` with ``stardist.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REAL_VOXEL = (0.28, 0.127, 0.127)


def read_set(folder: Path):
    import tifffile

    out = []
    for p in sorted((folder / "images").glob("*.tif")):
        image = tifffile.imread(p).astype(np.float32)
        lo, hi = np.percentile(image, [1, 99.8])
        out.append((p.stem, (image - lo) / max(hi - lo, 1e-6), tifffile.imread(folder / "masks" / p.name)))
    return out


def augment(image: np.ndarray, mask: np.ndarray):
    rng = np.random.default_rng()
    for axis in (0, 1, 2):
        if rng.random() < 0.5:
            image, mask = np.flip(image, axis), np.flip(mask, axis)
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(mask)


def train_and_predict(name: str, train, test, voxel, out: Path, budget_s: float) -> None:
    import tensorflow as tf
    import tifffile
    from stardist import Rays_GoldenSpiral, calculate_extents
    from stardist.models import Config3D, StarDist3D

    extents = calculate_extents([m for _, _, m in train])
    anisotropy = tuple(float(np.max(extents) / e) for e in extents)
    grid = tuple(1 if a > 1.5 else 2 for a in anisotropy)
    shape = train[0][1].shape
    patch = tuple(min(p, (n // 16) * 16) for p, n in zip((48, 96, 96), shape))
    config = Config3D(
        rays=Rays_GoldenSpiral(96, anisotropy=anisotropy),
        grid=grid,
        anisotropy=anisotropy,
        n_channel_in=1,
        train_patch_size=patch,
        train_batch_size=2,
        use_gpu=False,
    )
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    model = StarDist3D(config, name="scratch", basedir=str(folder / "model"))
    n_val = max(1, len(train) // 10) if len(train) > 1 else 0
    val = train[:n_val] if n_val else train
    fit = train[n_val:]
    started, steps = time.perf_counter(), {"n": 0}

    class Budget(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps["n"] += 1
            if time.perf_counter() - started > budget_s:
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(Budget())
    while time.perf_counter() - started < budget_s:
        model.train(
            [t[1] for t in fit], [t[2] for t in fit], validation_data=([v[1] for v in val], [v[2] for v in val]),
            augmenter=augment, epochs=1, steps_per_epoch=50,
        )  # fmt: skip
    train_seconds = time.perf_counter() - started
    model.optimize_thresholds([v[1] for v in val], [v[2] for v in val])
    t0 = time.perf_counter()
    for stem, image, _ in test:
        labels, _ = model.predict_instances(image)
        tifffile.imwrite(folder / f"{stem}.tif", labels.astype(np.uint32), compression="zlib")
    record = {
        "method": "StarDist 3D from scratch",
        "budget_s": budget_s,
        "train_seconds": train_seconds,
        "predict_seconds": time.perf_counter() - t0,
        "steps": steps["n"],
        "patches_seen": steps["n"] * 2,
        "config": {"rays": 96, "grid": grid, "anisotropy": anisotropy, "patch": patch, "voxel": voxel},
        "tensorflow": tf.__version__,
    }
    (folder / "stardist.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--real", type=Path)
    parser.add_argument("--synthetic", type=Path)
    parser.add_argument("--budget", type=float, default=3.0, help="minutes of training per split (default 3)")
    args = parser.parse_args()
    if args.real:
        real = read_set(args.real)
        for k in range(len(real)):
            test = [v for i, v in enumerate(real) if i != k]
            train_and_predict(f"real-{test[0][0]}", [real[k]], test, REAL_VOXEL, args.out, args.budget * 60)
    if args.synthetic:
        train, test = read_set(args.synthetic / "train"), read_set(args.synthetic / "test")
        train_and_predict("synthetic", train, test, (1.0, 1.0, 1.0), args.out, args.budget * 60)


if __name__ == "__main__":
    main()
