"""Opening a model, whatever names it: a model file, a bioimage.io package or a built-in name.

Every interface (Python, the command line, the napari widgets, the folder batch) opens
models through :func:`load_model`, or :func:`resolve_model` where a model already in
memory may be given instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .builtin import builtin_model_name, builtin_path
from .config import ModelConfig
from .errors import ModelFileError

if TYPE_CHECKING:
    from .segmenter import UNetModel


def model_path(spec: str | os.PathLike) -> Path:
    """The file ``spec`` names: a built-in model's (checked against its SHA-256), or ``spec``."""
    name = builtin_model_name(spec)
    return builtin_path(name) if name else Path(spec)


def load_model(path: str | os.PathLike, precision: str = "auto") -> UNetModel:
    """Open a model file written by :meth:`UNetModel.save` (or ``napari-unet-cat train``),
    a bioimage.io package exported by this plugin, or a built-in model.

    Args:
        path: The model file, the package's ``.zip``, or the name of a built-in model
            (``"nuclei"``; see :mod:`~napari_unet_cat.builtin`).
        precision: Compute precision for prediction: ``auto`` (mixed float16 on a GPU,
            float32 on a CPU), ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.

    Raises:
        ModelFileError: The file is missing, truncated, corrupt, made by another tool,
            or made by a newer version of this package. The message names the file.
    """
    from .bioimageio import is_bioimageio_package, packaged_model_bytes
    from .model_file import read_model_file
    from .resources import resolve_precision
    from .segmenter import UNetModel

    policy = resolve_precision(precision)
    path = model_path(path)
    if path.is_file() and is_bioimageio_package(path):
        # A package exported by this plugin carries our model file inside.
        with tempfile.TemporaryDirectory() as tmp:
            inner = Path(tmp) / "model.keras"
            inner.write_bytes(packaged_model_bytes(path))
            return UNetModel(*read_model_file(inner, policy))
    return UNetModel(*read_model_file(path, policy))


def resolve_model(model: UNetModel | str | os.PathLike, precision: str = "auto") -> UNetModel:
    """``model`` itself when it is a model in memory, else :func:`load_model` of it."""
    from .segmenter import UNetModel

    return model if isinstance(model, UNetModel) else load_model(model, precision)


def model_settings(spec: str | os.PathLike) -> ModelConfig:
    """The settings of the model ``spec`` names (its mode, preset, card), read without
    building its network: cheap enough for a widget on the GUI thread."""
    from .model_file import read_config

    name = builtin_model_name(spec)
    return read_config(builtin_path(name, verify=False) if name else Path(spec))


def builtin_config(name: str) -> ModelConfig:
    """The settings of built-in model ``name`` (see :func:`model_settings`)."""
    if builtin_model_name(name) is None:
        raise ModelFileError(f"there is no built-in model {name!r}")
    return model_settings(name)
