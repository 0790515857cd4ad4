"""Training augmentation: the elastic warp is the U-Net paper's and keeps labels on their pixels."""

import numpy as np
import pytest
from scipy.ndimage import zoom

from napari_unet_cat.dataset import _cubic_upsampling, augment_patch, elastic_deform


@pytest.mark.parametrize("shape", [(128, 128), (64, 96), (33, 47)])
def test_displacement_field_is_the_cubic_zoom_of_the_coarse_grid(shape):
    rng = np.random.default_rng(3)
    h, w = shape
    for _ in range(5):
        coarse = rng.normal(0, 4, (3, 3))
        expected = zoom(coarse, (h / 3, w / 3), order=3, mode="nearest", grid_mode=True)[:h, :w]
        got = _cubic_upsampling(h) @ coarse @ _cubic_upsampling(w).T
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_zero_displacement_leaves_the_patch_as_it_was():
    rng = np.random.default_rng(0)
    image = rng.random((40, 50, 2), dtype=np.float32)
    labels = rng.integers(0, 3, (40, 50)).astype(np.int16)
    warped_image, warped_labels = elastic_deform(rng, image, labels, sigma=0.0)
    np.testing.assert_allclose(warped_image, image, atol=1e-6)
    np.testing.assert_array_equal(warped_labels, labels)


def test_warp_moves_image_and_labels_together():
    yy, xx = np.mgrid[:96, :96]
    labels = (((yy - 48) ** 2 + (xx - 40) ** 2) < 25**2).astype(np.int16)
    image = labels[..., None].astype(np.float32)
    rng = np.random.default_rng(1)
    warped_image, warped_labels = elastic_deform(rng, image, labels, sigma=6.0)
    assert not np.array_equal(warped_labels, labels)  # it did move
    agree = np.mean((warped_image[..., 0] > 0.5) == (warped_labels > 0))
    assert agree > 0.99, agree
    assert set(np.unique(warped_labels)) <= {0, 1}  # nearest for labels: no blended values


def test_augmented_patches_keep_dtype_shape_and_label_values():
    rng = np.random.default_rng(2)
    image = rng.random((64, 64, 1), dtype=np.float32)
    labels = rng.integers(-1, 2, (64, 64)).astype(np.int16)
    for _ in range(20):
        x, y = augment_patch(rng, image, labels)
        assert x.shape == image.shape and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.shape == labels.shape and y.dtype == labels.dtype
        assert set(np.unique(y)) <= {-1, 0, 1}


@pytest.mark.parametrize("shape", [(64, 64), (33, 47), (1, 20)])
def test_warps_match_scipy_map_coordinates_in_mirror_mode(shape):
    from scipy.ndimage import map_coordinates

    from napari_unet_cat.dataset import warp_linear, warp_nearest

    rng = np.random.default_rng(4)
    h, w = shape
    image = rng.random((h, w, 3), dtype=np.float32)
    labels = rng.integers(0, 5, (h, w)).astype(np.int16)
    # Displacements of up to 1.5 patch sides reach past the edges on both sides.
    rows = np.arange(h)[:, None] + rng.uniform(-1.5 * h, 1.5 * h, (h, w))
    cols = np.arange(w)[None, :] + rng.uniform(-1.5 * w, 1.5 * w, (h, w))
    coords = np.stack([rows, cols])
    expected = np.stack([map_coordinates(image[..., c], coords, order=1, mode="mirror") for c in range(3)], -1)
    np.testing.assert_allclose(warp_linear(image, rows, cols), expected, atol=1e-5)
    # Nearest: equal except where a coordinate falls half-way between two pixels.
    same = warp_nearest(labels, rows, cols) == map_coordinates(labels, coords, order=0, mode="mirror")
    assert same.mean() > 0.999
