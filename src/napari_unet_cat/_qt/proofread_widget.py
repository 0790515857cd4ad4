"""Proofread objects: merge, split and delete by clicking, with napari's undo.

A tool is chosen in the panel or by its key; clicks on the Labels layer then make the
edit (:mod:`~napari_unet_cat.proofreading`), written through the layer's ``data_setitem``
so that napari's undo (Ctrl+Z, or **Undo** here) takes each edit back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, PushButton, RadioButtons, SpinBox

from ..errors import UNetCatError
from .panel import Panel, status_label

if TYPE_CHECKING:
    import napari.viewer

#: The tools, the clicks each needs, and their keys (while the Labels layer is selected).
TOOLS = {
    "off": (0, None),
    "merge: click two objects": (2, "m"),
    "split: click two points in one object": (2, "s"),
    "delete: click an object": (1, "d"),
}
SHORTCUTS = "keys on the Labels layer: M merge, S split, D delete, Escape off; Ctrl+Z undoes an edit"


class ProofreadWidget(Panel):
    """The tools, the smallest object kept, renumbering and undo for one Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(status="choose a tool, then click on the objects")
        self.viewer = viewer
        self.clicks: list[tuple[float, ...]] = []
        self._bound = None
        self.labels = ComboBox(label="labels", choices=self.labels_choices)
        self.tool = RadioButtons(choices=list(TOOLS), value="off")
        self.min_size = SpinBox(label="smallest object (px)", value=20, min=1, max=10**7)
        self.small_button = PushButton(text="Delete smaller objects")
        self.renumber_button = PushButton(text="Number the objects 1..N")
        self.undo_button = PushButton(text="Undo")
        self.shortcuts = status_label(SHORTCUTS)
        self.extend(
            [
                self.labels,
                self.tool,
                self.min_size,
                self.small_button,
                self.renumber_button,
                self.undo_button,
                self.status,
                self.shortcuts,
            ]
        )
        self.tool.changed.connect(self._on_tool)
        self.labels.changed.connect(self._bind)
        self.small_button.changed.connect(self.delete_small)
        self.renumber_button.changed.connect(self.renumber)
        self.undo_button.changed.connect(self.undo)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._bind()

    def _refresh(self, _event=None) -> None:
        self.labels.reset_choices()

    # -- binding to the layer ------------------------------------------------------------
    def _bind(self, _value=None) -> None:
        """Listen to clicks and keys on the chosen Labels layer (and no other)."""
        self._unbind()
        layer = self.labels.value
        if layer is None:
            return
        layer.mouse_drag_callbacks.append(self._on_press)
        for name, (_, key) in TOOLS.items():
            if key:
                layer.bind_key(key, lambda _layer, name=name: setattr(self.tool, "value", name), overwrite=True)
        layer.bind_key("Escape", lambda _layer: setattr(self.tool, "value", "off"), overwrite=True)
        self._bound = layer

    def _unbind(self) -> None:
        layer, self._bound = self._bound, None
        if layer is None:
            return
        if self._on_press in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_press)
        for key in [k for _, k in TOOLS.values() if k] + ["Escape"]:
            layer.bind_key(key, None, overwrite=True)

    def on_close(self) -> None:
        self._unbind()

    def _on_tool(self, name: str) -> None:
        self.clicks = []
        layer = self.labels.value
        if layer is not None and name != "off":
            layer.mode = "pan_zoom"  # clicks are the tool's, not the brush's
        self.status.value = "" if name == "off" else name

    def _on_press(self, layer, event):
        if self.tool.value == "off" or event.button != 1:
            return
        self.click(tuple(layer.world_to_data(event.position)))

    # -- the edits -------------------------------------------------------------------------
    def click(self, point: tuple[float, ...]) -> None:
        """A click of the current tool at ``point`` (the layer's pixel coordinates)."""
        needed = TOOLS[self.tool.value][0]
        if not needed:
            return
        self.clicks.append(tuple(point))
        if len(self.clicks) < needed:
            self.status.value = f"{self.tool.value}: {len(self.clicks)} of {needed} clicks"
            return
        clicks, self.clicks = self.clicks, []
        self._apply(lambda labels: self._edit_for(labels, clicks))

    def _edit_for(self, labels, clicks):
        from .. import proofreading as edits

        name = self.tool.value
        if name.startswith("split"):
            return edits.split(labels, clicks)
        found = [edits.label_at(labels, c) for c in clicks]
        if name.startswith("merge"):
            return edits.merge(labels, found[0], found[1])
        return edits.delete(labels, found[0])

    def delete_small(self) -> None:
        from ..proofreading import delete_smaller_than

        self._apply(lambda labels: delete_smaller_than(labels, self.min_size.value))

    def renumber(self) -> None:
        from ..proofreading import relabel_sequentially

        self._apply(relabel_sequentially)

    def _apply(self, make_edit) -> None:
        """Make an edit of the chosen layer's labels, undoable with napari's undo."""
        import numpy as np

        layer = self.labels.value
        if layer is None:
            self.fail("choose a Labels layer to proofread")
            return
        try:
            edit = make_edit(np.asarray(layer.data))
        except UNetCatError as err:
            self.fail(str(err))
            return
        if edit.size:
            layer.data_setitem(edit.indices, edit.values)
        self.status.value = edit.what + ("" if edit.size else " (nothing to change)")

    def undo(self) -> None:
        layer = self.labels.value
        if layer is not None:
            layer.undo()
            self.status.value = "undone"
