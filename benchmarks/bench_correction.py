"""A simulated user correcting the built-in nuclei model, round after round.

Usage:
    python benchmarks/bench_correction.py DATA [--rounds 5] [--k 10] [--seconds 60]
        [--round-images 12] [--held-out 0] [--strategies uncertainty random size]
        [--rehearse | --no-rehearse] [--keep 1.0] [--shape HxW | --slices VOLUMES]

``DATA`` is the nuclei folder; the user corrects and is scored on ``test/`` (the built-in
model never saw it); ``train/`` holds the annotations the built-in model learnt from, which
each round rehearses (``--rehearse``, the default, as the product does with the layers a
model was trained on).
Its images are split once: ``--round-images`` that the user corrects, and the others
(``--held-out`` of them, 0 for all) that no round touches, where the model is scored.
``--shape`` keeps the test images of one size alone (one kind of image); ``--slices``
takes XY planes of 3D volumes instead, a kind of image the model never saw (the first
volume's planes are corrected, the others' scored).

Each strategy starts from the built-in model, with each round image's labels as the model
segments them. Each round: segment the round images with the current model, choose K
predicted objects over all of them, correct each as a person would (the predicted object
replaced by the true object it overlaps most, or deleted when it overlaps none), then
fine-tune the current model on the corrected label images for ``--seconds``
(:func:`napari_unet_cat.corrections.train_on_corrections`, beside as many of the
model's own training images) and score AP@0.5 and mean AP on
the held-out images. Strategies choose the K objects:

  uncertainty  the most uncertain first (mean normalized entropy over the object and a
               one-pixel ring: :func:`napari_unet_cat.uncertainty.object_uncertainty`)
  random       at random
  size         the smallest first

Objects already corrected are not chosen again. Results: ``--out`` (JSON lines), with the
machine's bare-fit images/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, bare_fit_images_per_second, machine_info
from napari_unet_cat.corrections import ROUND_KEEP

ROOT = Path(__file__).resolve().parent.parent


def load_split(data: Path, n_round: int, n_held: int, seed: int = 0, shape: tuple[int, int] | None = None):
    """``(round images, their true objects, held-out images, their true objects)``, of the
    images of ``shape`` (height, width) alone where it is given."""
    from napari_unet_cat.io import list_images, read_image, read_labels

    images = list_images(data / "test" / "images")
    if shape is not None:
        images = [p for p in images if read_image(p).shape[:2] == shape]
    order = np.random.default_rng(seed).permutation(len(images))
    chosen = [images[i] for i in order]
    held = chosen[n_round:] if not n_held else chosen[n_round : n_round + n_held]

    def read(paths):
        masks = {p.stem: p for p in (data / "test" / "masks_instance").iterdir()}
        return [read_image(p) for p in paths], [read_labels(masks[p.stem]) for p in paths]

    return (*read(chosen[:n_round]), *read(held))


def load_slices(folder: Path, n_round: int, step: int = 4):
    """The split of :func:`load_split` from ``folder``'s ZYX volumes (``images/`` and
    ``masks/`` of instance labels, files sharing a stem): ``n_round`` XY planes spread
    through the first volume to correct, and every ``step``-th plane of the others, which
    no round touches, to score (a kind of image the built-in model never saw)."""
    import tifffile

    volumes = sorted((folder / "images").glob("*.tif"))
    if len(volumes) < 2:
        raise SystemExit(f"{folder / 'images'} needs two volumes or more: one to correct, others to score")

    def planes(path, choose):
        """The planes ``choose(depth)`` of a volume and of its labels."""
        image, truth = tifffile.imread(path), tifffile.imread(folder / "masks" / path.name)
        zs = choose(len(image))
        return [image[z] for z in zs], [truth[z] for z in zs]

    round_images, round_truths = planes(volumes[0], lambda n: np.linspace(0, n - 1, n_round).round().astype(int))
    held_images, held_truths = [], []
    for path in volumes[1:]:
        images, truths = planes(path, lambda n: range(0, n, step))
        held_images += images
        held_truths += truths
    return round_images, round_truths, held_images, held_truths


def score(model, images, truths) -> dict:
    from napari_unet_cat.evaluation import evaluate_instances

    preds = [model.predict(image) for image in images]
    result = evaluate_instances(preds, truths)
    return {"ap50": round(result["ap"]["0.5"], 4), "mean_ap": round(result["mean_ap"], 4)}


def correct(labels: np.ndarray, label: int, truth: np.ndarray) -> np.ndarray:
    """``labels`` with predicted object ``label`` replaced by the true object it overlaps
    most (numbered past every label in use), or removed when it overlaps none."""
    out = labels.copy()
    where = labels == label
    out[where] = 0
    hits = truth[where]
    hits = hits[hits > 0]
    if hits.size:
        true_object = truth == np.bincount(hits).argmax()
        out[true_object] = int(out.max()) + 1
    return out


def earlier_annotations(data: Path) -> tuple[list, list]:
    """The images and instance masks of ``DATA/train`` (what the built-in model learnt from)."""
    from napari_unet_cat.io import list_images, read_image, read_labels

    images = list_images(data / "train" / "images")
    masks = {p.stem: p for p in (data / "train" / "masks_instance").iterdir()}
    return [read_image(p) for p in images], [read_labels(masks[p.stem]) for p in images]


def choose(strategy: str, candidates: list[tuple[int, int, float, int]], k: int, rng) -> list[tuple[int, int]]:
    """K of the ``(image, label, uncertainty, area)`` candidates, by ``strategy``."""
    if strategy == "uncertainty":
        ranked = sorted(candidates, key=lambda c: -c[2])
    elif strategy == "size":
        ranked = sorted(candidates, key=lambda c: c[3])
    else:
        ranked = [candidates[i] for i in rng.permutation(len(candidates))]
    return [(c[0], c[1]) for c in ranked[:k]]


def run_strategy(strategy: str, start, data_split, args, earlier=None) -> list[dict]:
    from napari_unet_cat.corrections import train_on_corrections
    from napari_unet_cat.uncertainty import entropy_map, object_uncertainty

    round_images, round_truths, held_images, held_truths = data_split
    rng = np.random.default_rng(args.seed)
    model = start
    corrected = [model.predict(image) for image in round_images]
    done: set[tuple[int, int]] = set()  # (image, true object) corrected already
    rows = []
    for number in range(1, args.rounds + 1):
        candidates = []
        predictions = []
        for i, image in enumerate(round_images):
            labels, probabilities = model.predict(image, return_probabilities=True)
            predictions.append(labels)
            corrected[i] = keep_corrections(labels, corrected[i], corrected_mask(round_truths[i], done, i))
            ranked = object_uncertainty(labels, entropy_map(probabilities))
            for label, doubt, area in zip(ranked["label"], ranked["uncertainty"], ranked["area"]):
                candidates.append((i, int(label), float(doubt), int(area)))
        for i, label in choose(strategy, candidates, args.k, rng):
            where = corrected[i] == label
            if not where.any():
                continue
            hits = round_truths[i][where]
            corrected[i] = correct(corrected[i], label, round_truths[i])
            if (hits > 0).any():
                done.add((i, int(np.bincount(hits[hits > 0]).argmax())))
        t0 = time.perf_counter()
        model = train_on_corrections(
            model,
            round_images,
            corrected,
            before=predictions,
            seconds=args.seconds,
            seed=number,
            only_corrected=args.train_on == "corrected",
            earlier=earlier,
            keep=args.keep,
        )
        row = {
            "strategy": strategy,
            "train_on": args.train_on,
            "rehearsed_images": model.config.corrections[-1]["rehearsed_images"],
            "round": number,
            "corrections": number * args.k,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "patches": model.config.corrections[-1]["patches"],
            **score(model, held_images, held_truths),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def corrected_mask(truth: np.ndarray, done: set, image: int) -> np.ndarray:
    """Pixels of the true objects of ``image`` corrected already."""
    keep = [obj for i, obj in done if i == image]
    return np.isin(truth, keep) if keep else np.zeros(truth.shape, bool)


def keep_corrections(prediction: np.ndarray, earlier: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The new ``prediction`` with the ``kept`` pixels as the user left them in ``earlier``
    (numbered past the prediction's labels, so that no two objects share one)."""
    out = prediction.astype(np.int64)
    out[kept] = 0
    out[kept] = np.where(earlier[kept] > 0, earlier[kept] + out.max(), 0)
    return out


