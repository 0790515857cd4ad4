"""The models of a napari session: the one trained last, and those loaded from files."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import UNetCatError

if TYPE_CHECKING:
    from ..segmenter import UNetModel


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


class Session:
    """The model trained or loaded last in this napari session (shared by the widgets).

    Models loaded from files are cached by path and modification time; training never
    changes a cached model (the trainer works on a copy), so a cached model always holds
    its file's weights.
    """

    model: ClassVar[UNetModel | None] = None
    _cache: ClassVar[dict[tuple[str, float, bool], object]] = {}
    #: The ``(Image layer, Labels layer)`` pairs each model was trained on in this session.
    _annotations: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()

    @classmethod
    def set(cls, model: UNetModel, trained_on: list[tuple] | None = None) -> None:
        """Make ``model`` the session's; ``trained_on``: the ``(Image layer, Labels layer)``
        pairs it learnt from here, which its rounds of corrections rehearse."""
        cls.model = model
        if trained_on:
            cls._annotations[model] = list(trained_on)

    @classmethod
    def trained_on(cls, model) -> list[tuple]:
        """The ``(Image layer, Labels layer)`` pairs ``model`` learnt from in this session."""
        try:
            return list(cls._annotations.get(model, []))
        except TypeError:  # not a model object (a built-in model's name)
            return []

    @classmethod
    def load(cls, path: str | os.PathLike, *, trust_package_code: bool = False):
        """Load a model file, a bioimage.io package (see
        :func:`~napari_unet_cat.loading.load_model`) or a built-in model, by name, once
        per path and modification time (called on a worker)."""
        from ..loading import load_model, model_path

        path = model_path(path)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0, trust_package_code)
        if key not in cls._cache:
            cls._cache[key] = load_model(path, trust_package_code=trust_package_code)
        return cls._cache[key]
