"""Train U-Net: train from Image and Labels layers on a worker, with a live plot and preview."""

from __future__ import annotations

import threading
import time
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
)

from ..config import (
    PLANE_PATCH_SIZE,
    PRESET_CHOICES,
    PRESET_LEARNING_RATES,
    PRESETS,
    VOLUME_PATCH_SIZE,
    TrainingSettings,
)
from ..errors import UNetCatError
from ..uncertainty import entropy_map
from ..volume_training import stack_training_planes
from .layers import (
    background_value,
    labels_shape_for,
    layer_input,
    layer_voxel_size,
    layers_of,
    output_axes_of,
    pair_layers_by_name,
    plane_on_screen,
    viewer_calls_z,
)
from .loss_plot import LossPlot
from .panel import Panel, unless_closed
from .preferences import preferences
from .session import Session, chosen_model_file
from .threads import Relay, on_model_thread, warm_up_model_code

if TYPE_CHECKING:
    import napari.viewer

PREVIEW_NAME = "U-Net preview"
#: What the network sees: planes (a 2D U-Net) or volumes (a 3D U-Net).
DIMS = {"planes (2D U-Net)": 2, "volumes (3D U-Net)": 3}
DIMS_TIP = (
    "planes: a 2D network (it segments z-stacks in 3D too, see Segment's z-stacks); volumes: a 3D U-Net trained on "
    "3D patches of z-stacks. On a z-stack, paint whole slices (in any orientation): the slices left empty are not used"
)
UNCERTAINTY_NAME = "U-Net uncertainty"
START_FROM = ("a new model", "the last model of this session", "a model file")
#: The default: the built-in model that fits the image (a photo: pets; fluorescence:
#: nuclei), else a new model.
AUTO_START = "auto: a built-in model that fits the image"


def start_choices() -> list[str]:
    """Where training starts: auto, the choices above, then each built-in model."""
    from ..builtin import builtin_models

    return [AUTO_START, *START_FROM, *(m.label for m in builtin_models().values())]


MODES = {
    "sparse strokes (0 = not annotated)": "sparse",
    "dense masks (0 = background)": "dense",
    "instances (each object its own label)": "instances",
}
INSTANCES_MODE = "instances (each object its own label)"


def _preset_rate(preset: str) -> str:
    """The learning rate the network ``preset`` (``auto`` resolved) trains with, as text."""
    from ..resources import resolve_preset

    return f"{PRESET_LEARNING_RATES[resolve_preset(preset)[0]]:g}"


