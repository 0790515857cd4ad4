"""Precision, XLA and data-parallel settings: the code paths a GPU takes, run on the CPU."""

import contextlib

import numpy as np
import pytest

from napari_unet_cat import resources
from napari_unet_cat._backend import keras
from napari_unet_cat.config import TrainingSettings
from napari_unet_cat.errors import InputError
from napari_unet_cat.loading import load_model
from napari_unet_cat.synthetic import make_dataset
from napari_unet_cat.training import Trainer

from .conftest import TINY


def _trainer(**settings) -> Trainer:
    images, masks = make_dataset(4, (64, 64), seed=1)
    base = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "patch_size": 32, "val_fraction": 0}
    return Trainer(images, masks, settings=TrainingSettings(**{**base, **settings}), **TINY)


def test_precision_is_resolved_and_checked():
    expected = "mixed_float16" if resources.uses_accelerator() else "float32"
    assert resources.resolve_precision("auto") == expected
    assert resources.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(InputError, match="'half'"):
        resources.resolve_precision("half")
    with pytest.raises(InputError, match="precision"):
        TrainingSettings(precision="half").validate()


def test_mixed_precision_trains_with_loss_scaling_and_saves_float32_weights(tmp_path):
    trainer = _trainer(precision="mixed_float16")
    model = trainer.run()
    assert model.keras_model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.keras_model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(model.config.history[-1]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone
    image = make_dataset(1, (64, 64), seed=9)[0][0]
    half = model.predict(image, return_probabilities=True)[1]
    loaded = load_model(model.save(tmp_path / "m.keras"), precision="float32")
    assert loaded.keras_model.dtype_policy.name == "float32"
    full = loaded.predict(image, return_probabilities=True)[1]
    assert half.dtype == full.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=2e-2)  # float16 math, float32 weights


def test_data_parallel_trains_under_a_distribution_and_resumes_with_the_same_weights():
    # On a CPU-only machine TensorFlow's MirroredStrategy mirrors over the one CPU, and
    # Keras's DataParallel distribution (JAX) spreads over the one CPU device: the same
    # code path as several GPUs, minus the speed.
    trainer = _trainer(data_parallel=True)
    model = trainer.run()
    assert trainer._scope is not contextlib.nullcontext  # a strategy's scope, not the plain one
    if keras.backend.backend() == "tensorflow":
        # The weights were made under the strategy: mirrored variables behind Keras's own.
        assert all("Mirrored" in type(w.value).__name__ for w in trainer.keras_model.weights)
    else:
        with trainer._scope():
            assert isinstance(keras.distribution.distribution(), keras.distribution.DataParallel)
        assert keras.distribution.distribution() is None  # only inside the scope
    assert np.isfinite(model.config.history[-1]["loss"])
    images, masks = make_dataset(4, (64, 64), seed=1)
    resumed = Trainer(
        images,
        masks,
        settings=TrainingSettings(
            epochs=1, steps_per_epoch=1, batch_size=4, patch_size=32, val_fraction=0, data_parallel=True
        ),
        model=model,
    )
    assert resumed.keras_model is not model.keras_model  # rebuilt under the strategy
    for a, b in zip(resumed.keras_model.get_weights(), model.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_without_several_gpus_data_parallel_is_off_by_default():
    scope = resources.distribution_scope(None)
    if resources.accelerator_count() > 1:
        pytest.skip("several GPUs here")
    assert scope is contextlib.nullcontext


@pytest.mark.parametrize("xla, expected", [(False, False), (True, True)])
def test_xla_setting_reaches_keras(xla, expected):
    trainer = _trainer(xla=xla)
    trainer._compile()
    assert trainer.keras_model.jit_compile is expected
