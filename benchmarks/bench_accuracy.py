"""Accuracy on real nuclei images: our U-Net against an Otsu threshold, run to run.

Usage:
    python benchmarks/bench_accuracy.py DATA [--budget 14] [--seeds 0 1 2] [--parts ...] [--quick]

``DATA`` is a folder with ``train/`` and ``test/``, each holding ``images/`` and
``masks/`` (0 = background, 1 = object) of the same file stems. Every run is the
command a user types: ``napari-unet-cat train --time-budget`` on a folder, then
``predict`` on ``test/images`` (the same functions, called in this process), and scores
pooled over every test pixel: foreground IoU, Dice and pixel accuracy.

Parts:
  seeds    the light preset, one run per seed, with and without test-time augmentation
  classic  the classic (tutorial-size) preset for the same time budget
  otsu     Gaussian smoothing then Otsu's threshold per image (no learning)
  images   learning curve: IoU against the number of training images
  strokes  IoU against the share of each mask given as painted strokes (sparse mode)

Results go to ``--out`` (JSON, one object per run, appended as runs finish) and the
plots to ``--plots``. ``--quick`` shrinks everything to a few minutes in all (20 training
and 8 test images, half-minute training runs): a smoke run, not figures to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import bare_fit_images_per_second

PARTS = ("otsu", "seeds", "classic", "images", "strokes")


def foreground_scores(preds, truths, foreground) -> dict:
    """Foreground IoU, Dice and pixel accuracy with pixels pooled over all images."""
    tp = fp = fn = correct = total = 0
    for pred, truth in zip(preds, truths):
        p, t = np.asarray(pred) == foreground, np.asarray(truth) > 0
        tp += int((p & t).sum())
        fp += int((p & ~t).sum())
        fn += int((~p & t).sum())
        correct += int((p == t).sum())
        total += t.size
    return {
        "iou": tp / max(tp + fp + fn, 1),
        "dice": 2 * tp / max(2 * tp + fp + fn, 1),
        "pixel_accuracy": correct / max(total, 1),
    }


def read_truths(folder: Path) -> tuple[list[Path], list[np.ndarray]]:
    from napari_unet_cat.io import list_images, read_labels

    paths = list_images(folder / "masks")
    return paths, [read_labels(p) for p in paths]


def otsu(data: Path) -> dict:
    from skimage.filters import gaussian, threshold_otsu

    from napari_unet_cat.io import read_image

    paths, truths = read_truths(data / "test")
    started = time.perf_counter()
    preds = []
    for path in paths:
        image = np.asarray(read_image(data / "test" / "images" / path.name), np.float32)
        gray = image[..., :3].mean(-1) if image.ndim == 3 else image
        smooth = gaussian(gray, sigma=1)
        preds.append((smooth > threshold_otsu(smooth)).astype(np.uint8))
    seconds = time.perf_counter() - started
    return {"method": "otsu", **foreground_scores(preds, truths, 1), "predict_seconds": seconds}


def subset_folder(data: Path, n: int | None, root: Path, strokes: float | None = None, seed: int = 0) -> Path:
    """A training folder of ``n`` images (all when None); masks as strokes when asked."""
    from PIL import Image

    from napari_unet_cat.io import list_images, read_labels
    from napari_unet_cat.synthetic import strokes_from_mask

    images = list_images(data / "train" / "images")
    if n is not None:
        images = [images[i] for i in np.random.default_rng(seed).permutation(len(images))[:n]]
    out = root / f"train-{n or 'all'}-{strokes or 'dense'}"
    if out.exists():
        return out
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for path in images:
        (out / "images" / path.name).symlink_to(path.resolve())
        mask_path = data / "train" / "masks" / path.name
        if strokes is None:
            (out / "masks" / path.name).symlink_to(mask_path.resolve())
        else:
            painted = strokes_from_mask(read_labels(mask_path) > 0, fraction=strokes, seed=seed)
            Image.fromarray(painted).save(out / "masks" / path.name)
    return out


def sample_data(data: Path, n_train: int, n_test: int, root: Path) -> Path:
    """A view of ``data`` (links) with ``n_train`` training and ``n_test`` test images
    drawn at random (0 = all of them), for short runs."""
    from napari_unet_cat.io import list_images

    if not n_train and not n_test:
        return data
    view = root / "data"
    for split, n in (("train", n_train), ("test", n_test)):
        images = list_images(data / split / "images")
        if n:
            images = [images[i] for i in sorted(np.random.default_rng(0).permutation(len(images))[:n])]
        for sub in ("images", "masks"):
            (view / split / sub).mkdir(parents=True)
            for path in images:
                (view / split / sub / path.name).symlink_to((data / split / sub / path.name).resolve())
    return view


def train_and_score(
    data: Path,
    train_dir: Path,
    work: Path,
    *,
    label: str,
    preset: str,
    budget_min: float,
    seed: int,
    args,
    sparse: bool = False,
    tta: bool = False,
) -> dict:
    from napari_unet_cat.batch import segment_folder
    from napari_unet_cat.cli import main as cli
    from napari_unet_cat.io import read_labels
    from napari_unet_cat.loading import load_model

    model_path = work / f"{label}.keras"
    argv = [
        "train",
        "--images",
        str(train_dir / "images"),
        "--masks",
        str(train_dir / "masks"),
        "--out",
        str(model_path),
        "--preset",
        preset,
        "--time-budget",
        f"{budget_min:g}",
        "--epochs",
        "100000",
        "--seed",
        str(seed),
    ]
    # The defaults a user gets, unless asked otherwise.
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    if args.patch_size:
        argv += ["--patch-size", str(args.patch_size)]
    if args.learning_rate:
        argv += ["--learning-rate", f"{args.learning_rate:g}"]
    if sparse:
        argv.append("--sparse")
    print(f"[{label}] napari-unet-cat {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    if cli(argv) != 0:
        raise RuntimeError(f"training {label} failed")
    train_seconds = time.perf_counter() - started
    model = load_model(model_path)
    foreground = model.class_values[-1]
    paths, truths = read_truths(data / "test")
    result = {
        "method": label,
        "preset": preset,
        "seed": seed,
        "budget_min": budget_min,
        "train_seconds": train_seconds,
        "epochs": len(model.config.history),
        "patches": int(sum(row.get("patches", 0) for row in model.config.history)),
        "best_epoch": int(np.argmin([row.get("val_loss", row["loss"]) for row in model.config.history])) + 1,
        "history": model.config.history,
    }
    for use_tta in (False, True) if tta else (False,):
        out = work / f"{label}-pred{'-tta' if use_tta else ''}"
        t0 = time.perf_counter()
        report = segment_folder(model, data / "test" / "images", out, test_time_augmentation=use_tta)
        seconds = time.perf_counter() - t0
        if report.failed:
            raise RuntimeError(f"prediction failed: {report.failed}")
        preds = [read_labels(out / f"{p.stem}.tif") for p in paths]
        scores = foreground_scores(preds, truths, foreground)
        key = "tta_" if use_tta else ""
        result.update({f"{key}{k}": v for k, v in scores.items()}, **{f"{key}predict_seconds": seconds})
        shutil.rmtree(out)
    print(
        f"[{label}] IoU {result['iou']:.4f} Dice {result['dice']:.4f} accuracy {result['pixel_accuracy']:.4f} "
        f"({result['epochs']} epochs in {train_seconds:.0f} s)"
        + (f"; with TTA IoU {result['tta_iou']:.4f}" if tta else ""),
        flush=True,
    )
    return result


def plot(results: list[dict], folder: Path) -> list[Path]:
    """Learning curves and training curves as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    otsu_iou = next((r["iou"] for r in results if r["method"] == "otsu"), None)

    def curve(kind: str, key: str, xlabel: str, name: str, xscale: str) -> None:
        rows = sorted((r[key], r["iou"]) for r in results if r.get("part") == kind)
        if not rows:
            return
        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        ax = fig.subplots()
        ax.plot(*zip(*rows), marker="o", label="U-Net (light)")
        if otsu_iou is not None:
            ax.axhline(otsu_iou, color="grey", linestyle="--", label="Otsu")
        ax.set(xlabel=xlabel, ylabel="foreground IoU on test/", xscale=xscale, ylim=(0.5, 1))
        xs = [x for x, _ in rows]
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(folder / name, dpi=100)
        written.append(folder / name)

    curve("images", "n_images", "training images", "learning-curve-images.png", "log")
    curve("strokes", "stroke_percent", "% of mask pixels painted as strokes", "learning-curve-strokes.png", "log")
    seeds = [r for r in results if r.get("part") in ("seeds", "classic")]
    if seeds:
        fig = Figure(figsize=(9, 3.2), layout="constrained")
        ax_loss, ax_iou = fig.subplots(1, 2)
        for r in seeds:
            t = [row["seconds"] / 60 for row in r["history"]]
            name = r["method"]
            ax_loss.plot(t, [row.get("val_loss", np.nan) for row in r["history"]], marker=".", label=name)
            ax_iou.plot(t, [row.get("val_mean_iou", np.nan) for row in r["history"]], marker=".", label=name)
        ax_loss.set(xlabel="minutes", ylabel="validation loss", yscale="log")
        ax_iou.set(xlabel="minutes", ylabel="validation mean IoU", ylim=(0.8, 1))
        for ax in (ax_loss, ax_iou):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.savefig(folder / "training-curves.png", dpi=100)
        written.append(folder / "training-curves.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with train/ and test/")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--budget", type=float, default=14.0, help="minutes of training per seed run")
    parser.add_argument("--curve-budget", type=float, default=5.0, help="minutes per learning-curve run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--image-counts", type=int, nargs="+", default=[5, 20, 80, 0], help="training images per run (0 = all)"
    )
    parser.add_argument("--stroke-shares", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    parser.add_argument("--learning-rate", type=float, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, help="default: the train command's (20)")
    parser.add_argument("--patch-size", type=int, help="default: the train command's (128)")
    parser.add_argument("--train-images", type=int, default=0, help="train on this many images (0 = all)")
    parser.add_argument("--test-images", type=int, default=0, help="score on this many test images (0 = all)")
    parser.add_argument(
        "--quick", action="store_true", help="half-minute runs on 20 training and 8 test images, one seed"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    parser.add_argument(
        "--plots", type=Path, help="folder for the PNG plots (default docs/images; quick: beside --out)"
    )
    args = parser.parse_args()
    if args.plots is None:
        args.plots = args.out.parent / "plots-quick" if args.quick else Path("docs/images")
    if args.quick:
        args.budget, args.curve_budget, args.seeds = 0.5, 0.25, args.seeds[:1]
        args.train_images, args.test_images = args.train_images or 20, args.test_images or 8
        args.image_counts, args.stroke_shares = args.image_counts[:1], args.stroke_shares[-1:]
    for sub in ("train/images", "train/masks", "test/images", "test/masks"):
        if not (args.data / sub).is_dir():
            sys.exit(f"error: {args.data / sub} is not a folder")

    import keras

    results: list[dict] = []
    header = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "command": " ".join(sys.argv),
        "bare_fit_images_per_second": round(bare_fit_images_per_second(), 2),
    }
    print(f"bare fit: {header['bare_fit_images_per_second']} images/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(result: dict) -> None:
        results.append(result)
        args.out.write_text(json.dumps({**header, "results": results}, indent=1))
        keras.utils.clear_session(free_memory=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args.data = sample_data(args.data, args.train_images, args.test_images, work)
        everything = subset_folder(args.data, None, work)
        if "otsu" in args.parts:
            record(otsu(args.data))
            print(f"[otsu] IoU {results[-1]['iou']:.4f}", flush=True)
        common = {"args": args}
        if "seeds" in args.parts:
            for seed in args.seeds:
                r = train_and_score(
                    args.data, everything, work, label=f"light seed {seed}", preset="light",
                    budget_min=args.budget, seed=seed, tta=True, **common,
                )  # fmt: skip
                record({**r, "part": "seeds", "n_images": None})
        if "classic" in args.parts:
            r = train_and_score(
                args.data, everything, work, label="classic", preset="classic", budget_min=args.budget, seed=0,
                **common,
            )  # fmt: skip
            record({**r, "part": "classic"})
        if "images" in args.parts:
            for n in args.image_counts:
                folder = subset_folder(args.data, n or None, work)
                n = len(list((folder / "images").iterdir()))
                r = train_and_score(
                    args.data, folder, work, label=f"{n} images", preset="light", budget_min=args.curve_budget,
                    seed=0, **common,
                )  # fmt: skip
                record({**r, "part": "images", "n_images": n})
        if "strokes" in args.parts:
            for share in args.stroke_shares:
                folder = subset_folder(args.data, None, work, strokes=share)
                r = train_and_score(
                    args.data, folder, work, label=f"strokes {share:.0%}", preset="light",
                    budget_min=args.curve_budget, seed=0, sparse=True, **common,
                )  # fmt: skip
                record({**r, "part": "strokes", "stroke_percent": 100 * share})
    for path in plot(results, args.plots):
        print(f"plot: {path}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
