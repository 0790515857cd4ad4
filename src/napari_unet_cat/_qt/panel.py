"""What every panel of the plugin shares: a status line, errors shown once, and a
state that says when its Qt widgets are gone."""

from __future__ import annotations

import functools

from magicgui.widgets import Container


def unless_closed(method):
    """Make a widget's slot do nothing once the widget is closed: a worker may still
    report after its Qt objects are gone (closing napari during training)."""

    @functools.wraps(method)
    def slot(self, *args, **kwargs):
        if getattr(self, "closed", False):
            return None
        return method(self, *args, **kwargs)

    return slot


def status_label(text: str = ""):
    """A magicgui Label that wraps long messages instead of widening the dock."""
    from magicgui.widgets import Label

    label = Label(value=text)
    label.native.setWordWrap(True)
    return label


def notify_error(message: str) -> None:
    """Show an error in napari's notifications without raising."""
    from napari.utils.notifications import show_error

    show_error(message)


class Panel(Container):
    """A dock panel with a ``status`` line. Once its Qt widgets are destroyed (the panel or
    napari closed) ``closed`` is True and the slots marked :func:`unless_closed` do
    nothing; :meth:`on_close` is where a panel stops its work."""

    def __init__(self, status: str = "", **kwargs):
        super().__init__(labels=True, **kwargs)
        self.closed = False
        self.worker = None
        self.status = status_label(status)
        self.native.destroyed.connect(self._on_destroyed)

    def _on_destroyed(self, *_args) -> None:
        self.closed = True
        self.on_close()

    def on_close(self) -> None:
        """Called once when the panel's widgets are destroyed (nothing by default)."""

    @unless_closed
    def fail(self, message: str) -> None:
        """Say what went wrong, in the status line and napari's notifications."""
        self.status.value = message
        notify_error(message)

    def image_choices(self, _widget=None) -> list[tuple]:
        """The viewer's Image layers, for a layer field (``viewer`` set by the panel)."""
        from .layers import layers_of

        return [(layer.name, layer) for layer in layers_of(getattr(self, "viewer", None), "image")]

    def labels_choices(self, _widget=None) -> list[tuple]:
        """The viewer's Labels layers, for a layer field."""
        from .layers import layers_of

        return [(layer.name, layer) for layer in layers_of(getattr(self, "viewer", None), "labels")]
