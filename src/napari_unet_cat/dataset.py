"""Training data in NumPy: annotated planes, the validation split, patches, augmentation.

Nothing here depends on a deep-learning backend; :mod:`napari_unet_cat.training` wraps
the sampler in a ``keras.utils.PyDataset``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .arrays import (
    IGNORE_INDEX,
    annotated_values,
    apply_value_map,
    encode_labels,
    get_plane,
    infer_layout,
    normalize,
    plane_indices,
    resize_plane,
    resize_yx,
    scaled_shape,
)
from .config import Normalization, working_scale
from .errors import InputError, TrainingStopped
from .instances import class_balance, instance_targets, looks_like_instances, separation_weights


@dataclass
class TrainingPlane:
    """One annotated plane, normalized, scaled and padded to at least a patch.

    ``targets`` holds class indices with -1 where not annotated; ``where`` lists the
    flat indices of each class's annotated pixels, for sampling patches around them.
    Planes of instance masks also carry ``instances`` (object ids, -1 not annotated)
    and the per-pixel loss ``weights`` made from them.
    """

    image: np.ndarray
    targets: np.ndarray
    source: str
    image_index: int = 0
    where: list[np.ndarray] = field(default_factory=list)
    instances: np.ndarray | None = None
    weights: np.ndarray | None = None
    #: The plane's shape before it was mirror-padded to a patch (None: not padded).
    unpadded: tuple[int, int] | None = None

    def index_annotations(self, n_classes: int) -> None:
        flat = self.targets.ravel()
        self.where = [np.flatnonzero(flat == k) for k in range(n_classes)]

    @property
    def n_annotated(self) -> int:
        return int(sum(len(w) for w in self.where))


def collect_classes(
    labels: Sequence[np.ndarray], *, mode: str, value_map: dict[int, int | str], names: Sequence[str]
) -> list[int]:
    """Sorted class values found in the label images (after the value map).

    In ``instances`` mode the classes are always background, interior and border
    (0, 1, 2); the labels must hold at least one object.
    """
    if mode == "instances":
        if not any((apply_value_map(plane, value_map) > 0).any() for lab in labels for plane in label_planes(lab)):
            raise InputError(f"no objects (nonzero values) in {', '.join(names) or 'the labels'}")
        return [0, 1, 2]
    found: set[int] = set()
    for lab, name in zip(labels, names):
        for plane in label_planes(lab):
            values = annotated_values(apply_value_map(plane, value_map), mode)
            if values.size and values.min() < 0:
                raise InputError(f"{name} has negative label values; labels must be 0 or more")
            found.update(int(v) for v in values)
    if not found:
        hint = " (in sparse mode 0 means 'not annotated')" if mode == "sparse" else ""
        raise InputError(f"no annotated pixels in {', '.join(names) or 'the labels'}{hint}")
    if len(found) < 2:
        only = next(iter(found))
        extra = " besides the background 0" if mode == "dense" else ""
        hint = (
            "; if 0 is the background of a full mask, use the dense label mode (0 = background)"
            if mode == "sparse"
            else ""
        )
        raise InputError(
            f"{', '.join(names) or 'the labels'} hold only one class (value {only}); annotate at least two "
            f"classes{extra}, for example the object and some background{hint}"
        )
    return sorted(found)


def label_planes(labels) -> Iterator[np.ndarray]:
    """The 2D planes of a label image (or stack) as NumPy arrays, read one at a time, so
    that a lazy (dask, zarr) stack is never loaded whole."""
    shape = np.shape(labels)
    if len(shape) <= 2:
        yield np.asarray(labels)
        return
    for index in np.ndindex(*shape[:-2]):
        yield np.asarray(labels[index])


def prepare_planes(
    images: Sequence,
    labels: Sequence,
    *,
    names: Sequence[str],
    class_values: Sequence[int],
    mode: str,
    value_map: dict[int, int | str],
    normalization: Normalization,
    scale: float,
    patch_size: int | Sequence[int],
    n_channels: int | None = None,
    border_width: int = 2,
    w0: float = 10.0,
    sigma: float = 5.0,
    should_stop: Callable[[], bool] | None = None,
    image_axes: Sequence[str | None] | None = None,
    class_balance_power: float = 0.5,
    class_weights: Sequence[float] | None = None,
    gray: bool = False,
    ndim: int = 2,
    long_side: int | None = None,
    sources: Sequence[int] | None = None,
) -> tuple[list[TrainingPlane], int]:
    """Annotated planes (or, with ``ndim=3``, volumes) of each (image, labels) pair,
    ready for sampling.

    Planes without any annotation are skipped. Returns the planes and the number of
    channels fed to the network. In ``instances`` mode the labels are object ids and
    become background/interior/border targets (``border_width`` pixels wide, at the
    training scale) with the U-Net paper's weight map (``w0``, ``sigma``; the class
    weights from ``class_balance_power``, see :func:`~napari_unet_cat.instances.class_balance`,
    or ``class_weights`` when given: a continued model keeps the weights it was trained with).
    ``should_stop`` is polled before each plane; when it returns True the preparation
    ends with :class:`~napari_unet_cat.errors.TrainingStopped`. ``image_axes`` gives each
    image's axes in the package's order (see :func:`~napari_unet_cat.arrays.to_canonical`;
    None: guessed). ``gray``: colour images become one channel, the mean of their colours.
    ``ndim=3`` takes the last stack axis as Z: each volume is one sample (``patch_size``
    then an int for every axis or a ``(Z, Y, X)`` tuple), its objects and weights 3D.
    ``long_side``: instead of ``scale``, each image is resized so its longer side is that
    many pixels. ``sources``: which source each image came from (the planes of one volume
    in every view share one; default: each image its own), kept as the planes'
    ``image_index``: validation holds out whole sources.
    """
    if mode == "instances" and class_weights is not None and len(class_weights) != 3:
        raise ValueError(
            "class_weights for instance targets needs 3 weights (background, interior, border), "
            f"received {list(class_weights)}"
        )
    if sources is not None and len(sources) != len(images):
        raise InputError(f"got {len(sources)} sources for {len(images)} images: give one source per image")
    planes: list[TrainingPlane] = []
    patch = patch_shape(patch_size, ndim)
    image_axes = list(image_axes) if image_axes is not None else [None] * len(images)
    for image_index, (image, lab, name, axes) in enumerate(zip(images, labels, names, image_axes)):
        layout = infer_layout(np.shape(image), n_channels=n_channels, axes=axes, name=f"image {name}", gray=gray)
        expected = layout.plane_shape + layout.spatial
        if tuple(np.shape(lab)) != expected:
            raise InputError(
                f"labels of {name} have shape {tuple(np.shape(lab))} but the image {np.shape(image)} needs "
                f"labels of shape {expected}"
            )
        if n_channels is None:
            n_channels = layout.used_channels
        elif layout.used_channels != n_channels:
            raise InputError(
                f"image {name} has {layout.used_channels} channels but other images have {n_channels}; "
                "all training images need the same channels"
            )
        for index in sample_indices(layout, ndim, name):
            if should_stop is not None and should_stop():
                raise TrainingStopped("stopped while preparing the training data")
            where = f"{name} {'plane' if ndim == 2 else 'volume'} {index}" if index else name
            plane = _prepare_sample(
                image, lab[index], layout, index, where, mode=mode, class_values=class_values, value_map=value_map,
                normalization=normalization, scale=working_scale(scale, long_side, layout.spatial), patch=patch,
                border_width=border_width,
            )  # fmt: skip
            if plane is not None:
                plane.image_index = sources[image_index] if sources is not None else image_index
                planes.append(plane)
    if not planes:
        raise InputError(f"no plane of {', '.join(names)} has annotated pixels")
    if mode == "instances":
        if class_weights is not None:
            balance = np.asarray(class_weights, np.float32)
        else:
            balance = class_balance([p.targets for p in planes], power=class_balance_power)
        for p in planes:
            weights = balance[np.maximum(p.targets, 0)] + separation_weights(p.instances, p.targets, w0=w0, sigma=sigma)
            weights[p.targets < 0] = 0.0
            p.weights = weights.astype(np.float32)
    for p in planes:
        p.index_annotations(len(class_values))
    return planes, int(n_channels)


def sample_indices(layout, ndim: int, name: str) -> Iterator[tuple[int, ...]]:
    """Index tuples of the leading axes, one per plane (``ndim=2``) or per volume
    (``ndim=3``: the last stack axis is Z)."""
    if ndim == 2:
        return iter(plane_indices(layout))
    if not layout.plane_shape:
        raise InputError(f"{name} is a single plane of shape {layout.spatial}, but a 3D model needs volumes (Z, Y, X)")
    return np.ndindex(*layout.plane_shape[:-1])


def patch_shape(patch: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """A patch's shape: ``patch`` on every axis, or the sides given per axis."""
    if isinstance(patch, (int, np.integer)):
        return (int(patch),) * ndim
    shape = tuple(int(p) for p in patch)
    if len(shape) != ndim:
        raise InputError(f"a patch of {ndim} axes needs {ndim} sides (received {shape})")
    return shape


