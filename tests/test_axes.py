"""Channels in any axis: axes read from files or given, any number of channels, and clear
errors when a model's channels do not match."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet_cat.arrays import AxesView, StackedChannels, canonical_axes, check_axes, infer_layout, to_canonical
from napari_unet_cat.cli import main
from napari_unet_cat.errors import InputError
from napari_unet_cat.io import read_axes, read_image_with_axes
from napari_unet_cat.synthetic import make_image

from .conftest import TINY


def test_axes_are_checked_and_put_channels_last():
    assert check_axes("cyx", 3) == "CYX"
    assert canonical_axes("TCZYX") == "TZYXC" and canonical_axes("YXS") == "YXS" and canonical_axes("ZYX") == "ZYX"
    for bad, ndim, why in (("YX", 3, "names 2 axes"), ("CCX", 3, "twice"), ("CZX", 3, "Y and X"), ("CSYX", 4, "one")):
        with pytest.raises(InputError, match=why):
            check_axes(bad, ndim)


def test_a_view_in_another_axis_order_reads_what_it_selects():
    source = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # C, Z, Y, X
    view, axes = to_canonical(source, "CZYX")
    assert axes == "ZYXC" and isinstance(view, AxesView) and view.shape == (3, 4, 5, 2)
    expected = np.moveaxis(source, 0, -1)
    np.testing.assert_array_equal(np.asarray(view), expected)
    for key in ((1,), (1, slice(1, 3), slice(None, None, 2)), (Ellipsis, 1), (2, 3, 4)):
        np.testing.assert_array_equal(view[key], expected[key])
    same, axes = to_canonical(source[0], "ZYX")
    assert same is source[0] or np.shares_memory(same, source)  # already in order: no view
    layout = infer_layout(view.shape, axes="ZYXC")
    assert layout.plane_shape == (3,) and layout.spatial == (4, 5) and layout.channels == 2 and not layout.alpha


def test_four_named_channels_are_four_channels_and_rgba_loses_alpha():
    assert infer_layout((8, 8, 4), axes="YXC").used_channels == 4
    assert infer_layout((8, 8, 4), axes="YXS").used_channels == 3
    assert infer_layout((8, 8, 4)).used_channels == 3  # guessed: an RGBA image


def test_channel_layers_stack_lazily():
    a, b = np.zeros((4, 6), np.uint8), np.ones((4, 6), np.uint16)
    stacked = StackedChannels([a, b])
    assert stacked.shape == (4, 6, 2) and stacked.dtype == np.uint16
    np.testing.assert_array_equal(stacked[1:3, 2:4], np.stack([a, b], -1)[1:3, 2:4])
    with pytest.raises(InputError, match="one shape"):
        StackedChannels([a, np.zeros((5, 6))])


def test_ome_tiff_and_imagej_hyperstack_axes_are_read(tmp_path):
    cyx = np.random.default_rng(0).integers(0, 255, (2, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "two.ome.tif", cyx, ome=True, metadata={"axes": "CYX"})
    assert read_axes(tmp_path / "two.ome.tif") == "CYX"
    image, axes = read_image_with_axes(tmp_path / "two.ome.tif")
    assert axes == "YXC" and image.shape == (40, 50, 2)
    np.testing.assert_array_equal(np.asarray(image)[..., 1], cyx[1])

    hyper = np.random.default_rng(1).integers(0, 255, (3, 4, 2, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "hyper.tif", hyper, imagej=True, metadata={"axes": "TZCYX"})
    image, axes = read_image_with_axes(tmp_path / "hyper.tif")
    assert axes == "TZYXC" and image.shape == (3, 4, 20, 30, 2)
    np.testing.assert_array_equal(np.asarray(image)[2, 1, ..., 0], hyper[2, 1, 0])
    # Given axes overrule the file.
    _, overruled = read_image_with_axes(tmp_path / "two.ome.tif", "ZYX")
    assert overruled == "ZYX"


def test_ome_zarr_axes_are_read(tmp_path):
    import zarr

    root = zarr.open_group(str(tmp_path / "cells.zarr"), mode="w")
    root.attrs["multiscales"] = [
        {"axes": [{"name": "c", "type": "channel"}, {"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}
    ]
    array = root.create_array("0", shape=(3, 16, 24), dtype=np.uint8)
    array[...] = 7
    image, axes = read_image_with_axes(tmp_path / "cells.zarr")
    assert axes == "YXC" and image.shape == (16, 24, 3)


def test_a_model_of_two_channels_names_what_it_needs(tmp_path):
    from napari_unet_cat.training import train

    rng = np.random.default_rng(0)
    images, masks = [], []
    for i in range(3):
        image, mask = make_image((64, 64), seed=i)
        images.append(np.stack([image, rng.integers(0, 50, image.shape, dtype=np.uint8)]))  # CYX
        masks.append(mask)
    model = train(
        images,
        masks,
        axes="CYX",
        channel_names=["DAPI", "membrane"],
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        patch_size=32,
        val_fraction=0,
        **TINY,
    )
    assert model.n_channels == 2 and model.config.channel_names == ["DAPI", "membrane"]
    assert model.predict(images[0], axes="CYX").shape == (64, 64)
    assert model.predict(np.moveaxis(images[0], 0, -1)).shape == (64, 64)  # channels last: found
    with pytest.raises(
        InputError,
        match=r"1 channel \(shape \(64, 64\), axes guessed as YX\) .*trained on 2 channels \(DAPI, membrane\)",
    ):
        model.predict(images[0][0])
    with pytest.raises(InputError, match=r"3 channels .*axes YXC"):
        model.predict(np.zeros((3, 64, 64), np.uint8), axes="CYX")
    model.save(tmp_path / "two.keras")
    from napari_unet_cat.loading import load_model

    assert load_model(tmp_path / "two.keras").config.channel_names == ["DAPI", "membrane"]


def test_five_channels_train_and_segment_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, seeds in (("train", range(3)), ("test", range(10, 11))):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir()
        for i in seeds:
            image, mask = make_image((64, 64), seed=i)
            channels = np.stack([image] + [rng.integers(0, 255, image.shape, dtype=np.uint8) for _ in range(4)])
            tifffile.imwrite(
                tmp_path / split / "images" / f"c{i}.ome.tif", channels, ome=True, metadata={"axes": "CYX"}
            )
            tifffile.imwrite(tmp_path / split / "masks" / f"c{i}.tif", mask)
    model = tmp_path / "five.keras"
    folders = ["--images", str(tmp_path / "train/images"), "--masks", str(tmp_path / "train/masks")]
    small = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--patch-size", "32"]
    code = main(["train", *folders, "--out", str(model), *small, "--base-filters", "8", "--depth", "2"])
    assert code == 0
    main(["info", str(model)])
    assert "5 channel(s)" in capsys.readouterr().out
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
                "--quiet",
            ]
        )
        == 0
    )
    assert tifffile.imread(out / "c10.tif").shape == (64, 64)
    # The same files seen as a stack of five planes: the model's channels do not match.
    capsys.readouterr()
    bad = ["predict", "--model", str(model), "--input", str(tmp_path / "test/images"), "--output", str(tmp_path / "b")]
    assert main([*bad, "--axes", "ZYX", "--quiet"]) == 1
    assert "trained on 5" in capsys.readouterr().out
