"""The built-in pets model: trained, packaged and scored (``train_builtin.py --model pets``).

Usage:
    python benchmarks/train_builtin.py PETS WORK --model pets --feral FERAL_CATS
        [--minutes 95] [--stage 1] [--learning-rate RATE] [--steps train validate package score]

``PETS`` is the Oxford-IIIT Pet folder (``train/`` and ``test/``, each with ``images/``
and ``masks/``: 0 background, 1 cat, 2 dog, 255 the undecided outline band), ``FERAL_CATS``
the feral cats folder (masks 0 background, 1 cat). Steps:

  train    ``WORK/train/`` links every photo of ``PETS/train`` and ``FERAL/train`` (the
           cats of the second add to the first's third of cats), then
           ``napari-unet-cat train --map 255=ignore --long-side 160 --preset light --depth 5``
           runs on them for ``--minutes``, holding out the command's default 10% for
           validation (never ``test/``). Stage 1 makes a new model; stage N continues
           stage N-1's with ``--resume`` (a tenth of the learning rate, annealed again,
           unless ``--learning-rate`` is given: a warm restart for an underfit stage).
           Log ``WORK/stage-N.log``
  validate every stage's model in ``WORK`` scored on the whole photos its training held
           out (the ``train`` command's own split, seed 0; never ``test/``): the score
           that chooses whether a stage ships, where the patch validation loss is too
           noisy to tell two stages apart
  package  the last stage's model, classes named background, cat, dog, saved with
           float32 and float16 weights; float16 ships when its test scores equal the
           float32 ones (within 0.005 cat IoU), with its model card, to
           ``src/napari_unet_cat/models/pets.keras`` and its SHA-256 to ``models/index.json``
  score    the shipped model on ``PETS/test`` and ``FERAL/test``: cat IoU, dog IoU, pet
           (cat or dog) IoU and the cat-vs-dog confusion (pixels), the outline band ignored

Every step appends a record (the command, the code version, this machine's bare-fit
images/s, times and scores) to ``--out``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from machine import run_logged

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "src" / "napari_unet_cat" / "models" / "pets.keras"
#: The photos' working size and the network (docs/benchmarks.md, "The built-in pets model").
LONG_SIDE = 160
NETWORK = ["--preset", "light", "--depth", "5"]
CLASS_NAMES = {0: "background", 1: "cat", 2: "dog"}
UNDECIDED = 255


def linked_training_set(pets: Path, feral: Path | None, work: Path) -> tuple[Path, Path]:
    """``(images, masks)`` folders in ``work`` that link every training photo and mask."""
    images, masks = work / "train" / "images", work / "train" / "masks"
    for folder in (images, masks):
        folder.mkdir(parents=True, exist_ok=True)
    for source in [pets] + ([feral] if feral else []):
        for kind, target in (("images", images), ("masks", masks)):
            for path in sorted((source / "train" / kind).iterdir()):
                link = target / path.name
                if not link.exists():
                    link.symlink_to(path.resolve())
    return images, masks


def stage_path(work: Path, stage: int) -> Path:
    return work / f"pets-stage{stage}.keras"


def train(
    pets: Path,
    feral: Path | None,
    work: Path,
    minutes: float,
    stage: int,
    seed: int,
    learning_rate: float | None = None,
) -> dict:
    """One stage of training with the product's own ``train`` command (``learning_rate``:
    the command's own default when None)."""
    images, masks = linked_training_set(pets, feral, work)
    new = [*NETWORK, "--long-side", str(LONG_SIDE)]
    start = new if stage == 1 else ["--resume", str(stage_path(work, stage - 1))]
    if learning_rate:
        start += ["--learning-rate", f"{learning_rate:g}"]
    argv = [
        "napari-unet-cat", "train", "--images", str(images), "--masks", str(masks), "--map", f"{UNDECIDED}=ignore",
        *start, "--time-budget", f"{minutes:g}", "--epochs", "100000", "--seed", str(seed),
        "--out", str(stage_path(work, stage)),
    ]  # fmt: skip
    log_path = work / f"stage-{stage}.log"
    seconds = run_logged(argv, log_path)
    from napari_unet_cat.loading import load_model

    history = load_model(stage_path(work, stage)).config.history
    if stage > 1:
        history = history[len(load_model(stage_path(work, stage - 1)).config.history) :]
    return {
        "step": "train",
        "model": "pets",
        "stage": stage,
        "command": " ".join(argv[1:]).replace(str(work), "WORK"),
        "train_seconds": seconds,
        "epochs": len(history),
        "patches_seen": int(sum(row.get("patches", 0) for row in history)),
        "best_val_loss": min((r["val_loss"] for r in history if "val_loss" in r), default=None),
        "history": history,
    }


