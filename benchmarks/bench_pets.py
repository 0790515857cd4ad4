"""The built-in pets model: zero-shot, fine-tuned against trained from scratch, and as the
start of strokes on one photo against a random forest on the same strokes.

Usage:
    python benchmarks/bench_pets.py PETS [--feral FERAL_CATS] [--parts zero-shot finetune strokes]
        [--sizes 5 20] [--budgets 2 5] [--blends 0.5] [--stroke-photos 4] [--stroke-budgets 1 2] [--share 0.02]

``PETS`` is the Oxford-IIIT Pet folder (``test/images``, ``test/masks``: 0 background,
1 cat, 2 dog, 255 the undecided outline band, which no score counts). The built-in model
has seen ``train/`` only, so every photo here is new to it. ``test/`` is shuffled once
(seed 0) and cut into three parts that never overlap:

  zero-shot  the shipped model on all of ``test/`` (and ``FERAL/test``): cat, dog and pet
             IoU, the cat-vs-dog confusion (pixels pooled), and the cat and dog IoU were
             each photo's animal told right (what the outlines alone allow)
  finetune   the first 5 and 20 photos of the shuffle train a model for 2 and 5 minutes,
             fine-tuned from the built-in one (``train --resume pets``) or from scratch
             (``train --long-side 160``, the light network, at the same size), both with
             ``--map 255=ignore``; each is scored on the last 200 photos of the shuffle,
             a fine-tuned one also at ``--blends`` of its change from the built-in one
  strokes    ``--stroke-photos`` photos from the middle of the shuffle (cats and dogs in
             turn), strokes on ``--share`` of the pixels (1 background, 2 the animal, away
             from the outline); ``train --sparse --start-from pets`` for each budget, and
             scikit-learn's random forest on the same strokes (the filter features of
             ``bench_strokes.py``); the animal's IoU on that photo

Records go to ``--out`` with the machine's bare-fit images/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import append_record, bare_fit_images_per_second, machine_info

from builtin_pets import UNDECIDED, pixel_scores  # isort: skip

EVAL_PHOTOS = 200


def shuffled(folder: Path) -> list[Path]:
    """The photos of ``folder/images`` in one fixed random order."""
    paths = sorted((folder / "images").iterdir())
    order = np.random.default_rng(0).permutation(len(paths))
    return [paths[i] for i in order]


def linked(paths: list[Path], masks: Path, work: Path) -> tuple[Path, Path]:
    """Folders in ``work`` linking ``paths`` and their masks."""
    images_dir, masks_dir = work / "images", work / "masks"
    for folder in (images_dir, masks_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        (images_dir / path.name).symlink_to(path.resolve())
        mask = masks / f"{path.stem}.png"
        (masks_dir / mask.name).symlink_to(mask.resolve())
    return images_dir, masks_dir


def train_cli(argv: list[str]) -> float:
    """Run ``napari-unet-cat train`` in this process; the seconds it took."""
    from napari_unet_cat.cli import main as cli

    started = time.perf_counter()
    if cli(["train", *argv]):
        raise RuntimeError(f"train {' '.join(argv)} failed")
    return time.perf_counter() - started


def finetune(
    pets: Path, sizes: list[int], budgets: list[float], model_name: str = "pets", starts=("built-in", "scratch"),
    blends: list[float] = (),
) -> list[dict]:  # fmt: skip
    """Fine-tuned from the built-in model against from scratch, same photos and minutes
    (``starts``: which of the two); each fine-tuned network is also scored ``blends`` of
    the way from the built-in one (a weight-space average, as correction rounds keep)."""
    from napari_unet_cat.corrections import blend_weights
    from napari_unet_cat.loading import load_model

    photos = shuffled(pets / "test")
    held = photos[-EVAL_PHOTOS:]
    zero_shot = pixel_scores(load_model(model_name), held)
    zero_shot["scored_photos"] = zero_shot.pop("photos")
    rows = [{"start": "built-in, no training", "photos": 0, **zero_shot}]
    for size in sizes:
        for budget in budgets:
            for start in starts:
                with tempfile.TemporaryDirectory() as tmp:
                    images, masks = linked(photos[:size], pets / "test" / "masks", Path(tmp))
                    out = Path(tmp) / "model.keras"
                    scratch = ["--long-side", "160", "--preset", "light"]
                    how = ["--resume", model_name] if start == "built-in" else scratch
                    argv = ["--images", str(images), "--masks", str(masks), "--map", f"{UNDECIDED}=ignore", *how]
                    argv += ["--time-budget", f"{budget:g}", "--epochs", "100000", "--out", str(out)]
                    seconds = train_cli(argv)
                    model = load_model(out)
                    before = len(load_model(model_name).config.history) if start == "built-in" else 0
                    patches = int(sum(r.get("patches", 0) for r in model.config.history[before:]))
                    scores = pixel_scores(model, held)
                    scores["scored_photos"] = scores.pop("photos")
                    row = {"start": start, "photos": size, "minutes": budget, "train_seconds": round(seconds, 1)}
                    rows.append({**row, "patches": patches, **scores})
                    print(f"{start:9s} {size:2d} photos {budget:g} min: cat IoU {scores['cat_iou']:.3f}, pet IoU "
                          f"{scores['pet_iou']:.3f}, dog IoU {scores['dog_iou']:.3f}", flush=True)  # fmt: skip
                    for keep in blends if start == "built-in" else ():
                        blended = load_model(out)
                        blend_weights(blended.keras_model, load_model(model_name).keras_model, keep)
                        scores = pixel_scores(blended, held)
                        scores["scored_photos"] = scores.pop("photos")
                        rows.append({**row, "start": f"built-in, {keep:g} of the change kept", **scores})
                        print(f"  kept {keep:g}: cat IoU {scores['cat_iou']:.3f}, pet IoU {scores['pet_iou']:.3f}")
    return rows


def photo_strokes(mask: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(animal, strokes)``: the animal's pixels, and strokes on ``share`` of the photo
    (1 background, 2 animal), none on the undecided band."""
    from bench_strokes import paint_strokes

    animal = (mask == 1) | (mask == 2)
    strokes = paint_strokes((animal | (mask == UNDECIDED)).astype(np.uint8), share, seed)
    strokes[(strokes == 2) & ~animal] = 0
    return animal, strokes


