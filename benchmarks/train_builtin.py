"""Train the built-in nuclei model with the product's own ``train`` command.

Usage:
    python benchmarks/train_builtin.py DATA WORK [--minutes 55] [--settle-minutes 12]
                                       [--steps train settle package extent]
    python benchmarks/train_builtin.py DATA WORK --steps validate [--models nuclei OTHER.keras]

``DATA`` is the nuclei folder (``train/`` and ``test/``, each with ``images/`` and
``masks_instance/``). Steps:

  train    gray copies of ``train/images`` (the mean of the colour channels, which are
           equal in this data) go to ``WORK/train-gray/``, then
           ``napari-unet-cat train --labels instances --preset light`` runs on them as a
           child process for ``--minutes``, holding out the command's default 10% for
           validation (never ``test/``); its log goes to ``WORK/train.log``
  settle   the same command with ``--resume`` on that model for ``--settle-minutes``:
           a tenth of the learning rate, annealed again, the same validation split;
           log ``WORK/settle.log``. Packaging takes the settled model only if its best
           validation loss is below the first phase's (it kept improving), else phase 1
  package  the model made to read RGB as gray, saved with float32 and with float16
           weights, both scored on ``test/`` as published (RGBA, equal channels), the
           float16 one on gray copies too (AP@0.5, AP@0.75, mean AP, foreground IoU);
           float16 ships when it scores as float32 does; with its model card (scores
           included) it goes to ``src/napari_unet_cat/models/nuclei.keras``, its SHA-256
           to ``models/index.json``
  extent   the shipped model's objects' extent (``object_extent``: objects grown to
           ``p(background) < E``), chosen among 0.5 (not grown) to 0.7 by mean AP on the
           images the training held out; written into the shipped file with the model
           card's ``test/`` scores anew, and its SHA-256 into the index

  validate the ``--models`` (default: the shipped one) on the images ``train`` holds out,
           as published (RGBA); the first model also with ``--tta``, ``--min-size 0`` and
           its objects not grown. A change to the shipped model is judged here, never on
           ``test/``

Every step appends a record (the command, the code version, this machine's bare-fit
images/s, times and scores) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, bare_fit_images_per_second, machine_info, run_logged

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "src" / "napari_unet_cat" / "models" / "nuclei.keras"


def code_version() -> str:
    """The checkout's commit, with ``+changes`` when the tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def gray_copies(images: Path, out: Path) -> Path:
    """Each image of ``images`` as a one-channel TIFF in ``out`` (colour channels averaged)."""
    import tifffile

    from napari_unet_cat.io import list_images, read_image

    out.mkdir(parents=True, exist_ok=True)
    for path in list_images(images):
        target = out / f"{path.stem}.tif"
        if target.exists():
            continue
        image = np.asarray(read_image(path))
        if image.ndim == 3:
            colour = image[..., :3].astype(np.float32)
            image = np.round(colour.mean(axis=-1)).astype(image.dtype)
        tifffile.imwrite(target, image)
    return out


def train(data: Path, work: Path, minutes: float, seed: int, *, settle: bool = False) -> dict:
    """Phase 1 (``train``): a new light model for ``minutes``. Phase 2 (``settle``): the
    same command with ``--resume`` on phase 1's model, which starts at a tenth of its
    learning rate and anneals again, for as long as the validation loss still falls."""
    images = gray_copies(data / "train" / "images", work / "train-gray")
    model_path = work / ("nuclei-settled.keras" if settle else "nuclei-phase1.keras")
    argv = [
        "napari-unet-cat",
        "train",
        "--images",
        str(images),
        "--masks",
        str(data / "train" / "masks_instance"),
        "--labels",
        "instances",
        *(["--resume", str(work / "nuclei-phase1.keras")] if settle else ["--preset", "light"]),
        "--time-budget",
        f"{minutes:g}",
        "--epochs",
        "100000",
        "--seed",
        str(seed),
        "--out",
        str(model_path),
    ]
    log_path = work / ("settle.log" if settle else "train.log")
    seconds = run_logged(argv, log_path)
    from napari_unet_cat.loading import load_model

    history = load_model(model_path).config.history
    if settle:
        history = history[len(load_model(work / "nuclei-phase1.keras").config.history) :]
    return {
        "step": "settle" if settle else "train",
        "command": " ".join(argv[1:]),
        "train_seconds": seconds,
        "epochs": len(history),
        "patches_seen": int(sum(row.get("patches", 0) for row in history)),
        "history": history,
    }


