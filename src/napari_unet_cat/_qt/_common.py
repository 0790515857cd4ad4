"""Helpers shared by the widgets: layer choices, messages, the session's model."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import os
import queue
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from qtpy.QtCore import QObject, Signal

from ..errors import UNetCatError

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


#: Where the Segment widgets take a model from, besides the built-in models.
MODEL_FILE = "a model file"
SESSION_MODEL = "the model trained in this session"


def model_sources() -> list[str]:
    """The choices of a widget's model field: a file, the session's, each built-in model."""
    from ..builtin import builtin_models

    return [MODEL_FILE, SESSION_MODEL, *(m.label for m in builtin_models().values())]


def chosen_model(source: str, path_value, purpose: str = ""):
    """What a model field chose: the session's model, a built-in model's name, or a
    model file's path (both loaded later, on a worker); an error says what is missing."""
    from ..builtin import builtin_model_name

    if source == SESSION_MODEL:
        if Session.model is None:
            raise UNetCatError("no model has been trained in this session yet")
        return Session.model
    if source != MODEL_FILE:
        name = builtin_model_name(source)
        if name is None:
            raise UNetCatError(f"unknown model choice {source!r}")
        return name
    return chosen_model_file(path_value, purpose)


def chosen_model_file(value, purpose: str = "") -> Path:
    """The model file chosen in a file field, or an error that says what to choose."""
    if not value or str(value) in ("", ".") or Path(value).is_dir():
        raise UNetCatError(f"choose a model file (.keras){' ' + purpose if purpose else ''}")
    path = Path(value)
    if not path.is_file():
        raise UNetCatError(f"model file {path} does not exist")
    return path


def background_value(class_values) -> int:
    """The class shown as background: value 0 when the model has it, else the lowest."""
    values = list(class_values)
    return 0 if 0 in values else min(values)


class Session:
    """The model trained or loaded last in this napari session (shared by the widgets).

    Models loaded from files are cached by path and modification time; training never
    changes a cached model (the trainer works on a copy), so a cached model always holds
    its file's weights.
    """

    model: ClassVar[UNetModel | None] = None
    _cache: ClassVar[dict[tuple[str, float], UNetModel]] = {}

    @classmethod
    def set(cls, model: UNetModel) -> None:
        cls.model = model

    @classmethod
    def load(cls, path: str | os.PathLike) -> UNetModel:
        """Load a model file (or a built-in model, by name) once per path and
        modification time (called on a worker)."""
        from ..builtin import builtin_model_name, builtin_path
        from ..model_file import load_model

        builtin = builtin_model_name(path)
        path = builtin_path(builtin) if builtin else Path(path)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
        if key not in cls._cache:
            cls._cache[key] = load_model(path)
        return cls._cache[key]


#: Threads made by Python for the model work. TensorFlow's bindings can crash when they
#: re-acquire the GIL on a thread that Qt's pool made and Python adopted, so the Qt
#: workers only wait here while the model runs on these.
_MODEL_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="napari-unet-cat")


_freeze_lock = threading.Lock()
_frozen_runs = 0


@contextlib.contextmanager
def heap_frozen() -> Generator[None, None, None]:
    """Keep Python's full garbage collections off the objects that exist now.

    A full collection walks every object of the process with the GIL held; with napari,
    TensorFlow and a model loaded that is hundreds of thousands of objects and a quarter
    of a second in which the viewer cannot repaint. Tracing the first training step makes
    enough objects to set one off. Inside this block what existed at its start is frozen
    (:func:`gc.freeze`), so collections walk only the objects made since; when the last
    such block ends the frozen objects go back to the collector (:func:`gc.unfreeze`), so
    garbage among them is still collected later.
    """
    global _frozen_runs
    with _freeze_lock:
        _frozen_runs += 1
        gc.freeze()
    try:
        yield
    finally:
        with _freeze_lock:
            _frozen_runs -= 1
            if _frozen_runs == 0:
                gc.unfreeze()


