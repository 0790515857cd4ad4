"""Large inputs read lazily (tiled/compressed TIFF, zarr) and masks written as zarr."""

import numpy as np
import pytest
import zarr  # a dependency of the package: a missing one must fail, not skip

from napari_unet_cat import io
from napari_unet_cat.batch import segment_folder
from napari_unet_cat.errors import InputError
from napari_unet_cat.synthetic import make_image


def _write_zarr(path, array, chunks=(64, 64)):
    z = zarr.open_array(str(path), mode="w", shape=array.shape, dtype=array.dtype, chunks=chunks)
    z[...] = array
    return z


def test_a_compressed_tiled_tiff_is_read_tile_by_tile(tiny_model, tmp_path, monkeypatch):
    import tifffile

    image, _ = make_image((300, 260), seed=21)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    monkeypatch.setattr(io, "MEMMAP_THRESHOLD", 0)  # "large": cannot be memory-mapped, so lazy
    lazy = io.read_image(path)
    assert not isinstance(lazy, np.ndarray) and lazy.shape == image.shape
    np.testing.assert_array_equal(tiny_model.predict(lazy, tile_size=96), tiny_model.predict(image, tile_size=96))


def test_zarr_arrays_and_groups_are_images_of_a_folder(tiny_model, tmp_path):
    import tifffile

    a, _ = make_image((150, 170), seed=22)
    b, _ = make_image((120, 90), seed=23)
    folder = tmp_path / "in"
    folder.mkdir()
    _write_zarr(folder / "a.zarr", a)
    zarr.open_group(str(folder / "b.zarr"), mode="w")
    _write_zarr(folder / "b.zarr" / "0", b)  # a group's full-resolution array, as in OME-Zarr
    (folder / "empty.zarr").mkdir()  # not a zarr store: reported, the rest goes on
    tifffile.imwrite(folder / "c.tif", a)
    assert [p.name for p in io.list_images(folder)] == ["a.zarr", "b.zarr", "c.tif", "empty.zarr"]
    report = segment_folder(tiny_model, folder, tmp_path / "out", tile_size=96)
    assert [p.name for p in report.done] == ["a.zarr", "b.zarr", "c.tif"]
    assert [p.name for p, _ in report.failed] == ["empty.zarr"] and "empty.zarr" in report.failed[0][1]
    for name, image in (("a", a), ("b", b), ("c", a)):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "out" / f"{name}.tif"), tiny_model.predict(image, tile_size=96)
        )


def test_a_zarr_folder_that_is_no_zarr_is_named_in_the_error(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(InputError, match="x.zarr"):
        io.read_image(tmp_path / "x.zarr")


@pytest.mark.parametrize("shape", [(300, 520), (2, 150, 170)], ids=["plane", "stack"])
def test_streaming_into_zarr_gives_the_in_memory_labels(tiny_model, tmp_path, shape):
    rng = np.random.default_rng(4)
    planes = [make_image(shape[-2:], seed=int(s))[0] for s in rng.integers(0, 100, int(np.prod(shape[:-2])))]
    image = np.stack(planes).reshape(shape)
    source = _write_zarr(tmp_path / "image.zarr", image, chunks=(1,) * (len(shape) - 2) + (64, 64))
    out = tiny_model.predict_to_zarr(source, tmp_path / "mask.zarr", tile_size=96, chunk=64, rgb=False)
    written = zarr.open(str(out), mode="r")
    assert written.chunks[-2:] == (64, 64)
    np.testing.assert_array_equal(written[...], tiny_model.predict(image, tile_size=96, rgb=False))
    # Writing again replaces the array whole and leaves no temporary folder behind.
    tiny_model.predict_to_zarr(image[..., :100, :100], out, tile_size=96, chunk=64, rgb=False)
    assert zarr.open(str(out), mode="r").shape == (*shape[:-2], 100, 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.zarr", "mask.zarr"]


def test_a_failed_zarr_write_leaves_nothing(tiny_model, tmp_path):
    with pytest.raises(InputError, match="chunk"):
        tiny_model.predict_to_zarr(np.zeros((64, 64), np.uint8), tmp_path / "m.zarr", chunk=10)

    class Broken:
        shape, dtype, ndim = (200, 200), np.dtype(np.uint8), 2

        def __getitem__(self, key):
            raise OSError("device went away")

    with pytest.raises(OSError, match="went away"):
        tiny_model.predict_to_zarr(Broken(), tmp_path / "m.zarr", tile_size=96)
    assert list(tmp_path.iterdir()) == []
