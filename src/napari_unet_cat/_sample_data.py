"""Sample data for napari's File > Open Sample menu."""

from __future__ import annotations

from .synthetic import make_image, make_instance_image, strokes_from_mask


def synthetic_cells():
    """A synthetic image, a few painted strokes (sparse labels) and, hidden, its full mask."""
    image, mask = make_image((256, 256), seed=7)
    strokes = strokes_from_mask(mask, fraction=0.03, seed=7)
    return [
        (image, {"name": "synthetic cells"}, "image"),
        (strokes, {"name": "synthetic cells strokes"}, "labels"),
        (mask, {"name": "synthetic cells mask", "visible": False}, "labels"),
    ]


def touching_cells():
    """Synthetic touching cells and their instance mask (one label per cell), to try the
    instance mode: Train U-Net offers it for this Labels layer."""
    image, instances = make_instance_image((256, 256), seed=7, n_objects=(45, 55))
    return [
        (image, {"name": "touching cells"}, "image"),
        (instances, {"name": "touching cells instances"}, "labels"),
    ]


def chelsea_cat():
    """scikit-image's photo of Chelsea the cat, to paint strokes on (cat and background)."""
    from skimage import data

    return [(data.chelsea(), {"name": "chelsea", "rgb": True}, "image")]
