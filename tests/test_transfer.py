"""Photos resized to a long side, and new models started from a trained network."""

import numpy as np
import pytest

from napari_unet_cat.builtin import builtin_path, file_sha256
from napari_unet_cat.config import ModelConfig, TrainingSettings
from napari_unet_cat.errors import InputError
from napari_unet_cat.loading import load_model
from napari_unet_cat.synthetic import make_image, make_instance_image, strokes_from_mask
from napari_unet_cat.training import Trainer
from napari_unet_cat.transfer import builtin_for_image, can_continue, head_sources, transferred_head

from .conftest import TINY, foreground_iou

FAST = {"batch_size": 8, "patch_size": 32, "learning_rate": 3e-3}


def _zoomed(image: np.ndarray, mask: np.ndarray, factor: int):
    """The same picture with ``factor`` times the pixels (as a sharper camera takes it)."""
    return np.kron(image, np.ones((factor, factor), image.dtype)), np.kron(mask, np.ones((factor, factor), mask.dtype))


def test_a_long_side_model_sees_every_photo_at_its_own_size_and_answers_at_the_photos():
    pairs = [make_image((48, 64), seed=s, radius=(5.0, 9.0)) for s in range(4)]
    pairs = [_zoomed(im, m, 1 + s % 2) for s, (im, m) in enumerate(pairs)]  # 48x64 and 96x128 photos
    settings = TrainingSettings(epochs=12, val_fraction=0.0, **FAST)
    model = Trainer([p[0] for p in pairs], [p[1] for p in pairs], settings=settings, long_side=64, **TINY).run()
    assert model.config.long_side == 64 and model.config.scale_for((96, 128)) == 0.5
    image, mask = make_image((48, 64), seed=9, radius=(5.0, 9.0))
    small = model.predict(image)
    big_image, big_mask = _zoomed(image, mask, 4)  # a 192x256 photo of the same scene
    big = model.predict(big_image)
    assert small.shape == image.shape and big.shape == big_image.shape
    assert foreground_iou(small, mask) > 0.7, foreground_iou(small, mask)
    # The network saw both at 48x64: the masks agree as well as each fits its truth.
    assert abs(foreground_iou(big, big_mask) - foreground_iou(small, mask)) < 0.05


def test_a_long_side_is_kept_by_the_model_file_and_refused_for_volumes(tmp_path):
    config = ModelConfig(long_side=160)
    assert ModelConfig.from_dict(config.to_dict()).long_side == 160
    volume = np.zeros((8, 32, 32), np.uint8)
    labels = np.zeros_like(volume)
    labels[2, 4:8, 4:8], labels[2, 20:24, 20:24] = 1, 2
    with pytest.raises(InputError, match="long side"):
        Trainer([volume], [labels], settings=TrainingSettings(ndim=3, patch_size=16), long_side=32, axes="ZYX")


def test_head_sources_map_background_to_background_and_objects_to_objects():
    assert head_sources([0, 1, 2], [1, 2]) == [[0], [1, 2]]  # strokes: 1 background, 2 any animal
    assert head_sources([0, 1, 2], [0, 1, 2]) == [[0], [1], [2]]
    assert head_sources([0, 1], [1, 2, 3]) == [[0], [1], [1]]
    kernel = np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3)
    new_kernel, new_bias = transferred_head(kernel, np.zeros(3), [[0], [1, 2]], prior_weights=[1.0, 1.0, np.e])
    assert new_kernel.shape == (1, 1, 4, 2)
    np.testing.assert_allclose(new_kernel[..., 1], kernel[..., 1:].mean(axis=-1))
    # The prior correction folded in (-log(e) / 2), and log 2 for two classes merged.
    np.testing.assert_allclose(new_bias, [0.0, -0.5 + np.log(2)], rtol=1e-6)


def test_strokes_fine_tune_the_builtin_nuclei_network_whose_answer_comes_first():
    image, objects = make_instance_image((128, 128), seed=4)
    mask = (objects > 0).astype(np.uint8)
    strokes = strokes_from_mask(mask, fraction=0.02, seed=4)
    shipped = file_sha256(builtin_path("nuclei"))
    nuclei = load_model("nuclei")
    settings = TrainingSettings(label_mode="sparse", epochs=1, steps_per_epoch=2, batch_size=4, patch_size=64)
    trainer = Trainer([image], [strokes], settings=settings, pretrained=nuclei)
    assert trainer.first_guess_kind.startswith("first guess (the starting model")
    # Its confident answers guide the unpainted pixels (not a forest's).
    assert trainer.guide_note.startswith("the starting model guesses") and trainer.guided_pixels > 0
    guess = trainer.first_guess(image)  # the nuclei network's own answer, before any step
    assert foreground_iou(guess, mask, value=2) > 0.7
    model = trainer.run()
    assert model.class_values == [1, 2] and model.config.gray_input
    assert model.config.normalization == nuclei.config.normalization
    assert foreground_iou(model.predict(image), mask, value=2) > 0.7
    assert file_sha256(builtin_path("nuclei")) == shipped


