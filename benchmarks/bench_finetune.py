"""The built-in nuclei model: zero-shot, and what starting from it is worth.

Usage:
    python benchmarks/bench_finetune.py DATA [--sizes 5 20] [--budgets 2 5] [--parts ...]

``DATA`` is the nuclei folder (``train/``, ``test/``, each with ``images/`` and
``masks_instance/``). Parts:

  zero-shot  the built-in model on ``test/`` as published, no training
  curve      for each size N (images drawn from ``train/`` with a fixed seed) and each
             budget B (minutes): ``napari-unet-cat train --labels instances
             --time-budget B`` from scratch (light preset, its defaults) and the same
             with ``--resume nuclei`` (fine-tuning at a tenth of the model's learning
             rate), both scored on ``test/``. The built-in model has seen these images.
  synthetic  images it has not seen: synthetic touching cells (the plugin's sample, other
             seeds), 5 to train on and 10 to score: zero-shot, from scratch and
             fine-tuned for the smallest budget
  scale      nuclei at other sizes: the first ``--scale-images`` test images zoomed by
             0.5 and 2 (and 1), segmented at the model's scale, at the scale
             ``UNetModel.estimate_scale`` finds from each image, and at the right scale
             (1 / zoom); how often the estimate lands within 25% of the right scale

Scores are pooled over the scored images: AP@0.5, mean AP (0.50:0.95), foreground IoU.
Each training row records the patches it saw, and the run this machine's bare-fit
images/s, so figures from machines of different speeds compare. Results: ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, bare_fit_images_per_second, machine_info
from napari_unet_cat.evaluation import object_scores
from napari_unet_cat.io import read_label_folder as read_folder

ROOT = Path(__file__).resolve().parent.parent


def subset(data: Path, n: int, root: Path, seed: int = 0) -> Path:
    """``n`` images of ``train/`` with their instance masks (links), drawn with ``seed``."""
    from napari_unet_cat.io import list_images

    images = list_images(data / "train" / "images")
    chosen = [images[i] for i in np.random.default_rng(seed).permutation(len(images))[:n]]
    view = root / f"train-{n}"
    for sub in ("images", "masks_instance"):
        (view / sub).mkdir(parents=True, exist_ok=True)
        for path in chosen:
            for source in (data / "train" / sub).glob(f"{path.stem}.*"):
                (view / sub / source.name).symlink_to(source.resolve())
    return view


def synthetic_set(root: Path) -> tuple[Path, Path]:
    """Synthetic touching cells as files: 5 to train on, 10 to score (other seeds than
    the plugin's sample)."""
    import tifffile

    from napari_unet_cat.synthetic import make_instance_image

    train, test = root / "synthetic-train", root / "synthetic-test"
    for folder, seeds in ((train, range(100, 105)), (test, range(200, 210))):
        for sub in ("images", "masks_instance"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            image, instances = make_instance_image((256, 256), seed=seed, n_objects=(45, 55))
            tifffile.imwrite(folder / "images" / f"cells-{seed}.tif", image)
            tifffile.imwrite(folder / "masks_instance" / f"cells-{seed}.tif", instances)
    return train, test


def score_folder(model, images: Path, masks: Path) -> dict:
    from napari_unet_cat.io import list_images, read_image

    paths, truths = read_folder(masks)
    by_stem = {p.stem: p for p in list_images(images)}
    preds = [model.predict(read_image(by_stem[p.stem])) for p in paths]
    return object_scores(preds, truths)


def scale_estimates(model, data: Path, n_images: int, zooms=(0.5, 1.0, 2.0)) -> list[dict]:
    """Zoomed test images: objects at the model's scale, at the estimated scale, at the
    right one; and how close the estimates come."""
    from scipy.ndimage import zoom as resize

    from napari_unet_cat.io import list_images, read_image, read_labels

    images = list_images(data / "test" / "images")[:n_images]
    masks = {p.stem: p for p in list_images(data / "test" / "masks_instance")}
    rows = []
    for factor in zooms:
        truths, at_own, at_estimate, at_right, estimates = [], [], [], [], []
        for path in images:
            image = np.asarray(read_image(path))[..., 0]  # equal channels
            truth = read_labels(masks[path.stem])
            if factor != 1.0:
                image = resize(image, factor, order=1)
                truth = resize(truth, factor, order=0)
            estimate = model.estimate_scale(image)
            estimates.append(estimate)
            truths.append(truth)
            at_own.append(model.predict(image))
            at_estimate.append(model.at_scale(estimate).predict(image) if estimate else at_own[-1])
            at_right.append(model.at_scale(1.0 / factor).predict(image) if factor != 1.0 else at_own[-1])
        right = 1.0 / factor
        found = [e for e in estimates if e]
        row = {
            "zoom": factor,
            "right_scale": right,
            "estimates_median": float(np.median(found)) if found else None,
            "within_25_percent": float(np.mean([abs(e / right - 1) <= 0.25 for e in found])) if found else 0.0,
            "no_estimate": sum(e is None for e in estimates),
            "ap50_model_scale": object_scores(at_own, truths)["ap50"],
            "ap50_estimated_scale": object_scores(at_estimate, truths)["ap50"],
            "ap50_right_scale": object_scores(at_right, truths)["ap50"],
        }
        print(f"[scale] {row}", flush=True)
        rows.append(row)
    return rows


def train_and_score(train: Path, test: Path, work: Path, *, budget: float, start: str | None, tag: str) -> dict:
    from napari_unet_cat.cli import main as cli
    from napari_unet_cat.loading import load_model

    out = work / f"{tag}.keras"
    argv = [
        "train",
        "--images",
        str(train / "images"),
        "--masks",
        str(train / "masks_instance"),
        "--labels",
        "instances",
        "--time-budget",
        f"{budget:g}",
        "--epochs",
        "100000",
        "--out",
        str(out),
    ]
    argv += ["--resume", start] if start else ["--preset", "light"]
    print(f"[{tag}] napari-unet-cat {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    if cli(argv) != 0:
        raise RuntimeError(f"training {tag} failed")
    seconds = time.perf_counter() - started
    model = load_model(out)
    history = model.config.history
    if start:
        history = history[len(load_model(start).config.history) :]
    result = {
        "tag": tag,
        "start": start or "scratch",
        "budget_min": budget,
        "train_images": len(list((train / "images").iterdir())),
        "train_seconds": seconds,
        "epochs": len(history),
        "patches_seen": int(sum(row.get("patches", 0) for row in history)),
        **score_folder(model, test / "images", test / "masks_instance"),
    }
    print(
        f"[{tag}] AP@0.5 {result['ap50']:.4f} mean AP {result['mean_ap']:.4f} foreground IoU "
        f"{result['foreground_iou']:.4f} ({result['epochs']} epochs, {result['patches_seen']} patches)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="nuclei", help="the model to start from (default: the built-in one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.0, 5.0])
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["zero-shot", "curve", "synthetic", "scale"],
        choices=["zero-shot", "curve", "synthetic", "scale"],
    )
    parser.add_argument("--scale-images", type=int, default=10, help="test images zoomed for the scale part")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune.json")
    args = parser.parse_args()
    from napari_unet_cat.loading import load_model

    record: dict = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model}
    record["bare_fit_images_per_s"] = round(bare_fit_images_per_second(), 2)
    print(f"bare fit: {record['bare_fit_images_per_s']} images/s", flush=True)
    test = args.data / "test"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "zero-shot" in args.parts:
            started = time.perf_counter()
            record["zero_shot"] = score_folder(load_model(args.model), test / "images", test / "masks_instance")
            record["zero_shot"]["predict_seconds"] = time.perf_counter() - started
            print(f"[zero-shot] {record['zero_shot']}", flush=True)
        if "curve" in args.parts:
            record["curve"] = []
            for n in args.sizes:
                train = subset(args.data, n, work)
                for budget in args.budgets:
                    for start in (None, args.model):
                        tag = f"{'fine' if start else 'scratch'}-{n}-{budget:g}"
                        record["curve"].append(train_and_score(train, test, work, budget=budget, start=start, tag=tag))
        if "synthetic" in args.parts:
            train, held = synthetic_set(work)
            budget = min(args.budgets)
            rows = [
                {"start": "zero-shot", **score_folder(load_model(args.model), held / "images", held / "masks_instance")}
            ]
            for start in (None, args.model):
                tag = f"synthetic-{'fine' if start else 'scratch'}-{budget:g}"
                rows.append(train_and_score(train, held, work, budget=budget, start=start, tag=tag))
            record["synthetic"] = rows
        if "scale" in args.parts:
            record["scale"] = scale_estimates(load_model(args.model), args.data, args.scale_images)
    append_record(args.out, record)
    print(f"results appended to {args.out}")


if __name__ == "__main__":
    main()
