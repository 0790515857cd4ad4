"""A 2D model's answer for a volume: its planes, stitched objects, or 3D objects.

A network of planes can still give a z-stack 3D objects (one label per object through
its planes):

- ``planes``: each plane on its own, objects numbered on from plane to plane (right for
  time series or stacks of unrelated planes, not for a z-stack);
- ``stitch``: objects found in each plane, then linked to the object of the plane
  before that they overlap most (intersection over union at least ``stitch_iou``), the
  cheapest way to 3D objects (what Cellpose calls stitching);
- ``xy``: the probabilities of every XY plane stacked into a volume, objects found in 3D
  (a 3D seeded watershed, or 3D connected parts);
- ``three-axes``: the same network also run on the XZ and YZ planes (resampled so that
  their pixels are square), the three probability volumes averaged, then objects in 3D.

A 3D model (:mod:`~napari_unet_cat.volume_inference`) needs none of this: its
probabilities are 3D already. These modes hold the volume's probabilities in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError

VOLUME_MODES = ("planes", "stitch", "xy", "three-axes")
#: The mode a 2D model gives a known z-stack when none is asked for (docs/benchmarks.md,
#: "Volumes").
DEFAULT_VOLUME_MODE = "three-axes"
#: ``stitch``: least overlap (IoU) for an object to continue one of the plane before.
STITCH_IOU = 0.25


def check_volume_mode(mode: str) -> str:
    if mode not in VOLUME_MODES:
        raise InputError(f"volume mode must be one of {', '.join(VOLUME_MODES)} (received {mode!r})")
    return mode


def z_stretch(voxel_size: Sequence[float] | None) -> float:
    """How many pixels (Y, X) one Z step spans: 1 when the voxel size is not known."""
    if not voxel_size or len(voxel_size) != 3 or min(voxel_size) <= 0:
        return 1.0
    return float(voxel_size[0] / np.mean(voxel_size[1:]))


def stitch_planes(labels: np.ndarray, min_iou: float = STITCH_IOU) -> np.ndarray:
    """Objects of consecutive planes (``(Z, Y, X)``, each plane's own numbers) linked
    into 3D objects: an object continues the object of the plane before that it
    overlaps with the highest IoU, if at least ``min_iou`` and not taken by a better
    match. Returns uint32 labels numbered 1..N."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"stitching needs a (Z, Y, X) stack of labels (received shape {labels.shape})")
    out = np.zeros(labels.shape, np.uint32)
    next_id = 1
    previous = None
    for z, plane in enumerate(labels):
        values = np.unique(plane[plane > 0])
        table = {}
        if previous is not None and values.size:
            table = _match(previous, plane, min_iou)
        mapped = np.zeros(int(plane.max(initial=0)) + 1, np.uint32)
        for v in values:
            if v in table:
                mapped[v] = table[v]
            else:
                mapped[v] = next_id
                next_id += 1
        out[z] = mapped[plane]
        previous = out[z]
    return out


def _match(previous: np.ndarray, plane: np.ndarray, min_iou: float) -> dict[int, int]:
    """``{object of plane: object of previous}`` for the best one-to-one overlaps."""
    both = (previous > 0) & (plane > 0)
    if not both.any():
        return {}
    pairs, counts = np.unique(np.stack([plane[both], previous[both]]), axis=1, return_counts=True)
    size_new = np.bincount(plane.ravel())
    size_old = np.bincount(previous.ravel())
    iou = counts / (size_new[pairs[0]] + size_old[pairs[1]] - counts)
    table: dict[int, int] = {}
    taken: set[int] = set()
    for k in np.argsort(-iou, kind="stable"):
        if iou[k] < min_iou:
            break
        new, old = int(pairs[0, k]), int(pairs[1, k])
        if new not in table and old not in taken:
            table[new] = old
            taken.add(old)
    return table


def resample_z(volume: np.ndarray, depth: int, *, labels: bool = False) -> np.ndarray:
    """``volume`` (``(Z, ...)``) resampled along Z to ``depth`` planes (linear; nearest for labels)."""
    from scipy.ndimage import zoom

    if volume.shape[0] == depth:
        return volume
    factors = (depth / volume.shape[0],) + (1,) * (volume.ndim - 1)
    return zoom(volume, factors, order=0 if labels else 1, mode="nearest", grid_mode=True)


def orthogonal_probabilities(model, volume: np.ndarray, *, stretch: float = 1.0, **options) -> np.ndarray:
    """Mean probabilities ``(Z, Y, X, classes)`` of a 2D ``model`` run on the XY, XZ and
    YZ planes of ``volume`` (``(Z, Y, X[, C])``, channels as the model reads them). The
    side views are taken of the volume resampled to square pixels (``stretch``: pixels
    per Z step) and brought back. ``options`` go to :meth:`UNetModel.predict`."""
    axes = "ZYX" + ("C" if volume.ndim == 4 else "")
    total = model.predict(volume, axes=axes, output="probabilities", **options)
    depth = volume.shape[0]
    iso = resample_z(np.asarray(volume, np.float32), max(1, round(depth * stretch)))
    # XZ planes: one per row Y (axes Y, Z, X); YZ planes: one per column X (axes X, Z, Y).
    for order in ((1, 0, 2), (2, 0, 1)):
        side = np.transpose(iso, order + tuple(range(3, iso.ndim)))
        probs = model.predict(side, axes=axes, output="probabilities", **options)
        back = np.transpose(probs, [*np.argsort(order).tolist(), 3])
        total += resample_z(back, depth)
    return total / 3


def volume_objects(model, probabilities: np.ndarray, *, instances: str | None = None, min_size: int | None = None):
    """3D objects (uint32, numbered 1..N) of ``(Z, Y, X, classes)`` probabilities of a
    2D model: its object maker run on the volume. The smallest object kept is the
    model's smallest plane object made a ball (in voxels), unless ``min_size`` is given."""
    from .instances import _relabel_sequential

    if min_size is None:
        area = model.config.min_object_size
        min_size = int(0.75 * area**1.5) if area else 0
    maker = model.object_maker(instances, min_size=min_size)
    maker.min_seed_size = int(0.75 * maker.min_seed_size**1.5) if maker.min_seed_size else 0
    labels, _ = _relabel_sequential(maker.objects(probabilities))
    return labels


def segment_volume(
    model,
    volume,
    *,
    mode: str = DEFAULT_VOLUME_MODE,
    voxel_size: Sequence[float] | None = None,
    output: str | None = None,
    instances: str | None = None,
    min_size: int | None = None,
    **options,
) -> np.ndarray:
    """Labels ``(Z, Y, X)`` of a z-stack ``volume`` (``(Z, Y, X[, C])``) by a 2D ``model``
    in volume ``mode`` (see the module's description); ``output`` ``classes`` gives the
    class map (``xy`` and ``three-axes`` from the volume's probabilities), else objects.
    ``options`` go to :meth:`UNetModel.predict`."""
    labels, _ = volume_answer(
        model, volume, mode=mode, voxel_size=voxel_size, output=output, instances=instances, min_size=min_size,
        **options,
    )  # fmt: skip
    return labels


def volume_answer(
    model, volume, *, mode: str, voxel_size=None, output=None, instances=None, min_size=None, **options
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels, probabilities)`` of :func:`segment_volume` (probabilities None in the
    ``planes`` and ``stitch`` modes, which find objects plane by plane)."""
    check_volume_mode(mode)
    volume = np.asarray(volume)
    axes = "ZYX" + ("C" if volume.ndim == 4 else "")
    if mode in ("planes", "stitch"):
        labels = model.predict(volume, axes=axes, output=output, instances=instances, min_size=min_size, **options)
        objects = model.wants_objects(output, instances)
        return (stitch_planes(labels) if mode == "stitch" and objects else labels), None
    if mode == "xy":
        probs = model.predict(volume, axes=axes, output="probabilities", **options)
    else:
        probs = orthogonal_probabilities(model, volume, stretch=z_stretch(voxel_size), **options)
    if not model.wants_objects(output, instances):
        return model.labels_from_probabilities(probs, output="classes"), probs
    return volume_objects(model, probs, instances=instances, min_size=min_size), probs


def resolve_volume_mode(model, axes: str | None, mode: str | None) -> str:
    """The volume mode a 2D ``model`` gives an image of canonical ``axes``: the mode
    asked for, else :data:`DEFAULT_VOLUME_MODE` where the axes name a Z, else ``planes``
    (a stack of unknown meaning, a time series). 3D models and foreign packages: ``planes``
    (their answer is whatever their network gives)."""
    if mode is not None:
        check_volume_mode(mode)
    if getattr(getattr(model, "config", None), "ndim", 3) != 2:
        return "planes"
    if mode is None:
        return DEFAULT_VOLUME_MODE if axes is not None and "Z" in axes else "planes"
    if mode != "planes" and (axes is None or "Z" not in axes):
        known = f"axes {axes}" if axes else "axes the file does not state"
        raise InputError(f"volume mode {mode!r} needs a Z axis, but the image has {known}: give --axes, e.g. ZYX")
    return mode


def segment_stack(
    model,
    image,
    axes: str,
    *,
    mode: str,
    voxel_size: Sequence[float] | None = None,
    output: str = "classes",
    probabilities: bool = False,
    **options,
) -> dict:
    """``{"labels", "probabilities"}`` of an image of canonical ``axes`` holding a Z
    (``TZYX``, ``ZYXC``...) by a 2D ``model`` in volume ``mode``, volume by volume (one
    per time point); probabilities only when asked for (and not in ``stitch`` mode)."""
    z = axes.index("Z")
    stack = len(axes) - 2 - (axes[-1] in "CS")
    if z != stack - 1:
        raise InputError(f"the Z axis must be the last stack axis, just before Y and X (received axes {axes})")
    from .instances import PlaneNumbering

    shape = np.shape(image)
    labels, probs = None, None
    objects = model.wants_objects(output, options.get("instances"))
    numbering = PlaneNumbering()  # each volume's objects numbered on from the volume before
    for index in np.ndindex(*shape[:z]):
        found, p = volume_answer(
            model, np.asarray(image[index]), mode=mode, voxel_size=voxel_size, output=output, **options
        )
        if labels is None:
            labels = np.zeros(shape[:z] + found.shape, np.uint32 if objects else found.dtype)
        labels[index] = numbering.add(found) if objects else found
        if probabilities and p is not None:
            probs = np.zeros(shape[:z] + p.shape, np.float32) if probs is None else probs
            probs[index] = p
    return {"labels": numbering.fit(labels) if objects else labels, "probabilities": probs}
