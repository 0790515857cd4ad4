"""Segment with U-Net: predict an Image layer into a new Labels layer, on a worker; export
the model as a bioimage.io package."""

from __future__ import annotations

from collections.abc import Callable
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
)

from ..errors import UNetCatError
from ..instances import PlaneNumbering
from ..package_model import is_package_model
from ..uncertainty import entropy_map
from ..volume_modes import DEFAULT_VOLUME_MODE, VOLUME_MODES, resolve_volume_mode, volume_answer
from .layers import (
    labels_shape_for,
    layer_input,
    layer_voxel_size,
    layers_of,
    model_input,
    output_axes_of,
    viewer_calls_z,
)
from .panel import Panel, notify_error, unless_closed
from .prediction_layers import add_package_outputs, add_prediction, add_uncertainty
from .preferences import preferences
from .retrain import remember_source
from .session import MODEL_FILE, Session, chosen_model, model_sources
from .threads import on_model_thread, warm_up_model_code

if TYPE_CHECKING:
    import napari.viewer

    from .export_panel import ExportPanel


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
    volume: str | None = None,
    voxel_size: list[float] | None = None,
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
    returns ``(outputs, None, model, None, None)`` instead, ``outputs`` by output name.
    A 3D model, or a 2D model in a ``volume`` mode other than ``planes`` (None: by the
    layer's axes, see :func:`~napari_unet_cat.volume_modes.resolve_volume_mode`),
    predicts volume by volume: its objects are 3D; its side views (``three-axes``) are
    stretched in Z by ``voxel_size`` ``(Z, Y, X)``, else by that of the model's training
    stacks."""
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
    mode = "3d" if predictor.config.ndim == 3 else resolve_volume_mode(predictor, data_axes, volume)
    voxel_size = voxel_size or predictor.config.trained_voxel_size
    n_stack = len(shape) - (2 if mode == "planes" else 3)
    indices = list(np.ndindex(*shape[:n_stack])) if n_stack else [()]
    kind = {None: None, "classes": "classes", "components": "instances"}[output]
    objects = kind == "instances" or (kind is None and model.is_instance_model)
    labels = probs = doubt = None
    numbering = PlaneNumbering()
    wanted = probabilities or uncertainty
    common = {
        "output": kind,
        "instances": "components" if output == "components" else None,
        "min_size": min_size,
        "tile_size": tile_size,
        "test_time_augmentation": tta,
    }
    for i, index in enumerate(indices):
        plane = np.asarray(data[index]) if index else data
        plane_labels, plane_probs = _predict_part(
            predictor, plane, data_axes[n_stack:], mode, wanted, name=f"layer '{layer.name}'", voxel_size=voxel_size,
            **common,
        )  # fmt: skip
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


def _predict_part(predictor, part, axes: str, mode: str, wanted: bool, *, name: str, voxel_size=None, **options):
    """``(labels, probabilities or None)`` of one plane (``mode`` ``planes``) or one
    volume (a 3D model's, or a 2D model's in a volume mode, of ``voxel_size``)."""
    if mode in ("planes", "3d"):
        tile_size = options.pop("tile_size")
        result = predictor.predict(part, tile_size, wanted, axes=axes, name=name, **options)
        return result if wanted else (result, None)
    labels, probs = volume_answer(predictor, part, mode=mode, voxel_size=voxel_size, **options)
    if wanted and probs is None:  # stitch: objects plane by plane, probabilities asked for too
        keep = {k: options[k] for k in ("tile_size", "test_time_augmentation")}
        probs = predictor.predict(part, axes=axes, output="probabilities", name=name, **keep)
    return labels, probs


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
    volume: str | None = None,
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
        volume=volume,
        voxel_size=layer_voxel_size(layer, layer_axes).get("voxel_size") if len(layer_axes) >= 3 else None,
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
        self.volume = ComboBox(label="z-stacks", choices=["auto", *VOLUME_MODES], value="auto")
        self.volume.tooltip = (
            "how a 2D model answers a z-stack: planes (each on its own), stitch (plane objects linked by overlap), "
            "xy (3D objects from the planes' probabilities) or three-axes (XY, XZ and YZ planes averaged, 3D "
            f"objects); auto: {DEFAULT_VOLUME_MODE} where the viewer calls the stack axis z, else planes. A 3D "
            "model's objects are 3D whatever this says"
        )
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
                self.volume,
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
        from .export_panel import ExportPanel

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
            volume=self._volume_mode(),
            on_error=self.fail,
            on_progress=self._show_progress,
            on_done=self._on_segmented,
            on_finished=self._finished,
        )

    def _show_progress(self, done: int, total: int) -> None:
        if self.closed:
            return
        self.progress.max = total
        self.progress.value = done

    def _on_segmented(self, layer) -> None:
        """Say what was added: its estimated scale, and the objects least sure of."""
        if self.closed:
            return
        used = layer.metadata.get("napari_unet_cat_scale")
        self.status.value = f"added '{layer.name}'" + (
            f" (estimated scale {used:g})" if self.auto_scale.value and used is not None else ""
        )
        if layer.metadata.get("least_sure"):
            first = ", ".join(map(str, layer.metadata["least_sure"][:5]))
            self.status.value += f"; least sure of objects {first} (its features rank them all)"

    def _volume_mode(self) -> str:
        """The volume mode chosen, ``auto`` made :data:`DEFAULT_VOLUME_MODE` where the
        viewer labels the layer's last stack axis ``z`` (as readers of z-stacks do), else
        ``planes``."""
        if self.volume.value != "auto":
            return self.volume.value
        return DEFAULT_VOLUME_MODE if viewer_calls_z(self.viewer, self.image.value) else "planes"

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
        self.worker.returned.connect(lambda model: self._segment_again(model, image_layers, inputs["model"]))
        self.worker.errored.connect(lambda err: self.fail(f"training on the corrections failed: {err}"))
        self.worker.finished.connect(self._finished)
        self.worker.start()

    @unless_closed
    def _on_round_epoch(self, report) -> None:
        self.status.value = f"training on the corrections: {report.summary()}"

    @unless_closed
    def _segment_again(self, model, image_layers, previous) -> None:
        from .retrain import describe_round

        # The model of the session from now on (Train can go on from it), with what it learnt from before.
        Session.set(model, trained_on=Session.trained_on(previous))
        self.status.value = describe_round(model)
        for layer in image_layers:
            start_prediction(self.viewer, model, layer, on_error=self.fail, on_done=self._resegmented)

    @unless_closed
    def _resegmented(self, layer) -> None:
        self.status.value = self.status.value.replace("segmenting them again", "segmented them again")
