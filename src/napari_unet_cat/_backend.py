"""Import Keras so that TensorFlow can live beside napari's OpenGL drawing.

TensorFlow's Linux wheels (2.20 and later) carry their own copy of LLVM and load it with
``RTLD_GLOBAL``; Mesa's OpenGL drivers link the system's LLVM under the same symbol names.
In one process the two copies then bind to each other's functions and the process
crashes, whichever is loaded first (TensorFlow 2.21 with Mesa 22 under Xvfb, for
example). Before TensorFlow is first imported we therefore ask it to load its library
privately (``RTLD_LOCAL``, as its non-static builds do) and to prefer its own symbols
(``RTLD_DEEPBIND``). Nothing changes when TensorFlow is already imported, on other
systems, or with another Keras backend.
"""

from __future__ import annotations

import os
import sys

_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


def _tensorflow_backend() -> bool:
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


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


if (
    sys.platform.startswith("linux")
    and hasattr(os, "RTLD_DEEPBIND")
    and "tensorflow" not in sys.modules
    and _tensorflow_backend()
):
    _import_tensorflow_privately()

import keras  # noqa: E402

__all__ = ["keras"]
