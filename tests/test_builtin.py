"""The built-in nuclei model: shipped intact, found by name everywhere, never overwritten;
and the gray input that lets one model read grayscale and RGB images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from napari_unet_cat.arrays import infer_layout
from napari_unet_cat.builtin import builtin_model_name, builtin_models, builtin_path, file_sha256
from napari_unet_cat.errors import InputError, ModelFileError
from napari_unet_cat.synthetic import make_instance_image

ROOT = Path(__file__).resolve().parents[1]


def nuclei_field(seed: int = 0, shape=(192, 192)) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence field of nuclei 16 to 26 pixels across (the sizes of the
    built-in model's training data), uint8, and its instance mask."""
    return make_instance_image(shape, seed=seed, n_objects=(14, 20), radius=(8.0, 13.0))


@pytest.fixture(scope="module")
def nuclei_model():
    from napari_unet_cat import load_model

    return load_model("nuclei")


# -- the gray input ----------------------------------------------------------------------
def test_a_gray_layout_reads_rgb_and_rgba_as_the_mean_of_their_colours():
    from napari_unet_cat.arrays import get_plane

    rgba = np.random.default_rng(0).integers(0, 255, (20, 24, 4)).astype(np.uint8)
    for image, axes in ((rgba, None), (rgba[..., :3], None), (rgba, "YXS")):
        layout = infer_layout(image.shape, n_channels=1, gray=True, axes=axes)
        assert layout.gray and layout.used_channels == 1
        plane = get_plane(image, layout, ())
        assert plane.shape == (20, 24, 1)
        np.testing.assert_allclose(plane[..., 0], image[..., :3].mean(axis=-1), rtol=1e-6)
    flat = infer_layout((20, 24), n_channels=1, gray=True)
    assert not flat.gray and flat.used_channels == 1
    stack = infer_layout((5, 20, 24, 3), n_channels=1, gray=True)
    assert stack.plane_shape == (5,) and stack.gray


def test_a_gray_layout_refuses_channels_that_are_not_colour():
    with pytest.raises(InputError, match="2 channels .* reads only grayscale or colour"):
        infer_layout((20, 24, 2), n_channels=1, gray=True, axes="YXC")
    with pytest.raises(InputError, match="4 channels"):  # four real channels, not RGBA
        infer_layout((20, 24, 4), n_channels=1, gray=True, axes="YXC")
    with pytest.raises(InputError, match="one-channel model"):
        infer_layout((20, 24, 3), n_channels=3, gray=True)
    # Without gray, a one-channel model still says that RGB is not what it was trained on.
    with pytest.raises(InputError, match="looks like 3 channels"):
        infer_layout((20, 24, 3), n_channels=1)


def test_a_model_trained_gray_on_rgb_reads_gray_and_rgb_alike(tmp_path):
    from napari_unet_cat import load_model, train

    from .conftest import TINY

    image, mask = make_instance_image((64, 64), seed=1)
    rgb = np.repeat(image[..., None], 3, axis=-1)
    model = train(
        [rgb],
        [(mask > 0).astype(np.uint8)],
        gray=True,
        epochs=1,
        batch_size=2,
        patch_size=32,
        val_fraction=0,
        preset="light",
        **TINY,
    )
    assert model.n_channels == 1 and model.config.gray_input
    model = load_model(model.save(tmp_path / "gray.keras"))  # the choice travels in the file
    assert model.config.gray_input
    np.testing.assert_array_equal(model.predict(rgb), model.predict(image))
    rgba = np.concatenate([rgb, np.full_like(image, 255)[..., None]], axis=-1)
    np.testing.assert_array_equal(model.predict(rgba), model.predict(image))


# -- the shipped model -------------------------------------------------------------------
def test_the_shipped_models_match_the_hashes_of_their_index_and_of_the_docs():
    models = builtin_models()
    assert {"nuclei", "pets"} <= set(models)
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "benchmarks.md").read_text()
    for name, model in models.items():
        digest = file_sha256(model.path)
        assert digest == model.sha256, name
        assert digest in re.findall(r"\b[0-9a-f]{64}\b", docs), f"the docs must give {name}'s SHA-256"


