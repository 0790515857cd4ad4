"""Segment with U-Net: predict an Image layer into a new Labels layer, on a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, ProgressBar, PushButton, SpinBox

from ..arrays import infer_layout, plane_indices
from ..errors import UNetCatError
from ._common import PREDICTION_SUFFIX, Session, layers_of, notify_error, on_model_thread, status_label, unless_closed

if TYPE_CHECKING:
    import napari.viewer

    from ..segmenter import UNetModel


def _planes_of(layer, model: UNetModel) -> list[tuple[int, ...]]:
    layout = infer_layout(layer.data.shape, n_channels=model.n_channels, rgb=layer.rgb, name=f"layer '{layer.name}'")
    return list(plane_indices(layout))


#: What Segment with U-Net adds: the model's own output (objects for a model trained on
#: instance masks, classes otherwise), the class map, or connected components as objects.
OUTPUTS = {
    "the model's own (objects for instance models)": None,
    "classes": "classes",
    "objects: connected components": "components",
}


def predict_layer(
    model,
    layer,
    tile_size: int | None,
    probabilities: bool,
    tta: bool = False,
    output: str | None = None,
    min_size: int = 0,
):
    """Generator run on a worker: load the model if given a path, predict plane by plane
    (yielding progress), then return ``(labels, probabilities or None, model)``.
    ``output`` is a value of :data:`OUTPUTS`. Objects are numbered across the planes of a
    stack. Lazy (dask) layers are read tile by tile."""
    if not hasattr(model, "predict"):
        model = Session.load(model)
    indices = _planes_of(layer, model)
    data = layer.data
    shape = data.shape[: layer.ndim]
    kind = {None: None, "classes": "classes", "components": "instances"}[output]
    objects = kind == "instances" or (kind is None and model.is_instance_model)
    labels = probs = None
    next_id = 0
    for i, index in enumerate(indices):
        plane = data[index] if index else data
        result = model.predict(
            plane,
            tile_size,
            probabilities,
            output=kind,
            instances="components" if output == "components" else None,
            min_size=min_size,
            rgb=layer.rgb,
            test_time_augmentation=tta,
            name=f"layer '{layer.name}'",
        )
        plane_labels, plane_probs = result if probabilities else (result, None)
        if labels is None:
            labels = np.zeros(shape, np.uint32 if objects else plane_labels.dtype)
            probs = np.zeros((*shape, plane_probs.shape[-1]), np.float32) if probabilities else None
        if objects:
            labels[index] = np.where(plane_labels > 0, plane_labels.astype(np.uint32) + np.uint32(next_id), 0)
            next_id += int(plane_labels.max())
        else:
            labels[index] = plane_labels
        if probs is not None:
            probs[index] = plane_probs
        yield i + 1, len(indices)
    if objects:
        from ..arrays import smallest_int_dtype

        labels = labels.astype(smallest_int_dtype(max(next_id, 1)), copy=False)
    return labels, probs, model


def add_prediction(viewer: napari.Viewer, layer, labels: np.ndarray, model: UNetModel, probs=None):
    """Add the prediction as a Labels layer named after the image (and probabilities)."""
    name = f"{layer.name}{PREDICTION_SUFFIX}"
    scale = layer.scale[-labels.ndim :]
    metadata = {"label_names": model.class_names, "class_values": model.class_values}
    if model.is_instance_model:
        metadata["objects"] = True
    if name in viewer.layers:
        viewer.layers.remove(name)
    translate = layer.translate[-labels.ndim :]
    out = viewer.add_labels(labels, name=name, scale=scale, translate=translate, metadata=metadata)
    if probs is not None:
        names = [f"{layer.name} p({v})" for v in model.class_values]
        viewer.add_image(probs, channel_axis=-1, name=names, scale=scale, colormap="magma", visible=False)
    return out


def start_prediction(
    viewer: napari.Viewer,
    model,
    layer,
    *,
    tile_size: int | None = None,
    probabilities: bool = False,
    test_time_augmentation: bool = False,
    output: str | None = None,
    min_size: int = 0,
    on_error: Callable[[str], None] = notify_error,
    on_progress: Callable[[int, int], None] | None = None,
    on_done: Callable[[object], None] | None = None,
):
    """Predict ``layer`` with ``model`` (a model or a model file) on a napari worker and
    add the result as a Labels layer."""
    from napari.qt.threading import create_worker

    total = int(np.prod(layer.data.shape[: max(layer.ndim - 2, 0)], dtype=np.int64))
    worker = create_worker(
        on_model_thread,
        predict_layer,
        model,
        layer,
        tile_size,
        probabilities,
        test_time_augmentation,
        output,
        min_size,
        _progress={"total": total, "desc": f"U-Net {layer.name}"},
        _ignore_errors=True,  # reported by on_error
    )

    def done(result):
        labels, probs, loaded = result
        if loaded is not model:  # loaded from a file: training can continue from it
            Session.set(loaded, str(model))
        added = add_prediction(viewer, layer, labels, loaded, probs)
        if on_done is not None:
            on_done(added)

    def failed(err):
        on_error(str(err) if isinstance(err, UNetCatError) else f"segmentation failed: {type(err).__name__}: {err}")

    worker.returned.connect(done)
    worker.errored.connect(failed)
    if on_progress is not None:
        worker.yielded.connect(lambda v: on_progress(*v))
    worker.start()
    return worker


class SegmentWidget(Container):
    """Choose a model (a file, or the one just trained) and an Image layer; Run."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self.closed = False
        self.worker = None
        self.model_path = FileEdit(label="model file", mode="r", filter="*.keras", value="")
        self.use_session = CheckBox(text="use the model trained in this session", value=False)
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.tile_size = SpinBox(label="tile size (0 = auto)", value=0, min=0, max=8192, step=16)
        self.probabilities = CheckBox(text="also add probabilities", value=False)
        self.tta = CheckBox(text="average over flips and rotations (8x slower)", value=False)
        self.output = ComboBox(label="output", choices=list(OUTPUTS), value=next(iter(OUTPUTS)))
        self.min_size = SpinBox(label="smallest object (pixels)", value=0, min=0, max=10_000_000)
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = status_label("")
        self.extend(
            [
                self.model_path,
                self.use_session,
                self.image,
                self.tile_size,
                self.probabilities,
                self.tta,
                self.output,
                self.min_size,
                self.run_button,
                self.progress,
                self.status,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.native.destroyed.connect(self._on_destroyed)
        viewer.layers.events.inserted.connect(lambda _e: self.image.reset_choices())
        viewer.layers.events.removed.connect(lambda _e: self.image.reset_choices())

    def _image_choices(self, _widget=None):
        return [(layer.name, layer) for layer in layers_of(self.viewer, "image")]

    def _on_destroyed(self, *_args) -> None:
        self.closed = True

    @unless_closed
    def _fail(self, message: str) -> None:
        self.status.value = message
        notify_error(message)

    def _model(self):
        """The session's model, or the chosen file's path (loaded on the worker)."""
        if self.use_session.value:
            if Session.model is None:
                raise UNetCatError("no model has been trained in this session yet")
            return Session.model
        path = self.model_path.value
        if not path or str(path) in ("", ".") or path.is_dir():
            raise UNetCatError("choose a model file (.keras), or use the model trained in this session")
        return path

    def run(self) -> None:
        if self.worker is not None:
            return
        if self.image.value is None:
            self._fail("choose an Image layer to segment")
            return
        try:
            model = self._model()
        except UNetCatError as err:
            self._fail(str(err))
            return
        self.status.value = f"segmenting '{self.image.value.name}'..."
        self.run_button.enabled = False

        def progress(done: int, total: int) -> None:
            if self.closed:
                return
            self.progress.max = total
            self.progress.value = done

        def finished(layer) -> None:
            if not self.closed:
                self.status.value = f"added '{layer.name}'"

        def fail(message: str) -> None:
            self._fail(message)

        self.worker = start_prediction(
            self.viewer,
            model,
            self.image.value,
            tile_size=self.tile_size.value or None,
            probabilities=self.probabilities.value,
            test_time_augmentation=self.tta.value,
            output=OUTPUTS[self.output.value],
            min_size=self.min_size.value,
            on_error=fail,
            on_progress=progress,
            on_done=finished,
        )
        self.worker.finished.connect(self._finished)

    @unless_closed
    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
