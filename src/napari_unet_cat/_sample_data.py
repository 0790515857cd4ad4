"""Sample data for napari's File > Open Sample menu."""

from __future__ import annotations

from .synthetic import make_image, strokes_from_mask


def synthetic_cells():
    """A synthetic image, a few painted strokes (sparse labels) and, hidden, its full mask."""
    image, mask = make_image((256, 256), seed=7)
    strokes = strokes_from_mask(mask, fraction=0.03, seed=7)
    return [
        (image, {"name": "synthetic cells"}, "image"),
        (strokes, {"name": "synthetic cells strokes"}, "labels"),
        (mask, {"name": "synthetic cells mask", "visible": False}, "labels"),
    ]


def chelsea_cat():
    """scikit-image's photo of Chelsea the cat, to paint strokes on (cat and background)."""
    from skimage import data

    return [(data.chelsea(), {"name": "chelsea", "rgb": True}, "image")]