def _prepare_sample(
    image, labels, layout, index, where: str, *, mode, class_values, value_map, normalization, scale, patch,
    border_width,
) -> TrainingPlane | None:  # fmt: skip
    """One annotated plane or volume (None when nothing in it is annotated)."""
    ndim = len(patch)
    mapped = apply_value_map(np.asarray(labels), value_map)
    if ndim == 3 and mode != "sparse":  # a few painted slices: the others are not annotated
        from .volume_training import unpainted_as_ignored

        mapped = unpainted_as_ignored(mapped)
    spatial = mapped.shape
    work = scaled_shape(spatial[-2:], scale)
    resize = resize_plane if ndim == 2 else resize_yx
    instances = None
    if mode == "instances":
        if not (mapped >= 0).any():
            return None
        instances = resize(mapped, work, labels=True) if scale != 1.0 else mapped
        targets = instance_targets(instances, border_width)
    else:
        targets = encode_labels(mapped, class_values, mode, name=f"labels of {where}")
    if not (targets >= 0).any():
        return None
    sample = normalize(get_plane(image, layout, index), normalization)
    if scale != 1.0:
        sample = resize(sample, work)
        if instances is None:
            targets = resize(targets, work, labels=True)
    unpadded = targets.shape if any(n < p for n, p in zip(targets.shape, patch)) else None
    sample, targets, instances = pad_to_patch(sample, targets, patch, instances)
    return TrainingPlane(sample, targets, where, instances=instances, unpadded=unpadded)