def pixel_scores(model, photos) -> dict:
    """Cat, dog and pet IoU of ``model`` over ``photos`` (a folder with ``images/`` and
    ``masks/``, or a list of photo paths whose masks are in ``../masks``), pixels pooled,
    the undecided band ignored; the cat-vs-dog confusion and the seconds taken."""
    from napari_unet_cat.io import read_image, read_labels

    if isinstance(photos, Path):
        photos = sorted((photos / "images").iterdir())
    counts = np.zeros((3, 3), np.int64)  # truth x prediction, background/cat/dog
    told_apart = np.zeros((3, 3), np.int64)  # the same, every animal pixel given the photo's animal
    started = time.perf_counter()
    for path in photos:
        truth = np.asarray(read_labels(path.parent.parent / "masks" / f"{path.stem}.png"))
        predicted = np.asarray(model.predict(read_image(path)))
        known = truth != UNDECIDED
        counts += pixel_counts(truth[known], predicted[known])
        animal = np.bincount(truth[known][truth[known] > 0], minlength=3).argmax()
        told_apart += pixel_counts(truth[known], np.where(predicted[known] > 0, animal, 0))
    oracle = scores_of_counts(told_apart)
    return {
        **scores_of_counts(counts),
        # What the outlines alone allow: the cat and dog IoU were each photo's animal told right.
        "cat_iou_told_apart": oracle["cat_iou"],
        "dog_iou_told_apart": oracle["dog_iou"],
        "photos": len(photos),
        "predict_seconds": time.perf_counter() - started,
    }