def test_the_nuclei_model_finds_the_nuclei_of_a_synthetic_field(nuclei_model):
    from napari_unet_cat.evaluation import evaluate_instances

    assert nuclei_model.is_instance_model and nuclei_model.config.gray_input
    assert {"what", "training_data", "license", "input", "scores", "limits"} <= set(nuclei_model.config.card)
    images, truths = zip(*(nuclei_field(seed) for seed in range(3)))
    preds = [nuclei_model.predict(image) for image in images]
    result = evaluate_instances(preds, truths)
    assert result["ap"]["0.5"] >= 0.6, result
    # Its objects grow to its recorded extent: the same objects, with more pixels.
    extent = nuclei_model.config.object_extent
    assert extent is not None and 0.5 < extent < 1 and "objects" in nuclei_model.config.card
    not_grown = nuclei_model.with_object_extent(None).predict(images[0])
    assert not_grown.max() == preds[0].max() and ((not_grown > 0) <= (preds[0] > 0)).all()
    assert (preds[0] > 0).sum() > (not_grown > 0).sum()
    # One model for 8-bit gray, 16-bit gray and equal-channel RGB: the same objects.
    image = images[0]
    wide = image.astype(np.uint16) * 257
    rgb = np.repeat(image[..., None], 3, axis=-1)
    np.testing.assert_array_equal(nuclei_model.predict(wide), preds[0])
    np.testing.assert_array_equal(nuclei_model.predict(rgb), preds[0])


def test_nuclei_twice_as_large_are_found_at_half_scale(nuclei_model):
    from scipy.ndimage import zoom

    from napari_unet_cat.evaluation import evaluate_instances

    image, truth = nuclei_field(11, shape=(160, 160))
    big, big_truth = zoom(image, 2, order=1), zoom(truth, 2, order=0)
    half = nuclei_model.at_scale(0.5)
    assert half.config.scale == 0.5 and half.keras_model is nuclei_model.keras_model
    assert half.config.min_object_size == round(4 * nuclei_model.config.min_object_size)
    assert half.fingerprint() != nuclei_model.fingerprint()  # a folder never mixes the two
    result = evaluate_instances([half.predict(big)], [big_truth])
    assert result["ap"]["0.5"] >= 0.6, result


def test_a_builtin_name_is_a_model_only_where_no_file_has_that_name(tmp_path, monkeypatch):
    assert builtin_model_name("nuclei") == "nuclei"
    assert builtin_model_name("built-in: nuclei") == "nuclei"
    assert builtin_model_name("models/nuclei") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nuclei").write_text("not a model")
    assert builtin_model_name("nuclei") is None  # the user's file wins
    with pytest.raises(ModelFileError, match="no built-in model 'cells'"):
        builtin_path("cells")


def test_a_damaged_builtin_file_is_reported_not_used(tmp_path, monkeypatch):
    from napari_unet_cat import builtin

    damaged = tmp_path / "nuclei.keras"
    damaged.write_bytes(builtin_path("nuclei").read_bytes()[:-10] + b"0123456789")
    entry = builtin_models()["nuclei"]
    monkeypatch.setattr(builtin, "models_folder", lambda: tmp_path)
    builtin.builtin_models.cache_clear()
    monkeypatch.setattr(builtin, "builtin_models", lambda: {"nuclei": entry})
    with pytest.raises(ModelFileError, match="damaged .* reinstall"):
        builtin_path("nuclei")