def animal_iou(pred: np.ndarray, animal: np.ndarray, known: np.ndarray) -> float:
    """IoU of the animal over the ``known`` pixels (the undecided band left out)."""
    return float((pred & animal & known).sum() / ((pred | animal) & known).sum())


def strokes(pets: Path, n_photos: int, budgets: list[float], share: float, model_name: str = "pets") -> list[dict]:
    """Strokes on one photo: fine-tuning the built-in pets network against a forest."""
    from bench_strokes import random_forest, train_on_strokes
    from napari_unet_cat.io import read_image

    photos = shuffled(pets / "test")[:-EVAL_PHOTOS][100:]
    cats = [p for p in photos if p.name[0].isupper()]
    dogs = [p for p in photos if not p.name[0].isupper()]
    chosen = [p for pair in zip(cats, dogs) for p in pair][:n_photos]
    rows = []
    for i, path in enumerate(chosen):
        image = np.asarray(read_image(path))[..., :3]
        mask = np.asarray(read_image(pets / "test" / "masks" / f"{path.stem}.png"))
        animal, painted = photo_strokes(mask, share, seed=i)
        known = mask != UNDECIDED
        probability, forest_s = random_forest(image, painted, seed=0)
        row = {"photo": path.name, "painted_percent": round(100 * float((painted > 0).mean()), 2)}
        row["forest_iou"], row["forest_seconds"] = animal_iou(probability > 0.5, animal, known), round(forest_s, 1)
        for budget in budgets:
            with tempfile.TemporaryDirectory() as tmp:
                pred, info = train_on_strokes(image, painted, budget, 0, Path(tmp), extra=["--start-from", model_name])
            row[f"started_iou_{budget:g}min"] = animal_iou(pred, animal, known)
            row[f"started_patches_{budget:g}min"] = info["patches"]
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pets", type=Path)
    parser.add_argument("--feral", type=Path)
    parser.add_argument("--parts", nargs="+", default=["zero-shot", "finetune", "strokes"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.0, 5.0])
    parser.add_argument(
        "--blends", type=float, nargs="*", default=[], help="shares of a fine-tuning's change to score it at too"
    )
    parser.add_argument("--stroke-photos", type=int, default=4)
    parser.add_argument("--stroke-budgets", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--model", default="pets", help="the model to start from (default: the built-in one)")
    parser.add_argument(
        "--starts", nargs="+", choices=["built-in", "scratch"], default=["built-in", "scratch"], help="finetune's arms"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pets.json")
    args = parser.parse_args()
    from napari_unet_cat.loading import load_model

    base = {"machine": machine_info(), "bare_fit_images_per_s": round(bare_fit_images_per_second(), 2)}
    base["date"] = time.strftime("%Y-%m-%d %H:%M")
    if "zero-shot" in args.parts:
        model = load_model(args.model)
        record = {**base, "part": "zero-shot", "pets": pixel_scores(model, shuffled(args.pets / "test"))}
        if args.feral:
            record["feral_cats"] = pixel_scores(model, sorted((args.feral / "test" / "images").iterdir()))
        append_record(args.out, record)
        print({k: v for k, v in record["pets"].items() if k != "counts"}, flush=True)
    if "finetune" in args.parts:
        rows = finetune(args.pets, args.sizes, args.budgets, args.model, args.starts, args.blends)
        append_record(args.out, {**base, "part": "finetune", "rows": rows})
    if "strokes" in args.parts:
        rows = strokes(args.pets, args.stroke_photos, args.stroke_budgets, args.share, args.model)
        append_record(args.out, {**base, "part": "strokes", "share": args.share, "rows": rows})


if __name__ == "__main__":
    main()
