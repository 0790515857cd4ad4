"""Models that ship inside the package, ready to segment without training.

A built-in model is an ordinary model file under ``napari_unet_cat/models/``, named in
``models/index.json`` with its SHA-256, so that a damaged install is reported rather than
used. Everything that takes a model file also takes a built-in model's name:
``load_model("nuclei")``, ``napari-unet-cat predict --model nuclei``, ``info nuclei``,
``train --resume nuclei``. A file of that name in the working folder wins over the
built-in model, and a path with a folder in it (``./nuclei``) is always a file.
Nothing is downloaded: the weights are in the wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import ModelFileError

#: Where the built-in models live inside the package, and their index.
MODELS_FOLDER = "models"
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class BuiltinModel:
    """One model shipped with the package: its name, file and the file's SHA-256."""

    name: str
    file: str
    sha256: str
    title: str = ""

    @property
    def path(self) -> Path:
        return models_folder() / self.file

    @property
    def label(self) -> str:
        """How the napari widgets offer it: ``built-in: nuclei``."""
        return f"built-in: {self.name}"


def models_folder() -> Path:
    """The package's folder of built-in models (a real folder: wheels install unzipped)."""
    return Path(str(resources.files("napari_unet_cat") / MODELS_FOLDER))


@lru_cache(maxsize=1)
def builtin_models() -> dict[str, BuiltinModel]:
    """The built-in models by name, from the package's index (empty if it has none)."""
    index = models_folder() / INDEX_FILE
    if not index.is_file():
        return {}
    entries = json.loads(index.read_text())
    return {
        name: BuiltinModel(name, entry["file"], entry["sha256"], entry.get("title", ""))
        for name, entry in entries.items()
    }


def builtin_model_name(spec: str | os.PathLike) -> str | None:
    """The built-in model ``spec`` names (``"nuclei"``, or ``"built-in: nuclei"`` as the
    widgets show it), or None when ``spec`` is a file path."""
    text = os.fspath(spec).strip()
    if text.startswith("built-in:"):
        text = text.split(":", 1)[1].strip()
    elif Path(text).exists() or os.sep in text or "/" in text:
        return None
    return text if text in builtin_models() else None


def builtin_path(name: str, *, verify: bool = True) -> Path:
    """The file of built-in model ``name``, checked against its SHA-256 unless
    ``verify`` is False.

    Raises:
        ModelFileError: No such built-in model, or its file is missing or damaged.
    """
    models = builtin_models()
    if name not in models:
        known = ", ".join(sorted(models)) or "none in this install"
        raise ModelFileError(f"there is no built-in model {name!r} (built-in models: {known})")
    model = models[name]
    if not model.path.is_file():
        raise ModelFileError(f"the built-in model {name!r} is missing from {model.path}: reinstall napari-unet-cat")
    if verify and file_sha256(model.path) != model.sha256:
        raise ModelFileError(
            f"the built-in model {name!r} at {model.path} is damaged (its SHA-256 is not the one the package "
            "records): reinstall napari-unet-cat"
        )
    return model.path


def is_builtin_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the shipped model files (never to be overwritten)."""
    try:
        target = Path(path).resolve()
    except OSError:
        return False
    return any(target == model.path.resolve() for model in builtin_models().values())


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
