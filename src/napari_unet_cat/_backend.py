"""Import Keras so that TensorFlow can live beside napari's OpenGL drawing.

TensorFlow's Linux wheels (2.20 and later) carry their own copy of LLVM and load it with
``RTLD_GLOBAL``; Mesa's OpenGL drivers link the system's LLVM under the same symbol names.
In one process the two copies then bind to each other's functions and the process
crashes, whichever is loaded first (TensorFlow 2.21 with Mesa 22 under Xvfb, for
example). Before TensorFlow is first imported we therefore ask it to load its library
privately (``RTLD_LOCAL``, as its non-static builds do) and to prefer its own symbols
(``RTLD_DEEPBIND``).

This is done only where OpenGL may be drawn: in a process that has imported Qt or napari
(the plugin's widgets import the model code lazily, after napari). The headless command
line and Dask workers import TensorFlow as usual. ``NAPARI_UNET_CAT_PRIVATE_TF=0`` turns
it off everywhere, ``=1`` forces it. Nothing changes when TensorFlow is already
imported, on other systems, or with another Keras backend (``KERAS_BACKEND``, or the
``backend`` of ``~/.keras/keras.json``, as Keras itself reads it).
"""

from __future__ import annotations

import os
import sys

_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


#: Set to 0 to import TensorFlow as usual even beside Qt, to 1 to import it privately always.
PRIVATE_TF_VARIABLE = "NAPARI_UNET_CAT_PRIVATE_TF"
_QT_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")


def keras_backend_name() -> str:
    """The Keras backend this process will use: ``KERAS_BACKEND``, else the ``backend``
    in Keras's config file (``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``), else
    ``tensorflow``, read without importing Keras."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as fh:
            return str(json.load(fh).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _tensorflow_backend() -> bool:
    return keras_backend_name() == "tensorflow"


def _wants_private_import() -> bool:
    """Whether to import TensorFlow privately here: beside Qt/napari, unless told."""
    setting = os.environ.get(PRIVATE_TF_VARIABLE, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return any(name in sys.modules for name in _QT_MODULES)


def _import_tensorflow_privately() -> None:
    """Import TensorFlow with its symbols kept to itself."""
    flags = sys.getdlopenflags()
    # TensorFlow only asks for RTLD_GLOBAL when this helper module imports.
    sys.modules[_GLOBAL_FLAGS_MODULE] = None  # type: ignore[assignment]
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import tensorflow  # noqa: F401
    finally:
        sys.setdlopenflags(flags)
        del sys.modules[_GLOBAL_FLAGS_MODULE]


# TensorFlow takes all of every GPU's memory at start unless told to grow as needed:
# with several processes on one GPU (Dask workers, napari beside a script) the second
# would have none. A value the user set is kept.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

if (
    sys.platform.startswith("linux")
    and hasattr(os, "RTLD_DEEPBIND")
    and "tensorflow" not in sys.modules
    and _tensorflow_backend()
    and _wants_private_import()
):
    _import_tensorflow_privately()

import keras  # noqa: E402


def _keep_tensorflow_out() -> None:
    """On another backend (JAX), have Keras treat TensorFlow as absent.

    Keras asks whether TensorFlow is installed (``module_utils.tensorflow.available``,
    which imports it) when it serializes a layer's settings, as saving or cloning a model
    does, only to recognise TensorFlow's own objects, which a JAX process never makes.
    Where TensorFlow is installed beside JAX (it is this package's default backend),
    that import would cost seconds and memory and start TensorFlow's runtime beside JAX's.
    Marking it unavailable gives the code path Keras takes where TensorFlow is not
    installed at all, which is how JAX is used on a GPU machine.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        from keras.src.utils import module_utils
    except ImportError:  # another Keras layout: leave it as it is
        return
    lazy = getattr(module_utils, "tensorflow", None)
    if lazy is not None and getattr(lazy, "module", None) is None and hasattr(lazy, "_available"):
        lazy._available = False


if keras.backend.backend() != "tensorflow":
    _keep_tensorflow_out()

__all__ = ["keras"]
