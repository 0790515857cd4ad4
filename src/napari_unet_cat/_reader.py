"""napari reader for labelme ``.json`` annotations: the image and a Labels layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import read_image
from .labelme import is_labelme_file, read_labelme


def get_reader(path):
    """Return a reader if ``path`` is a labelme annotation file, else None (napari asks)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_labelme_file(path):
        return None
    return read_labelme_layers


def read_labelme_layers(path):
    """The annotated image (when found) and its rasterised labels, with label names kept."""
    if isinstance(path, list):
        path = path[0]
    path = Path(path)
    ann = read_labelme(path, load_image=True, read_image=read_image)
    names = {int(v): k for v, k in ann.names.items()}
    layers = []
    if ann.image is not None:
        rgb = ann.image.ndim == 3 and ann.image.shape[-1] in (3, 4)
        layers.append((np.asarray(ann.image), {"name": path.stem, "rgb": rgb}, "image"))
    meta = {"name": f"{path.stem} labels", "metadata": {"label_names": names, "source": str(path)}}
    layers.append((ann.labels, meta, "labels"))
    return layers