def test_a_builtin_model_is_continued_only_with_annotations_of_its_own_kind():
    nuclei = load_model("nuclei").config
    objects = np.zeros((16, 16), np.uint16)
    objects[2:6, 2:6], objects[9:14, 9:14] = 1, 2
    assert can_continue(nuclei, "instances", [objects])
    assert not can_continue(nuclei, "sparse", [objects])
    photo_model = ModelConfig(classes=[])
    photo_model.training.label_mode = "dense"
    from napari_unet_cat.config import ClassInfo

    photo_model.classes = [ClassInfo(0, "background"), ClassInfo(1, "cat"), ClassInfo(2, "dog")]
    assert can_continue(photo_model, "dense", [np.array([[0, 1], [2, 0]])])
    assert not can_continue(photo_model, "dense", [np.array([[0, 3]])])


def test_the_image_chooses_the_builtin_model():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert builtin_for_image(photo, ["nuclei", "pets"])[0] == "pets"
    assert builtin_for_image(photo, ["nuclei"])[0] is None
    fluorescence, _ = make_image((64, 64), seed=1)
    assert builtin_for_image(fluorescence, ["nuclei", "pets"]) == ("nuclei", "bright objects on a dark background")
    gray_rgb = np.repeat(fluorescence[..., None], 3, axis=-1)  # RGB with equal channels: still gray
    assert builtin_for_image(gray_rgb, ["nuclei", "pets"])[0] == "nuclei"
    brightfield = 255 - fluorescence
    assert builtin_for_image(brightfield, ["nuclei", "pets"])[0] is None
    assert builtin_for_image(np.zeros((8, 8, 2)), ["nuclei"])[0] is None


def test_the_cli_starts_a_model_of_new_classes_from_a_builtin_one(tmp_path, capsys):
    import tifffile

    from napari_unet_cat.cli import main

    image, objects = make_instance_image((96, 96), seed=6)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    tifffile.imwrite(tmp_path / "masks" / "a.tif", strokes_from_mask((objects > 0).astype(np.uint8), fraction=0.05))
    out = tmp_path / "mine.keras"
    argv = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--sparse"]
    argv += ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "64", "--out", str(out)]
    assert main([*argv, "--resume", "nuclei", "--start-from", "nuclei"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*argv, "--start-from", "nuclei"]) == 0
    said = capsys.readouterr().out
    assert "started from nuclei, a new output layer for classes [1, 2]" in said
    assert "the starting model guesses" in said
    model = load_model(out)
    assert model.class_values == [1, 2] and "started_from" in model.config.card
    assert model.config.training.learning_rate == pytest.approx(load_model("nuclei").config.training.learning_rate / 10)


def test_fine_tuning_from_the_command_line_can_keep_a_share_of_its_change(tiny_model, tmp_path, capsys):
    import tifffile

    from napari_unet_cat.cli import main

    start = tiny_model.save(tmp_path / "start.keras")
    image, mask = make_image((96, 96), seed=11)
    for sub, data in (("images", image), ("masks", 1 - mask)):  # the classes swapped: much to change
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "a.tif", data)
    argv = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--resume", str(start)]
    argv += ["--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "4", "--patch-size", "64"]
    argv += ["--learning-rate", "1e-2", "--val-fraction", "0"]

    def weights_after(keep: float) -> list[np.ndarray]:
        out = tmp_path / f"kept-{keep:g}.keras"
        assert main([*argv, "--keep", f"{keep:g}", "--out", str(out)]) == 0
        model = load_model(out)
        assert model.config.history[-1].get("kept_share", 1.0) == keep
        return model.keras_model.get_weights()

    before = tiny_model.keras_model.get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(weights_after(1.0), before))
    kept = max(float(np.abs(a - b).max()) for a, b in zip(weights_after(1e-6), before))
    assert moved > 1e-3 and kept < 1e-5  # a millionth of the change: the start's weights
    assert "kept 1e-06 of the change" in capsys.readouterr().out
    fresh = [a for a in argv if a not in ("--resume", str(start))]
    assert main([*fresh, "--keep", "0.5", "--out", str(tmp_path / "x.keras")]) == 2  # nothing resumed: refused
    assert main([*argv, "--keep", "1.5", "--out", str(tmp_path / "x.keras")]) == 2
