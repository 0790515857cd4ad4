"""The command line end to end on temporary folders, with real files."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet_cat.cli import main
from napari_unet_cat.synthetic import make_image

from .conftest import foreground_iou


def _write_pairs(folder, n, shape, seed, mask_value=1):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        image, mask = make_image(shape, seed=seed + i)
        Image.fromarray(image).save(folder / "images" / f"img {i}.png")
        Image.fromarray((mask * mask_value).astype(np.uint8)).save(folder / "masks" / f"img {i}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    _write_pairs(root / "train", 10, (96, 96), seed=300, mask_value=255)
    model = root / "out" / "cells.keras"
    model.parent.mkdir()
    code = main(
        [
            "train",
            "--images",
            str(root / "train/images"),
            "--masks",
            str(root / "train/masks"),
            "--out",
            str(model),
            "--epochs",
            "10",
            "--preset",
            "light",
            "--base-filters",
            "8",
            "--depth",
            "2",
            "--patch-size",
            "64",
            "--batch-size",
            "8",
            "--learning-rate",
            "3e-3",
            "--map",
            "255=1",
        ]
    )
    assert code == 0
    return root, model


def test_train_writes_model_history_and_plot(trained):
    root, model = trained
    assert model.exists()
    history = (root / "out" / "cells.history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 11
    assert (root / "out" / "cells.history.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_then_evaluate(trained, tmp_path, capsys):
    _root, model = trained
    _write_pairs(tmp_path / "test", 3, (101, 87), seed=700)
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--input",
                str(tmp_path / "test/images"),
                "--output",
                str(out),
                "--probabilities",
                "--quiet",
            ]
        )
        == 0
    )
    masks = sorted(p.name for p in out.glob("*.tif"))
    assert masks == sorted([f"img {i}.tif" for i in range(3)] + [f"img {i}_probabilities.tif" for i in range(3)])
    pred = tifffile.imread(out / "img 0.tif")
    truth = np.asarray(Image.open(tmp_path / "test/masks/img 0.png"))
    assert pred.shape == (101, 87) and foreground_iou(pred, truth) > 0.85
    assert tifffile.imread(out / "img 0_probabilities.tif").shape == (101, 87, 2)
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(out), "--truth", str(tmp_path / "test/masks"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"per_class", "mean_iou", "pixel_accuracy", "n_images"}
    assert result["n_images"] == 3 and result["per_class"]["1"]["iou"] > 0.85
    assert set(result["per_class"]["1"]) == {"iou", "dice"}

    tta_out = tmp_path / "pred-tta"
    argv = ["predict", "--model", str(model), "--input", str(tmp_path / "test/images"), "--output", str(tta_out)]
    assert main([*argv, "--tta", "--quiet"]) == 0
    tta_pred = tifffile.imread(tta_out / "img 0.tif")
    assert tta_pred.shape == (101, 87) and foreground_iou(tta_pred, truth) > 0.85


def test_bad_files_are_skipped_reported_and_counted(trained, tmp_path, capsys):
    _, model = trained
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(make_image((64, 64), seed=1)[0]).save(inp / "good.png")
    (inp / "empty.png").write_bytes(b"")
    (inp / "junk.tif").write_bytes(b"this is not a tiff")
    before = {p.name: p.read_bytes() for p in inp.iterdir()}
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model), "--input", str(inp), "--output", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 1
    assert "1 segmented" in text and "2 failed" in text and "empty.png" in text and "junk.tif" in text
    assert sorted(p.name for p in out.glob("*.tif")) == ["good.tif"]
    assert {p.name: p.read_bytes() for p in inp.iterdir()} == before  # inputs untouched
    log = [json.loads(line) for line in (out / "napari-unet-cat-log.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in log) == ["done", "failed", "failed"]

    # A re-run skips what is done; --overwrite redoes it.
    (inp / "empty.png").unlink()
    (inp / "junk.tif").unlink()
    stamp = (out / "good.tif").stat().st_mtime_ns
    assert main(["predict", "--model", str(model), "--input", str(inp), "--output", str(out), "--quiet"]) == 0
    assert "1 skipped" in capsys.readouterr().out and (out / "good.tif").stat().st_mtime_ns == stamp
    assert (
        main(["predict", "--model", str(model), "--input", str(inp), "--output", str(out), "--quiet", "--overwrite"])
        == 0
    )
    assert "1 segmented" in capsys.readouterr().out


def test_output_folder_equal_to_input_is_refused(trained, tmp_path, capsys):
    _, model = trained
    Image.fromarray(make_image((32, 32), seed=1)[0]).save(tmp_path / "a.png")
    assert main(["predict", "--model", str(model), "--input", str(tmp_path), "--output", str(tmp_path), "--quiet"]) == 2
    assert "is the input folder" in capsys.readouterr().err


def test_info_describes_the_model(trained, capsys):
    _, model = trained
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "8 base filters, depth 2" in out and "classes: 0, 1" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "--model", "nope.keras", "--input", ".", "--output", "o"], "nope.keras does not exist"),
        (["train", "--images", "missing", "--masks", "m", "--out", "x.keras"], "missing does not exist"),
        (["evaluate", "--pred", "a", "--truth", "b", "--map", "x=1"], "VALUE=CLASS"),
    ],
)
def test_errors_are_one_clear_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--images", "a", "--masks", "b", "--out", "m", "--epochs", "0"],
        ["train", "--images", "a", "--masks", "b", "--out", "m", "--learning-rate", "-1"],
        ["predict", "--model", "m", "--input", "a", "--output", "b", "--tile-size", "x"],
    ],
)
def test_absurd_arguments_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "expected" in capsys.readouterr().err


@pytest.mark.parametrize("guide", ["auto", "off"])
def test_sparse_and_labelme_masks_from_the_command_line(guide, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(3):
        image, _ = make_image((64, 64), seed=40 + i)
        Image.fromarray(image).save(images / f"s{i}.png")
        shapes = [
            {"label": "cell", "shape_type": "polygon", "points": [[5, 5], [20, 5], [20, 20], [5, 20]]},
            {"label": "background", "shape_type": "rectangle", "points": [[40, 40], [60, 60]]},
        ]
        (masks / f"s{i}.json").write_text(json.dumps({"shapes": shapes, "imageHeight": 64, "imageWidth": 64}))
    out = tmp_path / "m.keras"
    assert (
        main(
            [
                "train",
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--out",
                str(out),
                "--sparse",
                "--epochs",
                "1",
                "--base-filters",
                "4",
                "--depth",
                "2",
                "--patch-size",
                "32",
                "--batch-size",
                "4",
                "--forest-guide",
                guide,
            ]
        )
        == 0
    )
    from napari_unet_cat import load_model

    model = load_model(out)
    assert model.class_values == [1, 2] and model.class_names == {1: "background", 2: "cell"}
    # Strokes on a sixth of the pixels: the forest guides them unless told not to.
    said = capsys.readouterr().out
    assert ("a random forest on the strokes' filter features guesses" in said) == (guide == "auto")
    assert model.config.training.forest_guide is (None if guide == "auto" else False)


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "napari_unet_cat", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert all(cmd in result.stdout for cmd in ("train", "predict", "evaluate", "demo"))


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "mean IoU" in out and "demo finished" in out
    assert (tmp_path / "demo" / "overlay.png").exists() and (tmp_path / "demo" / "model.keras").exists()
    assert len(list((tmp_path / "demo" / "predictions").glob("*.tif"))) == 6


def test_class_weights_are_parsed_and_checked():
    from napari_unet_cat.config import parse_class_weights
    from napari_unet_cat.errors import InputError

    assert parse_class_weights(["1=5", "2=0.5"]) == {1: 5.0, 2: 0.5}
    assert parse_class_weights([]) is None
    for bad in (["1"], ["x=2"], ["1=-3"], ["1=inf"]):
        with pytest.raises(InputError, match="VALUE=WEIGHT"):
            parse_class_weights(bad)
