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


def read_folder_pairs(
    pred_dir: str | os.PathLike, truth_dir: str | os.PathLike
) -> tuple[list[np.ndarray], list[np.ndarray], list]:
    """``(predictions, truths, truths without a prediction)``: the masks of the same stem
    in two folders, read and checked to have one shape."""
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
    return preds, truths, orphans


def evaluate_folders(
    pred_dir: str | os.PathLike, truth_dir: str | os.PathLike, value_map: dict[int, int | str] | None = None
) -> dict:
    """Score every prediction in ``pred_dir`` against the mask of the same stem in ``truth_dir``.

    Returns:
        ``{"per_class": {value: {"iou", "dice"}}, "mean_iou", "pixel_accuracy", "n_images",
        "missing": [...]}`` where ``missing`` lists truth files without a prediction.
    """
    preds, truths, orphans = read_folder_pairs(pred_dir, truth_dir)
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


# -- objects ---------------------------------------------------------------------------------
#: IoU thresholds reported on their own, and those averaged into the mean AP (the 2018
#: Data Science Bowl's 0.50, 0.55, ..., 0.95).
REPORTED_THRESHOLDS = (0.5, 0.75, 0.9)
MEAN_AP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def object_overlaps(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of every predicted object with every true object (0 = background).

    Returns ``(intersection, iou, true_areas, pred_areas)``: ``intersection`` and
    ``iou`` are ``(n_true, n_pred)`` arrays over the objects in order of their values.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"predicted objects have shape {pred.shape} but true objects have shape {truth.shape}")
    t_values, t_index = np.unique(truth, return_inverse=True)
    p_values, p_index = np.unique(pred, return_inverse=True)
    t_index, p_index = t_index.ravel(), p_index.ravel()
    # Row/column 0 is the background when present; drop it after counting.
    t_bg = t_values.size and t_values[0] <= 0
    p_bg = p_values.size and p_values[0] <= 0
    counts = np.bincount(t_index * p_values.size + p_index, minlength=t_values.size * p_values.size).reshape(
        t_values.size, p_values.size
    )
    t_areas = counts.sum(axis=1)
    p_areas = counts.sum(axis=0)
    counts = counts[int(t_bg) :, int(p_bg) :]
    t_areas, p_areas = t_areas[int(t_bg) :], p_areas[int(p_bg) :]
    union = t_areas[:, None] + p_areas[None, :] - counts
    iou = np.where(union > 0, counts / np.maximum(union, 1), 0.0)
    return counts, iou, t_areas, p_areas


def instance_counts(pred: np.ndarray, truth: np.ndarray, thresholds=MEAN_AP_THRESHOLDS) -> dict:
    """True positives at each IoU threshold (>= 0.5, where a match is unique), object
    counts, and merges and splits, for one image.

    A *merge* is a predicted object that holds more than half of each of two or more
    true objects; a *split* is a true object more than half of each of two or more
    predicted objects lie in.
    """
    intersection, iou, t_areas, p_areas = object_overlaps(pred, truth)
    tp = {}
    for t in thresholds:
        if t < 0.5:
            raise InputError(f"IoU thresholds must be at least 0.5, where a match is unique (received {t})")
        tp[t] = int((iou > t).sum()) if iou.size else 0
    merges = int(((intersection > 0.5 * t_areas[:, None]).sum(axis=0) >= 2).sum()) if iou.size else 0
    splits = int(((intersection > 0.5 * p_areas[None, :]).sum(axis=1) >= 2).sum()) if iou.size else 0
    return {"tp": tp, "n_true": len(t_areas), "n_pred": len(p_areas), "merged": merges, "split": splits}


