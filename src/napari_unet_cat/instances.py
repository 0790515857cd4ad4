"""Objects, not only classes: training targets from instance masks, and objects from
probabilities.

An *instance mask* holds one value per object (1..N) and 0 for background. For training
it becomes three classes, as in the U-Net paper's cell tracking entry and the 2018 Data
Science Bowl's best U-Nets: background, object interior and object border, where the
border is the rim of each object that touches another object or the background. Pixel
weights follow the paper's map

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

with ``w_c`` balancing the class frequencies and ``d1``, ``d2`` the distances to the
nearest and second-nearest object, so that the thin gaps between touching objects weigh
most. Prediction turns the three probabilities back into objects: seeds from the
interior, then a watershed over the foreground (interior and border).

Everything here is NumPy, SciPy and scikit-image; nothing imports Keras.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .arrays import IGNORE_INDEX, smallest_int_dtype
from .errors import InputError

BACKGROUND, INTERIOR, BORDER = 0, 1, 2
#: Class values and names of an instance model's three classes.
INSTANCE_CLASSES = ((BACKGROUND, "background"), (INTERIOR, "interior"), (BORDER, "border"))
#: The object rim's width in pixels (at the training scale). Chosen by measurement:
#: benchmarks/bench_instances.py ("border width"), on the training split only.
DEFAULT_BORDER_WIDTH = 2
#: The U-Net paper's separation weight and distance scale (in pixels).
DEFAULT_W0 = 10.0
DEFAULT_SIGMA = 5.0
#: Masks with more distinct nonzero values than this, each one connected blob, look
#: like object ids rather than classes.
INSTANCE_GUESS_VALUES = 16


def full_connectivity(ndim: int) -> np.ndarray:
    """Every neighbour counts (8 in 2D, 26 in 3D), everywhere objects are found
    (components, watershed, stitching), so that one object is one connected set however
    it is computed, in a plane or in a volume."""
    return np.ones((3,) * ndim, bool)


# -- training targets ----------------------------------------------------------------------
def _ball(radius: int, ndim: int = 2) -> np.ndarray:
    """A disk (2D) or ball (3D) of ``radius`` pixels."""
    r = int(radius)
    grid = np.mgrid[(slice(-r, r + 1),) * ndim]
    return (grid * grid).sum(axis=0) <= r * r


def instance_targets(instances: np.ndarray, border_width: int = DEFAULT_BORDER_WIDTH) -> np.ndarray:
    """Class indices (int16) of an instance plane or volume: 0 background, 1 interior, 2 border.

    Args:
        instances: ``(Y, X)`` or ``(Z, Y, X)`` integers: 0 background, -1 not annotated (ignored),
            any other value one object.
        border_width: Pixels of each object within this distance of another object or
            of the background are its border. Pixels next to ignored regions or the
            plane's edge are not (nothing is known beyond them).

    Returns:
        int16 targets of the same shape, -1 where ``instances`` is ignored.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    if border_width < 1:
        raise InputError(f"border width must be at least 1 pixel (received {border_width})")
    lab = np.asarray(instances).astype(np.int64, copy=False)
    ignored = lab == IGNORE_INDEX
    objects = lab > 0
    footprint = _ball(border_width, lab.ndim)
    # Any different, annotated value nearby is either larger or smaller than the pixel's.
    # Ignored pixels are made to count as neither (below everything for the maximum,
    # above everything for the minimum); the plane's edge likewise.
    low = np.where(ignored, -2, lab)
    high = np.where(ignored, np.iinfo(np.int64).max, lab)
    larger = maximum_filter(low, footprint=footprint, mode="constant", cval=-2) > lab
    smaller = minimum_filter(high, footprint=footprint, mode="constant", cval=np.iinfo(np.int64).max) < lab
    targets = np.full(lab.shape, BACKGROUND, np.int16)
    targets[objects] = INTERIOR
    targets[objects & (larger | smaller)] = BORDER
    targets[ignored] = IGNORE_INDEX
    return targets


