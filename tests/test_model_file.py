"""The model file: round trip, and a clear error for every kind of bad file."""

import json
import zipfile

import numpy as np
import pytest

from napari_unet_cat import load_model
from napari_unet_cat.errors import ModelFileError
from napari_unet_cat.synthetic import make_image


def test_save_and_load_give_identical_predictions(tiny_model, tmp_path):
    image, _ = make_image((77, 91), seed=21)
    path = tiny_model.save(tmp_path / "cells.keras")
    loaded = load_model(path)
    before, p_before = tiny_model.predict(image, return_probabilities=True)
    after, p_after = loaded.predict(image, return_probabilities=True)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(p_after, p_before, atol=1e-6)
    assert loaded.config.to_dict() == tiny_model.config.to_dict()
    # The loaded network itself computes the same logits as the saved one.
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(loaded.keras_model.predict_on_batch(x)),
        np.asarray(tiny_model.keras_model.predict_on_batch(x)),
        atol=1e-5,
    )


def test_the_file_is_self_describing(tiny_model, tmp_path):
    path = tiny_model.save(tmp_path / "m.any-name")
    with zipfile.ZipFile(path) as archive:
        settings = json.loads(archive.read("napari_unet_cat.json"))
    assert settings["classes"] == [{"value": 0, "name": ""}, {"value": 1, "name": ""}]
    assert settings["architecture"]["base_filters"] == 8
    assert settings["normalization"]["high"] == 99.8
    assert settings["training"]["batch_size"] == 8
    assert len(settings["history"]) == 10
    assert settings["package_version"]


def test_plain_keras_can_open_the_file(tiny_model, tmp_path):
    import keras

    path = tiny_model.save(tmp_path / "plain.keras")
    model = keras.saving.load_model(path)
    assert model.output_shape[-1] == 2
    x = np.random.default_rng(1).random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(model.predict_on_batch(x)), np.asarray(tiny_model.keras_model.predict_on_batch(x)), atol=1e-5
    )


def test_the_archive_has_the_layout_loading_relies_on(tiny_model, tmp_path):
    """Loading reads the weights member of Keras's .keras layout beside our settings: if a
    Keras release moved it, this fails before any user's file does."""
    from napari_unet_cat.model_file import CONFIG_MEMBER, WEIGHTS_MEMBER

    path = tiny_model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"config.json", "metadata.json", WEIGHTS_MEMBER, CONFIG_MEMBER} <= names


def test_saving_over_a_file_replaces_it_whole(tiny_model, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"old")
    tiny_model.save(path)
    assert load_model(path).class_values == [0, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left behind


def _newer(path):
    with zipfile.ZipFile(path) as src:
        items = {n: src.read(n) for n in src.namelist()}
    settings = json.loads(items["napari_unet_cat.json"])
    settings["format_version"] = 99
    settings["package_version"] = "9.0.0"
    items["napari_unet_cat.json"] = json.dumps(settings)
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in items.items():
            dst.writestr(name, data)


def _foreign(path):
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), "not a napari-unet-cat model file, or it is truncated"),
        (lambda p: p.write_text("hello"), "not a napari-unet-cat model file"),
        (lambda p: p.write_bytes(p.with_name("good.keras").read_bytes()[:5000]), "truncated"),
        (_foreign, "not a napari-unet-cat model.*another tool"),
        (_newer, "newer version|made by napari-unet-cat 9.0.0.*upgrade"),
    ],
    ids=["missing", "empty", "text", "truncated", "foreign", "newer"],
)
def test_bad_model_files_are_named_and_explained(tiny_model, tmp_path, make, message):
    tiny_model.save(tmp_path / "good.keras")
    path = tmp_path / "bad.keras"
    if make is _newer:
        tiny_model.save(path)
    make(path)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "bad.keras" in str(info.value)


def test_corrupt_weights_are_reported(tiny_model, tmp_path):
    path = tiny_model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(path) as src:
        items = {n: src.read(n) for n in src.namelist()}
    items["model.weights.h5"] = b"\x00" * 1000
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in items.items():
            dst.writestr(name, data)
    with pytest.raises(ModelFileError, match="m.keras is corrupt"):
        load_model(path)
