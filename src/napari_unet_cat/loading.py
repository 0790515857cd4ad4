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
    from .package_model import PackageModel
    from .segmenter import UNetModel


def model_path(spec: str | os.PathLike) -> Path:
    """The file ``spec`` names: a built-in model's (checked against its SHA-256), or ``spec``."""
    name = builtin_model_name(spec)
    return builtin_path(name) if name else Path(spec)


def load_model(
    path: str | os.PathLike, precision: str = "auto", *, trust_package_code: bool = False
) -> UNetModel | PackageModel:
    """Open a model file written by :meth:`UNetModel.save` (or ``napari-unet-cat train``),
    a built-in model, or a bioimage.io package: one this plugin exported opens as the
    :class:`UNetModel` inside it, any other as a
    :class:`~napari_unet_cat.package_model.PackageModel` run by bioimageio.core.

    Args:
        path: The model file, the package (a ``.zip``, or a folder with its
            ``rdf.yaml``), or the name of a built-in model (``"nuclei"``; see
            :mod:`~napari_unet_cat.builtin`).
        precision: Compute precision for prediction: ``auto`` (mixed float16 on a GPU,
            float32 on a CPU), ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        trust_package_code: Let a package's weights run its own Python code
            (``pytorch_state_dict``, ``keras_hdf5``); refused otherwise, naming the file.

    Raises:
        ModelFileError: The file is missing, truncated, corrupt, made by another tool,
            or made by a newer version of this package. The message names the file.
    """
    from .bioimageio import is_bioimageio_package, is_our_package, packaged_model_bytes
    from .model_file import read_model_file
    from .resources import resolve_precision
    from .segmenter import UNetModel

    path = model_path(path)
    if is_bioimageio_package(path) and not is_our_package(path):
        from .package_model import PackageModel

        return PackageModel.open(path, trust_code=trust_package_code)
    policy = resolve_precision(precision)
    if is_bioimageio_package(path):
        # A package exported by this plugin carries our model file inside.
        with tempfile.TemporaryDirectory() as tmp:
            inner = Path(tmp) / "model.keras"
            inner.write_bytes(packaged_model_bytes(path))
            return UNetModel(*read_model_file(inner, policy))
    return UNetModel(*read_model_file(path, policy))


def resolve_model(model, precision: str = "auto", *, trust_package_code: bool = False) -> UNetModel | PackageModel:
    """``model`` itself when it is a model in memory, else :func:`load_model` of it."""
    from .package_model import PackageModel
    from .segmenter import UNetModel

    if isinstance(model, (UNetModel, PackageModel)):
        return model
    return load_model(model, precision, trust_package_code=trust_package_code)


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
