"""labelme annotations (the JSON files of the labelme tool): shapes rasterised to labels.

Shapes are drawn in file order, later shapes over earlier ones, as labelme itself does:
polygons, rectangles (two corners), circles (centre and a point on the rim), lines and
line strips (a few pixels wide), points (small discs), and masks (a PNG in base64 over a
bounding box). Each label name gets a class value; ``_background_`` is 0.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

BACKGROUND = "_background_"
LINE_WIDTH = 3
POINT_RADIUS = 3


@dataclass
class LabelmeAnnotation:
    """A rasterised labelme file: its image (if it can be found), labels and names."""

    labels: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    image: np.ndarray | None = None
    image_path: Path | None = None


def is_labelme_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a JSON file with labelme's ``shapes`` list."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("shapes"), list)


def label_names(paths: Iterable[str | os.PathLike], known: dict[str, int] | None = None) -> dict[str, int]:
    """Class values for every label name in the files: the names in ``known`` (a model's
    named classes, when one is trained further) keep its values; the others, sorted,
    get the next values (1, 2, ... when nothing is known)."""
    names: set[str] = set()
    for path in paths:
        names.update(shape.get("label", "") for shape in _load(Path(path))["shapes"])
    names.discard(BACKGROUND)
    values = {BACKGROUND: 0, **(known or {})}
    for name in sorted(names - set(values)):
        values[name] = max(values.values()) + 1
    return values


def read_labelme(
    path: str | os.PathLike,
    values: dict[str, int] | None = None,
    *,
    load_image: bool = False,
    read_image: Callable[[Path], np.ndarray] | None = None,
) -> LabelmeAnnotation:
    """Rasterise a labelme file.

    Args:
        path: The ``.json`` file.
        values: Class value of each label name (default: :func:`label_names` of this file).
        load_image: Also return the image (embedded ``imageData``, or ``imagePath``
            beside the JSON file).
        read_image: How to read an ``imagePath`` file (``napari_unet_cat.io`` passes
            its reader, so this module needs none of its own); default: Pillow.
    """
    from PIL import Image, ImageDraw

    path = Path(path)
    data = _load(path)
    values = values if values is not None else label_names([path])
    height, width = data.get("imageHeight"), data.get("imageWidth")
    image = None
    image_path = None
    if load_image or not (height and width):
        image, image_path = _image_of(path, data, read_image)
        if image is not None and not (height and width):
            height, width = image.shape[:2]
    if not (height and width):
        raise InputError(f"{path} gives no image size and its image cannot be found")
    canvas = Image.new("I", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for i, shape in enumerate(data["shapes"]):
        name = shape.get("label", "")
        if name not in values:
            raise InputError(f"{path}: shape {i} has label {name!r}, which has no class value")
        _draw(draw, canvas, shape, values[name], path, i)
    labels = np.asarray(canvas, dtype=np.int32)
    dtype = np.uint8 if labels.max() < 256 else np.uint16
    names = {v: k for k, v in values.items()}
    return LabelmeAnnotation(labels.astype(dtype), names, image, image_path)


def _load(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read labelme file {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise InputError(f"{path} is not a labelme annotation (no 'shapes' list)")
    return data


def _image_of(path: Path, data: dict, read_image=None) -> tuple[np.ndarray | None, Path | None]:
    from PIL import Image

    if data.get("imageData"):
        try:
            with Image.open(io.BytesIO(base64.b64decode(data["imageData"]))) as img:
                return np.asarray(img), None
        except Exception as err:
            raise InputError(f"{path}: its embedded image cannot be decoded ({err})") from None
    if data.get("imagePath"):
        candidate = (path.parent / data["imagePath"]).resolve()
        if candidate.exists():
            if read_image is None:
                with Image.open(candidate) as img:
                    return np.asarray(img), candidate
            return np.asarray(read_image(candidate)), candidate
    return None, None


def _draw(draw, canvas, shape: dict, value: int, path: Path, i: int) -> None:
    from PIL import Image

    kind = shape.get("shape_type") or "polygon"
    try:
        points = [(float(x), float(y)) for x, y in shape.get("points", [])]
    except (TypeError, ValueError):
        raise InputError(f"{path}: shape {i} has malformed points") from None
    needed = {"polygon": 3, "rectangle": 2, "circle": 2, "line": 2, "linestrip": 2, "point": 1, "points": 1}
    if kind in needed and len(points) < needed[kind]:
        raise InputError(f"{path}: shape {i} ({kind}) has {len(points)} points, needs {needed[kind]}")
    if kind == "polygon":
        draw.polygon(points, fill=value, outline=value)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = points[:2]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=value, outline=value)
    elif kind == "circle":
        (cx, cy), (px, py) = points[:2]
        r = float(np.hypot(px - cx, py - cy))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=value, outline=value)
    elif kind in ("line", "linestrip"):
        draw.line(points, fill=value, width=LINE_WIDTH)
    elif kind in ("point", "points"):
        for cx, cy in points:
            r = POINT_RADIUS
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=value, outline=value)
    elif kind == "mask":
        if not shape.get("mask") or len(points) < 1:
            raise InputError(f"{path}: shape {i} (mask) has no mask data")
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as img:
            mask = np.asarray(img).astype(bool)
        x0, y0 = (int(round(v)) for v in points[0])
        stamp = Image.fromarray((mask * 255).astype(np.uint8), mode="L")
        canvas.paste(value, (x0, y0, x0 + mask.shape[1], y0 + mask.shape[0]), stamp)
    else:
        raise InputError(f"{path}: shape {i} has unknown shape type {kind!r}")
