"""Overlap-tile prediction: coverage, exactness against a whole-plane pass, any size."""

import itertools

import numpy as np
import pytest

from napari_unet_cat.synthetic import make_image
from napari_unet_cat.tiling import axis_tiles, plan_plane


@pytest.mark.parametrize("length, window, margin", [(1024, 256, 32), (160, 64, 16), (48, 32, 8), (96, 96, 16)])
def test_tile_weights_cover_every_pixel_exactly_once(length, window, margin):
    tiles = axis_tiles(length, window, margin, 8)
    total = np.zeros(length, np.float32)
    for i, start in enumerate(tiles.starts):
        assert start % 8 == 0 and 0 <= start <= length - tiles.window
        total[start : start + tiles.window] += tiles.weights(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    cores = [c for c in tiles.cores]
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))


def test_every_core_keeps_its_margin_of_context():
    tiles = axis_tiles(1000 // 16 * 16, 128, 32, 16)
    for start, (core_start, core_stop) in zip(tiles.starts, tiles.cores):
        assert core_start - start >= 32 or start == 0
        assert start + tiles.window - core_stop >= 32 or start + tiles.window == tiles.length


def test_plane_is_padded_to_the_size_multiple():
    plan = plan_plane((101, 37), tile_size=64, margin=16, multiple=16, border=8)
    for (before, after), n, axis in zip(plan.pad, (101, 37), (plan.rows, plan.cols)):
        assert before == 8 and (n + before + after) % 16 == 0 and axis.length == n + before + after


def test_tiled_prediction_equals_whole_image_prediction(tiny_model):
    image, _ = make_image((150, 117), seed=3)
    # Every blended pixel keeps the receptive radius (23 pixels here) of context inside its
    # tile: margin >= radius + blend (half the margin), so tiles see what the whole sees.
    assert tiny_model.config.architecture.receptive_radius == 23
    whole_labels, whole = tiny_model.predict(image, tile_size=512, margin=48, return_probabilities=True)
    tiled_labels, tiled = tiny_model.predict(image, tile_size=112, margin=48, return_probabilities=True)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    assert (tiled_labels == whole_labels).mean() > 0.9999


def test_probabilities_follow_the_weights_of_the_keras_model(tiny_model):
    # The softmax runs in a wrapper that shares the network's weights: further training
    # (here, new weights set) shows in the next prediction.
    image, _ = make_image((64, 64), seed=5)
    before = tiny_model.predict(image, return_probabilities=True)[1]
    weights = tiny_model.keras_model.get_weights()
    try:
        tiny_model.keras_model.set_weights([w * 0.5 for w in weights])
        after = tiny_model.predict(image, return_probabilities=True)[1]
    finally:
        tiny_model.keras_model.set_weights(weights)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(tiny_model.predict(image, return_probabilities=True)[1], before, atol=1e-6)
    np.testing.assert_allclose(before.sum(axis=-1), 1.0, atol=1e-5)


def test_default_tiling_stays_close_to_whole_image(tiny_model):
    image, _ = make_image((200, 200), seed=4)
    whole = tiny_model.predict(image, tile_size=512)
    tiled = tiny_model.predict(image, tile_size=64, margin=8)
    assert (whole == tiled).mean() > 0.99


@pytest.mark.parametrize("shape", [(1, 1), (5, 300), (17, 33), (129, 64), (63, 65, 3)])
def test_any_size_gives_a_mask_of_that_size(tiny_model, shape):
    image = np.random.default_rng(0).integers(0, 255, shape[:2]).astype(np.uint8)
    labels, probs = tiny_model.predict(image, return_probabilities=True)
    assert labels.shape == shape[:2]
    assert probs.shape == (*shape[:2], 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert set(np.unique(labels)) <= {0, 1}


def test_stacks_are_segmented_plane_by_plane(tiny_model):
    planes = [make_image((80, 90), seed=s)[0] for s in (10, 11, 12)]
    stack = np.stack(planes)
    labels = tiny_model.predict(stack)
    assert labels.shape == (3, 80, 90)
    for z in range(3):
        np.testing.assert_array_equal(labels[z], tiny_model.predict(planes[z]))


def test_memory_mapped_input_gives_the_same_mask(tiny_model, tmp_path):
    image, _ = make_image((300, 280), seed=5)
    path = tmp_path / "big.npy"
    np.save(path, image)
    lazy = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(tiny_model.predict(lazy, tile_size=96), tiny_model.predict(image, tile_size=96))


class RecordingArray:
    """An array-like that records how many pixels each read asks for."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.size)
        return out


def test_lazy_input_is_read_tile_by_tile(tiny_model, monkeypatch):
    from napari_unet_cat import arrays

    monkeypatch.setattr(arrays, "PERCENTILE_SAMPLE", 4096)  # percentiles from a sparse subsample
    image, _ = make_image((260, 250), seed=6)
    lazy = RecordingArray(image)
    np.testing.assert_array_equal(tiny_model.predict(lazy, tile_size=96), tiny_model.predict(image, tile_size=96))
    assert len(lazy.reads) > 4 and max(lazy.reads) <= 96 * 96


def test_dask_input_gives_the_same_mask(tiny_model):
    import dask.array as da

    image, _ = make_image((260, 250), seed=6)
    lazy = da.from_array(image, chunks=(64, 64))
    # The same batches for both (the automatic batch follows the free memory at the
    # moment of each call, and another batching may flip a pixel on a near tie).
    same = {"tile_size": 96, "batch_size": 4}
    np.testing.assert_array_equal(tiny_model.predict(lazy, **same), tiny_model.predict(image, **same))


def test_test_time_augmentation_is_flip_and_rotation_equivariant(tiny_model):
    # 92 is a multiple of the model's 4, so there is no padding to break the symmetry:
    # a flipped image is padded exactly as the flipped padded image.
    image, _ = make_image((92, 92), seed=8)
    transforms = [lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: np.rot90(a)]

    def probabilities(img, tta):
        return tiny_model.predict(
            np.ascontiguousarray(img), tile_size=96, return_probabilities=True, test_time_augmentation=tta
        )[1]

    plain, averaged = probabilities(image, False), probabilities(image, True)
    np.testing.assert_allclose(averaged.sum(-1), 1, atol=1e-5)
    for t in transforms:
        np.testing.assert_allclose(probabilities(t(image), True), t(averaged), atol=1e-5)
    # Without augmentation the network alone is not equivariant, so the check above can fail.
    assert np.abs(probabilities(transforms[2](image), False) - transforms[2](plain)).max() > 1e-3
    assert (averaged.argmax(-1) == plain.argmax(-1)).mean() > 0.95


def test_test_time_augmentation_works_on_tiles_that_are_not_square(tiny_model):
    image, _mask = make_image((70, 150), seed=9)
    # Padded to 76 x 156: one 76-row window high, 96-column windows across.
    labels = tiny_model.predict(image, tile_size=96, margin=16, test_time_augmentation=True)
    assert labels.shape == (70, 150) and set(np.unique(labels)) <= {0, 1}
    assert (labels == tiny_model.predict(image, tile_size=96, margin=16)).mean() > 0.95


@pytest.mark.parametrize("shape", [(300, 520), (2, 150, 170)], ids=["plane", "stack"])
def test_streaming_into_a_tiled_tiff_gives_the_in_memory_labels(tiny_model, tmp_path, shape):
    import tifffile

    rng = np.random.default_rng(3)
    planes = [make_image(shape[-2:], seed=int(s))[0] for s in rng.integers(0, 100, int(np.prod(shape[:-2])))]
    image = np.stack(planes).reshape(shape)
    path = tiny_model.predict_to_tiff(image, tmp_path / "mask.tif", tile_size=96, chunk=64, rgb=False)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].tilewidth == 64
        written = tif.asarray()
    np.testing.assert_array_equal(written, tiny_model.predict(image, tile_size=96, rgb=False))
    assert not [p for p in tmp_path.iterdir() if p.name != "mask.tif"]  # no temporary file left


def test_large_images_in_a_folder_stream_to_their_mask(tiny_model, tmp_path, monkeypatch):
    import tifffile

    from napari_unet_cat import batch, segment_file
    from napari_unet_cat.measurements import measure, read_csv

    image, _ = make_image((260, 330), seed=12)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "big.tif", image)
    monkeypatch.setattr(segment_file, "STREAM_PIXELS", 100 * 100)
    report = batch.segment_folder(tiny_model, tmp_path / "in", tmp_path / "out", tile_size=96, measure=True)
    assert report.ok and len(report.done) == 1
    with tifffile.TiffFile(tmp_path / "out" / "big.tif") as tif:
        assert tif.pages[0].is_tiled
        mask = tif.asarray()
    np.testing.assert_array_equal(mask, tiny_model.predict(image, tile_size=96))
    # Measured from the streamed mask, read back from its file.
    expected = measure(mask, image, classes=True)
    np.testing.assert_array_equal(read_csv(tmp_path / "out" / "big_objects.csv")["area"], expected["area"])
