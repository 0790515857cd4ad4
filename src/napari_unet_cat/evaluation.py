"""Scores of predicted masks against ground truth: per-class IoU and Dice, accuracy."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .arrays import IGNORE_INDEX, apply_value_map
from .errors import InputError
from .io import pair_by_stem, read_labels


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Counts ``[truth class, predicted class]`` over pixels whose truth is not ignored.

    Pixels whose truth is ``-1`` (ignored) are left out; a predicted value that is not
    in ``values`` counts as wrong for every class.
    """
    values = np.asarray(values)
    n = len(values)
    keep = truth != IGNORE_INDEX
    t = np.searchsorted(values, truth[keep])
    p = np.searchsorted(values, pred[keep])
    p_ok = (p < n) & (values[np.minimum(p, n - 1)] == pred[keep])
    t_ok = (t < n) & (values[np.minimum(t, n - 1)] == truth[keep])
    p = np.where(p_ok, p, n)  # unknown predictions land in an extra column
    t = np.where(t_ok, t, n)
    counts = np.bincount(t * (n + 1) + p, minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
    return counts


def scores(confusion: np.ndarray, values: Sequence[int], n_images: int = 1) -> dict:
    """IoU and Dice per class, mean IoU and pixel accuracy from a confusion matrix."""
    per_class = {}
    n = len(values)
    for k, value in enumerate(values):
        tp = confusion[k, k]
        fp = confusion[:, k].sum() - tp
        fn = confusion[k, :].sum() - tp
        union = tp + fp + fn
        per_class[str(int(value))] = {
            "iou": float(tp / union) if union else 1.0,
            "dice": float(2 * tp / (2 * tp + fp + fn)) if union else 1.0,
        }
    total = confusion.sum()
    return {
        "per_class": per_class,
        "mean_iou": float(np.mean([c["iou"] for c in per_class.values()])) if n else 0.0,
        "pixel_accuracy": float(np.trace(confusion[:n, :n]) / total) if total else 0.0,
        "n_images": int(n_images),
    }


def evaluate_arrays(
    preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], value_map: dict[int, int | str] | None = None
) -> dict:
    """Scores over pairs of predicted and true label arrays (pixels pooled over images)."""
    truths = [apply_value_map(t, value_map or {}) for t in truths]
    found: set[int] = set()
    for p, t in zip(preds, truths):
        if p.shape != t.shape:
            raise InputError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
        found.update(int(v) for v in np.unique(t) if v != IGNORE_INDEX)
        found.update(int(v) for v in np.unique(p))
    values = sorted(found)
    total = np.zeros((len(values) + 1,) * 2, np.int64)
    for p, t in zip(preds, truths):
        total += confusion_matrix(np.asarray(p), t, values)
    return scores(total, values, len(preds))


def evaluate_folders(
    pred_dir: str | os.PathLike, truth_dir: str | os.PathLike, value_map: dict[int, int | str] | None = None
) -> dict:
    """Score every prediction in ``pred_dir`` against the mask of the same stem in ``truth_dir``.

    Returns:
        ``{"per_class": {value: {"iou", "dice"}}, "mean_iou", "pixel_accuracy", "n_images",
        "missing": [...]}`` where ``missing`` lists truth files without a prediction.
    """
    pairs, _lonely, orphans = pair_by_stem(pred_dir, truth_dir)
    if not pairs:
        raise InputError(f"no prediction in {pred_dir} has a truth mask of the same name in {truth_dir}")
    preds, truths = [], []
    for pred_path, truth_path in pairs:
        pred, truth = read_labels(pred_path), read_labels(truth_path)
        if pred.shape != truth.shape:
            raise InputError(f"{pred_path} has shape {pred.shape} but {truth_path} has shape {truth.shape}")
        preds.append(pred)
        truths.append(truth)
    result = evaluate_arrays(preds, truths, value_map)
    result["missing"] = [str(p) for p in orphans]
    return result


def format_scores(result: dict) -> str:
    """A small table of the scores, for the terminal."""
    lines = [f"{'class':>8} {'IoU':>7} {'Dice':>7}"]
    for value, s in result["per_class"].items():
        lines.append(f"{value:>8} {s['iou']:7.4f} {s['dice']:7.4f}")
    lines.append(
        f"mean IoU {result['mean_iou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}, "
        f"{result['n_images']} image(s)"
    )
    return "\n".join(lines)
