"""Measure objects: a table of the objects of a Labels layer, in napari.

The same :func:`~napari_unet_cat.measurements.measure` as ``predict --measure``; the rows
go into the Labels layer's ``features`` and a sortable table. Clicking a row selects the
object's label and centres the view on it; **Save CSV** writes the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, PushButton, Table

from ..errors import UNetCatError
from ..io import UNIT_NAMES
from .panel import Panel, status_label, unless_closed

if TYPE_CHECKING:
    import napari.viewer

#: The image choice that measures sizes and shapes only.
NO_IMAGE = "none (sizes and shapes only)"


class MeasureWidget(Panel):
    """Labels and an image in, a table of objects out (and in the layer's ``features``)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(status="choose a Labels layer, then Measure")
        self.viewer = viewer
        self.table_data: dict[str, np.ndarray] | None = None
        self.measured_layer = None
        self.labels = ComboBox(label="labels", choices=self.labels_choices)
        self.image = ComboBox(label="intensities of", choices=self._image_choices)
        self.classes = CheckBox(text="a class map: measure each class's connected parts", value=False)
        self.physical = CheckBox(text="in the layers' units (their scale), not pixels", value=True)
        self.measure_button = PushButton(text="Measure")
        self.counts = status_label("")
        self.table = Table(value={"label": []})
        self.table.native.setSortingEnabled(True)
        self.table.native.setEditTriggers(self.table.native.EditTrigger.NoEditTriggers)
        self.table.native.setMinimumHeight(220)
        self.csv_path = FileEdit(mode="w", filter="*.csv", value="")
        self.save_button = PushButton(text="Save CSV")
        self.extend([self.labels, self.image, self.classes, self.physical, self.measure_button, self.status])
        # The table and the saving row span the panel's width, outside its label column.
        saving = Container(widgets=[self.csv_path, self.save_button], layout="horizontal", labels=False)
        for widget in (self.counts, self.table, saving):
            self.native.layout().addWidget(widget.native)
        self.measure_button.changed.connect(self.run)
        self.save_button.changed.connect(self.save)
        self.table.native.cellClicked.connect(self._on_row)
        self.labels.changed.connect(self._offer_classes)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._offer_classes()

    def _image_choices(self, _widget=None):
        return [(NO_IMAGE, None), *self.image_choices()]

    def _refresh(self, _event=None) -> None:
        self.labels.reset_choices()
        self.image.reset_choices()

    def _offer_classes(self, _value=None) -> None:
        """A prediction layer of a semantic model holds classes: offer to split them."""
        layer = self.labels.value
        if layer is not None:
            self.classes.value = bool(layer.metadata.get("class_values")) and not layer.metadata.get("objects")

    # -- measuring ---------------------------------------------------------------------
    def inputs(self) -> dict:
        """What to measure, read from the panel on the GUI thread, or an error."""
        labels = self.labels.value
        if labels is None:
            raise UNetCatError("choose a Labels layer to measure")
        data = np.asarray(labels.data)
        if data.ndim not in (2, 3):
            raise UNetCatError(f"Labels layer '{labels.name}' is {data.ndim}D; objects are measured in 2D or 3D")
        image = self.image.value
        values = None
        if image is not None:
            values = np.asarray(image.data)
            if values.shape[: data.ndim] != data.shape or values.ndim > data.ndim + 1:
                raise UNetCatError(
                    f"Image layer '{image.name}' (shape {values.shape}) does not lie over Labels layer "
                    f"'{labels.name}' (shape {data.shape})"
                )
        scale = tuple(float(s) for s in labels.scale)
        physical = self.physical.value and any(abs(s - 1) > 1e-12 for s in scale)
        # napari's own default unit is the pixel: a scale set without a unit is taken as µm.
        stated = str(labels.units[0]) if getattr(labels, "units", None) else "pixel"
        unit = "um" if stated in ("pixel", "") else stated
        return {
            "labels": data,
            "image": values,
            "pixel_size": scale if physical else None,
            "unit": UNIT_NAMES.get(unit, unit),
            "classes": self.classes.value,
            "name": f"Labels layer '{labels.name}'",
        }

    def run(self) -> None:
        if self.worker is not None:
            return
        try:
            inputs = self.inputs()
        except UNetCatError as err:
            self.fail(str(err))
            return
        from napari.qt.threading import create_worker

        from ..measurements import measure

        self.measured_layer = self.labels.value
        self.status.value = f"measuring '{self.measured_layer.name}'..."
        self.measure_button.enabled = False
        self.worker = create_worker(
            measure, **{k: v for k, v in inputs.items() if k != "labels"}, labels=inputs["labels"]
        )
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(lambda err: self.fail(f"measuring failed: {err}"))
        self.worker.finished.connect(self._on_finished)
        self.worker.start()

    @unless_closed
    def _on_done(self, table: dict) -> None:
        layer = self.measured_layer
        table = _with_earlier_columns(table, layer.features)
        self.table_data = table
        layer.features = {k: np.asarray(v) for k, v in table.items()}
        self.table.native.setSortingEnabled(False)  # filled unsorted, then sortable again
        self.table.value = {k: [_shown(x) for x in v] for k, v in table.items()}
        self.table.native.setSortingEnabled(True)
        self.counts.value = _count_text(table)
        self.status.value = f"measured {len(table['label'])} objects of '{layer.name}' (also in its features)"

    @unless_closed
    def _on_finished(self) -> None:
        self.worker = None
        self.measure_button.enabled = True

    # -- the table -----------------------------------------------------------------------
    def _on_row(self, row: int, _column: int) -> None:
        """Select the clicked object's label and centre the view on it."""
        if self.table_data is None or self.measured_layer is None:
            return
        header = [self.table.native.horizontalHeaderItem(c).text() for c in range(self.table.native.columnCount())]
        label = int(float(self.table.native.item(row, header.index("label")).text()))
        index = int(np.nonzero(self.table_data["label"] == label)[0][0])
        self.select(label, index)

    def select(self, label: int, index: int | None = None) -> None:
        """Select ``label`` in the measured layer and centre the view on its centroid."""
        layer = self.measured_layer
        if index is None:
            index = int(np.nonzero(self.table_data["label"] == label)[0][0])
        axes = "zyx"[-layer.ndim :]
        pixel = [float(self.table_data[f"centroid_{a}"][index]) for a in axes]
        world = [p * s + t for p, s, t in zip(pixel, layer.scale, layer.translate)]
        layer.selected_label = label
        if layer.ndim == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[0])
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari 0.9+
        camera.center = tuple(world[-2:])

    def save(self) -> None:
        from pathlib import Path

        from ..measurements import write_csv

        if self.table_data is None:
            self.fail("nothing to save yet: Measure first")
            return
        path = Path(str(self.csv_path.value or ""))
        if not str(self.csv_path.value or "") or path.is_dir():
            self.fail("choose a file to save the table to, for example objects.csv")
            return
        try:
            write_csv(path, self.table_data)
        except OSError as err:
            self.fail(f"could not save the table: {err}")
            return
        self.status.value = f"saved {len(self.table_data['label'])} rows to {path}"


