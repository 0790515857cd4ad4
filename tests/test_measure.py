"""Measurements of objects: checked against an independent computation with NumPy, in 2D
and 3D, from class maps, in physical units read from OME-TIFF and ImageJ files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet_cat.errors import InputError
from napari_unet_cat.io import read_pixel_size
from napari_unet_cat.measurements import measure, read_csv, summarize, write_csv
from napari_unet_cat.synthetic import make_instance_image


def _by_hand(labels: np.ndarray, image: np.ndarray):
    """Area, centroid, bounding box and mean/min/max per object, with NumPy alone."""
    found = {}
    for value in np.unique(labels[labels > 0]):
        where = np.nonzero(labels == value)
        pixels = image[where]
        found[int(value)] = {
            "area": len(where[0]),
            "centroid": [float(np.mean(w)) for w in where],
            "start": [int(w.min()) for w in where],
            "stop": [int(w.max()) + 1 for w in where],
            "mean": float(pixels.mean()),
            "min": float(pixels.min()),
            "max": float(pixels.max()),
        }
    return found


def test_measurements_match_an_independent_computation_exactly():
    image, objects = make_instance_image((160, 140), seed=5)
    gray = image.astype(np.uint16) * 257 if image.ndim == 2 else image[..., 0].astype(np.uint16) * 257
    table = measure(objects, gray)
    expected = _by_hand(objects, gray)
    assert list(table["label"]) == sorted(expected)
    for i, value in enumerate(table["label"]):
        truth = expected[int(value)]
        assert table["area"][i] == truth["area"]
        assert [table["centroid_y"][i], table["centroid_x"][i]] == pytest.approx(truth["centroid"], abs=1e-9)
        assert [table["bbox_y_start"][i], table["bbox_x_start"][i]] == truth["start"]
        assert [table["bbox_y_stop"][i], table["bbox_x_stop"][i]] == truth["stop"]
        # The image as stored (uint16 values), not normalized.
        assert (table["mean"][i], table["min"][i], table["max"][i]) == pytest.approx(
            (truth["mean"], truth["min"], truth["max"]), abs=1e-9
        )
    assert np.all((table["eccentricity"] >= 0) & (table["eccentricity"] < 1))
    assert np.all((table["solidity"] > 0) & (table["solidity"] <= 1))
    assert np.all(table["major_axis"] >= table["minor_axis"])


def test_channels_volumes_and_physical_units():
    labels = np.zeros((6, 20, 20), np.uint16)
    labels[1:4, 2:8, 3:9] = 1
    labels[2:6, 10:18, 10:14] = 2
    image = np.stack([labels * 10.0, labels * -1.0], axis=-1)
    table = measure(labels, image, pixel_size=(2.0, 0.5, 0.5))
    assert list(table["area"]) == [3 * 6 * 6, 4 * 8 * 4]
    assert list(table["mean_c0"]) == [10.0, 20.0] and list(table["min_c1"]) == [-1.0, -2.0]
    assert list(table["volume_um3"]) == pytest.approx([108 * 0.5, 128 * 0.5])
    assert table["centroid_z_um"][0] == pytest.approx(2.0 * 2.0)  # planes 1-3: centre 2, 2 um apart
    assert "major_axis_um" not in table  # voxels are not cubes: no single length scale
    with pytest.raises(InputError, match="3 positive values"):
        measure(labels, pixel_size=(0.5, 0.5))
    with pytest.raises(InputError, match="does not fit"):
        measure(labels, image[:, :10])


def test_a_class_map_is_split_into_its_connected_parts():
    classes = np.zeros((30, 30), np.uint8)
    classes[2:6, 2:6] = 1
    classes[10:14, 2:6] = 1
    classes[20:28, 20:28] = 2
    table = measure(classes, classes=True)
    assert list(table["class"]) == [1, 1, 2] and list(table["area"]) == [16, 16, 64]
    assert list(table["label"]) == [1, 2, 3]


def test_tables_round_trip_through_csv_and_summarize(tmp_path):
    _, objects = make_instance_image((96, 96), seed=2)
    table = measure(objects, pixel_size=(0.25, 0.25))
    path = write_csv(tmp_path / "cells_objects.csv", table)
    back = read_csv(path)
    assert list(back) == list(table) and list(back["label"]) == list(table["label"])
    np.testing.assert_allclose(back["area_um2"], table["area_um2"], rtol=1e-5)
    row = summarize("cells.tif", back)
    assert row["objects"] == len(np.unique(objects)) - 1 and row["mean_area"] == pytest.approx(np.mean(table["area"]))
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary file left


def test_pixel_sizes_are_read_from_ome_and_imagej_files(tmp_path):
    volume = np.zeros((4, 16, 16), np.uint8)
    tifffile.imwrite(
        tmp_path / "ome.ome.tif",
        volume,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5},
    )
    assert read_pixel_size(tmp_path / "ome.ome.tif") == ({"z": 1.5, "y": 0.25, "x": 0.25}, "um")
    tifffile.imwrite(
        tmp_path / "ij.tif", volume, imagej=True, resolution=(4.0, 2.0), metadata={"spacing": 3.0, "unit": "micron"}
    )
    assert read_pixel_size(tmp_path / "ij.tif") == ({"x": 0.25, "y": 0.5, "z": 3.0}, "um")
    tifffile.imwrite(tmp_path / "plain.tif", volume[0])
    assert read_pixel_size(tmp_path / "plain.tif") is None


def test_predict_measure_writes_a_table_per_image_and_a_summary_kill_safe(tiny_model, tmp_path):
    from PIL import Image

    from napari_unet_cat.cli import main
    from napari_unet_cat.measurements import measure
    from napari_unet_cat.synthetic import make_image

    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(make_image((96, 110), seed=60 + i)[0]).save(tmp_path / "in" / f"c{i}.png")
    out = tmp_path / "out"
    argv = ["predict", "--model", str(tiny_model.save(tmp_path / "m.keras")), "--input", str(tmp_path / "in")]
    argv += ["--output", str(out), "--quiet", "--measure", "--pixel-size", "0.5", "0.5"]
    assert main(argv) == 0
    mask = tifffile.imread(out / "c1.tif")
    table = read_csv(out / "c1_objects.csv")
    image = np.asarray(Image.open(tmp_path / "in" / "c1.png"))
    expected = measure(mask, image, pixel_size=(0.5, 0.5), classes=True)  # a semantic model: its parts
    assert list(table["label"]) == list(expected["label"]) and len(table["label"]) > 3
    np.testing.assert_allclose(table["area_um2"], expected["area_um2"])
    np.testing.assert_allclose(table["mean"], expected["mean"], rtol=1e-5)
    summary = (out / "objects.csv").read_text().splitlines()
    assert summary[0].startswith("image,objects,mean_area") and len(summary) == 4
    # A run killed after c2's mask but before its table: the next run redoes c2 alone.
    (out / "c2_objects.csv").unlink()
    before = (out / "c0_objects.csv").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "c2_objects.csv").exists() and (out / "c0_objects.csv").stat().st_mtime_ns == before
    assert len((out / "objects.csv").read_text().splitlines()) == 4
