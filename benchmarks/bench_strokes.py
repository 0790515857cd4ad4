"""A few strokes on one image: the U-Net after 30 s, 1 min and 2 min against a random forest.

Usage:
    python benchmarks/bench_strokes.py [--data ../shared/data/nuclei] [--budgets 0.5 1 2]
                                       [--share 0.02] [--seeds 0] [--out FILE] [--quick]
                                       [--train-args "--batch-size 8"] [--alternatives]

The napari user's main path, headless: paint strokes of each class on one image, train
on that image alone (``napari-unet-cat train --sparse --preset light --time-budget M``,
called in this process), predict the same image, and score the whole image against its
full mask (foreground IoU). The images, each with a full mask:

  synthetic cells   the napari sample (256 x 256)
  large objects     synthetic, a few large textured blobs (512 x 512)
  chelsea           scikit-image's cat photo (300 x 451), with a mask drawn once as the
                    polygon below
  nuclei S/M/L      for each of the sizes 256 x 256, 520 x 696 and 603 x 1272, the first
                    image of that size (by name) in ``DATA/train`` (3-channel fluorescence)

Strokes (:func:`paint_strokes`): straight strokes 3 pixels wide and 15-60 pixels long,
started at a random pixel of a class and kept 3 pixels inside it (away from the class's
edges, as a person paints), the class alternating, until ``--share`` of the pixels are
painted. Label 1 is background, 2 the object; 0 is not annotated.

The baseline is a random forest (100 trees, scikit-learn) on what ilastik and napari-APOC
compute: per channel, at scales 0.7, 1.6, 3.5, 5 and 10 pixels, the Gaussian-smoothed
intensity, gradient magnitude, Laplacian of Gaussian, the Hessian's two eigenvalues and
the structure tensor's two eigenvalues, trained on the same stroke pixels. The product's
own first guess (the preview before the first epoch) is scored too.

Where the errors lie: each row records the share of the image within 3 pixels of the
true edges (the band the strokes keep clear of) and the share of the forest's and the
U-Net's wrong pixels that lie in it. ``--alternatives`` also scores two ways of
predicting that were measured and not taken: the U-Net with test-time augmentation, and
its probability averaged with the forest's.

The machine's bare-fit images/s is recorded beside the figures (benchmarks/machine.py).
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

#: The cat's outline in ``skimage.data.chelsea()``, (x, y) vertices, drawn once by eye.
CHELSEA_OUTLINE = [
    (0, 130), (25, 65), (42, 15), (48, 0), (400, 0), (388, 30), (374, 60), (370, 100),
    (366, 140), (360, 175), (352, 210), (345, 240), (336, 270), (326, 300), (0, 300),
]  # fmt: skip
NUCLEI_SHAPES = {"nuclei S": (256, 256), "nuclei M": (520, 696), "nuclei L": (603, 1272)}
RF_SCALES = (0.7, 1.6, 3.5, 5.0, 10.0)
#: Pixels the strokes keep inside their class, as a person paints, away from the edges.
EDGE_BAND = 3


def benchmark_images(data: Path | None, quick: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> (image, mask of 0 background / 1 object)."""
    from napari_unet_cat.synthetic import make_image

    images = {"synthetic cells": make_image((256, 256), seed=7)}
    if quick:
        return images
    images["large objects"] = make_image((512, 512), seed=3, n_objects=(3, 6), radius=(40.0, 90.0))
    try:
        from skimage import data as skdata
        from skimage.draw import polygon

        cat = skdata.chelsea()
        mask = np.zeros(cat.shape[:2], np.uint8)
        rows, cols = polygon([y for _, y in CHELSEA_OUTLINE], [x for x, _ in CHELSEA_OUTLINE], mask.shape)
        mask[rows, cols] = 1
        images["chelsea"] = (cat, mask)
    except ImportError:
        print("scikit-image is not installed: no chelsea", flush=True)
    if data is not None:
        from napari_unet_cat.io import list_images, read_image

        paths = list_images(data / "train" / "images")
        for name, shape in NUCLEI_SHAPES.items():
            for path in paths:
                image = read_image(path)
                if image.shape[:2] == shape:
                    mask = (read_image(data / "train" / "masks" / path.name) > 0).astype(np.uint8)
                    images[name] = (image[..., :3] if image.ndim == 3 else image, mask)
                    break
    return images


