"""Objects on real nuclei: our instance mode against the ways of getting objects without it.

Usage:
    python benchmarks/bench_instances.py DATA [--budget 15] [--parts ...] [--quick]

``DATA`` holds ``train/`` and ``test/``, each with ``images/``, ``masks/`` (0/1) and
``masks_instance/`` (one value per nucleus) of the same file stems. Training runs are the
commands a user types (``napari-unet-cat train --time-budget``, then ``predict`` on
``test/images``; the same functions, called in this process), one after the other, each
with the same budget and the light preset. Scores are pooled over every test image:
AP@0.5 = TP / (TP + FP + FN) with objects matched at IoU > 0.5, the mean AP over
thresholds 0.50:0.95, and the foreground IoU of the objects' union.

Parts:
  ceiling    the true binary masks, split into connected components (no learning)
  border     the border width: true instance masks made into our three-class targets
             and turned back into objects (an upper bound of each width; train/ only)
  otsu       Gaussian smoothing, Otsu's threshold, then a distance-transform watershed
  instances  our instance mode (``--labels instances``), objects by seeded watershed
  semantic   our dense two-class model, objects as connected components
  choose     the settings' choice, on a split of train/ only (24 of its images held out):
             the class balance power (1, 0.5, 0) by short runs, and the smallest object
             kept, as a share of the training objects' 5th-percentile area

Beside every training run the script records the patches it saw and this machine's
bare-fit images/s (a plain ``keras`` ``fit`` of the same network on patches in memory),
so figures from machines of different speeds compare. Results go to ``--out`` (JSON).
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
from napari_unet_cat.evaluation import object_scores
from napari_unet_cat.io import read_label_folder as read_folder

PARTS = ("ceiling", "border", "otsu", "instances", "semantic", "choose")


def ceiling(data: Path) -> dict:
    from scipy.ndimage import label

    _, binary = read_folder(data / "test" / "masks")
    _, truths = read_folder(data / "test" / "masks_instance")
    preds = [label(b > 0, structure=np.ones((3, 3)))[0] for b in binary]
    return {"method": "perfect semantic mask + connected components", **object_scores(preds, truths)}


def border_widths(data: Path) -> list[dict]:
    from napari_unet_cat.instances import ObjectMaker, instance_targets

    _, truths = read_folder(data / "train" / "masks_instance")
    maker = ObjectMaker("watershed", [0, 1, 2])
    results = []
    for width in (1, 2, 3, 4):
        preds = [
            maker.label_plane(np.eye(3, dtype=np.float32)[instance_targets(t.astype(np.int32), width)]) for t in truths
        ]
        results.append({"method": f"oracle targets, border {width} px (train/)", **object_scores(preds, truths)})
        print(f"[border {width}] AP@0.5 {results[-1]['ap50']:.4f}", flush=True)
    return results


def otsu_watershed(data: Path) -> dict:
    from scipy.ndimage import distance_transform_edt, label
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    from napari_unet_cat.io import read_image

    paths, truths = read_folder(data / "test" / "masks_instance")
    images = {p.stem: p for p in (data / "test" / "images").iterdir()}
    started = time.perf_counter()
    preds = []
    for path in paths:
        image = np.asarray(read_image(images[path.stem]), np.float32)
        gray = image[..., :3].mean(-1) if image.ndim == 3 else image
        smooth = gaussian(gray, sigma=1)
        mask = smooth > threshold_otsu(smooth)
        distance = distance_transform_edt(mask)
        peaks = peak_local_max(distance, min_distance=5, labels=label(mask)[0], exclude_border=False)
        markers = np.zeros(mask.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        preds.append(watershed(-distance, markers, mask=mask))
    seconds = time.perf_counter() - started
    return {"method": "Otsu + distance-transform watershed", **object_scores(preds, truths), "predict_seconds": seconds}


def train_and_score(
    data: Path, work: Path, *, mode: str, budget_min: float, args, extra: list[str] = (), tag: str = ""
) -> dict:
    from napari_unet_cat.batch import segment_folder
    from napari_unet_cat.cli import main as cli
    from napari_unet_cat.io import read_labels
    from napari_unet_cat.loading import load_model

    tag = tag or mode
    model_path = work / f"{tag}.keras"
    masks = "masks_instance" if mode == "instances" else "masks"
    argv = [
        "train",
        "--images",
        str(data / "train" / "images"),
        "--masks",
        str(data / "train" / masks),
        "--out",
        str(model_path),
        "--preset",
        "light",
        "--time-budget",
        f"{budget_min:g}",
        "--epochs",
        "100000",
        "--seed",
        str(args.seed),
    ]
    if mode == "instances":
        argv += ["--labels", "instances"]
    argv += list(extra)
    print(f"[{mode}] napari-unet-cat {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    if cli(argv) != 0:
        raise RuntimeError(f"training {mode} failed")
    train_seconds = time.perf_counter() - started
    model = load_model(model_path)
    paths, truths = read_folder(data / "test" / "masks_instance")
    out = work / f"{tag}-pred"
    t0 = time.perf_counter()
    report = segment_folder(
        model, data / "test" / "images", out, instances=None if mode == "instances" else "components"
    )
    predict_seconds = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"prediction failed: {report.failed}")
    preds = [read_labels(out / f"{p.stem}.tif") for p in paths]
    # The post-processing's share: the network alone, then objects from its probabilities.
    from napari_unet_cat.io import read_image

    network = objects = 0.0
    images = {p.stem: p for p in (data / "test" / "images").iterdir()}
    for path in paths:
        image = read_image(images[path.stem])
        t0 = time.perf_counter()
        probs = model.predict(image, output="probabilities")
        network += time.perf_counter() - t0
        t0 = time.perf_counter()
        model.labels_from_probabilities(probs, output="instances")
        objects += time.perf_counter() - t0
    shutil.rmtree(out)
    history = model.config.history
    result = {
        "method": f"ours, {mode}",
        **object_scores(preds, truths),
        "budget_min": budget_min,
        "train_seconds": train_seconds,
        "epochs": len(history),
        "patches_seen": int(sum(row.get("patches", 0) for row in history)),
        "predict_seconds": predict_seconds,
        "network_seconds": network,
        "objects_seconds": objects,
        "history": history,
    }
    print(
        f"[{mode}] AP@0.5 {result['ap50']:.4f} mean AP {result['mean_ap']:.4f} foreground IoU "
        f"{result['foreground_iou']:.4f} ({result['epochs']} epochs, {result['patches_seen']} patches)",
        flush=True,
    )
    return result


def train_split(data: Path, root: Path, n_held: int = 24, seed: int = 0) -> Path:
    """``train/`` split in two (links): ``train/`` without ``n_held`` images, and those
    images as ``test/``, so that choices are made without looking at ``test/``."""
    from napari_unet_cat.io import list_images

    images = list_images(data / "train" / "images")
    n_held = min(n_held, max(1, len(images) // 4))
    held = {p.stem for p in np.random.default_rng(seed).permutation(images)[:n_held]}
    view = root / "split"
    for p in images:
        split = "test" if p.stem in held else "train"
        for sub in ("images", "masks", "masks_instance"):
            (view / split / sub).mkdir(parents=True, exist_ok=True)
            for source in (data / "train" / sub).glob(f"{p.stem}.*"):
                (view / split / sub / source.name).symlink_to(source.resolve())
    return view


def choose(data: Path, work: Path, budget_min: float, args) -> list[dict]:
    """Short runs on a split of train/: the class balance, then the smallest object."""
    from napari_unet_cat.instances import ObjectMaker
    from napari_unet_cat.io import read_image
    from napari_unet_cat.loading import load_model

    split = train_split(data, work)
    results = []
    paths, truths = read_folder(split / "test" / "masks_instance")
    for power in (1.0, 0.5, 0.0):
        tag = f"balance-{power:g}"
        result = train_and_score(
            split,
            work,
            mode="instances",
            budget_min=budget_min,
            args=args,
            extra=["--class-balance", f"{power:g}"],
            tag=tag,
        )
        result["method"] = f"choice on train/ split: class balance {power:g}"
        model = load_model(work / f"{tag}.keras")
        p5 = model.config.object_areas[0]
        images = {p.stem: p for p in (split / "test" / "images").iterdir()}
        probs = [model.predict(read_image(images[p.stem]), output="probabilities") for p in paths]
        result["min_size"] = {}
        for rule, threshold in (("p(background) < 0.5", 0.5), ("background not likeliest", None)):
            maker_scores = {}
            for share in (0.0, 0.25, 0.5, 1.0):
                maker = ObjectMaker(
                    "watershed", model.class_values, min_size=int(round(share * p5)), threshold=threshold
                )
                preds = [maker.label_plane(pr) for pr in probs]
                scores = maker_scores[f"{share:g}"] = {"pixels": maker.min_size, **object_scores(preds, truths)}
                print(
                    f"[{tag}] {rule}, min size {maker.min_size} ({share:g} x p5): AP@0.5 "
                    f"{scores['ap50']:.4f} fg IoU {scores['foreground_iou']:.4f}"
                )
            result["min_size"][rule] = maker_scores
        results.append(result)
    return results


def stardist_scores(data: Path, folder: Path) -> dict:
    """Score the masks bench_stardist.py wrote (it runs in an environment of its own)."""
    from napari_unet_cat.io import read_labels

    paths, truths = read_folder(data / "test" / "masks_instance")
    preds = [read_labels(folder / f"{p.stem}.tif") for p in paths]
    record = json.loads((folder / "stardist.json").read_text())
    return {**record, **object_scores(preds, truths)}


def quick_view(data: Path, root: Path, n_train: int, n_test: int) -> Path:
    from napari_unet_cat.io import list_images

    view = root / "data"
    for split, n in (("train", n_train), ("test", n_test)):
        images = list_images(data / split / "images")
        images = [images[i] for i in sorted(np.random.default_rng(0).permutation(len(images))[:n])]
        for sub in ("images", "masks", "masks_instance"):
            (view / split / sub).mkdir(parents=True)
            for path in images:
                for source in (data / split / sub).glob(f"{path.stem}.*"):
                    (view / split / sub / source.name).symlink_to(source.resolve())
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--budget", type=float, default=15.0, help="minutes of training per method (default 15)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--choose-budget", type=float, default=5.0, help="minutes per run of the choose part")
    parser.add_argument("--keep", type=Path, help="copy the trained models into this folder")
    parser.add_argument("--stardist", type=Path, help="also score the masks bench_stardist.py wrote into this folder")
    parser.add_argument("--quick", action="store_true", help="20 training and 8 test images, half-minute runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "instances.json")
    args = parser.parse_args()
    if args.quick:
        args.budget = 0.5
        args.out = args.out.with_name(args.out.stem + "-quick.json")
    results: list[dict] = []
    machine = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = quick_view(args.data, work, 20, 8) if args.quick else args.data
        if {"instances", "semantic", "choose"} & set(args.parts):
            machine["bare_fit_images_per_second"] = bare_fit_images_per_second()
            print(f"bare fit: {machine['bare_fit_images_per_second']:.1f} images/s", flush=True)
        for part in args.parts:
            if part == "ceiling":
                results.append(ceiling(data))
            elif part == "border":
                results.extend(border_widths(data))
            elif part == "otsu":
                results.append(otsu_watershed(data))
            elif part == "choose":
                results.extend(choose(data, work, args.choose_budget, args))
            else:
                results.append(train_and_score(data, work, mode=part, budget_min=args.budget, args=args))
            if part in ("ceiling", "otsu"):
                print(f"[{part}] AP@0.5 {results[-1]['ap50']:.4f} mean AP {results[-1]['mean_ap']:.4f}", flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for model in work.glob("*.keras"):
                    shutil.copy2(model, args.keep / model.name)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    if args.stardist:
        results.append(stardist_scores(args.data, args.stardist))
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    for r in results:
        print(f"{r['method']:55s} AP@0.5 {r['ap50']:.3f}  mean AP {r['mean_ap']:.3f}  fg IoU {r['foreground_iou']:.3f}")


if __name__ == "__main__":
    main()
