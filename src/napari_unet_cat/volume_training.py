"""Training data from volumes: which of their planes were painted, and 2D training planes
in every orientation the annotation reaches.

A person annotating a z-stack paints a few slices, in whichever orientation napari shows
(XY, XZ or YZ), and leaves the rest. :func:`unpainted_as_ignored` finds those slices: the
planes, along the axis where the fewest hold any label, that do hold one; the others are
not annotated (ignored by the loss), while within a painted slice 0 is background.

A 2D network learns from a volume's XY planes, and also from its XZ and YZ planes,
resampled so that their pixels are square (:func:`volume_planes`): the 2D-on-three-axes
mode then sees in each view what it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .arrays import IGNORE_INDEX
from .volume_modes import resample_z, z_stretch

#: A volume whose labels reach fewer than this share of its planes along some axis was
#: painted slice by slice along that axis (the others are not annotated).
PAINTED_SHARE = 0.5
VIEWS = ("xy", "xz", "yz")
#: Side views hold a whole volume in memory, resampled to square pixels: past this many
#: voxels (resampled), a 2D network learns from the stacks' XY planes alone.
SIDE_VIEW_VOXELS = 2**28
#: At most this many annotated XZ (and YZ) planes of a volume, evenly spread, train a 2D
#: network: neighbouring side planes look nearly alike, and their annotation is the XY
#: planes' own, seen edge-on; a 1024-wide stack would otherwise add 2,048 planes.
SIDE_VIEW_PLANES = 256


def is_z_stack(axes: str | None) -> bool:
    """Whether canonical ``axes`` hold z-stacks: a Z, the last stack axis (``ZYX``,
    ``TZYXC``...)."""
    return axes is not None and "Z" in axes and axes.index("Z") == len(axes) - 3 - (axes[-1] in "CS")


def painted_axis(labels: np.ndarray) -> int | None:
    """The axis of a ``(Z, Y, X)`` label volume along which it was painted slice by slice
    (fewer than :data:`PAINTED_SHARE` of the planes hold a label, fewest first), or
    None for a volume annotated throughout (or not at all)."""
    labelled = np.asarray(labels) > 0
    if not labelled.any():
        return None
    shares = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        shares.append(labelled.any(axis=others).mean())
    axis = int(np.argmin(shares))
    return axis if shares[axis] < PAINTED_SHARE else None


def unpainted_as_ignored(labels: np.ndarray) -> np.ndarray:
    """``labels`` (``(Z, Y, X)``, int32) with the planes nobody painted set to -1 (not
    annotated), when the volume was painted slice by slice (see :func:`painted_axis`);
    unchanged (as int32) otherwise. Values already negative stay so."""
    out = np.asarray(labels).astype(np.int32, copy=True)
    axis = painted_axis(out)
    if axis is None:
        return out
    others = tuple(a for a in range(3) if a != axis)
    painted = (out > 0).any(axis=others)
    index = [slice(None)] * 3
    index[axis] = ~painted
    out[tuple(index)] = IGNORE_INDEX
    return out


def volume_planes(
    volume: np.ndarray,
    labels: np.ndarray,
    *,
    stretch: float = 1.0,
    views: Sequence[str] = VIEWS,
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """2D training planes of a volume ``(Z, Y, X[, C])`` and its labels ``(Z, Y, X)``:
    the XY planes, and (in ``views``) the XZ and YZ planes of the volume resampled along
    Z by ``stretch`` (pixels per Z step) so that their pixels are square, at most
    :data:`SIDE_VIEW_PLANES` of each. Unpainted slices are ignored
    (:func:`unpainted_as_ignored`); planes without any annotated pixel are left out. A
    lazy ``volume`` (dask, zarr) is read only at the annotated XY planes when ``views`` is
    ``("xy",)``. Returns ``(images, labels, views)``, one entry per plane."""
    labels = unpainted_as_ignored(labels)
    images_out, labels_out, names = [], [], []
    if "xy" in views:
        for z, label_plane in enumerate(labels):
            if (label_plane >= 0).any():
                images_out.append(np.ascontiguousarray(np.asarray(volume[z])))
                labels_out.append(np.ascontiguousarray(label_plane))
                names.append("xy")
    sides = [view for view in views if view != "xy"]
    if not sides:
        return images_out, labels_out, names
    # Resampled once for both views, integers in their own type (half a float32 copy's
    # bytes for 16-bit images); each view's planes are views of it until the chosen are copied.
    depth = max(1, round(labels.shape[0] * stretch))
    whole = np.asarray(volume)
    whole = resample_z(whole if whole.dtype.kind in "ui" else whole.astype(np.float32, copy=False), depth)
    whole_labels = resample_z(labels, depth, labels=True)
    for view in sides:
        order = (1, 0, 2) if view == "xz" else (2, 0, 1)
        image_view = np.transpose(whole, order + tuple(range(3, whole.ndim)))
        label_view = np.transpose(whole_labels, order)
        for k in side_planes(label_view):
            images_out.append(np.ascontiguousarray(image_view[k]))
            labels_out.append(np.ascontiguousarray(label_view[k]))
            names.append(view)
    return images_out, labels_out, names


def side_planes(label_view: np.ndarray) -> np.ndarray:
    """The planes of ``label_view`` (planes first) a 2D network trains on: those holding
    an annotated pixel, at most :data:`SIDE_VIEW_PLANES` of them, evenly spread."""
    annotated = np.flatnonzero((label_view >= 0).any(axis=(1, 2)))
    if annotated.size <= SIDE_VIEW_PLANES:
        return annotated
    return annotated[np.linspace(0, annotated.size - 1, SIDE_VIEW_PLANES).round().astype(int)]


def planes_of_volumes(
    images: Sequence,
    labels: Sequence,
    names: Sequence[str],
    axes: Sequence[str | None],
    *,
    stretch: float | Sequence[float] = 1.0,
    views: Sequence[str] = VIEWS,
) -> tuple[list, list, list[str], list[str | None], list[int]]:
    """A 2D network's training inputs, with each z-stack (canonical ``axes`` naming a Z,
    Z the last stack axis: ``ZYX``, ``TZYXC``...) replaced by its planes in ``views``
    (:func:`volume_planes`, side views stretched by ``stretch``: one for all, or one
    per image); other images pass unchanged. Returns ``(images, labels,
    names, axes, sources)``, a plane named ``<name> xz 12`` after its volume, view and
    place; ``sources`` numbers the volume each entry came from (the Trainer's ``sources``:
    validation then holds out whole volumes, never a plane beside a training one)."""
    out = ([], [], [], [], [])
    source = 0
    stretches = [float(stretch)] * len(images) if np.isscalar(stretch) else list(stretch)
    for image, lab, name, ax, image_stretch in zip(images, labels, names, axes, stretches):
        if not is_z_stack(ax):
            for store, value in zip(out, (image, lab, name, ax, source)):
                store.append(value)
            source += 1
            continue
        z = ax.index("Z")
        plane_axes = ax[z + 1 :]
        for index in np.ndindex(*np.shape(image)[:z]):
            volume = image[index] if index else image
            found = volume_planes(volume, np.asarray(lab[index]), stretch=image_stretch, views=views)
            where = f"{name} {'/'.join(map(str, index))} " if index else f"{name} "
            for k, (plane, plane_labels, view) in enumerate(zip(*found)):
                for store, value in zip(out, (plane, plane_labels, f"{where}{view} {k}", plane_axes, source)):
                    store.append(value)
            source += 1
    return out


def stack_training_planes(
    images: Sequence,
    labels: Sequence,
    names: Sequence[str],
    axes: Sequence[str | None],
    *,
    voxel_size: Sequence[float] | None = None,
    voxel_sizes: Sequence[Sequence[float] | None] | None = None,
    side_views: bool = True,
) -> tuple[list, list, list[str], list[str | None], list[int], str]:
    """A 2D network's training inputs from images among which are z-stacks: their XY
    planes, and with ``side_views`` their XZ and YZ planes stretched along Z by their
    voxel size ``(Z, Y, X)`` (square pixels; 1 when not known), unless a stack is too
    large to hold whole (:data:`SIDE_VIEW_VOXELS`). Each image's size is its entry of
    ``voxel_sizes`` where that is given, else ``voxel_size``. Returns
    :func:`planes_of_volumes`'s ``(images, labels, names, axes, sources)`` and a note
    that says what was used."""
    own = list(voxel_sizes) if voxel_sizes is not None else [None] * len(images)
    if len(own) != len(images):
        raise ValueError(f"voxel_sizes needs one entry per image ({len(images)}), received {len(own)}")
    stretches = [z_stretch(size if size is not None else voxel_size) for size in own]
    sizes = [
        np.prod(np.shape(im)[a.index("Z") : a.index("Z") + 3]) * stretch
        for im, a, stretch in zip(images, axes, stretches)
        if is_z_stack(a)
    ]
    largest = max(sizes, default=0)
    views = VIEWS if side_views and largest <= SIDE_VIEW_VOXELS else ("xy",)
    out = planes_of_volumes(images, labels, names, axes, stretch=stretches, views=views)
    planes = f"{len(out[0])} planes in all"
    if views == VIEWS:
        used = sorted({s for s, a in zip(stretches, axes) if is_z_stack(a)})
        stretched = f"{used[0]:.2f}x" if len(used) == 1 else f"{used[0]:.2f}x to {used[-1]:.2f}x"
        note = f"z-stacks: training on their XY, XZ and YZ planes ({planes}; side views stretched {stretched} in Z)"
    elif side_views:
        note = (
            f"z-stacks: training on their XY planes alone ({planes}): side views would hold a volume of "
            f"{largest / 1e6:.0f} megavoxels whole (at most {SIDE_VIEW_VOXELS / 1e6:.0f})"
        )
    else:
        note = f"stacks: training on their painted XY planes ({planes})"
    return (*out, note)
