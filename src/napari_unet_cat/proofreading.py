"""Corrections of a label image that a paint brush makes hard: merge, split, delete, relabel.

Each function reads the labels and returns an :class:`Edit` (which pixels get which new
value) without changing them, so that the napari panel applies it through the Labels
layer's own ``data_setitem``, and napari's undo takes it back. 2D and 3D alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Edit:
    """New values for some pixels: ``labels[indices] = values``."""

    indices: tuple[np.ndarray, ...]
    values: np.ndarray | int
    what: str

    @property
    def size(self) -> int:
        return int(len(self.indices[0])) if self.indices else 0

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """A copy of ``labels`` with the edit made (for use outside napari)."""
        out = np.array(labels, copy=True)
        out[self.indices] = self.values
        return out


def label_at(labels: np.ndarray, point: Sequence[float]) -> int:
    """The label under ``point`` (pixel coordinates, rounded), 0 outside the image."""
    index = tuple(int(round(p)) for p in point)
    if len(index) != labels.ndim or any(i < 0 or i >= n for i, n in zip(index, labels.shape)):
        return 0
    return int(labels[index])


def merge(labels: np.ndarray, keep: int, absorb: int) -> Edit:
    """Object ``absorb`` becomes part of object ``keep``."""
    _check_objects(labels, keep, absorb)
    if keep == absorb:
        raise InputError(f"merging needs two different objects (both clicks were on object {keep})")
    return Edit(np.nonzero(labels == absorb), keep, f"merged object {absorb} into {keep}")


def delete(labels: np.ndarray, label: int) -> Edit:
    """Object ``label`` becomes background."""
    _check_objects(labels, label)
    return Edit(np.nonzero(labels == label), 0, f"deleted object {label}")


def delete_smaller_than(labels: np.ndarray, min_size: int) -> Edit:
    """Every object of fewer than ``min_size`` pixels becomes background."""
    sizes = np.bincount(labels.ravel().astype(np.int64, copy=False))
    small = np.nonzero((sizes > 0) & (sizes < min_size))[0]
    small = small[small > 0]
    return Edit(np.nonzero(np.isin(labels, small)), 0, f"deleted {len(small)} objects under {min_size} pixels")


def split(labels: np.ndarray, seeds: Sequence[Sequence[float]]) -> Edit:
    """Split the object under the ``seeds`` (two or more points in it) by a watershed on
    its distance to the background, from those points; the part of the first seed keeps
    the label, the others get new ones.

    Raises:
        InputError: The seeds are not all in one object, or two fall on one pixel.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.segmentation import watershed

    if len(seeds) < 2:
        raise InputError("splitting needs two points in the object")
    found = {label_at(labels, s) for s in seeds}
    if len(found) != 1 or 0 in found:
        raise InputError(f"the split points must all lie in one object (they are on labels {sorted(found)})")
    label = found.pop()
    mask = labels == label
    markers = np.zeros(labels.shape, np.int32)
    for i, seed in enumerate(seeds, start=1):
        index = tuple(int(round(p)) for p in seed)
        if markers[index]:
            raise InputError("two split points fall on the same pixel")
        markers[index] = i
    parts = watershed(-distance_transform_edt(mask), markers, mask=mask)
    new = np.arange(len(seeds), dtype=np.int64) + int(labels.max())  # past every label in use
    new[0] = label  # the first seed's part keeps the object's label
    indices = np.nonzero(parts > 1)
    return Edit(indices, new[parts[indices] - 1].astype(labels.dtype), f"split object {label} in {len(seeds)}")


def relabel_sequentially(labels: np.ndarray) -> Edit:
    """Number the objects 1..N, in the order of their labels."""
    from skimage.segmentation import relabel_sequential

    renumbered, _, _ = relabel_sequential(labels)
    changed = np.nonzero(renumbered != labels)
    return Edit(changed, renumbered[changed], f"numbered {int(renumbered.max())} objects 1..N")


def _check_objects(labels: np.ndarray, *wanted: int) -> None:
    missing = [w for w in wanted if w <= 0 or not np.any(labels == w)]
    if missing:
        raise InputError(f"there is no object {missing[0]} here (click on an object, not the background)")