def check_not_instances(labels: Sequence, names: Sequence[str], mode: str, value_map: dict) -> None:
    """Stop a class-mode run whose masks look like object ids, with what to do instead."""
    for lab, name in zip(labels, names):
        plane = next((p for p in label_planes(lab) if p.any()), None)
        if plane is None:
            continue
        mapped = apply_value_map(plane, value_map) if value_map else plane
        if looks_like_instances(mapped):
            n = int(np.unique(mapped[mapped > 0]).size)
            raise InputError(
                f"the labels of {name} look like an instance mask ({n} distinct values, each one connected "
                f"object), but the {mode} label mode makes every value a class of its own: train with "
                "--labels instances (label_mode='instances') for one label per object, or --map nonzero=1 "
                "for one class of all objects; if these really are that many classes, pass --many-classes "
                "(allow_many_classes=True)"
            )


def pad_to_patch(
    image: np.ndarray, targets: np.ndarray, patch: int | Sequence[int], instances: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror-pad a plane (or volume) smaller than a patch; the added label pixels are ignored."""
    short = [(0, max(0, p - n)) for n, p in zip(targets.shape, patch_shape(patch, targets.ndim))]
    if not any(b for _, b in short):
        return image, targets, instances
    mode = "reflect" if min(targets.shape) > 1 else "symmetric"
    image = np.pad(image, (*short, (0, 0)), mode=mode)
    targets = np.pad(targets, short, constant_values=IGNORE_INDEX)
    if instances is not None:
        instances = np.pad(instances, short, constant_values=IGNORE_INDEX)
    return image, targets, instances


def split_validation(
    planes: list[TrainingPlane], fraction: float, *, patch: int | Sequence[int], seed: int
) -> tuple[list[TrainingPlane], list[TrainingPlane]]:
    """Hold out planes for validation, or blocks of annotated pixels if one source.

    With several source images, ``fraction`` of the images (at least one) go to
    validation, as in the tutorial. With one image, ``fraction`` of the square blocks
    (a quarter patch wide) that hold annotations are held out: their pixels are ignored
    in training and are the only scored pixels in validation.
    """
    if fraction <= 0:
        return planes, []
    rng = np.random.default_rng(seed)
    sources = sorted({p.image_index for p in planes})
    if len(sources) >= 2:
        n_val = min(len(sources) - 1, max(1, round(fraction * len(sources))))
        held = set(rng.choice(sources, size=n_val, replace=False).tolist())
        train = [p for p in planes if p.image_index not in held]
        val = [p for p in planes if p.image_index in held]
        return train, val
    sides = patch_shape(patch, planes[0].targets.ndim)
    block = tuple(max(min(8, side), side // 4) for side in sides)
    candidates = []
    for i, p in enumerate(planes):
        counts = [math.ceil(n / b) for n, b in zip(p.targets.shape, block)]
        annotated = p.targets >= 0
        for at in np.ndindex(*counts):
            if annotated[_block(at, block)].any():
                candidates.append((i, at))
    n_val = round(fraction * len(candidates))
    if len(candidates) < 2 or n_val == 0:
        n_val = 1 if len(candidates) >= 5 else 0
    if n_val == 0:
        return planes, []
    chosen = rng.choice(len(candidates), size=n_val, replace=False)
    train = [
        TrainingPlane(
            p.image, p.targets.copy(), p.source, p.image_index, instances=p.instances, weights=p.weights,
            unpadded=p.unpadded,
        )
        for p in planes
    ]  # fmt: skip
    val = [
        TrainingPlane(
            p.image,
            np.full_like(p.targets, IGNORE_INDEX),
            p.source,
            p.image_index,
            instances=p.instances,
            weights=p.weights,
            unpadded=p.unpadded,
        )
        for p in planes
    ]
    for c in chosen:
        i, at = candidates[c]
        window = _block(at, block)
        val[i].targets[window] = planes[i].targets[window]
        train[i].targets[window] = IGNORE_INDEX
    n_classes = len(planes[0].where)
    keep_train = [p for p in train if (p.targets >= 0).any()]
    keep_val = [p for p in val if (p.targets >= 0).any()]
    for p in keep_train + keep_val:
        p.index_annotations(n_classes)
    return keep_train, keep_val


def _block(at: tuple[int, ...], block: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(a * b, (a + 1) * b) for a, b in zip(at, block))


def validation_patches(
    planes: list[TrainingPlane], patch: int | Sequence[int], *, max_patches: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fixed, un-augmented patches covering the annotated parts of validation planes.

    Returns ``(images, targets, instances)``; for planes with loss weights the targets
    are :func:`pack_targets` of targets and weights, and ``instances`` holds the object
    ids of each patch (None for class labels).
    """
    xs, ys, objects = [], [], []
    for p in planes:
        sides = patch_shape(patch, p.targets.ndim)
        for corner in itertools.product(*(_starts(n, side) for n, side in zip(p.targets.shape, sides))):
            window = tuple(slice(c, c + side) for c, side in zip(corner, sides))
            t = p.targets[window]
            if (t >= 0).any():
                xs.append(p.image[window])
                ys.append(t if p.weights is None else pack_targets(t, np.where(t >= 0, p.weights[window], 0)))
                if p.instances is not None:
                    objects.append(np.where(t >= 0, p.instances[window], 0))
    if len(xs) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(len(xs), max_patches, replace=False))
        xs = [xs[i] for i in keep]
        ys = [ys[i] for i in keep]
        objects = [objects[i] for i in keep] if objects else objects
    y = np.stack(ys)
    y = y.astype(np.float32) if planes[0].weights is not None else y.astype(np.int16)
    return np.stack(xs).astype(np.float32), y, (np.stack(objects) if objects else None)