def score(model, data: Path, images: Path | None = None) -> dict:
    """Objects of ``model`` on ``test/`` (the published images, or ``images``), pooled."""
    from napari_unet_cat.evaluation import object_scores
    from napari_unet_cat.io import list_images, read_image
    from napari_unet_cat.io import read_label_folder as read_folder

    paths, truths = read_folder(data / "test" / "masks_instance")
    by_stem = {p.stem: p for p in list_images(images or data / "test" / "images")}
    started = time.perf_counter()
    preds = [model.predict(read_image(by_stem[p.stem])) for p in paths]
    return {**object_scores(preds, truths), "predict_seconds": time.perf_counter() - started}


def largest_probability_change(a, b, data: Path, n: int = 8) -> float:
    """The largest difference of two models' probabilities over ``n`` test images."""
    from napari_unet_cat.io import list_images, read_image

    worst = 0.0
    for path in list_images(data / "test" / "images")[:n]:
        image = read_image(path)
        pa, pb = a.predict(image, output="probabilities"), b.predict(image, output="probabilities")
        worst = max(worst, float(np.abs(pa - pb).max()))
    return worst


def card_scores(scores: dict) -> str:
    """The model card's sentence of its ``test/`` scores."""
    return (
        f"on the 61 test images ({scores['n_true']} nuclei): AP@0.5 {scores['ap50']:.3f}, AP@0.75 "
        f"{scores['ap75']:.3f}, mean AP {scores['mean_ap']:.3f}, foreground IoU {scores['foreground_iou']:.3f}"
    )


def model_card(model, scores: dict, trained: dict) -> dict:
    """What the model is, for people: recorded in the model file and in the docs."""
    areas = model.config.object_areas
    diameters = [2 * np.sqrt(a / np.pi) for a in areas] if areas else []
    sizes = (
        f"nuclei of {areas[0]:.0f} to {areas[2]:.0f} pixels (5th to 95th percentile; about {diameters[0]:.0f} to "
        f"{diameters[2]:.0f} pixels across, median {diameters[1]:.0f})"
        if areas
        else "unknown"
    )
    return {
        "what": "cell nuclei in fluorescence microscopy images: one label per nucleus",
        "training_data": (
            "194 images of the 2018 Data Science Bowl training set (stage1_train, BBBC038), in the "
            "community-corrected release; 10% held out for validation; never the 61 test images"
        ),
        "license": (
            "training data: public domain (CC0), the images and the community's fixes alike; weights: the "
            "package's BSD-3-Clause license"
        ),
        "input": (
            "fluorescence nuclei, bright on dark, 8 or 16 bit (each image scaled by its own 1st-99.8th "
            "percentiles), one channel or RGB with equal channels (read as their mean)"
        ),
        "object_sizes": sizes,
        "scores": card_scores(scores),
        "limits": (
            "brightfield, histology (H&E) and phase-contrast images are outside what it saw; nuclei much larger "
            f"or smaller than above need --scale (e.g. 0.5 for nuclei twice as large); touching nuclei are "
            f"sometimes merged or split ({scores['merged']} merges and {scores['split']} splits among the "
            f"{scores['n_true']} test nuclei); 2D only (a stack is segmented plane by plane)"
        ),
        "training": trained.get("summary", ""),
    }


