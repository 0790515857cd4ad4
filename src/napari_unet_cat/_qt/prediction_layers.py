"""The layers a prediction adds over its image: the labels (never over a person's edits),
the probabilities, the uncertainty map, and the outputs of bioimage.io packages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .layers import PREDICTION_SUFFIX

if TYPE_CHECKING:
    import napari

    from ..segmenter import UNetModel


#: Metadata key holding a checksum of what this plugin wrote into a prediction layer.
WRITTEN_KEY = "napari_unet_cat_written"


def _checksum(data: np.ndarray) -> int:
    import zlib

    return zlib.crc32(np.ascontiguousarray(data).view(np.uint8)) ^ hash((data.shape, str(data.dtype)))


def _prediction_name(viewer: napari.Viewer, base: str) -> tuple[str, object]:
    """The name for a new prediction and the layer it replaces (None: a new layer).

    A prediction layer the user has not edited is replaced; one with the user's
    corrections painted on it is kept, and the new prediction gets the next free
    numbered name (``cells U-Net [2]``, ...).
    """
    existing = next((lay for lay in viewer.layers if lay.name == base), None)
    if existing is None:
        return base, None
    written = existing.metadata.get(WRITTEN_KEY)
    if written is not None and written == _checksum(np.asarray(existing.data)):
        return base, existing
    n = 2
    while f"{base} [{n}]" in viewer.layers:
        n += 1
    return f"{base} [{n}]", None


def add_prediction(viewer: napari.Viewer, layer, labels: np.ndarray, model: UNetModel, probs=None, layer_axes=None):
    """Add the prediction as a Labels layer named after the image (and probabilities),
    in the image's place (its scale and translate along ``layer_axes``, the layer's axis
    of each axis of ``labels``). An earlier prediction of the same image is replaced
    unless the user has edited it: corrections are never lost."""
    name, replaced = _prediction_name(viewer, f"{layer.name}{PREDICTION_SUFFIX}")
    layer_axes = list(range(labels.ndim)) if layer_axes is None else list(layer_axes)
    scale = [layer.scale[a] for a in layer_axes]
    translate = [layer.translate[a] for a in layer_axes]
    metadata = {"label_names": model.class_names, "class_values": model.class_values}
    if model.is_instance_model:
        metadata["objects"] = True
    metadata[WRITTEN_KEY] = _checksum(labels)
    if replaced is not None:
        viewer.layers.remove(replaced)
    out = viewer.add_labels(labels, name=name, scale=scale, translate=translate, metadata=metadata)
    if probs is not None:
        names = [f"{layer.name} p({v})" for v in model.class_values]
        for old in names:  # one set of probability layers per image, the latest
            if old in viewer.layers:
                viewer.layers.remove(old)
        viewer.add_image(
            probs,
            channel_axis=-1,
            name=names,
            scale=scale,
            translate=translate,
            colormap="magma",
            visible=False,
        )
    return out


def add_uncertainty(viewer: napari.Viewer, layer, prediction, doubt: np.ndarray, layer_axes: list[int]) -> None:
    """Add the uncertainty map over ``layer`` (``<image> uncertainty``, 0 sure to 1 undecided)
    and rank the prediction's objects by it: their mean uncertainty goes into the Labels
    layer's features (an ``uncertainty`` column, with ``label``), most uncertain first,
    and ``metadata["least_sure"]`` lists the ten to review first."""
    from ..uncertainty import object_uncertainty

    name = f"{layer.name} uncertainty"
    if name in viewer.layers:
        viewer.layers.remove(name)
    place = {"scale": [layer.scale[a] for a in layer_axes], "translate": [layer.translate[a] for a in layer_axes]}
    viewer.add_image(doubt, name=name, colormap="inferno", contrast_limits=(0, 1), opacity=0.6, **place)
    ranked = object_uncertainty(np.asarray(prediction.data), doubt)
    prediction.features = {"label": ranked["label"], "uncertainty": ranked["uncertainty"]}
    prediction.metadata["least_sure"] = [int(v) for v in ranked["label"][:10]]


def add_package_outputs(viewer: napari.Viewer, layer, outputs: dict, model, layer_axes: list[int]):
    """Add a package's outputs over ``layer`` (``layer_axes``: the layer's axis of each
    axis of a prediction): label outputs as Labels layers, the others as Image layers, one
    per channel. Returns the first layer added."""
    place = {"scale": [layer.scale[a] for a in layer_axes], "translate": [layer.translate[a] for a in layer_axes]}
    added = []
    for output_id, values in outputs.items():
        name = f"{layer.name} {model.name}: {output_id}"
        channels = values.shape[-1] if values.ndim > len(layer_axes) else 0
        names = [f"{name} [{c}]" for c in range(channels)] if channels else [name]
        for old in names:  # the latest run's layers replace the last's
            if old in viewer.layers:
                viewer.layers.remove(old)
        if model.output_is_labels(output_id) and not channels:
            added.append(viewer.add_labels(values, name=name, **place))
        elif channels:
            added.extend(viewer.add_image(values, channel_axis=-1, name=names, colormap="magma", **place))
        else:
            added.append(viewer.add_image(values, name=name, colormap="magma", **place))
    return added[0]