def pack_targets(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Targets and per-pixel loss weights as one float32 array, the pair on the last axis
    (what :class:`~napari_unet_cat.losses.MaskedCrossEntropy` reads as weighted targets)."""
    return np.stack([targets.astype(np.float32), weights.astype(np.float32)], axis=-1)


def _starts(length: int, patch: int) -> list[int]:
    n = max(1, math.ceil(length / patch))
    if n == 1:
        return [0]
    return [round(i * (length - patch) / (n - 1)) for i in range(n)]


class PatchSampler:
    """Draws training patches that contain annotated pixels, with augmentation.

    Half of the patches are centred near a pixel of a class drawn uniformly (so that a
    class painted with a few strokes is seen as often as a large one), half near any
    annotated pixel. Planes are drawn in proportion to the patches their annotations
    cover, so a few strokes in a huge image are found as surely as a full mask.
    """

    def __init__(
        self,
        planes: list[TrainingPlane],
        patch: int | Sequence[int],
        *,
        augment: bool = True,
        elastic: bool = True,
        elastic_sigma: float | None = None,
    ):
        if not planes:
            raise InputError("no training planes with annotations")
        self.planes = planes
        #: The patch's sides, ``(Y, X)`` or ``(Z, Y, X)``; ``patch`` is its Y (and X) side.
        self.shape = patch_shape(patch, planes[0].targets.ndim)
        self.patch = self.shape[-1]
        self.augment = augment
        self.elastic = elastic
        self.elastic_sigma = elastic_sigma if elastic_sigma is not None else max(2.0, 0.03 * self.patch)
        area = float(np.prod(self.shape))
        weights = np.array([max(1.0, p.n_annotated / area) for p in planes])
        self.plane_weights = weights / weights.sum()
        self.n_channels = planes[0].image.shape[-1]

    def patches_per_epoch(self) -> int:
        """About one pass over every training plane."""
        area = float(np.prod(self.shape))
        return int(sum(max(1, round(p.targets.size / area)) for p in self.planes))

    @property
    def weighted(self) -> bool:
        """Whether targets carry per-pixel loss weights (instance masks)."""
        return self.planes[0].weights is not None

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((size, *self.shape, self.n_channels), np.float32)
        if self.weighted:
            y = np.empty((size, *self.shape, 2), np.float32)
        else:
            y = np.empty((size, *self.shape), np.int16)
        for i in range(size):
            x[i], y[i] = self.sample(rng)
        return x, y

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One patch and its targets (with their weights packed in, for instance planes)."""
        plane = self.planes[rng.choice(len(self.planes), p=self.plane_weights)]
        present = [w for w in plane.where if len(w)]
        if rng.random() < 0.5:
            pool = present[rng.integers(len(present))]
            flat = pool[rng.integers(len(pool))]
        else:
            total = sum(len(w) for w in present)
            k = rng.integers(total)
            for pool in present:
                if k < len(pool):
                    flat = pool[k]
                    break
                k -= len(pool)
        centre = np.unravel_index(int(flat), plane.targets.shape)
        window = tuple(
            slice(start, start + p)
            for start, p in (
                (int(np.clip(c - rng.integers(p), 0, n - p)), p)
                for c, n, p in zip(centre, plane.targets.shape, self.shape)
            )
        )
        x = plane.image[window]
        y = plane.targets[window]
        weights = None if plane.weights is None else plane.weights[window]
        if self.augment:
            if weights is None:
                x, y = augment_patch(rng, x, y, elastic=self.elastic, sigma=self.elastic_sigma)
            else:
                x, y, weights = augment_patch(
                    rng, x, y, elastic=self.elastic, sigma=self.elastic_sigma, weights=weights
                )
        return x, (y if weights is None else pack_targets(y, weights))


def augment_patch(
    rng: np.random.Generator,
    image: np.ndarray,
    targets: np.ndarray,
    *,
    elastic: bool = True,
    sigma: float = 4.0,
    weights: np.ndarray | None = None,
):
    """Random flips, 90-degree rotations, elastic deformation and intensity jitter.

    A volume's patch (``targets`` of ``(Z, Y, X)``) is turned in its Y-X plane and also
    flipped in Z, not deformed (elastic deformation is of planes). Returns ``(image,
    targets)``, or ``(image, targets, weights)`` when per-pixel loss ``weights`` are
    given (moved with the targets).
    """
    ndim = targets.ndim
    plane_axes = (ndim - 2, ndim - 1)  # Y and X, in the image (channels last) as in the targets
    k = int(rng.integers(4)) if targets.shape[-1] == targets.shape[-2] else 2 * int(rng.integers(2))
    image, targets = np.rot90(image, k, plane_axes), np.rot90(targets, k, plane_axes)
    weights = None if weights is None else np.rot90(weights, k, plane_axes)
    flips = [ndim - 1] if ndim == 2 else [ndim - 1, 0]
    for axis in flips:
        if rng.random() < 0.5:
            image, targets = np.flip(image, axis), np.flip(targets, axis)
            weights = None if weights is None else np.flip(weights, axis)
    if ndim == 2 and elastic and rng.random() < 0.5:
        if weights is None:
            image, targets = elastic_deform(rng, image, targets, sigma)
        else:
            image, targets, weights = elastic_deform(rng, image, targets, sigma, weights=weights)
    gain = rng.uniform(0.8, 1.2)
    offset = rng.uniform(-0.1, 0.1)
    image = image * np.float32(gain) + np.float32(offset)
    image, targets = np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(targets)
    if weights is None:
        return image, targets
    return image, targets, np.ascontiguousarray(weights, dtype=np.float32)


@lru_cache(maxsize=16)
def _cubic_upsampling(n: int, coarse: int = 3) -> np.ndarray:
    """The ``(n, coarse)`` matrix that upsamples ``coarse`` values to ``n`` by a cubic spline.

    A 2-D cubic-spline zoom is separable, so ``M @ grid @ M.T`` equals
    ``scipy.ndimage.zoom(grid, n / coarse, order=3, mode="nearest", grid_mode=True)``
    at a fraction of its cost (it ran at two thirds of the whole augmentation's time).
    """
    from scipy.ndimage import zoom

    matrix = zoom(np.eye(coarse), (n / coarse, 1), order=3, mode="nearest", grid_mode=True)[:n]
    matrix.setflags(write=False)
    return matrix


def _mirror(coords: np.ndarray, n: int) -> np.ndarray:
    """Coordinates reflected into ``[0, n - 1]`` about the edge pixels' centres (SciPy's
    ``mode="mirror"``: -1 -> 1, n -> n - 2)."""
    if n == 1:
        return np.zeros_like(coords)
    if coords.min() >= 0 and coords.max() <= n - 1:
        return coords
    period = 2 * (n - 1)
    folded = np.abs(coords) % period
    return np.where(folded > n - 1, period - folded, folded)


def warp_linear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``image`` ``(Y, X, C)`` sampled at ``(rows, cols)`` by bilinear interpolation,
    mirrored at the edges: :func:`scipy.ndimage.map_coordinates` with ``order=1`` and
    ``mode="mirror"``, for all channels in one pass."""
    h, w, n_channels = image.shape
    r, c = _mirror(rows, h), _mirror(cols, w)
    r0 = np.minimum(r.astype(np.intp), h - 1)  # floor: the coordinates are not negative
    c0 = np.minimum(c.astype(np.intp), w - 1)
    fr = (r - r0).astype(np.float32).reshape(-1, 1)
    fc = (c - c0).astype(np.float32).reshape(-1, 1)
    at = (r0 * w + c0).ravel()
    down = np.where(r0 < h - 1, w, 0).ravel()
    right = (c0 < w - 1).ravel().astype(np.intp)
    flat = image.reshape(-1, n_channels)

    def take(index):  # np.take: several times faster than fancy indexing here
        return np.take(flat, index, axis=0)

    top_left, bottom_left = take(at), take(at + down)
    top = top_left + (take(at + right) - top_left) * fc
    bottom = bottom_left + (take(at + down + right) - bottom_left) * fc
    return (top + (bottom - top) * fr).reshape(h, w, n_channels)


def warp_nearest(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``values`` ``(Y, X)`` sampled at the nearest pixel of ``(rows, cols)``, mirrored at
    the edges (``map_coordinates`` with ``order=0``, ``mode="mirror"``): labels stay labels."""
    h, w = values.shape[:2]
    r = np.minimum((_mirror(rows, h) + 0.5).astype(np.intp), h - 1)
    c = np.minimum((_mirror(cols, w) + 0.5).astype(np.intp), w - 1)
    return np.take(values.ravel(), (r * w + c).ravel()).reshape(h, w)


def elastic_deform(rng: np.random.Generator, image: np.ndarray, targets: np.ndarray, sigma: float, *, weights=None):
    """The U-Net paper's deformation: Gaussian displacements on a coarse 3x3 grid,
    interpolated bicubically to every pixel (linear for the image, nearest for labels
    and their loss weights). Returns ``(image, targets)``, or ``(image, targets,
    weights)`` when ``weights`` is given (None stays None)."""
    h, w = targets.shape
    coarse = rng.normal(0.0, sigma, size=(2, 3, 3))
    rows, cols = _cubic_upsampling(h), _cubic_upsampling(w)
    dy = rows @ coarse[0] @ cols.T
    dx = rows @ coarse[1] @ cols.T
    at_rows = (np.arange(h)[:, None] + dy).astype(np.float32)
    at_cols = (np.arange(w)[None, :] + dx).astype(np.float32)
    out = warp_linear(np.asarray(image, np.float32), at_rows, at_cols)
    warped = warp_nearest(targets, at_rows, at_cols)
    if weights is None:
        return out, warped
    return out, warped, warp_nearest(np.asarray(weights, np.float32), at_rows, at_cols)
