"""Shared fixtures: small synthetic data and a tiny model trained once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from napari_unet_cat.synthetic import make_dataset

#: A U-Net small enough to train in seconds on two CPU cores.
TINY = {"base_filters": 8, "depth": 2}


def foreground_iou(pred: np.ndarray, mask: np.ndarray, value: int = 1) -> float:
    p, t = pred == value, mask > 0
    return float((p & t).sum() / max((p | t).sum(), 1))


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny U-Net trained on synthetic cells (dense labels 0/1)."""
    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.training import Trainer

    images, masks = make_dataset(12, (96, 96), seed=0)
    settings = TrainingSettings(
        epochs=10, steps_per_epoch=6, batch_size=8, patch_size=64, learning_rate=3e-3, val_fraction=0.2
    )
    trainer = Trainer(images, masks, settings=settings, **TINY)
    model = trainer.run()
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def same_keras_backend():
    """bioimageio.core sets ``KERAS_BACKEND`` in ``os.environ`` when its Keras runner is
    imported (to ``torch`` when unset): name this process's backend, and put the variable
    back afterwards, so child processes of later tests keep theirs."""
    from napari_unet_cat._backend import keras

    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = keras.backend.backend()
    yield
    if before is None:
        os.environ.pop("KERAS_BACKEND", None)
    else:
        os.environ["KERAS_BACKEND"] = before
