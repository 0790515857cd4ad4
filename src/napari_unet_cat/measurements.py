"""Measurements of objects: one row per object, computed with scikit-image's ``regionprops_table``.

:func:`measure` takes a label image (objects numbered 1..N, or a class map whose classes
are split into their connected parts) and, optionally, the image it was made from (its
values as stored: not normalized). Columns, 2D and 3D alike:

- ``label`` (and ``class`` for a class map: the class value of each part);
- ``area`` (pixels, voxels in 3D), ``centroid_*`` and ``bbox_*`` (pixels, axes in order);
- ``mean``/``min``/``max`` of the image in the object, per channel (``mean_c0``...);
- ``eccentricity`` (2D), ``solidity``, ``major_axis``/``minor_axis`` (pixels);
- with a pixel size, the same sizes in physical units: ``area_um2`` (``volume_um3`` in
  3D), ``centroid_*_um``, ``major_axis_um``, ``minor_axis_um`` (``um``: the unit given).

:func:`write_csv` writes a table atomically; :func:`summarize` gives one row per image
(count, mean and median size) for a folder's ``objects.csv``.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError

AXIS_NAMES = {2: ("y", "x"), 3: ("z", "y", "x")}
#: The shape descriptors, and the spatial ranks scikit-image computes them in.
SHAPES_2D = ("eccentricity", "solidity", "axis_major_length", "axis_minor_length")
SHAPES_3D = ("solidity", "axis_major_length", "axis_minor_length")
#: Our column names for scikit-image's.
RENAMED = {"axis_major_length": "major_axis", "axis_minor_length": "minor_axis"}

Table = dict[str, np.ndarray]


def measure(
    labels,
    image=None,
    *,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    classes: bool = False,
    background: int = 0,
    name: str = "labels",
) -> Table:
    """One row per object of ``labels``: its size, place, shape and intensities.

    Args:
        labels: A 2D or 3D label image: objects numbered (0 is background) or, with
            ``classes``, a class map whose classes are split into connected parts.
        image: The image the labels were made from, with the labels' shape or that
            shape plus a last axis of channels; None for sizes and shapes only.
        pixel_size: The size of a pixel along each axis of ``labels`` (``(y, x)`` or
            ``(z, y, x)``), for the physical columns; None for pixels only.
        unit: The unit of ``pixel_size``, used in the physical columns' names.
        classes: ``labels`` is a class map: each class other than ``background`` is split
            into its connected parts, numbered in one sequence, with a ``class`` column.
        background: The class value that is not an object, with ``classes``.
        name: How to call the labels in error messages.

    Returns:
        Columns of equal length, by name (see the module's description).

    Raises:
        InputError: The labels are not 2D or 3D, the image's shape does not fit them,
            or the pixel size has the wrong number of entries.
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    ndim = labels.ndim
    if ndim not in AXIS_NAMES:
        raise InputError(f"{name} must be 2D or 3D to measure; received shape {labels.shape}")
    values = _intensity_image(image, labels.shape, name)
    object_classes = None
    if classes:
        labels, object_classes = _split_classes(labels, background)
    elif labels.dtype.kind not in "iub":
        raise InputError(f"{name} holds {labels.dtype} values; objects are numbered with integers")
    properties = ["label", "area", "centroid", "bbox", *(SHAPES_2D if ndim == 2 else SHAPES_3D)]
    if values is not None:
        properties += ["intensity_mean", "intensity_min", "intensity_max"]
    with warnings.catch_warnings():
        # An object too thin for a convex hull (one plane, one row) has no solidity:
        # scikit-image warns and gives inf or NaN, which the table keeps as it is.
        warnings.simplefilter("ignore", (UserWarning, RuntimeWarning))
        found = regionprops_table(labels.astype(np.int64, copy=False), values, properties=properties)
    table = _named_columns(found, ndim, values)
    if object_classes is not None:
        table = {"label": table["label"], "class": object_classes[table["label"]], **table}
    if pixel_size is not None:
        table.update(_physical_columns(table, pixel_size, ndim, unit, name))
    return table


def _intensity_image(image, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """``image`` as ``(*shape, channels)`` float64 (its values as stored), or None."""
    if image is None:
        return None
    values = np.asarray(image)
    if values.shape == shape:
        values = values[..., None]
    if values.shape[:-1] != shape:
        raise InputError(
            f"the image of shape {values.shape} does not fit {name} of shape {shape} (expected {shape}, or that "
            "with a last axis of channels)"
        )
    return values.astype(np.float64, copy=False)


def _split_classes(class_map: np.ndarray, background: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected parts of each class but ``background``, numbered in one sequence, and
    the class of each number (index 0: background)."""
    from scipy.ndimage import label

    objects = np.zeros(class_map.shape, np.int64)
    classes = [background]
    structure = np.ones((3,) * class_map.ndim, bool)
    for value in np.unique(class_map):
        if value == background:
            continue
        parts, n = label(class_map == value, structure=structure)
        objects[parts > 0] = parts[parts > 0] + len(classes) - 1
        classes += [int(value)] * n
    return objects, np.asarray(classes)


def _named_columns(found: dict, ndim: int, values) -> Table:
    """scikit-image's columns under our names, in a stable order."""
    axes = AXIS_NAMES[ndim]
    table: Table = {"label": np.asarray(found["label"]), "area": np.asarray(found["area"])}
    table.update({f"centroid_{a}": np.asarray(found[f"centroid-{i}"]) for i, a in enumerate(axes)})
    table.update({f"bbox_{a}_start": np.asarray(found[f"bbox-{i}"]) for i, a in enumerate(axes)})
    table.update({f"bbox_{a}_stop": np.asarray(found[f"bbox-{i + ndim}"]) for i, a in enumerate(axes)})
    for shape in SHAPES_2D if ndim == 2 else SHAPES_3D:
        table[RENAMED.get(shape, shape)] = np.asarray(found[shape])
    if values is not None:
        channels = values.shape[-1]
        for stat in ("mean", "min", "max"):
            for c in range(channels):
                key = f"intensity_{stat}" if channels == 1 and f"intensity_{stat}" in found else f"intensity_{stat}-{c}"
                column = stat if channels == 1 else f"{stat}_c{c}"
                table[column] = np.asarray(found[key])
    return table


def _physical_columns(table: Table, pixel_size: Sequence[float], ndim: int, unit: str, name: str) -> Table:
    """Sizes and places in ``unit``: area or volume, centroid, axis lengths."""
    size = np.asarray(pixel_size, np.float64)
    if size.shape != (ndim,) or not np.all(size > 0):
        raise InputError(
            f"the pixel size needs {ndim} positive values for {ndim}D {name} ({', '.join(AXIS_NAMES[ndim])}); "
            f"received {tuple(pixel_size)}"
        )
    physical: Table = {}
    area = "area" if ndim == 2 else "volume"
    physical[f"{area}_{unit}{ndim}"] = table["area"] * float(np.prod(size))
    for axis, step in zip(AXIS_NAMES[ndim], size):
        physical[f"centroid_{axis}_{unit}"] = table[f"centroid_{axis}"] * step
    if np.allclose(size, size[0]):  # axis lengths have one scale only where pixels are square
        physical[f"major_axis_{unit}"] = table["major_axis"] * size[0]
        physical[f"minor_axis_{unit}"] = table["minor_axis"] * size[0]
    return physical


def table_rows(table: Table) -> int:
    return len(next(iter(table.values()))) if table else 0


def to_csv_text(table: Table) -> str:
    """The table as CSV text: a header, then one line per object."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(table))
    columns = [np.asarray(v) for v in table.values()]
    for i in range(table_rows(table)):
        writer.writerow([_cell(column[i]) for column in columns])
    return out.getvalue()


def _cell(value) -> str:
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, (np.floating, float)):
        return f"{float(value):.6g}"
    return str(value)


def write_csv(path: str | os.PathLike, table: Table) -> Path:
    """Write ``table`` as CSV, atomically (the file is complete or absent)."""
    from .io import atomic_write

    text = to_csv_text(table)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_csv(path: str | os.PathLike) -> Table:
    """A table written by :func:`write_csv` (numbers as float, ``label``/``class`` as int)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise InputError(f"{path} is empty: no header")
    header, body = rows[0], rows[1:]
    table: Table = {}
    for i, column in enumerate(header):
        kind = np.int64 if column in ("label", "class") or column.startswith("bbox_") else np.float64
        table[column] = np.asarray([row[i] for row in body], dtype=kind)
    return table


def summarize(name: str, table: Table) -> dict[str, float | int | str]:
    """One row of a folder's summary: the image, its object count and sizes."""
    areas = table.get("area", np.zeros(0))
    row: dict[str, float | int | str] = {
        "image": name,
        "objects": int(len(areas)),
        "mean_area": float(np.mean(areas)) if len(areas) else 0.0,
        "median_area": float(np.median(areas)) if len(areas) else 0.0,
    }
    for column, values in table.items():
        if column.startswith(("area_", "volume_")):
            row[f"mean_{column}"] = float(np.mean(values)) if len(values) else 0.0
    return row
