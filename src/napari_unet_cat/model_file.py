"""The model file: one ``.keras`` archive that carries everything a model needs.

The archive is what Keras writes for the network (``config.json``, ``metadata.json``,
``model.weights.h5``), so ``keras.saving.load_model`` opens it as a plain network, plus
one member of ours, ``napari_unet_cat.json``: the :class:`~napari_unet_cat.config.ModelConfig`
(classes, normalization, scale, training settings, history, versions).

Loading rebuilds the network from our JSON and reads only the weights member, rather
than calling ``keras.saving.load_model``. Two reasons: the network must be built under
the compute precision chosen at load time (mixed float16 on a GPU, float32 on a CPU),
which a deserialized network fixes to the one it was saved with; and our JSON is the
one description of the architecture that older files also have. The archive's layout
(the weights under ``model.weights.h5``) is Keras's documented format for ``.keras``
files; tests/test_model_file.py checks it against the installed Keras, and that plain
Keras opens our files with the same predictions.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import ModelConfig
from .errors import ModelFileError

if TYPE_CHECKING:
    from .segmenter import UNetModel

#: Name of the JSON member that makes a ``.keras`` zip one of our model files.
CONFIG_MEMBER = "napari_unet_cat.json"
WEIGHTS_MEMBER = "model.weights.h5"
#: Newest model-file format this version reads and the one it writes.
FORMAT_VERSION = 1


def save_model(model: UNetModel, path: str | os.PathLike, *, weights_dtype: str = "float32") -> Path:
    """Write ``model`` (a :class:`~napari_unet_cat.segmenter.UNetModel`) as a model file:
    a ``.keras`` zip with our settings inside, atomically.

    The file is written beside ``path`` under a temporary name and renamed into
    place, so ``path`` is either the complete new file or untouched. With
    ``weights_dtype="float16"`` the weights are stored at half precision (half the
    size; loading casts them back to the compute precision): for shipping a model.
    """
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be 'float32' or 'float16'; received {weights_dtype!r}")
    from ._backend import keras
    from .builtin import is_builtin_file

    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"cannot save the model to {path}: it is a folder; give a file name")
    if is_builtin_file(path):
        raise ModelFileError(
            f"cannot save the model to {path}: that is a built-in model shipped with napari-unet-cat; "
            "save to a file of your own"
        )
    if not path.parent.exists():
        raise ModelFileError(f"cannot save the model to {path}: folder {path.parent} does not exist")
    model.config.package_version = __version__
    model.config.format_version = FORMAT_VERSION
    clean = keras.models.clone_model(model.keras_model)
    clean.set_weights(model.keras_model.get_weights())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.keras", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        clean.save(tmp)
        if weights_dtype == "float16":
            _store_weights_as_float16(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CONFIG_MEMBER, json.dumps(model.config.to_dict(), indent=1))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _store_weights_as_float16(archive_path: Path) -> None:
    """Rewrite the weights member of a ``.keras`` archive with float16 values (a fresh
    HDF5 file: one edited in place keeps the space of what it deleted)."""
    import h5py
    import numpy as np

    def copy(source, target) -> None:
        target.attrs.update(source.attrs)
        for name, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, target.create_group(name))
            else:
                values = item[()]
                if getattr(values, "dtype", None) == np.float32:
                    values = values.astype(np.float16)
                target.create_dataset(name, data=values).attrs.update(item.attrs)

    with zipfile.ZipFile(archive_path) as archive:
        members = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    with tempfile.TemporaryDirectory() as tmp:
        full, half = Path(tmp) / "full.h5", Path(tmp) / "half.h5"
        full.write_bytes(dict(members)[WEIGHTS_MEMBER])
        with h5py.File(full, "r") as source, h5py.File(half, "w") as target:
            copy(source, target)
        halved = half.read_bytes()
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, halved if name == WEIGHTS_MEMBER else data)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The settings of the model file at ``path``, read without building its network:
    cheap enough for a widget on the GUI thread.

    Raises:
        ModelFileError: The file is not one of ours, or its settings are unreadable.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_settings(archive, path)
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is not a napari-unet-cat model file, or it is truncated") from None
    except OSError as err:
        raise ModelFileError(f"cannot read model file {path}: {err}") from None


def _read_settings(archive: zipfile.ZipFile, path: Path) -> ModelConfig:
    """The checked :class:`ModelConfig` inside an open model file."""
    names = set(archive.namelist())
    if CONFIG_MEMBER not in names:
        raise ModelFileError(
            f"{path} is not a napari-unet-cat model: it has no {CONFIG_MEMBER} inside (a Keras file from another tool?)"
        )
    if WEIGHTS_MEMBER not in names:
        raise ModelFileError(f"model file {path} is corrupt: it holds no weights")
    try:
        raw = json.loads(archive.read(CONFIG_MEMBER))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"model file {path} is corrupt: its settings are unreadable ({err})") from None
    version = int(raw.get("format_version", 0)) if isinstance(raw, dict) else 0
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path} was made by napari-unet-cat {raw.get('package_version', '?')} "
            f"(file format {version}); this is version {__version__}, which reads formats up to "
            f"{FORMAT_VERSION}: upgrade napari-unet-cat to use it"
        )
    try:
        config = ModelConfig.from_dict(raw)
        config.architecture.validate()
    except (TypeError, ValueError, KeyError) as err:
        raise ModelFileError(f"model file {path} is corrupt: its settings are invalid ({err})") from None
    if len(config.classes) != config.architecture.n_classes:
        raise ModelFileError(f"model file {path} is corrupt: its classes do not match its network")
    return config


def read_model_file(path: str | os.PathLike, dtype_policy: str = "float32"):
    """The network and settings of the model file at ``path``: ``(keras_model, config)``,
    the network's layers computing under ``dtype_policy``.

    Raises:
        ModelFileError: The file is missing, truncated, corrupt, made by another tool,
            or made by a newer version of this package. The message names the file.
    """
    from .unet import build_network

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"model file {path} is a folder, not a file")
    try:
        with zipfile.ZipFile(path) as archive:
            config = _read_settings(archive, path)
            with tempfile.TemporaryDirectory() as tmp:
                weights = Path(archive.extract(WEIGHTS_MEMBER, tmp))
                keras_model = build_network(config, dtype_policy)
                try:
                    keras_model.load_weights(weights)
                except Exception as err:  # h5py and Keras raise many kinds here
                    raise ModelFileError(f"model file {path} is corrupt: its weights do not load ({err})") from None
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path} is not a napari-unet-cat model file, or it is truncated (not a complete zip archive)"
        ) from None
    except (OSError, EOFError, zipfile.LargeZipFile) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"cannot read model file {path}: {err}") from None
    return keras_model, config
