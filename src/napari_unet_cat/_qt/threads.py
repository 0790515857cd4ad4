"""Threads for the model work in napari, kept apart from the GUI thread.

napari's generator workers drive the work (so Stop takes effect at the next step); the
model itself runs on threads Python made (see :func:`on_model_thread`).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import queue
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qtpy.QtCore import QObject, Signal

#: Whether the model threads freeze the heap while they work (see :func:`heap_frozen`);
#: benchmarks/bench_napari_sample.py turns it off to measure what it saves.
FREEZE_HEAP = True


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
            # No full garbage collection stalls the viewer meanwhile.
            with heap_frozen() if FREEZE_HEAP else contextlib.nullcontext():
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