def image_shape(text: str) -> tuple[int, int]:
    """``"256x256"`` as ``(256, 256)``."""
    height, _, width = text.partition("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--round-images", type=int, default=12)
    parser.add_argument("--held-out", type=int, default=0, help="held-out images scored (0: every other one)")
    parser.add_argument("--strategies", nargs="+", default=["uncertainty", "random", "size"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shape",
        type=image_shape,
        help="HEIGHTxWIDTH: only the test images of this size, one kind of image (the rounds and the scoring "
        "alike), as one user's experiment gives",
    )
    parser.add_argument(
        "--slices",
        type=Path,
        help="a folder of ZYX volumes with instance labels (images/, masks/): correct XY planes of its first "
        "volume and score every 4th plane of the others, instead of DATA/test's images",
    )
    parser.add_argument(
        "--train-on",
        choices=("corrected", "whole"),
        default="corrected",
        help="a round trains on the corrected objects and a ring around them (the product's default for "
        "instance models), or on the corrected images whole",
    )
    parser.add_argument(
        "--rehearse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each round also trains on as many of DATA/train's annotated images (what the model learnt from)",
    )
    parser.add_argument(
        "--keep",
        type=float,
        default=ROUND_KEEP,
        help="the share of each round's change to the weights kept (train_on_corrections's keep)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "correction.json")
    args = parser.parse_args()

    from napari_unet_cat import load_model

    speed = bare_fit_images_per_second()
    print(f"bare fit {speed:.2f} images/s", flush=True)
    if args.slices:
        split = load_slices(args.slices, args.round_images)
    else:
        split = load_split(args.data, args.round_images, args.held_out, args.seed, args.shape)
    start = load_model("nuclei")
    zero_shot = score(start, split[2], split[3])
    print({"zero_shot": zero_shot}, flush=True)
    earlier = earlier_annotations(args.data) if args.rehearse else None
    rows = []
    for strategy in args.strategies:
        rows += run_strategy(strategy, start, split, args, earlier)
    record = {
        "benchmark": "correction",
        "machine": {**machine_info(), "bare_fit_images_per_second": round(speed, 2)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "held_out_images": len(split[2]),
        "zero_shot": zero_shot,
        "rows": rows,
    }
    append_record(args.out, record)


if __name__ == "__main__":
    main()
