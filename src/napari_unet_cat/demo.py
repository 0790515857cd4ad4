"""``napari-unet-cat demo``: the whole job on synthetic data, end to end, in about a minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import TrainingSettings
from .synthetic import make_image

N_TRAIN = 24
N_TEST = 6


def write_demo_data(root: Path, *, n_train: int = N_TRAIN, n_test: int = N_TEST) -> dict[str, Path]:
    """Synthetic training and test images with masks, as PNG files under ``root``."""
    from PIL import Image

    folders = {name: root / "data" / name for name in ("train_images", "train_masks", "test_images", "test_masks")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        # Test images have odd sizes: prediction works on any size, not only multiples of 16.
        shape = (128, 128) if split == "train" else (141, 203)
        image, mask = make_image(shape, seed=1000 + i)
        Image.fromarray(image).save(folders[f"{split}_images"] / f"cell_{i:03d}.png")
        Image.fromarray(mask).save(folders[f"{split}_masks"] / f"cell_{i:03d}.png")
    return folders


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The image beside itself with the prediction in magenta and the true outline in green."""
    from scipy.ndimage import binary_erosion

    grey = (image if image.ndim == 2 else image[..., :3].mean(axis=-1)).astype(np.float32)
    grey = (255 * (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    tinted = rgb.copy()
    fg = pred > 0
    tinted[fg] = 0.55 * tinted[fg] + 0.45 * np.array([255, 0, 255])
    edge = (truth > 0) & ~binary_erosion(truth > 0)
    tinted[edge] = [0, 255, 0]
    gap = np.full((rgb.shape[0], 6, 3), 255, np.float32)
    return np.concatenate([rgb, gap, tinted], axis=1).astype(np.uint8)


def run_demo(out: str | Path, *, epochs: int = 12, log: Callable[[str], None] = print) -> dict:
    """Make data, train a small U-Net, segment the test images, write an overlay, score.

    Returns the evaluation result (see :func:`~napari_unet_cat.evaluation.evaluate_folders`).
    """
    from PIL import Image

    from .batch import segment_folder
    from .evaluation import evaluate_folders, format_scores
    from .history import write_history
    from .io import load_training_pairs, read_image
    from .training import Trainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = write_demo_data(out)
    log(f"wrote {N_TRAIN} training and {N_TEST} test images with masks under {out / 'data'}")
    images, labels, names, _, _, _ = load_training_pairs(folders["train_images"], folders["train_masks"])
    settings = TrainingSettings(epochs=epochs, batch_size=8, patch_size=64, learning_rate=3e-3, val_fraction=0.1)
    trainer = Trainer(images, labels, settings=settings, preset="light", base_filters=8, depth=3, names=names)
    log(f"training a small U-Net ({trainer.keras_model.count_params():,} parameters) for {epochs} epochs")
    t0 = time.perf_counter()
    model = trainer.run(lambda r: log(r.summary()))
    train_seconds = time.perf_counter() - t0
    model_path = model.save(out / "model.keras")
    write_history(model_path, model.config.history)
    report = segment_folder(model_path, folders["test_images"], out / "predictions", overwrite=True)
    log(report.summary())
    result = evaluate_folders(out / "predictions", folders["test_masks"])
    first = sorted(folders["test_images"].iterdir())[0]
    picture = overlay(
        np.asarray(read_image(first)),
        np.asarray(read_image(out / "predictions" / f"{first.stem}.tif")),
        np.asarray(read_image(folders["test_masks"] / first.name)),
    )
    Image.fromarray(picture).save(out / "overlay.png")
    log(format_scores(result))
    log(
        f"training took {train_seconds:.0f} s; model {model_path}, masks in {out / 'predictions'}, "
        f"overlay {out / 'overlay.png'}"
    )
    return result