_warm_up_started = threading.Event()


def warm_up_model_code() -> None:
    """Import the model code (Keras and its backend) on a background thread, once.

    Importing TensorFlow takes seconds and holds Python's GIL for up to half a second at
    a time; done on the model thread when Train is pressed, it stalled the viewer at the
    start of training. A widget calls this when it opens, while the user is still
    choosing layers. An error is left for the real import to report.
    """
    if _warm_up_started.is_set():
        return
    _warm_up_started.set()

    def run() -> None:
        with contextlib.suppress(Exception):
            from .. import training  # noqa: F401

    _MODEL_THREADS.submit(run)


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
            with heap_frozen():  # no full garbage collection stalls the viewer meanwhile
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
    note = Signal(str)


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


def layer_input(image, extra_channels=(), axes: str = ""):
    """What a model sees of an Image layer: ``(data, axes, channel_names)``.

    ``extra_channels`` are more Image layers, one channel each, that join ``image`` as
    the channels of one input, in that order (napari opens a multichannel file as one
    layer per channel). ``axes`` (``CYX``, ``ZCYX``...) says where the channels of one
    layer are; without it an RGB layer's last axis is its colour and any other layer has
    no channel axis. ``data`` comes in the package's axis order, read lazily;
    ``channel_names`` are the layer names when each layer is one channel.
    """
    from ..arrays import StackedChannels, stack_axes, to_canonical

    extra = [layer for layer in extra_channels if layer is not image]
    if extra:
        layers = [image, *extra]
        if axes:
            raise UNetCatError("give axes for one layer with channels, or several single-channel layers, not both")
        rgb = [layer.name for layer in layers if layer.rgb]
        if rgb:
            raise UNetCatError(f"layer '{rgb[0]}' is RGB: channel layers must each hold one channel")
        data = StackedChannels([layer.data for layer in layers], [layer.name for layer in layers])
        return data, stack_axes(image.ndim - 2) + "YXC", [layer.name for layer in layers]
    if axes:
        data, canonical = to_canonical(image.data, axes, name=f"layer '{image.name}'")
        return data, canonical, [] if canonical[-1] in "CS" else [image.name]
    if image.rgb:
        return image.data, stack_axes(image.data.ndim - 3) + "YXS", []
    return image.data, stack_axes(image.data.ndim - 2) + "YX", [image.name]


def output_axes_of(layer, data, axes: str) -> list[int]:
    """For each axis of a prediction of ``data`` (stack axes, Y, X), the axis of
    ``layer`` it lies along (to place the prediction over the layer and to follow the
    plane on screen)."""
    from ..arrays import AxesView

    n_out = len(labels_shape_for(data, axes))
    if isinstance(data, AxesView):
        return list(data.order[:n_out])
    return list(range(n_out))


def plane_on_screen(viewer: napari.Viewer, layer, layer_axes: list[int]) -> tuple[int, ...]:
    """Index of the plane shown now along the stack axes ``layer_axes[:-2]`` of ``layer``."""
    return plane_at_step(tuple(viewer.dims.current_step), layer, layer_axes)


def plane_at_step(step: tuple[int, ...], layer, layer_axes: list[int]) -> tuple[int, ...]:
    """Index of the plane of ``layer`` at the viewer's dims ``step`` (one entry per
    viewer axis; a layer with fewer axes takes the last ones), along ``layer_axes[:-2]``."""
    offset = len(step) - layer.ndim
    shape = layer.data.shape
    return tuple(int(min(max(step[offset + a], 0), shape[a] - 1)) for a in layer_axes[:-2])


def labels_shape_for(data, axes: str) -> tuple[int, ...]:
    """The shape a Labels layer painted over ``data`` (of ``axes``) must have."""
    shape = tuple(np.shape(data))
    return shape[:-1] if axes and axes[-1] in "CS" else shape
