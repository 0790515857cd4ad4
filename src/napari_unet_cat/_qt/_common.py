"""Helpers shared by the widgets: layer choices, messages, the session's model."""

from __future__ import annotations

import functools
import inspect
import os
import queue
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from qtpy.QtCore import QObject, Signal

if TYPE_CHECKING:
    import napari

    from ..segmenter import UNetModel


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


#: Suffix of the Labels layers that hold a prediction (``<image> U-Net``).
PREDICTION_SUFFIX = " U-Net"


class Session:
    """The model trained or loaded last in this napari session (shared by the widgets)."""

    model: ClassVar[UNetModel | None] = None
    source: ClassVar[str] = ""
    _cache: ClassVar[dict[tuple[str, float], UNetModel]] = {}

    @classmethod
    def set(cls, model: UNetModel, source: str) -> None:
        cls.model, cls.source = model, source

    @classmethod
    def load(cls, path: str | os.PathLike) -> UNetModel:
        """Load a model file once per path and modification time (called on a worker)."""
        from ..segmenter import load_model

        path = Path(path)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
        if key not in cls._cache:
            cls._cache[key] = load_model(path)
        return cls._cache[key]


#: Threads made by Python for the model work. TensorFlow's bindings can crash when they
#: re-acquire the GIL on a thread that Qt's pool made and Python adopted, so the Qt
#: workers only wait here while the model runs on these.
_MODEL_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="napari-unet-cat")


def _drain(gen: Generator, messages: queue.SimpleQueue, closed: threading.Event) -> Any:
    """Pass ``gen``'s values to ``messages`` until it returns (its value) or is closed."""
    while not closed.is_set():
        try:
            value = next(gen)
        except StopIteration as stop:
            return stop.value
        messages.put(("yield", value))
    gen.close()
    return None


def on_model_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
    """Run ``function`` on a Python-made thread, passing on what it yields and returns.

    Use it as the body of a napari generator worker: ``create_worker(on_model_thread, f,
    ...)``. A generator ``function`` is iterated on that thread and its values are
    yielded here as they come; its return value (or exception) comes back here. Closing
    this generator (the worker quitting) closes ``function``'s generator at its next yield.
    """
    messages: queue.SimpleQueue = queue.SimpleQueue()
    closed = threading.Event()

    def drive() -> None:
        try:
            result = function(*args, **kwargs)
            if inspect.isgenerator(result):
                result = _drain(result, messages, closed)
            messages.put(("return", result))
        except BaseException as err:  # handed to the worker, which reports it
            messages.put(("error", err))

    _MODEL_THREADS.submit(drive)
    try:
        while True:
            kind, value = messages.get()
            if kind == "yield":
                yield value
            elif kind == "return":
                return value
            else:
                raise value
    finally:
        closed.set()


class Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued Qt signals)."""

    step = Signal(int, int, str)


def layers_of(viewer: napari.Viewer | None, kind: str) -> list:
    if viewer is None:
        return []
    import napari.layers

    cls = {"image": napari.layers.Image, "labels": napari.layers.Labels}[kind]
    return [layer for layer in viewer.layers if isinstance(layer, cls)]


def pair_layers_by_name(viewer: napari.Viewer) -> list[tuple]:
    """Every (Image, Labels) pair whose Labels layer name starts with the Image layer name
    (predictions this plugin added, ``<image> U-Net``, are not annotations and are left out)."""
    images = sorted(layers_of(viewer, "image"), key=lambda layer: -len(layer.name))
    pairs = []
    for labels in layers_of(viewer, "labels"):
        if labels.name.endswith(PREDICTION_SUFFIX):
            continue
        match = next((im for im in images if labels.name.startswith(im.name) and labels.name != im.name), None)
        if match is not None:
            pairs.append((match, labels))
    return pairs


def notify_error(message: str) -> None:
    """Show an error in napari's notifications without raising."""
    from napari.utils.notifications import show_error

    show_error(message)


def current_plane(viewer: napari.Viewer, layer) -> tuple[int, ...]:
    """Index of the plane of ``layer`` shown now (``()`` for a 2D layer)."""
    n_lead = layer.ndim - 2
    if n_lead <= 0:
        return ()
    step = viewer.dims.current_step
    offset = viewer.dims.ndim - layer.ndim
    return tuple(int(min(max(step[offset + i], 0), layer.data.shape[i] - 1)) for i in range(n_lead))