def pixel_counts(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The 3x3 truth x prediction count of background, cat and dog pixels."""
    return np.bincount(3 * truth.astype(np.int64) + predicted, minlength=9).reshape(3, 3)


def scores_of_counts(counts: np.ndarray) -> dict:
    """IoUs and confusion from a truth x prediction pixel count matrix."""

    def iou(true_set, pred_set):
        hit = counts[np.ix_(true_set, pred_set)].sum()
        union = counts[true_set, :].sum() + counts[:, pred_set].sum() - hit
        return float(hit / union) if union else float("nan")

    cats, dogs = counts[1].sum(), counts[2].sum()
    return {
        "cat_iou": iou([1], [1]),
        "dog_iou": iou([2], [2]),
        "pet_iou": iou([1, 2], [1, 2]),
        "cat_called_dog": float(counts[1, 2] / cats) if cats else 0.0,
        "dog_called_cat": float(counts[2, 1] / dogs) if dogs else 0.0,
        "counts": counts.tolist(),
    }


def last_stage(work: Path) -> int:
    stages = [int(p.stem.removeprefix("pets-stage")) for p in work.glob("pets-stage*.keras")]
    if not stages:
        raise SystemExit(f"no trained stage in {work}: run the train step first")
    return max(stages)


def model_card(scores: dict, trained: str) -> dict:
    """What the pets model is, for people: recorded in the model file and in the docs."""
    pets, feral = scores["pets"], scores.get("feral_cats")
    feral_text = (
        f"; on the {feral['photos']} feral cats test photos: cat IoU {feral['cat_iou']:.3f}, pet IoU "
        f"{feral['pet_iou']:.3f}"
        if feral
        else ""
    )
    return {
        "what": "cats and dogs in photos: a mask of background (0), cat (1) and dog (2)",
        "training_data": (
            "the Oxford-IIIT Pet dataset's trainval photos (O. M. Parkhi, A. Vedaldi, A. Zisserman, C. V. Jawahar, "
            "'Cats and Dogs', CVPR 2012), with the dataset's own pixel annotations (the undecided band around each "
            "animal's outline not used), and public-domain outdoor photos of feral cats (Roboflow Universe, "
            "'feral-cat-segmentation'); 10% held out for validation; never the test photos"
        ),
        "license": (
            "training data: the Oxford-IIIT Pet photos and annotations under CC BY-SA 4.0 (copyright with the "
            "photos' owners; attribution above), the feral cats photos public domain; weights: the package's "
            "BSD-3-Clause license"
        ),
        "input": (
            f"a colour (RGB) photo of any size: it is resized so that its longer side is {LONG_SIDE} pixels, each "
            "photo scaled by its own 1st-99.8th percentiles, and the mask comes back at the photo's own size"
        ),
        "scores": (
            f"on the {pets['photos']} Oxford-IIIT Pet test photos: cat IoU {pets['cat_iou']:.3f}, dog IoU "
            f"{pets['dog_iou']:.3f}, pet (cat or dog) IoU {pets['pet_iou']:.3f}; cat pixels called dog "
            f"{pets['cat_called_dog']:.1%}, dog pixels called cat {pets['dog_called_cat']:.1%}{feral_text}"
        ),
        "limits": (
            "pets in photos, one or a few large animals: not drawings, not microscopy, not other animals (a fox or "
            f"a rabbit may be called a cat or a dog); it sees the photo at {LONG_SIDE} pixels, so fur and whiskers "
            "at the outline are smoothed; small animals far away are often missed; cats and dogs are told apart "
            "from the whole animal, and a dog photographed like a cat (or the reverse) is sometimes confused"
        ),
        "training": trained,
    }


def training_summary(records: list[dict]) -> str:
    """The commands that made the model, as a user would type them, with their times."""
    stages = [r for r in records if r.get("model") == "pets" and r.get("step") == "train"]
    return "; then ".join(
        f"napari-unet-cat {r['command']} (code {r['code']}): {r['epochs']} epochs, {r['patches_seen']:,} patches "
        f"of 128x128, {r['train_seconds'] / 60:.0f} min on a {r['machine']['cores']}-core CPU (bare fit "
        f"{r['bare_fit_images_per_s']} images/s)"
        for r in stages
    )


def package(pets: Path, feral: Path | None, work: Path, out: Path) -> dict:
    """The shipped file: the last stage, classes named, float16 if it scores as float32."""
    from napari_unet_cat.builtin import INDEX_FILE, builtin_models, file_sha256
    from napari_unet_cat.config import ClassInfo
    from napari_unet_cat.loading import load_model

    stage = last_stage(work)
    model = load_model(stage_path(work, stage))
    model.config.classes = [ClassInfo(v, name) for v, name in CLASS_NAMES.items()]
    full, half = work / "pets-float32.keras", work / "pets-float16.keras"
    model.save(full)
    model.save(half, weights_dtype="float16")
    scores32 = {"pets": pixel_scores(load_model(full), pets / "test")}
    f16 = load_model(half)
    scores16 = {"pets": pixel_scores(f16, pets / "test")}
    if feral:
        scores16["feral_cats"] = pixel_scores(f16, feral / "test")
    use_half = abs(scores16["pets"]["cat_iou"] - scores32["pets"]["cat_iou"]) <= 0.005
    chosen = f16 if use_half else load_model(full)
    if not use_half and feral:
        scores32["feral_cats"] = pixel_scores(chosen, feral / "test")
    scores = scores16 if use_half else scores32
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    chosen.config.card = model_card(scores, training_summary(records))
    staged = work / "pets.keras"
    chosen.save(staged, weights_dtype="float16" if use_half else "float32")
    shutil.copyfile(staged, SHIPPED)
    digest = file_sha256(SHIPPED)
    index_path = SHIPPED.parent / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["pets"] = {
        "file": SHIPPED.name,
        "sha256": digest,
        "title": "cats and dogs in photos: background, cat, dog (Oxford-IIIT Pet, light U-Net)",
    }
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    builtin_models.cache_clear()  # a later step of this process reads the new index
    size = SHIPPED.stat().st_size / 1e6
    print(f"shipped {SHIPPED} ({size:.1f} MB, float16 {use_half}): {chosen.config.card['scores']}")
    return {
        "step": "package",
        "model": "pets",
        "stage": stage,
        "float16": use_half,
        "scores_float32": scores32,
        "scores_float16": scores16,
        "size_bytes": SHIPPED.stat().st_size,
        "sha256": digest,
        "card": chosen.config.card,
    }


def held_out_photos(images: Path, seed: int = 0, fraction: float = 0.1) -> list[Path]:
    """The photos of ``images`` (``WORK/train/images``) that ``train --seed SEED`` holds
    out for validation: its own split rule, one plane per photo in the command's order."""
    from napari_unet_cat.dataset import TrainingPlane, split_validation

    photos = sorted(images.iterdir())
    planes = [TrainingPlane(np.zeros((1, 1, 1)), np.zeros((1, 1)), p.name, i) for i, p in enumerate(photos)]
    _, held = split_validation(planes, fraction, patch=128, seed=seed)
    return [photos[p.image_index] for p in held]


def validate(work: Path, seed: int = 0) -> dict:
    """Each stage's scores on the photos held out from its training (never ``test/``)."""
    from napari_unet_cat.loading import load_model

    photos = held_out_photos(work / "train" / "images", seed)
    stages = {}
    for stage in range(1, last_stage(work) + 1):
        if stage_path(work, stage).exists():
            stages[stage] = pixel_scores(load_model(stage_path(work, stage)), photos)
            s = stages[stage]
            print(f"stage {stage}: cat IoU {s['cat_iou']:.3f}, dog IoU {s['dog_iou']:.3f}, pet IoU {s['pet_iou']:.3f} "
                  f"on {len(photos)} held-out photos")  # fmt: skip
    return {"step": "validate", "model": "pets", "held_out_photos": len(photos), "stages": stages}


def score(pets: Path, feral: Path | None) -> dict:
    """The shipped model's scores on the test photos (with ``--tta`` too)."""
    from napari_unet_cat.loading import load_model

    model = load_model("pets")
    result = {"step": "score", "model": "pets", "pets": pixel_scores(model, pets / "test")}
    if feral:
        result["feral_cats"] = pixel_scores(model, feral / "test")
    for name in ("pets", "feral_cats"):
        if name in result:
            r = result[name]
            print(f"{name}: cat IoU {r['cat_iou']:.3f}, dog IoU {r['dog_iou']:.3f}, pet IoU {r['pet_iou']:.3f}, "
                  f"cat called dog {r['cat_called_dog']:.1%}, dog called cat {r['dog_called_cat']:.1%}")  # fmt: skip
    return result
