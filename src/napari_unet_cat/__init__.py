"""Train a U-Net from annotated images and segment new images with it, in napari or headless.

The public API is imported lazily, so that ``import napari_unet_cat`` (which napari does
when it discovers the plugin) does not load TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "build_unet": "unet",
    "load_model": "loading",
    "UNetModel": "segmenter",
    "train": "training",
    "Trainer": "training",
    "segment_folder": "batch",
    "measure": "measurements",
    "evaluate_folders": "evaluation",
    "evaluate_instances": "evaluation",
    "evaluate_instance_folders": "evaluation",
    "ModelConfig": "config",
    "TrainingSettings": "config",
    "InputError": "errors",
    "ModelFileError": "errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .batch import segment_folder
    from .config import ModelConfig, TrainingSettings
    from .errors import InputError, ModelFileError
    from .evaluation import evaluate_folders, evaluate_instance_folders, evaluate_instances
    from .loading import load_model
    from .measurements import measure
    from .segmenter import UNetModel
    from .training import Trainer, train
    from .unet import build_unet


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
