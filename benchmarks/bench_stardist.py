"""StarDist 2D trained from scratch under a time budget: the baseline of bench_instances.py.

Run it in an environment of its own, never the package's (StarDist is not a dependency):

    python -m venv sd && sd/bin/pip install "tensorflow==2.15.*" stardist tifffile
    sd/bin/python benchmarks/bench_stardist.py DATA OUT [--budget 15]

``DATA`` is laid out as for bench_instances.py (``train/`` and ``test/`` with
``images/`` and ``masks_instance/``). The network trains on 128x128 patches of the
grayscale images (the mean of their channels, normalized to the 1st and 99.8th
percentiles), with flips, 90-degree rotations and intensity jitter, 10% of the training
images held out, until ``--budget`` minutes have passed; then its thresholds are tuned
on the held-out images, as StarDist's own workflow does. The objects predicted for
``test/images`` go to ``OUT/<stem>.tif``, and ``OUT/stardist.json`` records the time,
the patches seen and the settings; ``bench_instances.py --stardist OUT`` scores them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def read_gray(path: Path) -> np.ndarray:
    import tifffile
    from PIL import Image

    image = tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else np.asarray(Image.open(path))
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(-1)
    lo, hi = np.percentile(image, [1, 99.8])
    return (image - lo) / max(hi - lo, 1e-6)


def read_pairs(folder: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    import tifffile

    stems, images, masks = [], [], []
    for mask_path in sorted((folder / "masks_instance").glob("*.tif")):
        image_path = next((folder / "images").glob(f"{mask_path.stem}.*"))
        stems.append(mask_path.stem)
        images.append(read_gray(image_path))
        masks.append(tifffile.imread(mask_path).astype(np.int32))
    return stems, images, masks


def augment(image: np.ndarray, mask: np.ndarray):
    """Random flips, 90-degree rotations and a brightness/contrast jitter."""
    rng = np.random.default_rng()
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(mask)


def pad_to(image: np.ndarray, mask: np.ndarray, side: int):
    short = [(0, max(0, side - n)) for n in image.shape]
    return np.pad(image, short, mode="reflect"), np.pad(mask, short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget", type=float, default=15.0, help="minutes of training (default 15)")
    parser.add_argument("--batch-size", type=int, default=4, help="StarDist's default: 4")
    args = parser.parse_args()

    import tensorflow as tf
    import tifffile
    from stardist.models import Config2D, StarDist2D

    _, images, masks = read_pairs(args.data / "train")
    patch = 128
    padded = [pad_to(i, m, patch) for i, m in zip(images, masks)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(padded))
    n_val = max(1, len(padded) // 10)
    val = [padded[i] for i in order[:n_val]]
    train = [padded[i] for i in order[n_val:]]
    config = Config2D(
        n_rays=32,
        grid=(2, 2),
        n_channel_in=1,
        train_patch_size=(patch, patch),
        train_batch_size=args.batch_size,
        use_gpu=False,
    )
    work = args.out / "model"
    work.mkdir(parents=True, exist_ok=True)
    model = StarDist2D(config, name="scratch", basedir=str(work))
    budget = args.budget * 60
    started = time.perf_counter()
    steps = {"n": 0}

    class Budget(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps["n"] += 1
            if time.perf_counter() - started > budget:
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(Budget())  # StarDist's train() runs the model's own callbacks
    epochs = 0
    while time.perf_counter() - started < budget:
        model.train(
            [t[0] for t in train],
            [t[1] for t in train],
            validation_data=([v[0] for v in val], [v[1] for v in val]),
            augmenter=augment,
            epochs=1,
            steps_per_epoch=100,
        )
        epochs += 1
    train_seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    model.optimize_thresholds([v[0] for v in val], [v[1] for v in val])
    threshold_seconds = time.perf_counter() - t0

    test_stems, test_images, _ = read_pairs(args.data / "test")
    t0 = time.perf_counter()
    for stem, image in zip(test_stems, test_images):
        labels, _ = model.predict_instances(image)
        tifffile.imwrite(args.out / f"{stem}.tif", labels.astype(np.uint32), compression="zlib")
    predict_seconds = time.perf_counter() - t0
    record = {
        "method": "StarDist 2D from scratch",
        "budget_min": args.budget,
        "train_seconds": train_seconds,
        "threshold_seconds": threshold_seconds,
        "predict_seconds": predict_seconds,
        "steps": steps["n"],
        "patches_seen": steps["n"] * args.batch_size,
        "epochs": epochs,
        "config": {"n_rays": 32, "grid": [2, 2], "patch": patch, "batch_size": args.batch_size},
        "thresholds": {k: float(v) for k, v in model.thresholds._asdict().items()},
        "tensorflow": tf.__version__,
    }
    (args.out / "stardist.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
