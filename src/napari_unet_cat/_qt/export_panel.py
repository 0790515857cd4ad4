"""The bioimage.io export panel of Segment with U-Net: a package that other tools run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import FileEdit, LineEdit, PushButton, TextEdit

from ..errors import UNetCatError
from ..package_model import is_package_model
from .layers import labels_shape_for, model_input, output_axes_of, plane_at_step
from .panel import Panel, unless_closed
from .session import Session
from .threads import on_model_thread

if TYPE_CHECKING:
    from .segment_widget import SegmentWidget


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