def paint_strokes(mask: np.ndarray, share: float, seed: int, edge_margin: int | None = None) -> np.ndarray:
    """Strokes on ``share`` of the pixels: 1 on the background, 2 on objects, 0 elsewhere;
    kept ``edge_margin`` pixels (default :data:`EDGE_BAND`) inside their class."""
    from scipy.ndimage import binary_dilation, binary_erosion

    margin = EDGE_BAND if edge_margin is None else edge_margin

    def inner(part: np.ndarray) -> np.ndarray:
        return binary_erosion(part, iterations=margin) if margin else part

    rng = np.random.default_rng(seed)
    inside = {1: inner(mask == 0), 2: inner(mask > 0)}
    classes = [c for c in (1, 2) if inside[c].any()]
    out = np.zeros(mask.shape, np.uint8)
    h, w = mask.shape
    target = share * mask.size
    painted, turn = 0, 0
    while painted < target and classes:
        cls = classes[turn % len(classes)]
        turn += 1
        free = np.flatnonzero(inside[cls] & (out == 0))
        if not free.size:
            classes.remove(cls)
            continue
        y, x = divmod(int(free[rng.integers(free.size)]), w)
        length = int(rng.integers(15, 61))
        angle = rng.uniform(0, np.pi)
        t = np.arange(-(length // 2), length - length // 2)
        ys = np.clip(np.round(y + t * np.sin(angle)).astype(int), 0, h - 1)
        xs = np.clip(np.round(x + t * np.cos(angle)).astype(int), 0, w - 1)
        line = np.zeros(mask.shape, bool)
        line[ys, xs] = True
        stroke = binary_dilation(line, iterations=1) & inside[cls] & (out == 0)
        out[stroke] = cls
        painted += int(stroke.sum())
    return out


def forest_features(image: np.ndarray) -> np.ndarray:
    """The baseline's features, ``(pixels, features)``, of an image normalized per channel."""
    from scipy import ndimage as ndi

    from napari_unet_cat.arrays import normalize
    from napari_unet_cat.config import Normalization

    plane = normalize(image if image.ndim == 3 else image[..., None], Normalization())
    features = []
    for c in range(plane.shape[-1]):
        channel = plane[..., c].astype(np.float32)
        for s in RF_SCALES:
            features.append(ndi.gaussian_filter(channel, s))
            features.append(ndi.gaussian_gradient_magnitude(channel, s))
            hyy = ndi.gaussian_filter(channel, s, order=(2, 0))
            hxx = ndi.gaussian_filter(channel, s, order=(0, 2))
            hxy = ndi.gaussian_filter(channel, s, order=(1, 1))
            features.append(hyy + hxx)
            root = np.sqrt(((hyy - hxx) / 2) ** 2 + hxy**2)
            features += [(hyy + hxx) / 2 + root, (hyy + hxx) / 2 - root]
            gy = ndi.gaussian_filter(channel, 0.5 * s, order=(1, 0))
            gx = ndi.gaussian_filter(channel, 0.5 * s, order=(0, 1))
            jyy, jxx, jxy = (ndi.gaussian_filter(g, s) for g in (gy * gy, gx * gx, gy * gx))
            root = np.sqrt(((jyy - jxx) / 2) ** 2 + jxy**2)
            features += [(jyy + jxx) / 2 + root, (jyy + jxx) / 2 - root]
    return np.stack(features, axis=-1).reshape(-1, len(features))


def random_forest(image: np.ndarray, strokes: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """The baseline's probability of the object class and the seconds it took (features,
    fit and predict); its foreground is where that probability is above 0.5."""
    from sklearn.ensemble import RandomForestClassifier

    started = time.perf_counter()
    features = forest_features(image)
    where = np.flatnonzero(strokes.ravel())
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
    forest.fit(features[where], strokes.ravel()[where])
    probability = forest.predict_proba(features)[:, list(forest.classes_).index(2)].reshape(strokes.shape)
    return probability, time.perf_counter() - started


def iou(pred: np.ndarray, mask: np.ndarray) -> float:
    truth = mask > 0
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union else 1.0


def edge_band(mask: np.ndarray, width: int = EDGE_BAND) -> np.ndarray:
    """Pixels within ``width`` of the true edges (on either side): where no stroke lies."""
    from napari_unet_cat.evaluation import distance_to_edges

    return distance_to_edges(mask > 0) <= width


def error_in_band(pred: np.ndarray, mask: np.ndarray) -> float:
    """The share of the wrong pixels that lie in the edge band."""
    wrong = pred != (mask > 0)
    return float((wrong & edge_band(mask)).sum() / wrong.sum()) if wrong.any() else 0.0


def train_on_strokes(
    image, strokes, budget_min: float, seed: int, work: Path, extra: list[str] = (), alternatives: dict | None = None
) -> tuple[np.ndarray, dict]:
    """The CLI's sparse training on this one image (with ``extra`` arguments after the
    defaults), then the prediction of it; with ``alternatives`` (``mask`` and the
    baseline's probability ``forest``) also the scores of two ways of predicting not
    taken."""
    import tifffile

    from napari_unet_cat.cli import main as cli
    from napari_unet_cat.loading import load_model

    (work / "images").mkdir(parents=True, exist_ok=True)
    (work / "masks").mkdir(exist_ok=True)
    tifffile.imwrite(work / "images" / "one.tif", image)
    tifffile.imwrite(work / "masks" / "one.tif", strokes)
    out = work / f"model-{budget_min:g}.keras"
    argv = ["train", "--images", str(work / "images"), "--masks", str(work / "masks"), "--out", str(out)]
    argv += ["--sparse", "--preset", "light", "--time-budget", f"{budget_min:g}", "--epochs", "100000"]
    argv += ["--seed", str(seed), *extra]
    started = time.perf_counter()
    code = cli(argv)
    if code:
        raise RuntimeError(f"train exited with {code}")
    seconds = time.perf_counter() - started
    model = load_model(out)
    _, probabilities = model.predict(image, return_probabilities=True)
    history = model.config.history
    info = {
        "train_seconds": round(seconds, 1),
        "epochs": len(history),
        "patches": int(sum(r.get("patches", 0) for r in history)),
    }
    if alternatives:
        # Measured and not taken (docs/benchmarks.md): 8-fold test-time augmentation, and
        # the network's probability averaged with the baseline forest's.
        _, augmented = model.predict(image, return_probabilities=True, test_time_augmentation=True)
        info["tta_iou"] = iou(augmented[..., 1] > 0.5, alternatives["mask"])
        info["with_forest_iou"] = iou((probabilities[..., 1] + alternatives["forest"]) / 2 > 0.5, alternatives["mask"])
    return probabilities[..., 1] > 0.5, info


def first_guess(image, strokes, seed: int) -> tuple[np.ndarray, float]:
    """The product's preview before the first epoch (its random forest)."""
    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.training import Trainer

    started = time.perf_counter()
    trainer = Trainer([image], [strokes], settings=TrainingSettings(label_mode="sparse", seed=seed), preset="light")
    guess = trainer.first_guess(image)
    return guess == 2, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="the nuclei folder (train/images, train/masks)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="minutes")
    parser.add_argument("--share", type=float, default=0.02, help="share of the pixels painted")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", help="image names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/strokes.json"))
    parser.add_argument("--quick", action="store_true", help="the synthetic sample, 5-second budgets")
    parser.add_argument(
        "--train-args",
        default="",
        help="more arguments for train, to measure an alternative to the defaults (e.g. '--batch-size 8')",
    )
    parser.add_argument(
        "--edge-margin",
        type=int,
        default=EDGE_BAND,
        help=f"pixels the strokes keep inside their class (default {EDGE_BAND}; 1: strokes reach the edges)",
    )
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="also score the U-Net with test-time augmentation, and averaged with the forest",
    )
    args = parser.parse_args(argv)
    extra = args.train_args.split()
    if args.quick:
        args.budgets = [5 / 60]
    from napari_unet_cat import __version__

    steal = steal_seconds()
    machine = machine_info()
    machine["bare_fit_images_per_second"] = round(bare_fit_images_per_second(), 2)
    print(f"bare fit: {machine['bare_fit_images_per_second']} images/s", flush=True)
    rows = []
    for name, (image, mask) in benchmark_images(args.data, args.quick).items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            strokes = paint_strokes(mask, args.share, seed, args.edge_margin)
            row = {
                "image": name,
                "shape": list(image.shape),
                "seed": seed,
                "painted_share": round(float((strokes > 0).mean()), 4),
            }
            forest, row["forest_seconds"] = random_forest(image, strokes, seed)
            row["forest_iou"] = iou(forest > 0.5, mask)
            row["edge_band_share"] = round(float(edge_band(mask).mean()), 4)
            row["forest_error_in_band"] = error_in_band(forest > 0.5, mask)
            guess, row["first_guess_seconds"] = first_guess(image, strokes, seed)
            row["first_guess_iou"] = iou(guess, mask)
            with tempfile.TemporaryDirectory() as tmp:
                for budget in args.budgets:
                    alternatives = {"mask": mask, "forest": forest} if args.alternatives else None
                    pred, info = train_on_strokes(image, strokes, budget, seed, Path(tmp), extra, alternatives)
                    row[f"unet_{budget:g}min_iou"] = iou(pred, mask)
                    info["error_in_band"] = error_in_band(pred, mask)
                    row[f"unet_{budget:g}min"] = info
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"forest": float(np.mean([r["forest_iou"] for r in rows]))}
    for budget in args.budgets:
        key = f"unet_{budget:g}min_iou"
        summary[key] = float(np.mean([r[key] for r in rows]))
        summary[f"worst_{budget:g}min_vs_forest"] = float(min(r[key] - r["forest_iou"] for r in rows))
    record = {
        "benchmark": "strokes",
        "version": __version__,
        "machine": machine,
        "steal_seconds": round(steal_seconds() - steal, 1),
        "share": args.share,
        "edge_margin": args.edge_margin,
        "train_args": extra,
        "budgets_min": args.budgets,
        "quick": args.quick,
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    append_record(args.out, record)


if __name__ == "__main__":
    main()