def evaluate_instances(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict:
    """Object scores pooled over images: objects are matched by IoU.

    Returns:
        ``{"ap": {"0.5", "0.75", "0.9"}, "f1": {...}, "mean_ap", "n_true", "n_pred",
        "n_images", "merged", "split", "tp": {...}}``, where AP(t) = TP / (TP + FP + FN)
        and F1(t) = 2 TP / (2 TP + FP + FN) over all objects of all images, and the mean
        AP averages AP(t) over t = 0.50, 0.55, ..., 0.95.
    """
    if len(preds) != len(truths):
        raise InputError(f"got {len(preds)} predictions but {len(truths)} true masks")
    thresholds = sorted(set(MEAN_AP_THRESHOLDS) | set(REPORTED_THRESHOLDS))
    tp = dict.fromkeys(thresholds, 0)
    n_true = n_pred = merged = split = 0
    for pred, truth in zip(preds, truths):
        counts = instance_counts(pred, truth, thresholds)
        for t in thresholds:
            tp[t] += counts["tp"][t]
        n_true += counts["n_true"]
        n_pred += counts["n_pred"]
        merged += counts["merged"]
        split += counts["split"]

    def ap(t: float) -> float:
        denominator = n_true + n_pred - tp[t]  # TP + FP + FN
        return float(tp[t] / denominator) if denominator else 1.0

    def f1(t: float) -> float:
        denominator = n_true + n_pred
        return float(2 * tp[t] / denominator) if denominator else 1.0

    return {
        "ap": {str(t): ap(t) for t in REPORTED_THRESHOLDS},
        "f1": {str(t): f1(t) for t in REPORTED_THRESHOLDS},
        "mean_ap": float(np.mean([ap(t) for t in MEAN_AP_THRESHOLDS])),
        "n_true": n_true,
        "n_pred": n_pred,
        "n_images": len(preds),
        "merged": merged,
        "split": split,
        "tp": {str(t): tp[t] for t in REPORTED_THRESHOLDS},
    }


#: Distances (pixels) from the true edges within which foreground errors are counted.
EDGE_DISTANCES = (1, 2)


def distance_to_edges(truth: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the other side of the true edges of a boolean mask (1
    next to an edge, on either side)."""
    from scipy.ndimage import distance_transform_edt

    return np.where(truth, distance_transform_edt(truth), distance_transform_edt(~truth))


def object_scores(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict:
    """The scores of predicted objects against true ones that the benchmarks record, flat:
    AP at 0.5/0.75/0.9, mean AP, counts, merges and splits (see :func:`evaluate_instances`),
    the foreground IoU of the objects with its false positives and negatives, and where
    the foreground errors lie (their share within 1 and 2 pixels of the true edges)."""
    result = evaluate_instances(preds, truths)
    tp = fp = fn = 0
    near = dict.fromkeys(EDGE_DISTANCES, 0)
    for pred, truth in zip(preds, truths):
        p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
        tp += int((p & t).sum())
        fp += int((p & ~t).sum())
        fn += int((~p & t).sum())
        to_edge = distance_to_edges(t)
        for d in EDGE_DISTANCES:
            near[d] += int(((p != t) & (to_edge <= d)).sum())
    return {
        "ap50": result["ap"]["0.5"],
        "ap75": result["ap"]["0.75"],
        "ap90": result["ap"]["0.9"],
        "mean_ap": result["mean_ap"],
        "n_true": result["n_true"],
        "n_pred": result["n_pred"],
        "merged": result["merged"],
        "split": result["split"],
        "foreground_iou": tp / max(tp + fp + fn, 1),
        "foreground_false_positives": fp,
        "foreground_false_negatives": fn,
        # Where the foreground errors lie: the share within 1 and 2 pixels of the true edges.
        **{f"errors_within_{d}px_of_edges": near[d] / max(fp + fn, 1) for d in EDGE_DISTANCES},
    }


def evaluate_instance_folders(pred_dir: str | os.PathLike, truth_dir: str | os.PathLike) -> dict:
    """:func:`evaluate_instances` of every prediction in ``pred_dir`` against the instance
    mask of the same stem in ``truth_dir``; ``missing`` lists truths without a prediction."""
    preds, truths, orphans = read_folder_pairs(pred_dir, truth_dir)
    result = evaluate_instances(preds, truths)
    result["missing"] = [str(p) for p in orphans]
    return result


def format_instance_scores(result: dict) -> str:
    """A small table of the object scores, for the terminal."""
    lines = [f"{'IoU >':>8} {'AP':>7} {'F1':>7}"]
    for t in REPORTED_THRESHOLDS:
        lines.append(f"{t:>8} {result['ap'][str(t)]:7.4f} {result['f1'][str(t)]:7.4f}")
    lines.append(
        f"mean AP (0.50:0.95) {result['mean_ap']:.4f}; {result['n_true']} true and {result['n_pred']} predicted "
        f"objects in {result['n_images']} image(s); {result['merged']} merged, {result['split']} split"
    )
    return "\n".join(lines)
