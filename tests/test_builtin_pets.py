"""The built-in pets model: shipped, verified, finding a cat offline, any photo size, and
fine-tuned (labelme files included) without touching the shipped file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet_cat import load_model
from napari_unet_cat.builtin import builtin_models, builtin_path, file_sha256
from napari_unet_cat.cli import main

CAT, DOG = 1, 2


@pytest.fixture(scope="module")
def pets():
    return load_model("pets")


@pytest.fixture(scope="module")
def chelsea():
    from skimage import data

    return data.chelsea()


def test_the_pets_model_is_installed_with_its_hash_and_card(pets):
    shipped = builtin_models()["pets"]
    assert file_sha256(builtin_path("pets")) == shipped.sha256  # builtin_path verifies it too
    assert [c.name for c in pets.config.classes] == ["background", "cat", "dog"]
    assert pets.config.long_side and pets.n_channels == 3
    card = pets.config.card
    assert "Oxford-IIIT Pet" in card["training_data"] and "CC BY-SA 4.0" in card["license"]
    assert "not drawings" in card["limits"] and "cat IoU" in card["scores"]


def test_the_pets_model_finds_chelsea_the_cat(pets, chelsea):
    """The photo the sample menu offers: a cat filling much of the frame."""
    labels = pets.predict(chelsea)
    assert labels.shape == chelsea.shape[:2]
    cat, dog = (labels == CAT).mean(), (labels == DOG).mean()
    assert cat > 0.15 and cat > 3 * dog, (cat, dog)
    h, w = labels.shape
    assert (labels[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] == CAT).mean() > 0.5  # her face, mid-frame


def test_a_phone_sized_photo_gets_a_mask_of_its_own_size(pets, chelsea):
    """A 3000x4500 photo is seen at the model's long side, as the small one is."""
    big = np.kron(chelsea, np.ones((10, 10, 1), np.uint8))
    labels = pets.predict(big)
    assert labels.shape == big.shape[:2]
    small = pets.predict(chelsea)
    seen_big = labels[5::10, 5::10]
    # Both are seen at 160 pixels; they differ only by how much each resize smooths.
    both, either = ((seen_big > 0) & (small > 0)).sum(), ((seen_big > 0) | (small > 0)).sum()
    assert both / either > 0.85, both / either
    assert (seen_big == CAT).mean() > 3 * (seen_big == DOG).mean()


def test_the_labelme_workflow_fine_tunes_the_pets_model_and_leaves_it_as_shipped(tmp_path, chelsea, capsys):
    """The tutorial's path: a photo and its labelme polygon, ``train --resume pets``."""
    import imageio.v3 as iio

    shipped = file_sha256(builtin_path("pets"))
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    iio.imwrite(tmp_path / "images" / "chelsea.png", chelsea)
    h, w = chelsea.shape[:2]
    polygon = [[0.3 * w, 0.1 * h], [0.9 * w, 0.1 * h], [0.9 * w, 0.95 * h], [0.3 * w, 0.95 * h]]
    shape = {"label": "cat", "shape_type": "polygon", "points": polygon, "group_id": None, "flags": {}}
    document = {"version": "5.4.1", "shapes": [shape], "imagePath": "../images/chelsea.png", "imageData": None}
    (tmp_path / "masks" / "chelsea.json").write_text(json.dumps({**document, "imageHeight": h, "imageWidth": w}))
    out = tmp_path / "my-cats.keras"
    argv = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--resume", "pets"]
    argv += ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--val-fraction", "0", "--out", str(out)]
    assert main(argv) == 0
    tuned = load_model(out)
    assert tuned.class_values == [0, 1, 2] and [c.name for c in tuned.config.classes][1] == "cat"
    assert list(tuned.config.card) == ["started_from"]
    assert file_sha256(builtin_path("pets")) == shipped
    assert main(["info", "pets"]) == 0
    assert "Oxford-IIIT Pet" in capsys.readouterr().out