def _with_earlier_columns(table: dict, features) -> dict:
    """``table`` with the columns an earlier step left in the layer's features by label
    (the ``uncertainty`` Segment adds), so that objects sort by them too."""
    if features is None or "label" not in getattr(features, "columns", ()):
        return table
    known = {int(v): i for i, v in enumerate(features["label"])}
    rows = [known.get(int(v)) for v in table["label"]]
    for column in features.columns:
        if column not in table and np.issubdtype(np.asarray(features[column]).dtype, np.number):
            values = np.asarray(features[column], np.float64)
            table[column] = np.asarray([values[r] if r is not None else np.nan for r in rows])
    return table


def _shown(value):
    """A cell's value: a number stays a number (so that columns sort by value), shortened."""
    if isinstance(value, (np.floating, float)):
        return int(value) if float(value).is_integer() else float(f"{float(value):.4g}")
    if isinstance(value, (np.integer, int)):
        return int(value)
    return str(value)


def _count_text(table: dict) -> str:
    """How many objects, per class where the table has classes."""
    total = len(table["label"])
    if "class" not in table:
        return f"{total} objects"
    values, counts = np.unique(table["class"], return_counts=True)
    return f"{total} objects: " + ", ".join(f"class {v}: {n}" for v, n in zip(values, counts))
