"""Segment a folder: the batch function behind ``napari-unet-cat predict``, from napari."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, FileEdit, ProgressBar, PushButton, SpinBox

from ..errors import UNetCatError
from .panel import Panel, notify_error, unless_closed
from .preferences import preferences
from .session import MODEL_FILE, Session, chosen_model, model_sources
from .threads import Relay, on_model_thread

if TYPE_CHECKING:
    import napari.viewer


class FolderWidget(Panel):
    """Input and output folders, a model, Run and Cancel; a summary at the end."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        prefs = preferences()
        self.viewer = viewer
        self.report = None
        self._cancel = False
        self._relay = Relay()
        self._relay.step.connect(self._on_file)
        self.source = ComboBox(label="model", choices=model_sources(), value=MODEL_FILE)
        self.model_path = FileEdit(label="model file", mode="r", filter="*.keras *.zip", value=prefs.model_folder)
        self.input_dir = FileEdit(label="input folder", mode="d", value="")
        self.output_dir = FileEdit(label="output folder", mode="d", value="")
        self.tile_size = SpinBox(label="tile size (0 = auto)", value=prefs.tile_size, min=0, max=8192, step=16)
        self.probabilities = CheckBox(text="also write probabilities", value=False)
        self.tta = CheckBox(text="average over flips and rotations (8x slower)", value=False)
        self.overwrite = CheckBox(text="redo images already done", value=False)
        self.auto_scale = CheckBox(text="estimate each image's scale (instance models)", value=False)
        self.trust = CheckBox(text="trust the package's code (bioimage.io packages of other tools)", value=False)
        self.auto_scale.tooltip = (
            "segment each image at the scale at which its objects look as large as the training objects"
        )
        self.run_button = PushButton(text="Segment folder")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.extend(
            [
                self.source,
                self.model_path,
                self.input_dir,
                self.output_dir,
                self.tile_size,
                self.probabilities,
                self.tta,
                self.auto_scale,
                self.trust,
                self.overwrite,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        self.source.changed.connect(lambda choice: setattr(self.model_path, "visible", choice == MODEL_FILE))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    def on_close(self) -> None:
        """Closing the widget (or napari) cancels the files not yet started."""
        self._cancel = True

    def run(self) -> None:
        if self.worker is not None:
            return
        inp, out = self.input_dir.value, self.output_dir.value
        try:
            model = chosen_model(self.source.value, self.model_path.value, "or another choice of model")
        except UNetCatError as err:
            self.fail(str(err))
            return
        if not inp or str(inp) in ("", ".") or not out or str(out) in ("", "."):
            self.fail("choose an input folder and an output folder")
            return
        from napari.qt.threading import create_worker

        self._cancel = False
        self.report = None
        # No napari activity bar: ours shows the files (see start_prediction for why).
        options = {
            "tile_size": self.tile_size.value or None,
            "probabilities": self.probabilities.value,
            "test_time_augmentation": self.tta.value,
            "overwrite": self.overwrite.value,
            "auto_scale": self.auto_scale.value,
            "trust_package_code": self.trust.value,
        }
        self.worker = create_worker(
            on_model_thread,
            self._work,
            model=model,
            input_dir=inp,
            output_dir=out,
            options=options,
            _ignore_errors=True,
        )
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "segmenting..."
        self.worker.start()

    def _work(self, *, model, input_dir, output_dir, options: dict):
        """Runs on the worker thread: the same function as the command line's predict,
        with the options read from the panel when Run was pressed."""
        from ..batch import segment_folder

        if not hasattr(model, "predict"):
            model = Session.load(model, trust_package_code=options["trust_package_code"])
        return segment_folder(
            model,
            input_dir,
            output_dir,
            progress=lambda i, n, path, status: self._relay.step.emit(i, n, f"{path.name}: {status}"),
            should_stop=lambda: self._cancel,
            **options,
        )

    @unless_closed
    def _on_file(self, done: int, total: int, text: str) -> None:
        self.progress.max = total
        self.progress.value = done
        self.status.value = f"{done}/{total} {text}"

    @unless_closed
    def _on_done(self, report) -> None:
        self.report = report
        self.status.value = report.summary()
        if report.failed:
            notify_error(f"{len(report.failed)} file(s) failed; see the summary in the widget")

    @unless_closed
    def _on_error(self, err: Exception) -> None:
        self.fail(str(err) if isinstance(err, UNetCatError) else f"batch failed: {type(err).__name__}: {err}")

    @unless_closed
    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def cancel(self) -> None:
        """Stop after the image being segmented now."""
        self._cancel = True
        self.status.value = "cancelling after the current image..."
