import numpy as np
import pytest

from napari_unet_cat.arrays import (
    IGNORE_INDEX,
    apply_value_map,
    argmax_last,
    encode_labels,
    infer_layout,
    normalize,
    read_window,
)
from napari_unet_cat.config import Normalization, parse_value_map
from napari_unet_cat.errors import InputError


@pytest.mark.parametrize(
    "shape, kwargs, planes, spatial, channels",
    [
        ((40, 50), {}, (), (40, 50), 1),
        ((40, 50, 3), {}, (), (40, 50), 3),
        ((40, 50, 4), {}, (), (40, 50), 4),
        ((7, 40, 50), {}, (7,), (40, 50), 1),
        ((2, 7, 40, 50, 3), {}, (2, 7), (40, 50), 3),
        ((7, 40, 50), {"n_channels": 1}, (7,), (40, 50), 1),
        ((40, 50, 4), {"n_channels": 3}, (), (40, 50), 4),
        ((3, 40, 50), {"rgb": False}, (3,), (40, 50), 1),
    ],
)
def test_layout_finds_planes_and_channels(shape, kwargs, planes, spatial, channels):
    layout = infer_layout(shape, **kwargs)
    assert (layout.plane_shape, layout.spatial, layout.channels) == (planes, spatial, channels)


def test_rgba_loses_alpha():
    layout = infer_layout((10, 12, 4))
    assert layout.used_channels == 3
    image = np.random.default_rng(0).integers(0, 255, (10, 12, 4)).astype(np.uint8)
    window = read_window(image, layout, (), np.arange(10), np.arange(12))
    assert window.shape == (10, 12, 3)
    np.testing.assert_array_equal(window, image[..., :3])


def test_channel_mismatch_names_the_image():
    with pytest.raises(InputError, match="cat.png.*3 channels.*trained on 1"):
        infer_layout((40, 50, 3), n_channels=1, name="cat.png")


def test_too_few_dimensions_is_an_error():
    with pytest.raises(InputError, match="at least two dimensions"):
        infer_layout((40,))


def test_read_window_mirrors_outside_the_plane():
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    layout = infer_layout(image.shape)
    window = read_window(image, layout, (), np.arange(-2, 6), np.arange(-3, 8))[..., 0]
    np.testing.assert_array_equal(window, np.pad(image, ((2, 2), (3, 3)), mode="reflect"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int32])
def test_normalize_maps_percentiles_to_unit_range(dtype):
    values = np.linspace(0, 200, 64 * 64).reshape(64, 64, 1).astype(dtype)
    out = normalize(values, Normalization(low=0, high=100))
    assert out.dtype == np.float32
    assert out.min() == pytest.approx(0, abs=1e-6) and out.max() == pytest.approx(1, abs=1e-6)


def test_normalize_never_returns_nan_or_inf():
    plane = np.random.default_rng(0).normal(size=(32, 32, 2)).astype(np.float32)
    plane[0, 0, 0], plane[1, 1, 1], plane[2, 2, 0] = np.nan, np.inf, -np.inf
    assert np.isfinite(normalize(plane, Normalization())).all()
    assert np.isfinite(normalize(np.full((8, 8, 1), np.nan, np.float32), Normalization())).all()
    assert np.isfinite(normalize(np.ones((8, 8, 1), np.float32), Normalization())).all()


def test_sparse_mode_ignores_zero_and_dense_mode_keeps_it():
    labels = np.array([[0, 1], [2, 0]])
    sparse = encode_labels(labels, [1, 2], "sparse")
    np.testing.assert_array_equal(sparse, [[IGNORE_INDEX, 0], [1, IGNORE_INDEX]])
    dense = encode_labels(labels, [0, 1, 2], "dense")
    np.testing.assert_array_equal(dense, [[0, 1], [2, 0]])


def test_unknown_label_values_are_named():
    with pytest.raises(InputError, match="mask.tif.*value 7.*classes are 0, 1"):
        encode_labels(np.array([[0, 7]]), [0, 1], "dense", name="mask.tif")


def test_value_map_relabels_and_ignores():
    mapping = parse_value_map(["255=1", "128=ignore"])
    out = apply_value_map(np.array([[0, 255, 128]], np.uint8), mapping)
    np.testing.assert_array_equal(out, [[0, 1, IGNORE_INDEX]])


@pytest.mark.parametrize("entry", ["255", "a=1", "3=cat"])
def test_bad_value_map_entries_are_explained(entry):
    with pytest.raises(InputError, match="VALUE=CLASS"):
        parse_value_map([entry])


@pytest.mark.parametrize("n_classes", [1, 2, 3, 5])
def test_argmax_last_matches_numpy_ties_included(n_classes):
    values = np.random.default_rng(n_classes).random((33, 17, n_classes)).astype(np.float32)
    values[:4, :4] = 0.5  # ties: the first class wins, as in NumPy
    values = values[::2, 1:]  # a strided view, as prediction bands are
    np.testing.assert_array_equal(argmax_last(values), np.argmax(values, axis=-1))