def test_the_cli_predicts_and_describes_the_builtin_model_by_name(tmp_path, capsys):
    import tifffile

    from napari_unet_cat.cli import main
    from napari_unet_cat.io import read_labels

    (tmp_path / "in").mkdir()
    image, _ = nuclei_field(5)
    tifffile.imwrite(tmp_path / "in" / "field.tif", image)
    assert (
        main(
            [
                "predict",
                "--model",
                "nuclei",
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    labels = read_labels(tmp_path / "out" / "field.tif")
    assert labels.max() >= 8  # objects, one label each
    assert main(["info", "nuclei"]) == 0
    out = capsys.readouterr().out
    assert "built-in" in out and "RGB images are read as gray" in out and "training data" in out


def test_fine_tuning_the_builtin_writes_a_new_file_and_never_the_shipped_one(tmp_path):
    import tifffile

    from napari_unet_cat import load_model
    from napari_unet_cat.cli import main

    shipped = builtin_path("nuclei")
    before = file_sha256(shipped)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    image, mask = nuclei_field(7, shape=(128, 128))
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.repeat(image[..., None], 3, axis=-1))  # RGB
    tifffile.imwrite(tmp_path / "masks" / "a.tif", mask)
    out = tmp_path / "tuned.keras"
    argv = [
        "train",
        "--images",
        str(tmp_path / "images"),
        "--masks",
        str(tmp_path / "masks"),
        "--labels",
        "instances",
        "--resume",
        "nuclei",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "2",
        "--val-fraction",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    tuned = load_model(out)
    original = load_model("nuclei")
    assert tuned.config.gray_input and tuned.config.training.learning_rate == pytest.approx(
        original.config.training.learning_rate / 10
    )
    assert len(tuned.config.history) == len(original.config.history) + 1
    # Its card does not claim the built-in model's scores: it says where it started.
    assert (
        list(tuned.config.card) == ["started_from"]
        and original.config.card["what"] in tuned.config.card["started_from"]
    )
    assert tuned.config.object_extent == original.config.object_extent
    assert any(
        not np.array_equal(a, b) for a, b in zip(tuned.keras_model.get_weights(), original.keras_model.get_weights())
    )
    assert file_sha256(shipped) == before
    with pytest.raises(ModelFileError, match="built-in model shipped with napari-unet-cat"):
        tuned.save(shipped)
    assert file_sha256(shipped) == before


def test_the_scale_estimate_finds_nuclei_twice_as_large(nuclei_model):
    from scipy.ndimage import zoom

    image, _ = nuclei_field(13, shape=(160, 160))
    assert 0.7 <= nuclei_model.estimate_scale(image) <= 1.4
    assert 0.35 <= nuclei_model.estimate_scale(zoom(image, 2, order=1)) <= 0.7


def test_the_scale_estimate_reads_only_the_central_square(nuclei_model):
    """A wide lazy plane: the estimate reads its central ``max_side`` square, never the
    whole plane, and finds what the same square given alone gives."""
    from .test_tiling import RecordingArray

    image, _ = make_instance_image((160, 480), seed=14, n_objects=(42, 60), radius=(8.0, 13.0))
    lazy = RecordingArray(image)
    estimate = nuclei_model.estimate_scale(lazy, max_side=160)
    assert estimate is not None
    assert lazy.reads and max(lazy.reads) <= 160 * 160
    assert estimate == pytest.approx(nuclei_model.estimate_scale(image[:, 160:320]))


def test_predict_scale_auto_segments_each_image_at_its_own_scale(nuclei_model, tmp_path):
    """Two images, nuclei of the training size and twice as large: each segmented at
    the scale estimated from it, recorded in the folder's log, and the large nuclei
    found about as well as at the right scale given by hand."""
    import json

    import tifffile
    from scipy.ndimage import zoom

    from napari_unet_cat.batch import LOG_NAME
    from napari_unet_cat.cli import main
    from napari_unet_cat.evaluation import evaluate_instances
    from napari_unet_cat.io import read_labels

    (tmp_path / "in").mkdir()
    image, truth = nuclei_field(11, shape=(160, 160))
    tifffile.imwrite(tmp_path / "in" / "small.tif", image)
    tifffile.imwrite(tmp_path / "in" / "large.tif", zoom(image, 2, order=1))
    argv = ["predict", "--model", "nuclei", "--input", str(tmp_path / "in"), "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "auto"), "--scale", "auto"]) == 0
    log = {Path(r["file"]).stem: r for r in map(json.loads, (tmp_path / "auto" / LOG_NAME).read_text().splitlines())}
    assert 0.7 <= log["small"]["scale"] <= 1.4 and log["small"]["scale_estimated"]
    assert 0.35 <= log["large"]["scale"] <= 0.7
    assert main([*argv, "--output", str(tmp_path / "half"), "--scale", "0.5"]) == 0
    large_truth = zoom(truth, 2, order=0)
    auto = evaluate_instances([read_labels(tmp_path / "auto" / "large.tif")], [large_truth])["ap"]["0.5"]
    by_hand = evaluate_instances([read_labels(tmp_path / "half" / "large.tif")], [large_truth])["ap"]["0.5"]
    assert auto >= by_hand - 0.1 and auto >= 0.6


def test_scale_auto_needs_an_instance_model(tiny_model, tmp_path, capsys):
    import tifffile

    from napari_unet_cat.cli import main

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", np.zeros((32, 32), np.uint8))
    model = tiny_model.save(tmp_path / "semantic.keras")
    argv = ["predict", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--scale", "auto"]) != 0
    assert "automatic scale needs a model trained on instance masks" in capsys.readouterr().err
    assert not list(tmp_path.glob("out/*.tif"))