class TrainWidget(Panel):
    """Train a U-Net from painted layers without freezing the viewer.

    Training runs on a napari worker thread; after every epoch the plot gains a point and
    the preview layer shows the current model's prediction of the plane on screen. Stop
    ends within a training step and keeps the best model so far.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(status="paint labels, then Train")
        prefs = preferences()
        self.viewer = viewer
        self.trainer = None
        self._stop_event = threading.Event()
        self.model = None
        self.epochs_seen = 0
        self._preview_source = None
        self._preview_input: tuple = (None, "", [])
        self._preview_index: tuple[int, ...] = ()
        self.relay = Relay()
        self.relay.step.connect(self._on_step)
        self.relay.note.connect(self._on_note)
        self._note = ""
        self._trained_on: list[tuple] = []
        #: What the preview layer shows now: "first guess (random forest)", "U-Net" or "",
        #: and what it showed, in order, during the last run.
        self.preview_kind = ""
        self.preview_history: list[str] = []
        #: What the panel said when each preview appeared.
        self.preview_messages: list[str] = []

        self.image = ComboBox(label="image", choices=self.image_choices)
        self.labels = ComboBox(label="labels", choices=self._labels_choices)
        self.channels = Select(label="more channels", choices=self.image_choices, value=[])
        self.channels.tooltip = (
            "Image layers that are further channels of the image above (one channel each), in the order of the "
            "layer list; the model records their names"
        )
        self.axes = LineEdit(label="axes (empty = auto)", value="")
        self.axes.tooltip = "where one image layer keeps its channels, e.g. CYX or ZCYX"
        self.all_pairs = CheckBox(text="every image/labels pair by name", value=False)
        self.mode = ComboBox(label="label mode", choices=list(MODES), value=next(iter(MODES)))
        self.preset = ComboBox(
            label="network",
            choices=PRESET_CHOICES,
            value=prefs.network,
            tooltip="auto: classic on a GPU, light on a CPU",
        )
        self.dims = ComboBox(label="sees", choices=list(DIMS), value=next(iter(DIMS)), tooltip=DIMS_TIP)
        self.base_filters = SpinBox(label="width (0 = preset)", value=0, min=0, max=256)
        self.epochs = SpinBox(label="epochs", value=50, min=1, max=100_000)
        self.patch_size = SpinBox(label="patch size", value=PLANE_PATCH_SIZE, min=16, max=2048, step=16)
        self.batch_size = SpinBox(label="batch size (0 = auto)", value=0, min=0, max=1024)
        self.batch_size.tooltip = "patches per step; auto: 20, or 8 for sparse strokes (more steps in a short run)"
        self.learning_rate = LineEdit(label="learning rate", value=_preset_rate(prefs.network))
        self.val_fraction = FloatSpinBox(label="validation share", value=0.1, min=0.0, max=0.9, step=0.05)
        self.start_from = ComboBox(label="start from", choices=start_choices(), value=AUTO_START)
        self.start_from.tooltip = (
            "auto: strokes on a colour photo start from the built-in pets model, on fluorescence from the built-in "
            "nuclei model (a new output layer for your classes), else a new model; or a new model, one to "
            "continue, or a built-in model (its file is never changed: save the result to a file of your own)"
        )
        self.resume_path = FileEdit(
            label="model file to continue", mode="r", filter="*.keras", value=prefs.model_folder
        )
        self.preview = CheckBox(text="live preview", value=True)
        self.show_uncertainty = CheckBox(text="preview where it is unsure", value=False)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.save_path = FileEdit(label="save to", mode="w", filter="*.keras", value="")
        self.save_button = PushButton(text="Save model", enabled=False)
        self.predict_button = PushButton(text="Predict training images", enabled=False)
        self.extend(
            [
                self.image,
                self.labels,
                self.channels,
                self.axes,
                self.all_pairs,
                self.mode,
                self.preset,
                self.dims,
                self.base_filters,
                self.epochs,
                self.patch_size,
                self.batch_size,
                self.learning_rate,
                self.val_fraction,
                self.start_from,
                self.resume_path,
                self.preview,
                self.show_uncertainty,
                self.train_button,
                self.stop_button,
                self.progress,
                self.status,
                self.save_path,
                self.save_button,
                self.predict_button,
            ]
        )
        self.resume_path.visible = False
        self.plot = LossPlot()
        self.native.layout().addWidget(self.plot)
        self._connect(viewer)
        self._offer_instances()  # for the layer chosen when the widget opens
        warm_up_model_code()

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        # Each preset brings its learning rate (the field stays editable).
        self.preset.changed.connect(lambda name: setattr(self.learning_rate, "value", _preset_rate(name)))
        self.start_from.changed.connect(self._on_start_from)
        self.dims.changed.connect(self._on_dims_choice)
        self.labels.changed.connect(self._offer_instances)
        self.train_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(self.save)
        self.predict_button.changed.connect(self.predict_training_images)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        viewer.dims.events.current_step.connect(self._on_dims)

    # -- choices -----------------------------------------------------------------------
    def _labels_choices(self, _widget=None):
        return [(layer.name, layer) for layer in layers_of(self.viewer, "labels") if layer.name != PREVIEW_NAME]

    def _refresh(self, _event=None) -> None:
        self.image.reset_choices()
        self.labels.reset_choices()
        self.channels.reset_choices()

    def _on_dims_choice(self, choice: str) -> None:
        """A 3D patch holds a slab of planes: volumes start from a smaller side."""
        volumes = DIMS[choice] == 3
        if volumes and self.patch_size.value == PLANE_PATCH_SIZE:
            self.patch_size.value = VOLUME_PATCH_SIZE
        elif not volumes and self.patch_size.value == VOLUME_PATCH_SIZE:
            self.patch_size.value = PLANE_PATCH_SIZE

    def _on_start_from(self, choice: str) -> None:
        """Show the file field for a model file; for a built-in model, take its label
        mode and preset and fine-tune at a tenth of its learning rate."""
        from ..builtin import builtin_model_name
        from ..loading import builtin_config

        self.resume_path.visible = choice == START_FROM[2]
        name = builtin_model_name(choice) if choice not in (*START_FROM, AUTO_START) else None
        if name is None:
            return
        config = builtin_config(name)
        modes = {mode: label for label, mode in MODES.items()}
        self.mode.value = modes[config.training.label_mode]
        if config.architecture.preset in PRESETS:
            self.preset.value = config.architecture.preset
        self.learning_rate.value = f"{config.training.learning_rate / 10:g}"

    def _offer_instances(self, layer=None) -> None:
        """A Labels layer that looks like object ids switches the mode to instances."""
        from ..instances import looks_like_instances

        layer = self.labels.value if layer is None else layer
        if layer is None or MODES[self.mode.value] == "instances":
            return
        data = layer.data
        if not isinstance(data, np.ndarray):
            return  # a lazy layer is not read just to guess
        # On the GUI thread: look at a strided sample of at most about 4 M pixels
        # (blobs stay blobs; training checks the whole mask again).
        step = max(1, int(np.ceil(np.sqrt(data.size / 4_000_000))))
        if looks_like_instances(data[..., ::step, ::step]):
            self.mode.value = INSTANCES_MODE
            self.status.value = (
                f"'{layer.name}' looks like an instance mask (one value per object): label mode set to "
                "instances; choose dense masks if its values are classes"
            )

    def _inputs(self, pairs) -> list[tuple]:
        """``(data, axes, channel_names, labels layer)`` of each pair, checked."""
        extra = [] if self.all_pairs.value else self._extra_channels()
        inputs = []
        for image, labels in pairs:
            data, axes, names = layer_input(image, extra, "" if self.all_pairs.value else self.axes.value.strip())
            expected = labels_shape_for(data, axes)
            if tuple(labels.data.shape) != expected:
                raise UNetCatError(
                    f"Labels layer '{labels.name}' has shape {labels.data.shape} but Image layer '{image.name}' "
                    f"(shape {image.data.shape}, axes {axes}) needs labels of shape {expected}: paint labels over "
                    "the image they belong to"
                )
            inputs.append((data, axes, names, labels))
        return inputs

    def _extra_channels(self) -> list:
        """The chosen extra channel layers, in the order of the layer list."""
        chosen = {id(layer) for layer in self.channels.value}
        return [layer for layer in layers_of(self.viewer, "image") if id(layer) in chosen]

    def _pairs(self) -> list[tuple]:
        if self.all_pairs.value:
            pairs = [(im, lab) for im, lab in pair_layers_by_name(self.viewer) if lab.name != PREVIEW_NAME]
            if not pairs:
                raise UNetCatError(
                    "no image/labels pair by name: name each Labels layer after its Image layer "
                    "(for example 'cells' and 'cells labels')"
                )
            return pairs
        if self.image.value is None or self.labels.value is None:
            raise UNetCatError("choose an Image layer and the Labels layer painted over it")
        return [(self.image.value, self.labels.value)]

    def _resume(self):
        """What to start from: ``None``, the session's model, a model file's path, a
        built-in model's name, or :data:`AUTO_START`."""
        choice = self.start_from.value
        if choice == AUTO_START:
            return choice
        if choice == START_FROM[1]:
            if Session.model is None:
                raise UNetCatError("no model to continue: train one in this session first, or choose a model file")
            return Session.model
        if choice == START_FROM[2]:
            return chosen_model_file(self.resume_path.value, "to continue training")
        if choice != START_FROM[0]:
            return choice  # a built-in model, loaded by name on the worker
        return None

    def settings(self) -> TrainingSettings:
        """The training settings shown in the widget (validated)."""
        try:
            learning_rate = float(self.learning_rate.value)
        except ValueError:
            raise UNetCatError(f"learning rate {self.learning_rate.value!r} is not a number") from None
        settings = TrainingSettings(
            epochs=self.epochs.value,
            batch_size=self.batch_size.value or None,
            patch_size=self.patch_size.value,
            learning_rate=learning_rate,
            val_fraction=self.val_fraction.value,
            label_mode=MODES[self.mode.value],
            ndim=DIMS[self.dims.value],
        )
        settings.validate()
        return settings

    # -- training ----------------------------------------------------------------------
    def start(self) -> None:
        """Check the inputs, then train on a worker thread."""
        if self.worker is not None:
            return
        try:
            pairs, settings, inputs, resume = self._checked_inputs()
        except UNetCatError as err:
            self.fail(str(err))
            return
        from napari.qt.threading import create_worker

        self._remember_sources(pairs, inputs, resume)
        # Each stack's voxel size; the first pair's is the new model's, and says whether side views train.
        geometry = [self._stack_geometry(im, output_axes_of(im, d, a)) for (im, _), (d, a, _, _) in zip(pairs, inputs)]
        voxel, side_views = geometry[0]
        stack_voxels = [size.get("voxel_size") for size, _ in geometry]
        self._reset_run(settings.epochs)
        self.worker = create_worker(
            on_model_thread,
            self._work,
            pairs=pairs,
            inputs=inputs,
            settings=settings,
            preset=self.preset.value,
            base_filters=self.base_filters.value or None,
            resume=resume,
            own_rate=self.learning_rate.value != _preset_rate(self.preset.value),
            voxel=voxel,
            stack_voxels=stack_voxels,
            side_views=side_views,
            stop_event=self._stop_event,
            # No napari activity bar: ours shows the epochs (see start_prediction for why).
            _ignore_errors=True,  # reported by _on_error
        )
        self.worker.yielded.connect(self._on_epoch)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.train_button.enabled = False
        self.stop_button.enabled = True
        self.worker.start()

    def _checked_inputs(self) -> tuple[list, TrainingSettings, list, object]:
        """``(pairs, settings, inputs, resume)`` of the panel, or an error that names the
        layer or setting at fault (a Labels layer with nothing painted among them)."""
        pairs = self._pairs()
        settings = self.settings()
        inputs = self._inputs(pairs)
        for _, labels in pairs:
            if not np.any(np.asarray(labels.data)):
                raise UNetCatError(f"Labels layer '{labels.name}' has nothing painted yet")
        return pairs, settings, inputs, self._resume()

    def _remember_sources(self, pairs: list, inputs: list, resume) -> None:
        """What the new model learns from (these layers, and those of the session's model
        it continues), and the image and plane its preview shows."""
        self._trained_on = list({(id(i), id(la)): (i, la) for i, la in [*pairs, *Session.trained_on(resume)]}.values())
        self._preview_source = pairs[0][0] if self.preview.value else None
        self._preview_doubt = self.show_uncertainty.value
        data, axes, _, _ = inputs[0]
        self._preview_input = (data, axes, output_axes_of(pairs[0][0], data, axes))
        if self._preview_source is not None:
            self._preview_index = plane_on_screen(self.viewer, self._preview_source, self._preview_input[2])

    def _reset_run(self, epochs: int) -> None:
        """A clean plot, progress and preview record for a new run, and a fresh stop shared
        with the trainer before it exists: Stop (or closing napari) works from now on,
        during the data preparation too."""
        self.plot.clear()
        self.epochs_seen = 0
        self.trainer = None
        self._note = ""
        self.preview_kind = ""
        self.preview_history = []
        self.preview_messages = []
        self._stop_event = threading.Event()
        self.progress.max = epochs
        self.progress.value = 0
        self.status.value = "preparing the data..."

    def _stack_geometry(self, image, layer_axes: list[int]) -> tuple[dict, bool]:
        """``(voxel size, side views)`` of a stack to train on: its voxel size from the
        layer's scale (recorded in a new model), and whether a 2D network learns from its
        XZ and YZ planes too: where the viewer calls the stack's axis z, as Segment then
        answers it on three axes."""
        if len(layer_axes) < 3:
            return {}, False
        return layer_voxel_size(image, layer_axes), viewer_calls_z(self.viewer, image, layer_axes[-3])

    def _work(
        self, *, pairs, inputs, settings, preset, base_filters, resume, own_rate, voxel, stack_voxels, side_views,
        stop_event,
    ):  # fmt: skip
        """Runs on the worker thread: build the trainer, then one yield per epoch.

        The layers' data go in as they are: a lazy (dask, zarr) layer is read plane by
        plane, and only its annotated planes (unless its side views are trained on too).
        A model to continue is copied by the trainer, so a cached model file's weights
        stay what the file holds.
        """
        from ..errors import TrainingStopped

        if stop_event.is_set():
            raise TrainingStopped("stopped before training began")
        trainer, notes = self._make_trainer(
            pairs, inputs, settings, preset, base_filters, resume, own_rate, voxel, stack_voxels, side_views, stop_event
        )
        self.trainer = trainer
        if notes:
            self.relay.note.emit("; ".join(notes))
        volumes = trainer.config.ndim == 3
        if self._preview_source is not None and not stop_event.is_set() and not volumes:
            # Something useful to look at in seconds: a random forest's guess from the
            # same strokes, until the network's first epoch has ended.
            index, plane, axes = self._preview_plane()
            yield None, (index, trainer.first_guess(plane, axes))
        for report in trainer.epochs():
            # After Stop, end now: a preview of a large plane would take seconds more.
            show = self._preview_source is not None and not stop_event.is_set()
            yield report, (self._epoch_preview(trainer.model, volumes) if show else None)
        return trainer.model

    def _make_trainer(
        self, pairs, inputs, settings, preset, base_filters, resume, own_rate, voxel, stack_voxels, side_views,
        stop_event,
    ):  # fmt: skip
        """``(trainer, notes)`` for :meth:`_work`'s arguments, on the worker: the start
        chosen, a stack's training planes, and the notes of the setup worth showing."""
        from ..training import Trainer

        channel_names = inputs[0][2] if len(inputs) == 1 and inputs[0][2] else None
        images, axes = [d for d, _, _, _ in inputs], [a for _, a, _, _ in inputs]
        labels = [lab.data for *_, lab in inputs]
        resume, pretrained, start_note = self._starting_model(resume, images[0], axes[0], labels, settings, own_rate)
        names = [f"'{im.name}' / '{lab.name}'" for im, lab in pairs]
        if resume is not None:
            settings.ndim = resume.config.ndim
        sources, planes_note = None, ""
        if settings.ndim == 2 and settings.label_mode != "sparse" and any("Z" in a for a in axes):
            # Whole slices painted on a stack: its planes, the unpainted ones left out.
            images, labels, names, axes, sources, planes_note = stack_training_planes(
                images, labels, names, axes, voxel_sizes=stack_voxels, side_views=side_views
            )
        trainer = Trainer(
            images,
            labels,
            axes=axes,
            channel_names=channel_names,
            settings=settings,
            preset=preset,
            base_filters=base_filters,
            names=names,
            model=resume,
            pretrained=pretrained,
            on_step=lambda step, steps, loss: self.relay.step.emit(step, steps, f"{loss:.4f}"),
            stop_event=stop_event,
            sources=sources,
            **(voxel if resume is None else {}),
        )
        notes = [trainer.preset_note, trainer.validation_note, trainer.guide_note, trainer.batch_norm_note]
        return trainer, [n for n in (start_note, planes_note, *notes) if n]

    def _epoch_preview(self, model, volumes: bool) -> tuple:
        """``(index, labels, uncertainty or None)`` of the preview plane (or slice of a
        volume) by the epoch's ``model``."""
        index, plane, axes = self._preview_plane()
        if volumes:
            labels, probabilities = self._preview_slice(model)
        else:
            labels, probabilities = model.predict(plane, axes=axes, return_probabilities=True)
        return index, labels, entropy_map(probabilities) if self._preview_doubt else None

    def _starting_model(self, choice, image, axes: str, labels, settings: TrainingSettings, own_rate: bool):
        """``(model to continue, network to start from, note)`` for the start chosen
        (see :meth:`_resume`); runs on the worker. A built-in model is continued when the
        annotations are of its own kind, else a new model starts from its network, at a
        tenth of its learning rate unless the field was changed (``own_rate``)."""
        from ..builtin import builtin_model_name
        from ..transfer import can_continue, fitting_builtin

        note = ""
        if choice == AUTO_START:
            name, why = fitting_builtin(image, axes) if settings.ndim == 2 else (None, "")
            if name is None:
                return None, None, ""
            note = f"started from built-in: {name} ({why})"
        elif isinstance(choice, str) and builtin_model_name(choice) is not None:
            name = builtin_model_name(choice)
            note = f"started from built-in: {name}"
        else:
            return (Session.load(choice) if isinstance(choice, (Path, str)) else choice), None, ""
        model = Session.load(name)
        if not own_rate:
            settings.learning_rate = model.config.training.learning_rate / 10
        if can_continue(model.config, settings.label_mode, labels):
            return model, None, note + ", trained further on your annotations"
        return None, model, note + ", with a new output layer for your classes"

    def _preview_slice(self, model):
        """A 3D model's ``(labels, probabilities)`` of the plane on screen: the volume's
        planes within a patch's depth of it are segmented, and that plane kept."""
        data, axes, _ = self._preview_input
        index = self._preview_index
        if not index:
            raise UNetCatError("a 3D model's preview needs a z-stack")
        *volume, z = index
        reach = model.config.training.patch_depth or 16
        depth = int(np.shape(data)[len(volume)])
        start, stop = max(0, z - reach), min(depth, z + reach + 1)
        volume = tuple(volume)
        slab = np.asarray(data[(*volume, slice(start, stop))])
        labels, probabilities = model.predict(slab, axes=axes[len(volume) :], return_probabilities=True)
        return labels[z - start], probabilities[z - start]

    def _preview_plane(self):
        """``(index, plane, axes)`` of the plane on screen of the preview's input."""
        data, axes, _ = self._preview_input
        index = self._preview_index
        return index, (np.asarray(data[index]) if index else data), axes[len(index) :]

    @unless_closed
    def _on_note(self, text: str) -> None:
        self._note = text
        self.status.value = text

    @unless_closed
    def _on_step(self, step: int, steps: int, loss: str) -> None:
        self.status.value = f"epoch {self.epochs_seen + 1}: step {step}/{steps}, loss {loss}"

    @unless_closed
    def _on_epoch(self, value) -> None:
        report, preview = value
        if report is None:  # the first guess, before any epoch
            self.preview_kind = self.trainer.first_guess_kind
            self.preview_history.append(self.preview_kind)
            self._show_preview(*preview)
            self.status.value = f"preview: the {self.preview_kind}, until the U-Net's first epoch ends" + (
                f"\n({self._note})" if self._note else ""
            )
            self.preview_messages.append(self.status.value)
            return
        self.preview_kind = "U-Net" if preview is not None else ""
        if preview is not None:
            self.preview_history.append(self.preview_kind)
        self.epochs_seen += 1
        self.plot.add(report.as_row())
        self.progress.value = min(self.epochs_seen, self.progress.max)
        shown = f"; preview: the U-Net after epoch {report.epoch}" if preview is not None else ""
        self.status.value = report.summary() + shown + (f"\n({self._note})" if self._note else "")
        if shown:
            self.preview_messages.append(self.status.value)
        if preview is not None:
            self._show_preview(*preview)

    def _show_uncertainty(self, index: tuple[int, ...], doubt: np.ndarray) -> None:
        """The preview's uncertainty (``U-Net uncertainty``, 0 sure to 1 undecided)."""
        layer = self._preview_source
        data, axes, layer_axes = self._preview_input
        shape = labels_shape_for(data, axes)
        existing = next((lay for lay in self.viewer.layers if lay.name == UNCERTAINTY_NAME), None)
        if existing is None or existing.data.shape != shape:
            if existing is not None:
                self.viewer.layers.remove(existing)
            existing = self.viewer.add_image(
                np.zeros(shape, np.float32),
                name=UNCERTAINTY_NAME,
                colormap="inferno",
                contrast_limits=(0, 1),
                opacity=0.6,
                scale=[layer.scale[a] for a in layer_axes],
                translate=[layer.translate[a] for a in layer_axes],
            )
        existing.data[index if index else ...] = doubt
        existing.refresh()

    def _show_preview(self, index: tuple[int, ...], labels: np.ndarray, doubt: np.ndarray | None = None) -> None:
        if doubt is not None:
            self._show_uncertainty(index, doubt)
        layer = self._preview_source
        data, axes, layer_axes = self._preview_input
        if self.trainer is not None and not self.trainer.config.is_instance_model:
            # The background class shows as 0, napari's transparent label, so that the
            # image stays visible under the preview.
            labels = np.where(labels == background_value(self.trainer.config.class_values), 0, labels)
        shape = labels_shape_for(data, axes)
        existing = next((lay for lay in self.viewer.layers if lay.name == PREVIEW_NAME), None)
        # Objects are numbered 1..N, and N may grow from epoch to epoch.
        dtype = np.uint32 if self.trainer is not None and self.trainer.config.is_instance_model else labels.dtype
        if existing is None or existing.data.shape != shape or existing.data.dtype != dtype:
            if existing is not None:
                self.viewer.layers.remove(existing)
            data = np.zeros(shape, dtype)
            existing = self.viewer.add_labels(
                data,
                name=PREVIEW_NAME,
                opacity=0.5,
                scale=[layer.scale[a] for a in layer_axes],
                translate=[layer.translate[a] for a in layer_axes],
            )
        if index:
            existing.data[index] = labels
        else:
            existing.data[...] = labels
        existing.refresh()

    @unless_closed
    def _on_done(self, model) -> None:
        self.model = model
        Session.set(model, trained_on=self._trained_on)
        self.save_button.enabled = True
        self.predict_button.enabled = True
        stopped = f" ({self.trainer.stopped})" if self.trainer is not None and self.trainer.stopped else ""
        self.status.value = f"done after {self.epochs_seen} epoch(s){stopped}: save the model, or segment"

    @unless_closed
    def _on_error(self, err: Exception) -> None:
        from ..errors import TrainingStopped

        if isinstance(err, TrainingStopped):
            self.status.value = str(err)
            return
        self.fail(str(err) if isinstance(err, UNetCatError) else f"training failed: {type(err).__name__}: {err}")

    @unless_closed
    def _on_finished(self) -> None:
        self.worker = None
        self.train_button.enabled = True
        self.stop_button.enabled = False

    @unless_closed
    def _on_dims(self, _event=None) -> None:
        if self._preview_source is not None:
            self._preview_index = plane_on_screen(self.viewer, self._preview_source, self._preview_input[2])

    def stop(self) -> None:
        """End training after the current step; the best model so far is kept.

        The trainer's loop ends by itself, so the worker still returns the model (quitting
        the worker would drop it).
        """
        self._stop_event.set()  # the trainer's own stop, even before it exists
        if self.worker is not None:
            self.status.value = "stopping after this step..."

    def on_close(self) -> None:
        """Closing the widget (or napari) while training stops the worker."""
        self._stop_event.set()
        if self.worker is not None:
            self.worker.quit()

    def wait(self, timeout_s: float = 600) -> None:
        """Block until training ends (for scripts and tests), keeping Qt events flowing."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout_s
        while self.worker is not None and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.02)

    # -- after training ----------------------------------------------------------------
    def save(self) -> Path | None:
        """Save the trained model to the path in 'save to'."""
        path = self.save_path.value
        if self.model is None:
            self.fail("nothing to save yet: train a model first")
            return None
        if not path or Path(path).is_dir() or str(path) in ("", "."):
            self.fail("choose a file name to save the model to, for example cells.keras")
            return None
        try:
            written = self.model.save(path)
        except (UNetCatError, OSError) as err:
            self.fail(f"could not save the model: {err}")
            return None
        Session.set(self.model)
        self.status.value = f"model saved to {written}"
        return written

    def predict_training_images(self) -> None:
        """Segment the training image(s) into new Labels layers."""
        if self.model is None:
            self.fail("train a model first")
            return
        from .segment_widget import start_prediction

        try:
            pairs = self._pairs()
        except UNetCatError as err:
            self.fail(str(err))
            return
        extra = [] if self.all_pairs.value else self._extra_channels()
        axes = "" if self.all_pairs.value else self.axes.value.strip()
        for image, _ in pairs:
            try:
                start_prediction(self.viewer, self.model, image, extra_channels=extra, axes=axes, on_error=self.fail)
            except UNetCatError as err:
                self.fail(str(err))
