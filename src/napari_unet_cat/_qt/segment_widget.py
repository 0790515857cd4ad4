"""Segment with U-Net: predict an Image layer into a new Labels layer, on a worker; export
the model as a bioimage.io package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    TextEdit,
)

from ..arrays import infer_layout
from ..errors import UNetCatError
from ..instances import PlaneNumbering
from ..uncertainty import entropy_map
from .layers import PREDICTION_SUFFIX, labels_shape_for, layer_input, layers_of, output_axes_of, plane_at_step
from .panel import Panel, notify_error, unless_closed
from .preferences import preferences
from .retrain import remember_source
from .session import MODEL_FILE, Session, chosen_model, model_sources
from .threads import on_model_thread, warm_up_model_code

if TYPE_CHECKING:
    import napari.viewer

    from ..segmenter import UNetModel


def model_input(layer, model: UNetModel, extra_channels=(), axes: str = ""):
    """``(data, axes)`` that ``model`` segments for ``layer`` (and its channel layers),
    or an error that says which layers the model needs."""
    data, data_axes, _ = layer_input(layer, extra_channels, axes)
    wanted = model.n_channels
    gray = model.config.gray_input and not extra_channels
    layout = infer_layout(
        np.shape(data), n_channels=wanted if gray else None, axes=data_axes, name=f"layer '{layer.name}'", gray=gray
    )
    if layout.used_channels != wanted:
        names = model.config.channel_names
        listed = f" ({', '.join(names)})" if any(names) else ""
        hint = (
            f"choose {wanted} single-channel Image layers (the image and 'more channels', in that order), or give "
            "the axes of one layer that holds the channels (for example CYX)"
            if wanted > 1
            else "choose one single-channel Image layer" + (" or an RGB one" if model.config.gray_input else "")
        )
        raise UNetCatError(
            f"'{layer.name}' has {layout.used_channels} channel{'s' if layout.used_channels != 1 else ''} "
            f"(shape {layer.data.shape}, axes {data_axes}) but the model was trained on {wanted} "
            f"channel{'s' if wanted > 1 else ''}{listed}: {hint}"
        )
    return data, data_axes


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
    min_size: int | None = None,
    extra_channels=(),
    axes: str = "",
    scale: float | str | None = None,
    trust_package_code: bool = False,
    uncertainty: bool = False,
):
    """Generator run on a worker: load the model if given a path, predict plane by plane
    (yielding progress), then return ``(labels, probabilities or None, model, scale,
    uncertainty map or None)`` (see :mod:`~napari_unet_cat.uncertainty`).
    ``output`` is a value of :data:`OUTPUTS`; ``extra_channels`` and ``axes`` as for
    :func:`~napari_unet_cat._qt.layers.layer_input`; ``scale`` (None: the model's) as
    for :meth:`~napari_unet_cat.segmenter.UNetModel.at_scale`, or ``"auto"``: estimated
    from the layer (:meth:`~napari_unet_cat.segmenter.UNetModel.estimate_scale`). The
    scale returned is the one used. Objects are numbered across the planes of a stack.
    Lazy (dask) layers are read tile by tile. A bioimage.io package of another tool
    returns ``(outputs, None, model, None, None)`` instead, ``outputs`` by output name."""
    if not hasattr(model, "predict"):
        model = Session.load(model, trust_package_code=trust_package_code)
    if is_package_model(model):
        data, data_axes, _ = layer_input(layer, extra_channels, axes)
        outputs = model.predict(data, axes=data_axes, name=f"layer '{layer.name}'")
        yield 1, 1
        return outputs, None, model, None, None
    data, data_axes = model_input(layer, model, extra_channels, axes)
    if scale == "auto":  # a model without object sizes says so here
        estimate = model.estimate_scale(data, axes=data_axes)
        scale = round(estimate, 3) if estimate is not None else None
    predictor = model.at_scale(scale) if scale else model
    shape = labels_shape_for(data, data_axes)
    n_stack = len(shape) - 2
    indices = list(np.ndindex(*shape[:n_stack])) if n_stack else [()]
    kind = {None: None, "classes": "classes", "components": "instances"}[output]
    objects = kind == "instances" or (kind is None and model.is_instance_model)
    labels = probs = doubt = None
    numbering = PlaneNumbering()
    wanted = probabilities or uncertainty
    for i, index in enumerate(indices):
        plane = np.asarray(data[index]) if index else data
        result = predictor.predict(
            plane,
            tile_size,
            wanted,
            output=kind,
            instances="components" if output == "components" else None,
            min_size=min_size,
            axes=data_axes[n_stack:],
            test_time_augmentation=tta,
            name=f"layer '{layer.name}'",
        )
        plane_labels, plane_probs = result if wanted else (result, None)
        if labels is None:
            labels = np.zeros(shape, np.uint32 if objects else plane_labels.dtype)
            probs = np.zeros((*shape, plane_probs.shape[-1]), np.float32) if probabilities else None
            doubt = np.zeros(shape, np.float32) if uncertainty else None
        labels[index] = numbering.add(plane_labels) if objects else plane_labels
        if probs is not None:
            probs[index] = plane_probs
        if doubt is not None:
            doubt[index] = entropy_map(plane_probs)
        yield i + 1, len(indices)
    if objects:
        labels = numbering.fit(labels)
    return labels, probs, model, predictor.config.scale, doubt


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


def is_package_model(model) -> bool:
    """Whether ``model`` is a bioimage.io package of another tool (run by bioimageio.core)."""
    return type(model).__name__ == "PackageModel"


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


def start_prediction(
    viewer: napari.Viewer,
    model,
    layer,
    *,
    tile_size: int | None = None,
    probabilities: bool = False,
    test_time_augmentation: bool = False,
    output: str | None = None,
    min_size: int | None = None,
    extra_channels=(),
    axes: str = "",
    scale: float | str | None = None,
    trust_package_code: bool = False,
    uncertainty: bool = False,
    on_error: Callable[[str], None] = notify_error,
    on_progress: Callable[[int, int], None] | None = None,
    on_done: Callable[[object], None] | None = None,
    on_finished: Callable[[], None] | None = None,
):
    """Predict ``layer`` (with its channel layers) with ``model`` (a model or a model
    file) on a napari worker and add the result as a Labels layer."""
    from napari.qt.threading import create_worker

    data, data_axes, _ = layer_input(layer, extra_channels, axes)  # bad axes fail here, on the GUI thread
    layer_axes = output_axes_of(layer, data, data_axes)
    total = int(np.prod(labels_shape_for(data, data_axes)[:-2], dtype=np.int64))
    worker = create_worker(
        on_model_thread,
        predict_layer,
        model=model,
        layer=layer,
        tile_size=tile_size,
        probabilities=probabilities,
        tta=test_time_augmentation,
        output=output,
        min_size=min_size,
        extra_channels=extra_channels,
        axes=axes,
        scale=scale,
        trust_package_code=trust_package_code,
        uncertainty=uncertainty,
        # napari's activity bar only where no progress bar of ours shows it: its animation
        # repaints the window all the while, which software OpenGL (remote desktops,
        # machines without a GPU) pays for with the CPU the network needs (a third of a
        # 2-core machine's while training).
        _progress={"total": total, "desc": f"U-Net {layer.name}"} if on_progress is None else False,
        _ignore_errors=True,  # reported by on_error
    )

    def done(result):
        labels, probs, loaded, used_scale, doubt = result
        if is_package_model(loaded):
            added = add_package_outputs(viewer, layer, labels, loaded, layer_axes)
            if on_done is not None:
                on_done(added)
            return
        if loaded is not model:  # loaded from a file: training can continue from it
            Session.set(loaded)
        added = add_prediction(viewer, layer, labels, loaded, probs, layer_axes)
        remember_source(added, loaded, layer, labels)
        if doubt is not None:
            add_uncertainty(viewer, layer, added, doubt, layer_axes)
        added.metadata["napari_unet_cat_scale"] = used_scale
        if on_done is not None:
            on_done(added)

    def failed(err):
        on_error(str(err) if isinstance(err, UNetCatError) else f"segmentation failed: {type(err).__name__}: {err}")

    worker.returned.connect(done)
    worker.errored.connect(failed)
    if on_progress is not None:
        worker.yielded.connect(lambda v: on_progress(*v))
    if on_finished is not None:  # connected before the start: a fast failure must not finish first
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def export_job(model, layer, path, fields: dict, extra_channels=(), axes: str = "", step: tuple[int, ...] = ()):
    """Run on a worker: load the model if given a path, cut the sample from the plane of
    ``layer`` at the viewer's dims ``step`` (the plane on screen; the first without a
    step) and write the package; returns its path."""
    if not hasattr(model, "predict"):
        model = Session.load(model)
    if is_package_model(model):
        raise UNetCatError(f"{model.path.name} is a bioimage.io package already; only models of this plugin export")
    data, data_axes = model_input(layer, model, extra_channels, axes)
    n_stack = len(labels_shape_for(data, data_axes)) - 2
    index = (0,) * n_stack
    if n_stack and step:
        index = plane_at_step(step, layer, output_axes_of(layer, data, data_axes))
    plane = np.asarray(data[index] if n_stack else data)
    return model.export_bioimageio(path, plane, sample_name=f"layer '{layer.name}'", **fields)


class ExportPanel(Panel):
    """The fields only a person can give for a bioimage.io package, then Export.

    Opened by Segment with U-Net's "Export for bioimage.io..." button; the model and the
    sample image (the plane on screen) are that widget's.
    """

    def __init__(self, owner: SegmentWidget):
        import getpass

        super().__init__(status="the test image is cut from the Image layer chosen in Segment with U-Net")
        self.owner = owner
        self.path = FileEdit(label="package (.zip)", mode="w", filter="*.zip", value="")
        self.model_name = LineEdit(label="name", value="U-Net (napari-unet-cat)")
        self.description = TextEdit(label="description", value="")
        self.description.tooltip = "what it segments, in which images (default: its classes and channels)"
        self.authors = LineEdit(label="authors (comma-separated)", value=getpass.getuser())
        self.license = LineEdit(label="license (SPDX)", value="CC-BY-4.0")
        self.export_button = PushButton(text="Export")
        self.extend(
            [self.path, self.model_name, self.description, self.authors, self.license, self.export_button, self.status]
        )
        self.export_button.changed.connect(self.export)

    def fields(self) -> dict:
        return {
            "name": self.model_name.value.strip() or None,
            "description": self.description.value.strip() or None,
            "authors": [a.strip() for a in self.authors.value.split(",") if a.strip()],
            "license": self.license.value.strip() or "CC-BY-4.0",
        }

    def export(self) -> None:
        from napari.qt.threading import create_worker

        if self.worker is not None:
            return
        owner = self.owner
        path = str(self.path.value or "").strip()
        if not path or path == "." or Path(path).is_dir():
            self.fail("choose the package file to write (.zip)")
            return
        if not path.lower().endswith(".zip"):
            path += ".zip"
        model = owner.chosen_model(
            "choose, in Segment with U-Net, the Image layer the package's test image is cut from", self.fail
        )
        if model is None:
            return
        self.status.value = f"exporting to {path}..."
        self.export_button.enabled = False
        worker = create_worker(
            on_model_thread,
            export_job,
            model=model,
            layer=owner.image.value,
            path=path,
            fields=self.fields(),
            extra_channels=owner._extra_channels(),
            axes=owner.axes.value.strip(),
            step=tuple(owner.viewer.dims.current_step),
            _ignore_errors=True,
        )
        worker.returned.connect(self._done)
        worker.errored.connect(
            lambda err: self.fail(
                str(err) if isinstance(err, UNetCatError) else f"export failed: {type(err).__name__}: {err}"
            )
        )
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    @unless_closed
    def _done(self, path) -> None:
        self.status.value = f"wrote {path}"

    @unless_closed
    def _finished(self) -> None:
        self.worker = None
        self.export_button.enabled = True


class SegmentWidget(Panel):
    """Choose a model (a file, or the one just trained) and an Image layer; Run."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        prefs = preferences()
        self.viewer = viewer
        self.source = ComboBox(label="model", choices=model_sources(), value=MODEL_FILE)
        self.source.tooltip = "a model file, the model trained in this session, or a model shipped with the plugin"
        self.model_path = FileEdit(label="model file", mode="r", filter="*.keras *.zip", value=prefs.model_folder)
        self.model_path.tooltip = "a model file (.keras), or a bioimage.io package (.zip) exported by this plugin"
        self.image = ComboBox(label="image", choices=self.image_choices)
        self.channels = Select(label="more channels", choices=self.image_choices, value=[])
        self.channels.tooltip = (
            "Image layers that are further channels of the image, in the order the model was trained on"
        )
        self.axes = LineEdit(label="axes (empty = auto)", value="")
        self.axes.tooltip = "where one image layer keeps its channels, e.g. CYX or ZCYX"
        self.tile_size = SpinBox(label="tile size (0 = auto)", value=prefs.tile_size, min=0, max=8192, step=16)
        self.probabilities = CheckBox(text="also add probabilities", value=False)
        self.tta = CheckBox(text="average over flips and rotations (8x slower)", value=False)
        self.output = ComboBox(label="output", choices=list(OUTPUTS), value=next(iter(OUTPUTS)))
        self.min_size = SpinBox(label="smallest object (px, -1 = model's)", value=-1, min=-1, max=10_000_000)
        self.scale = FloatSpinBox(label="scale (0 = model's)", value=0.0, min=0.0, max=4.0, step=0.05)
        self.scale.tooltip = (
            "predict at this fraction of full resolution, for objects of another size than the model saw: "
            "0.5 for objects twice as large"
        )
        self.auto_scale = CheckBox(text="estimate the scale from the image", value=False)
        self.uncertainty = CheckBox(text="also add where it is unsure (and rank the objects)", value=False)
        self.trust = CheckBox(text="trust the package's code (bioimage.io packages of other tools)", value=False)
        self.trust.tooltip = "let a package's pytorch_state_dict or keras_hdf5 weights run the Python code it carries"
        self.auto_scale.tooltip = (
            "instance models: find the objects once, then segment at the scale at which they look as large as "
            "the training objects (overrides the scale above)"
        )
        self.run_button = PushButton(text="Segment")
        self.round_seconds = SpinBox(label="seconds of training", value=60, min=5, max=3600, step=5)
        self.retrain_button = PushButton(text="Train on corrections, segment again")
        self.retrain_button.tooltip = (
            "fine-tune the model that made the corrected prediction layers on them, then segment those images again "
            "(the corrected layers are kept)"
        )
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.export_button = PushButton(text="Export for bioimage.io...")
        self.export_button.tooltip = "write the model as a bioimage.io package that other tools run"
        self.export_panel: ExportPanel | None = None
        self.extend(
            [
                self.source,
                self.model_path,
                self.image,
                self.channels,
                self.axes,
                self.tile_size,
                self.probabilities,
                self.tta,
                self.output,
                self.min_size,
                self.scale,
                self.auto_scale,
                self.uncertainty,
                self.trust,
                self.run_button,
                self.round_seconds,
                self.retrain_button,
                self.progress,
                self.status,
                self.export_button,
            ]
        )
        self.source.changed.connect(lambda choice: setattr(self.model_path, "visible", choice == MODEL_FILE))
        self.run_button.changed.connect(self.run)
        self.retrain_button.changed.connect(self.train_on_corrections)
        self.export_button.changed.connect(self.open_export)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        warm_up_model_code()

    def open_export(self) -> ExportPanel:
        """Show the bioimage.io export panel (one per widget)."""
        if self.export_panel is None or self.export_panel.closed:
            self.export_panel = ExportPanel(self)
            self.export_panel.native.setWindowTitle("Export for bioimage.io")
        self.export_panel.show()
        return self.export_panel

    def _refresh(self, _event=None) -> None:
        self.image.reset_choices()
        self.channels.reset_choices()

    def _extra_channels(self) -> list:
        chosen = {id(layer) for layer in self.channels.value}
        return [layer for layer in layers_of(self.viewer, "image") if id(layer) in chosen]

    def _model(self):
        """The session's model, or the chosen file's path or built-in model's name
        (loaded on the worker)."""
        return chosen_model(self.source.value, self.model_path.value, "or another choice of model")

    def chosen_model(self, no_image: str, fail: Callable[[str], None]):
        """The model (or its file's path) to use on the chosen Image layer; or, with no
        layer chosen or no model to use, ``None`` after ``fail`` has said why."""
        if self.image.value is None:
            fail(no_image)
            return None
        try:
            return self._model()
        except UNetCatError as err:
            fail(str(err))
            return None

    def run(self) -> None:
        if self.worker is not None:
            return
        model = self.chosen_model("choose an Image layer to segment", self.fail)
        if model is None:
            return
        try:
            if hasattr(model, "predict"):  # a model at hand: check its channels now
                model_input(self.image.value, model, self._extra_channels(), self.axes.value.strip())
            else:
                layer_input(self.image.value, self._extra_channels(), self.axes.value.strip())
        except UNetCatError as err:
            self.fail(str(err))
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
                used = layer.metadata.get("napari_unet_cat_scale")
                self.status.value = f"added '{layer.name}'" + (
                    f" (estimated scale {used:g})" if self.auto_scale.value and used is not None else ""
                )
                if layer.metadata.get("least_sure"):
                    first = ", ".join(map(str, layer.metadata["least_sure"][:5]))
                    self.status.value += f"; least sure of objects {first} (its features rank them all)"

        def fail(message: str) -> None:
            self.fail(message)

        self.worker = start_prediction(
            self.viewer,
            model,
            self.image.value,
            tile_size=self.tile_size.value or None,
            probabilities=self.probabilities.value,
            test_time_augmentation=self.tta.value,
            output=OUTPUTS[self.output.value],
            min_size=None if self.min_size.value < 0 else self.min_size.value,
            extra_channels=self._extra_channels(),
            axes=self.axes.value.strip(),
            scale="auto" if self.auto_scale.value else (self.scale.value or None),
            trust_package_code=self.trust.value,
            uncertainty=self.uncertainty.value,
            on_error=fail,
            on_progress=progress,
            on_done=finished,
            on_finished=self._finished,
        )

    @unless_closed
    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.retrain_button.enabled = True

    def train_on_corrections(self) -> None:
        """Fine-tune the model on the corrected prediction layers, then segment again."""
        import threading

        from napari.qt.threading import create_worker

        from .retrain import retrain_job, retraining_inputs

        if self.worker is not None:
            return
        try:
            inputs = retraining_inputs(self.viewer)
        except UNetCatError as err:
            self.fail(str(err))
            return
        image_layers = inputs.pop("image_layers")
        self.stop_event = threading.Event()
        self.status.value = f"training on {len(image_layers)} corrected layer(s)..."
        self.run_button.enabled = self.retrain_button.enabled = False
        self.worker = create_worker(
            on_model_thread,
            retrain_job,
            **inputs,
            seconds=float(self.round_seconds.value),
            stop_event=self.stop_event,
            _ignore_errors=True,
        )
        self.worker.yielded.connect(self._on_round_epoch)
        self.worker.returned.connect(lambda model: self._segment_again(model, image_layers))
        self.worker.errored.connect(lambda err: self.fail(f"training on the corrections failed: {err}"))
        self.worker.finished.connect(self._finished)
        self.worker.start()

    @unless_closed
    def _on_round_epoch(self, report) -> None:
        self.status.value = f"training on the corrections: {report.summary()}"

    @unless_closed
    def _segment_again(self, model, image_layers) -> None:
        from .retrain import describe_round

        Session.set(model)  # the model of the session from now on: Train can go on from it
        self.status.value = describe_round(model)
        for layer in image_layers:
            start_prediction(self.viewer, model, layer, on_error=self.fail, on_done=self._resegmented)

    @unless_closed
    def _resegmented(self, layer) -> None:
        self.status.value = self.status.value.replace("segmenting them again", "segmented them again")