def package(data: Path, work: Path) -> dict:
    """The shipped file: gray input, a model card, float16 weights if they keep the scores."""
    import json
    import shutil

    from napari_unet_cat.builtin import INDEX_FILE, file_sha256
    from napari_unet_cat.loading import load_model

    phase1, settled = work / "nuclei-phase1.keras", work / "nuclei-settled.keras"
    chosen_file = phase1
    if settled.exists():
        first = load_model(phase1).config.history
        best_first = min(r["val_loss"] for r in first if "val_loss" in r)
        later = load_model(settled).config.history[len(first) :]
        best_later = min((r["val_loss"] for r in later if "val_loss" in r), default=float("inf"))
        chosen_file = settled if best_later < best_first else phase1
        print(f"validation loss: phase 1 {best_first:.4f}, settled {best_later:.4f}: packaging {chosen_file.name}")
    source = load_model(chosen_file)
    source.config.gray_input = True
    full = work / "nuclei-gray-float32.keras"
    half = work / "nuclei-gray-float16.keras"
    source.save(full)
    source.save(half, weights_dtype="float16")
    f32, f16 = load_model(full), load_model(half)
    change = largest_probability_change(f32, f16, data)
    scores32 = score(f32, data)
    scores16 = score(f16, data)
    gray16 = score(f16, data, gray_copies(data / "test" / "images", work / "test-gray"))
    # float16 ships when its objects score as the float32 ones do (within 0.005 AP@0.5).
    use_half = abs(scores16["ap50"] - scores32["ap50"]) <= 0.005
    chosen, chosen_scores = (f16, scores16) if use_half else (f32, scores32)
    trained = {}
    records = [json.loads(line) for line in ROOT.joinpath("benchmarks/results/builtin.json").read_text().splitlines()]
    phases = []
    for step in ("train", "settle"):
        record = next((r for r in reversed(records) if r.get("step") == step), None)
        if record is None:
            continue
        # The command as a user would type it, without this run's folders.
        command = record["command"].replace(str(work), "WORK").replace(str(data), "DATA")
        phases.append(
            f"napari-unet-cat {command} (code {record['code']}): {record['epochs']} epochs, "
            f"{record['patches_seen']:,} patches of 128x128, {record['train_seconds'] / 60:.0f} min on a "
            f"{record['machine']['cores']}-core CPU (bare fit {record['bare_fit_images_per_s']} images/s)"
        )
    if phases:
        trained["summary"] = "; then ".join(phases) + " (WORK/train-gray: gray copies of DATA/train/images)"
    chosen.config.card = model_card(chosen, chosen_scores, trained)
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    staged = work / "nuclei.keras"
    chosen.save(staged, weights_dtype="float16" if use_half else "float32")
    shutil.copyfile(staged, SHIPPED)
    digest = file_sha256(SHIPPED)
    index = {
        "nuclei": {
            "file": SHIPPED.name,
            "sha256": digest,
            "title": "fluorescence nuclei, one label each (2018 Data Science Bowl, light U-Net)",
        }
    }
    (SHIPPED.parent / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return {
        "step": "package",
        "packaged": chosen_file.name,
        "float16": use_half,
        "largest_probability_change_float16": change,
        "scores_float32": scores32,
        "scores_float16": scores16,
        "scores_float16_gray_copies": gray16,
        "size_bytes": SHIPPED.stat().st_size,
        "size_bytes_float32": full.stat().st_size,
        "sha256": digest,
        "card": chosen.config.card,
    }


def validation_images(data: Path, seed: int) -> list[Path]:
    """The ``train/`` images that ``train --seed SEED`` holds out (the product's own split
    and default fraction)."""
    from types import SimpleNamespace

    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.dataset import split_validation
    from napari_unet_cat.io import list_images

    settings = TrainingSettings()
    paths = list_images(data / "train" / "images")
    sources = [SimpleNamespace(image_index=i) for i in range(len(paths))]
    _, held = split_validation(sources, settings.val_fraction, patch=settings.patch_size, seed=seed)
    return [paths[p.image_index] for p in held]


#: The objects' extent thresholds the ``extent`` step chooses from.
EXTENT_CANDIDATES = (0.5, 0.55, 0.6, 0.65, 0.7)


def held_out(data: Path, seed: int) -> tuple[list[Path], list, list]:
    """The images ``train --seed SEED`` holds out: their paths, the images read, and
    their instance masks."""
    from napari_unet_cat.io import list_images, read_image, read_labels

    held = validation_images(data, seed)
    masks = {p.stem: p for p in list_images(data / "train" / "masks_instance")}
    return held, [read_image(p) for p in held], [read_labels(masks[p.stem]) for p in held]


def choose_extent(data: Path, seed: int) -> dict:
    """The shipped model's objects' extent threshold, chosen on the held-out ``train/``
    images by mean AP (0.5:0.95, which rewards objects' edges as well as finding them);
    written into the shipped file, with the model card's ``test/`` scores made anew."""
    import json
    import shutil
    import tempfile

    from napari_unet_cat.builtin import INDEX_FILE, file_sha256
    from napari_unet_cat.evaluation import object_scores
    from napari_unet_cat.loading import load_model

    _, images, truths = held_out(data, seed)
    shipped = load_model(SHIPPED)
    tried = {}
    for extent in EXTENT_CANDIDATES:
        model = shipped.with_object_extent(None if extent == 0.5 else extent)
        tried[str(extent)] = object_scores([model.predict(image) for image in images], truths)
        r = tried[str(extent)]
        print(
            f"extent {extent}: AP@0.5 {r['ap50']:.3f}, mean AP {r['mean_ap']:.3f}, foreground IoU "
            f"{r['foreground_iou']:.4f}, merged {r['merged']}",
            flush=True,
        )
    best = max(EXTENT_CANDIDATES, key=lambda e: tried[str(e)]["mean_ap"])
    chosen = shipped.with_object_extent(None if best == 0.5 else best)
    scores = score(chosen, data)
    card = dict(chosen.config.card)
    card["scores"] = card_scores(scores)
    card["objects"] = (
        f"seeded watershed at p(background) < 0.5, objects then grown to p(background) < {best:g} "
        "(chosen by mean AP on the 19 training images held out for validation)"
    )
    chosen.config.card = card
    with tempfile.TemporaryDirectory() as tmp:  # saving over a built-in model is refused
        staged = Path(tmp) / SHIPPED.name
        chosen.save(staged, weights_dtype="float16")  # as the package step chose: same scores, half the size
        shutil.copyfile(staged, SHIPPED)
    digest = file_sha256(SHIPPED)
    index_path = SHIPPED.parent / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["nuclei"]["sha256"] = digest
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    print(f"extent {best} written to {SHIPPED} (SHA-256 {digest}); test/: {card['scores']}", flush=True)
    return {"step": "extent", "tried": tried, "chosen": best, "scores": scores, "sha256": digest}


def validate(data: Path, models: list[str], seed: int) -> dict:
    """Objects of each model on the held-out ``train/`` images, plain, with ``--tta``,
    with ``--min-size 0`` and not grown (``object_extent`` None): how to judge a change
    to the shipped model without ``test/``."""
    from napari_unet_cat.evaluation import object_scores
    from napari_unet_cat.loading import load_model

    held, images, truths = held_out(data, seed)
    variants = {
        "plain": lambda model, image: model.predict(image),
        "tta": lambda model, image: model.predict(image, test_time_augmentation=True),
        "min_size_0": lambda model, image: model.predict(image, min_size=0),
        "extent_none": lambda model, image: model.with_object_extent(None).predict(image),
    }
    scores = {}
    for i, name in enumerate(models):
        model = load_model(name)
        chosen = variants.items() if i == 0 else [("plain", variants["plain"])]  # variants: first model only
        for variant, segment in chosen:
            result = object_scores([segment(model, image) for image in images], truths)
            scores[f"{name} {variant}"] = result
            print(
                f"{name} {variant}: AP@0.5 {result['ap50']:.3f}, mean AP {result['mean_ap']:.3f}, foreground IoU "
                f"{result['foreground_iou']:.3f}, merged {result['merged']}, split {result['split']}",
                flush=True,
            )
    return {"step": "validate", "images": [p.name for p in held], "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--minutes", type=float, default=55.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle-minutes", type=float, default=12.0)
    parser.add_argument(
        "--steps",
        nargs="+",
        default=["train", "settle", "package", "extent"],
        choices=["train", "settle", "package", "extent", "validate", "score"],
    )
    parser.add_argument("--models", nargs="+", default=["nuclei"], help="for validate: model files or built-in names")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "builtin.json")
    parser.add_argument("--model", choices=["nuclei", "pets"], default="nuclei", help="which built-in model")
    parser.add_argument("--feral", type=Path, help="pets: the feral cats folder, trained on beside DATA")
    parser.add_argument("--stage", type=int, default=1, help="pets: 1 makes a new model, N continues stage N-1")
    parser.add_argument("--learning-rate", type=float, help="pets: the stage's learning rate (default: the command's)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    base = {"code": code_version(), "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.model == "pets":
        return pets_steps(args, base)
    for step, minutes in (("train", args.minutes), ("settle", args.settle_minutes)):
        if step in args.steps:
            base["bare_fit_images_per_s"] = round(bare_fit_images_per_second(n_channels=1), 2)
            record = {**base, **train(args.data, args.work, minutes, args.seed, settle=step == "settle")}
            append_record(args.out, record)
            seconds = record["train_seconds"]
            print(f"{step}: {record['epochs']} epochs, {record['patches_seen']} patches, {seconds:.0f} s")
    if "validate" in args.steps:
        append_record(args.out, {**base, **validate(args.data, args.models, args.seed)})
    if "package" in args.steps:
        record = {**base, **package(args.data, args.work)}
        append_record(args.out, record)
        s16 = record["scores_float16"]
        print(
            f"shipped {SHIPPED} ({record['size_bytes'] / 1e6:.1f} MB, float16 {record['float16']}, sha256 "
            f"{record['sha256']}): AP@0.5 {s16['ap50']:.3f}, mean AP {s16['mean_ap']:.3f}, foreground IoU "
            f"{s16['foreground_iou']:.3f}; float16 changes probabilities by at most "
            f"{record['largest_probability_change_float16']:.4f}"
        )
    if "extent" in args.steps:
        append_record(args.out, {**base, **choose_extent(args.data, args.seed)})


def pets_steps(args, base: dict) -> None:
    """The steps of the built-in pets model (``builtin_pets.py``)."""
    import builtin_pets

    steps = [s for s in args.steps if s in ("train", "validate", "package", "score")] if args.steps != [
        "train", "settle", "package", "extent"] else ["train", "package", "score"]  # fmt: skip
    if "train" in steps:
        base["bare_fit_images_per_s"] = round(bare_fit_images_per_second(n_channels=3), 2)
        record = {
            **base,
            **builtin_pets.train(
                args.data, args.feral, args.work, args.minutes, args.stage, args.seed, args.learning_rate
            ),
        }
        append_record(args.out, record)
        print(f"stage {args.stage}: {record['epochs']} epochs, {record['patches_seen']} patches, "
              f"{record['train_seconds']:.0f} s, best validation loss {record['best_val_loss']}")  # fmt: skip
    if "validate" in steps:
        append_record(args.out, {**base, **builtin_pets.validate(args.work, args.seed)})
    if "package" in steps:
        append_record(args.out, {**base, **builtin_pets.package(args.data, args.feral, args.work, args.out)})
    if "score" in steps:
        append_record(args.out, {**base, **builtin_pets.score(args.data, args.feral)})


if __name__ == "__main__":
    main()