def nearest_two_distances(instances: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(d1, d2)`` from each pixel to its nearest and second-nearest object.

    The distance to an object is 0 on it. Distances above ``cutoff`` are not computed
    and read as infinity: each object's distance map is made only in its bounding box
    grown by ``cutoff``, so the cost grows with the objects' area, not with their
    number times the plane's.
    """
    from scipy.ndimage import distance_transform_edt, find_objects

    lab = np.asarray(instances)
    d1 = np.full(lab.shape, np.inf, np.float32)
    d2 = np.full(lab.shape, np.inf, np.float32)
    grow = int(np.ceil(cutoff))
    positive = np.where(lab > 0, lab, 0).astype(np.int64, copy=False)
    for value, box in enumerate(find_objects(positive), start=1):
        if box is None:
            continue
        region = tuple(slice(max(0, s.start - grow), min(n, s.stop + grow)) for s, n in zip(box, lab.shape))
        distance = distance_transform_edt(positive[region] != value).astype(np.float32)
        near1, near2 = d1[region], d2[region]
        closer = distance < near1
        near2[...] = np.where(closer, near1, np.minimum(near2, distance))
        near1[...] = np.where(closer, distance, near1)
    return d1, d2


def separation_weights(
    instances: np.ndarray, targets: np.ndarray, *, w0: float = DEFAULT_W0, sigma: float = DEFAULT_SIGMA
) -> np.ndarray:
    """The paper's separation term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` (float32).

    It is given to the pixels that are not object interior (background and borders),
    where the network must learn the gaps between objects; elsewhere it is 0.
    """
    if w0 < 0 or sigma <= 0:
        raise InputError(f"weight map needs w0 >= 0 and sigma > 0 (received w0={w0}, sigma={sigma})")
    out = np.zeros(np.shape(targets), np.float32)
    if w0 == 0:
        return out
    # Beyond this sum of distances the term is below 1e-3 of w0.
    cutoff = sigma * np.sqrt(2 * np.log(1e3))
    d1, d2 = nearest_two_distances(instances, cutoff)
    total = d1 + d2
    where = (targets != INTERIOR) & (targets != IGNORE_INDEX) & np.isfinite(total)
    out[where] = w0 * np.exp(-(total[where] ** 2) / (2 * sigma * sigma))
    return out


#: ``w_c`` of a class is its share of the pixels to this power, negated: 1 is the paper's
#: full balancing (the border class of nuclei then weighs 23x the background, and the
#: network over-predicts objects), 0 none. Chosen by measurement on a split of the
#: training images (benchmarks/bench_instances.py, "class balance").
DEFAULT_CLASS_BALANCE = 0.5


def class_balance(targets: list[np.ndarray], n_classes: int = 3, power: float = DEFAULT_CLASS_BALANCE) -> np.ndarray:
    """``w_c``: one weight per class, proportional to ``share ** -power`` of its share of
    the annotated pixels (``power`` 1: inversely proportional, the paper's balancing),
    scaled so that the mean weight of an annotated pixel is 1."""
    counts = np.zeros(n_classes, np.float64)
    for t in targets:
        counts += np.bincount(t[t >= 0].ravel(), minlength=n_classes)[:n_classes]
    present = counts > 0
    weights = np.ones(n_classes, np.float32)
    if present.any() and power:
        share = counts[present] / counts.sum()
        raw = share ** -float(power)
        weights[present] = (raw / (share * raw).sum()).astype(np.float32)
    return weights


# -- telling instance masks from class masks -------------------------------------------------
def looks_like_instances(labels: np.ndarray, limit: int = INSTANCE_GUESS_VALUES) -> bool:
    """Whether a label image looks like object ids: more than ``limit`` distinct nonzero
    values, nearly every one of them a single connected blob."""
    from scipy.ndimage import find_objects, label

    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        return False
    values = np.unique(lab)
    values = values[values > 0]
    if values.size <= limit:
        return False
    if lab.ndim > 2:  # a stack: look at its first plane with many values
        for index in np.ndindex(*lab.shape[:-2]):
            if np.unique(lab[index]).size > limit + 1:
                return looks_like_instances(lab[index], limit)
        return False
    # Check a sample of the values: each one connected (8-connectivity).
    rng = np.random.default_rng(0)
    sample = values if values.size <= 64 else rng.choice(values, 64, replace=False)
    boxes = find_objects(np.where(np.isin(lab, sample), lab, 0).astype(np.int64))
    single = 0
    for value in sample:
        box = boxes[int(value) - 1]
        if box is None:
            continue
        _, n = label(lab[box] == value, structure=full_connectivity(lab.ndim))
        single += n == 1
    return single >= 0.9 * len(sample)


# -- objects from probabilities --------------------------------------------------------------
def _relabel_sequential(labels: np.ndarray, start: int = 1) -> tuple[np.ndarray, int]:
    """Object values made ``start, start + 1, ...`` in order of first appearance (raster
    order); returns the labels (uint32) and the next free value."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    keep = values > 0
    values, first = values[keep], first[keep]
    order = values[np.argsort(first)]
    table = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    table[order] = np.arange(start, start + order.size, dtype=np.uint32)
    return table[labels], start + int(order.size)


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels = np.where(small[labels], 0, labels)
    return labels


def watershed_foreground(probabilities: np.ndarray, threshold: float | None = 0.5) -> np.ndarray:
    """Pixels that belong to an object: ``p(background) < threshold``, or with
    ``threshold`` None where background is not the likeliest class."""
    p = np.asarray(probabilities)
    if threshold is None:
        return np.argmax(p, axis=-1) != BACKGROUND
    return p[..., BACKGROUND] < threshold


def watershed_objects(
    probabilities: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float | None = 0.5,
    min_seed_size: int = 0,
) -> np.ndarray:
    """Objects (int32, 0 = background) from ``(Y, X, 3)`` or ``(Z, Y, X, 3)`` background/interior/border
    probabilities: seeds are the connected parts of the foreground (see
    :func:`watershed_foreground`) where the interior is the likeliest class, then a
    watershed on ``1 - p(interior)`` grows them over the foreground. Seeds smaller than
    ``min_seed_size`` pixels are dropped (specks of interior that would split an object);
    a foreground part left without a seed becomes an object of its own. Only pixels in
    ``mask`` (when given) are labelled."""
    from scipy.ndimage import label
    from skimage.segmentation import watershed

    p = np.asarray(probabilities, np.float32)
    best = np.argmax(p, axis=-1)
    foreground = watershed_foreground(p, threshold)
    if mask is not None:
        foreground &= mask
    if not foreground.any():
        return np.zeros(foreground.shape, np.int32)
    seeds, n_seeds = label(foreground & (best == INTERIOR), structure=full_connectivity(foreground.ndim))
    if min_seed_size > 1 and n_seeds:
        small = np.bincount(seeds.ravel()) < min_seed_size
        small[0] = False
        if small.any():
            seeds[small[seeds]] = 0
    objects = watershed(1.0 - p[..., INTERIOR], seeds, mask=foreground, connectivity=foreground.ndim).astype(np.int32)
    rest = foreground & (objects == 0)
    if rest.any():
        extra, _ = label(rest, structure=full_connectivity(rest.ndim))
        objects = np.where(extra > 0, extra + n_seeds, objects).astype(np.int32)
    return objects


def grow_objects(objects: np.ndarray, probabilities: np.ndarray, threshold: float, mask=None) -> np.ndarray:
    """Objects grown by a watershed on ``1 - p(interior)`` over the pixels where
    ``p(background) < threshold`` (and in ``mask``, when given): a looser threshold for
    the objects' extent only, so that no object is added, removed or merged."""
    from skimage.segmentation import watershed

    objects = np.asarray(objects)
    if not objects.any():
        return objects
    p = np.asarray(probabilities, np.float32)
    reach = (p[..., BACKGROUND] < threshold) | (objects > 0)
    if mask is not None:
        reach &= mask
    return watershed(1.0 - p[..., INTERIOR], objects, mask=reach, connectivity=reach.ndim).astype(np.int32)


def component_objects(
    class_map: np.ndarray,
    background: int,
    *,
    split: bool = False,
    mask: np.ndarray | None = None,
    top_margin: bool = False,
) -> np.ndarray:
    """Objects (int32) of a class map: the connected parts of the pixels of every class
    but ``background`` (8-connectivity), optionally split where a distance transform has
    several peaks.

    ``top_margin`` says the rows above the first are known not to belong to the parts
    (so the distance transform measures them as outside); used when streaming bands.
    """
    from scipy.ndimage import distance_transform_edt, label

    part = np.asarray(class_map) != background
    if mask is not None:
        part &= mask
    parts, n = label(part, structure=full_connectivity(part.ndim))
    if not split or not n:
        return parts.astype(np.int32)
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    # With a top margin, one row (or plane) of outside is added above, then cut off.
    distance = distance_transform_edt(np.pad(part, [(1, 0)] + [(0, 0)] * (part.ndim - 1)))[1:] if top_margin else None
    distance = distance_transform_edt(part) if distance is None else distance
    # Peaks at least a pixel above their surroundings: one per round blob.
    peaks, _ = label(h_maxima(distance, 1.0).astype(bool) & part, structure=full_connectivity(part.ndim))
    parts = watershed(-distance, peaks, mask=part, connectivity=part.ndim)
    rest = part & (parts == 0)
    if rest.any():
        extra, _ = label(rest, structure=full_connectivity(rest.ndim))
        parts = np.where(extra > 0, extra + parts.max(), parts)
    return parts.astype(np.int32)


class ObjectMaker:
    """How to turn class probabilities into objects.

    Args:
        method: ``watershed`` (an instance model's background/interior/border classes)
            or ``components`` (connected parts of the pixels of all classes but the
            background: the class of value 0, else the lowest value).
        class_values: The model's class values, in class-index order.
        min_size: Objects smaller than this many pixels are removed.
        split: With ``components``, split touching blobs with a distance transform.
        threshold: With ``watershed``, the foreground is where ``p(background)`` is
            below this (None: where background is not the likeliest class).
        min_seed_size: With ``watershed``, seeds smaller than this many pixels are dropped.
        extent_threshold: With ``watershed``, the objects found are then grown over the
            pixels where ``p(background)`` is below this (above ``threshold``; None: not
            grown). It moves the objects' edges only: see :func:`grow_objects`.
    """

    def __init__(
        self,
        method: str,
        class_values: list[int],
        *,
        min_size: int = 0,
        split: bool = False,
        threshold: float | None = 0.5,
        min_seed_size: int = 0,
        extent_threshold: float | None = None,
    ):
        if method not in ("watershed", "components"):
            raise InputError(f"objects are made by 'watershed' or 'components' (received {method!r})")
        if method == "watershed" and len(class_values) != 3:
            raise InputError(
                "the watershed needs a model trained on instances (background, interior, border); "
                f"this model has classes {class_values}: use instances='components'"
            )
        if min_size < 0:
            raise InputError(f"minimum object size must not be negative (received {min_size})")
        if extent_threshold is not None and not 0 < extent_threshold <= 1:
            raise InputError(f"the objects' extent threshold must be in (0, 1] (received {extent_threshold})")
        self.method = method
        self.class_values = list(class_values)
        self.min_size = int(min_size)
        self.split = bool(split)
        self.threshold = threshold
        self.min_seed_size = int(min_seed_size)
        grows = method == "watershed" and extent_threshold is not None and extent_threshold > (threshold or 0.5)
        self.extent_threshold = float(extent_threshold) if grows else None
        #: Background class index for components: the class of value 0, else the lowest.
        values = np.asarray(class_values)
        self.background = int(np.flatnonzero(values == 0)[0]) if (values == 0).any() else int(np.argmin(values))

    def objects(self, probabilities: np.ndarray, mask=None, *, top_margin: bool = False) -> np.ndarray:
        """Objects (int32, not yet numbered in order) of ``(..., classes)`` probabilities of a plane or volume."""
        if self.method == "watershed":
            found = watershed_objects(probabilities, mask, self.threshold, self.min_seed_size)
        else:
            found = component_objects(
                np.argmax(probabilities, axis=-1), self.background, split=self.split, mask=mask, top_margin=top_margin
            )
        found = _remove_small(found, self.min_size)
        if self.extent_threshold is not None:
            found = grow_objects(found, probabilities, self.extent_threshold, mask)
        return found

    def foreground(self, probabilities: np.ndarray) -> np.ndarray:
        """Pixels that may belong to an object (the extent of what :meth:`objects` labels)."""
        if self.method == "watershed":
            core = watershed_foreground(probabilities, self.threshold)
            if self.extent_threshold is None:
                return core
            return core | (np.asarray(probabilities)[..., BACKGROUND] < self.extent_threshold)
        return np.argmax(probabilities, axis=-1) != self.background

    def label_plane(self, probabilities: np.ndarray) -> np.ndarray:
        """Objects of a whole plane, numbered 1..N in raster order of their first pixel."""
        labels, _ = _relabel_sequential(self.objects(probabilities))
        return labels


class PlaneNumbering:
    """Numbers the objects of consecutive planes of a stack on from the last plane's, so
    that every object of the stack has its own label."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, plane_objects: np.ndarray) -> np.ndarray:
        """``plane_objects`` (numbered 1..n) shifted past the objects counted so far (uint32)."""
        plane_objects = np.asarray(plane_objects)
        numbered = np.where(plane_objects > 0, plane_objects.astype(np.uint32) + np.uint32(self.count), 0)
        self.count += int(plane_objects.max(initial=0))
        return numbered.astype(np.uint32, copy=False)

    def fit(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` in the smallest unsigned type that holds every number given."""
        return labels.astype(smallest_int_dtype(max(self.count, 1)), copy=False)


class BandStitcher:
    """Objects of a plane whose probabilities arrive in bands of rows, top to bottom, with
    the same objects as :meth:`ObjectMaker.label_plane` on the whole plane (up to their
    numbering), objects that cross band edges included.

    A foreground region is segmented once it is complete (it does not touch the last row
    received); rows are released as soon as no unfinished region reaches them. Only the
    rows of unfinished regions are held, so the memory is that of the tallest region.
    """

    def __init__(self, maker: ObjectMaker, height: int):
        self.maker = maker
        self.height = int(height)
        self.next_id = 1
        self._probs: np.ndarray | None = None
        self._done: np.ndarray | None = None  # labels of finished regions in held rows
        self._top = 0

    def add(self, band: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Take the next band of ``(rows, X, classes)`` probabilities; yield
        ``(row_start, labels)`` blocks (uint32) that are final, in order."""
        from scipy.ndimage import find_objects, label

        band = np.asarray(band, np.float32)
        if self._probs is None:
            self._probs = band
            self._done = np.zeros(band.shape[:-1], np.uint32)
        else:
            self._probs = np.concatenate([self._probs, band])
            self._done = np.concatenate([self._done, np.zeros(band.shape[:-1], np.uint32)])
        probs, done = self._probs, self._done
        final = self._top + probs.shape[0] >= self.height
        open_ = self.maker.foreground(probs) & (done == 0)
        regions, _ = label(open_, structure=full_connectivity(open_.ndim))
        if final:
            unfinished = np.zeros(0, np.int64)
        else:
            unfinished = np.unique(regions[-1])
            unfinished = unfinished[unfinished > 0]
        complete = open_ & ~np.isin(regions, unfinished)
        if complete.any():
            found = self.maker.objects(probs, complete, top_margin=self._top > 0)
            numbered, self.next_id = _relabel_sequential(found, self.next_id)
            done[complete] = numbered[complete]
        if final:
            cut = probs.shape[0]
        elif unfinished.size:
            boxes = find_objects(regions)
            cut = min(boxes[int(r) - 1][0].start for r in unfinished)
        else:
            cut = probs.shape[0]
        if cut > 0:
            yield self._top, done[:cut].copy()
            self._probs, self._done = probs[cut:], done[cut:]
            self._top += cut
