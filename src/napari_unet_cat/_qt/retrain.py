"""Train on corrections: fine-tune the model on the prediction layers a person corrected,
then segment those images again, keeping the corrected layers (a person in the loop).

Segment records in each prediction layer's metadata which model and image made it and
what it wrote (:data:`SOURCE_KEY`); a layer whose data differs from that is corrected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UNetCatError
from .layers import layers_of

if TYPE_CHECKING:
    import napari

#: Metadata of a prediction layer: ``{"model", "image" (layer name), "written" (labels)}``.
SOURCE_KEY = "napari_unet_cat_source"


def remember_source(prediction, model, image_layer, labels: np.ndarray) -> None:
    """Record in ``prediction`` which model and image made it, and what it wrote."""
    prediction.metadata[SOURCE_KEY] = {"model": model, "image": image_layer.name, "written": np.array(labels)}


def corrected_layers(viewer: napari.Viewer) -> list[tuple]:
    """``(prediction layer, image layer, model, written labels)`` of every prediction
    that a person has changed since Segment wrote it, whose image is still open."""
    found = []
    for layer in layers_of(viewer, "labels"):
        source = layer.metadata.get(SOURCE_KEY)
        if not source or source["image"] not in viewer.layers:
            continue
        if not np.array_equal(np.asarray(layer.data), source["written"]):
            found.append((layer, viewer.layers[source["image"]], source["model"], source["written"]))
    return found


def retraining_inputs(viewer: napari.Viewer) -> dict:
    """What a round trains on, read on the GUI thread, or an error that says what is missing."""
    found = corrected_layers(viewer)
    if not found:
        raise UNetCatError(
            "no corrected prediction: segment an image, correct its objects (the brush, or Proofread objects), "
            "then train on the corrections"
        )
    models = {id(model) for _, _, model, _ in found}
    if len(models) > 1:
        raise UNetCatError("the corrected layers were made by different models: correct the results of one model")
    model = found[0][2]
    return {
        "model": model,
        "earlier": earlier_annotations(viewer, model, [layer for layer, _, _, _ in found]),
        "images": [np.asarray(image.data) for _, image, _, _ in found],
        "corrected": [np.asarray(layer.data).copy() for layer, _, _, _ in found],
        "before": [written for _, _, _, written in found],
        "names": [layer.name for layer, _, _, _ in found],
        "image_layers": [image for _, image, _, _ in found],
    }


def earlier_annotations(viewer: napari.Viewer, model, corrected_layers: list) -> tuple[list, list]:
    """``(images, labels)`` of the layers ``model`` was trained on in this session (see
    :meth:`Session.trained_on`) that are still open and not among ``corrected_layers``."""
    from .session import Session

    images, labels = [], []
    for image, annotation in Session.trained_on(model):
        if image in viewer.layers and annotation in viewer.layers and annotation not in corrected_layers:
            images.append(np.asarray(image.data))
            labels.append(np.asarray(annotation.data).copy())
    return images, labels


def retrain_job(*, model, images, corrected, before, names, earlier, seconds: float, stop_event):
    """Run on a worker: one round (see :func:`~napari_unet_cat.corrections.train_on_corrections`),
    yielding each epoch's report as it ends; returns the new model."""
    import time

    from ..corrections import finish_round, rehearsal, round_trainer, training_labels

    started = time.perf_counter()
    targets = training_labels(model, corrected, before)
    seed = len(model.config.corrections)  # each round rehearses other earlier images
    trainer = round_trainer(
        model, images, targets, seconds=seconds, names=names, stop_event=stop_event, seed=seed,
        earlier=rehearsal(earlier, targets, model.config.training.label_mode, seed),
    )  # fmt: skip
    yield from trainer.epochs()
    return finish_round(model, trainer, started, before=before, corrected=corrected, n_corrected=len(images))


def describe_round(model) -> str:
    """The last round of ``model``, for the panel."""
    record = model.config.corrections[-1]
    changed = record.get("objects_changed")
    what = f"{changed} objects corrected in " if changed is not None else ""
    rehearsed = record.get("rehearsed_images", 0)
    beside = f" beside {rehearsed} it was trained on before" if rehearsed else ""
    return (
        f"round {record['round']}: trained {record['seconds']:g} s on {what}{len(record['images'])} image(s)"
        f"{beside}; segmenting them again (the corrected layers are kept)"
    )


def segment_again(viewer: napari.Viewer, model, image_layers, start: Callable) -> None:
    """Segment each image again with the new model (``start``: the Segment panel's)."""
    for layer in image_layers:
        start(viewer, model, layer)
