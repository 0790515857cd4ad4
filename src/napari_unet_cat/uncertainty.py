"""Where the model is least sure: a map of it, and the objects ranked by it.

The map is the entropy of the class probabilities at each pixel, divided by its largest
possible value (``log`` of the number of classes): 0 where one class has all the
probability, 1 where every class is equally likely. An object's uncertainty is the mean
of the map over the object and a one-pixel ring around it (where a wrong edge shows), so
that the objects to correct first come first.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def entropy_map(probabilities) -> np.ndarray:
    """The normalized entropy of ``probabilities`` ``(..., classes)``: float32 in [0, 1]."""
    p = np.asarray(probabilities, np.float32)
    if p.ndim < 2 or p.shape[-1] < 2:
        raise InputError(f"probabilities need a last axis of two or more classes; received shape {p.shape}")
    clipped = np.clip(p, 1e-7, 1.0)
    entropy = -np.sum(p * np.log(clipped), axis=-1)
    return np.clip(entropy / np.log(p.shape[-1]), 0.0, 1.0).astype(np.float32)


def object_uncertainty(labels, uncertainty) -> dict[str, np.ndarray]:
    """Each object's mean uncertainty over itself and a one-pixel ring around it, most
    uncertain first: ``{"label", "uncertainty", "area"}``."""
    from scipy.ndimage import grey_dilation

    labels = np.asarray(labels)
    uncertainty = np.asarray(uncertainty, np.float32)
    if labels.shape != uncertainty.shape:
        raise InputError(f"labels of shape {labels.shape} and an uncertainty map of {uncertainty.shape} differ")
    grown = np.where(labels > 0, labels, grey_dilation(labels, size=(3,) * labels.ndim))
    flat = grown.ravel().astype(np.int64)
    sums = np.bincount(flat, weights=uncertainty.ravel())
    counts = np.bincount(flat)
    areas = np.bincount(labels.ravel().astype(np.int64), minlength=len(counts))
    found = np.nonzero((counts > 0) & (np.arange(len(counts)) > 0) & (areas[: len(counts)] > 0))[0]
    means = sums[found] / counts[found]
    order = np.argsort(-means, kind="stable")
    return {"label": found[order], "uncertainty": means[order], "area": areas[found][order]}


def least_sure(labels, uncertainty, k: int = 10) -> list[int]:
    """The ``k`` objects the model is least sure of, most uncertain first."""
    return [int(v) for v in object_uncertainty(labels, uncertainty)["label"][:k]]
