"""Reading images and masks, pairing folders, labelme files."""

import base64
import io
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet_cat.errors import InputError
from napari_unet_cat.io import load_training_pairs, pair_by_stem, read_image, read_labels, write_tiff
from napari_unet_cat.labelme import label_names, read_labelme


def test_formats_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=100)
    tifffile.imwrite(tmp_path / "a.tif", rgb.astype(np.uint16) * 100)
    np.save(tmp_path / "a.npy", rgb.astype(np.float32))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    assert read_image(tmp_path / "a.jpg").shape == (20, 30, 3)
    assert read_image(tmp_path / "a.tif").dtype == np.uint16
    assert read_image(tmp_path / "a.npy").dtype == np.float32


def test_palette_png_masks_give_indices(tmp_path):
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:5] = 1
    img = Image.fromarray(mask, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "m.png"), mask)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"not an image at all", "cannot read"), (None, "does not exist")],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad file ü.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert "bad file ü.png" in str(info.value)


def test_truncated_tiff_is_reported(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.ones((64, 64), np.uint16), compression="zlib")
    bad = tmp_path / "cut.tif"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.tif"):
        read_image(bad)


def test_colour_masks_are_refused(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(InputError, match="colour image, not a label image"):
        read_labels(tmp_path / "m.png")


def test_pairing_by_stem_reports_the_unmatched(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for name in ("a.png", "b.tif", "c.png"):
        (tmp_path / "img" / name).write_bytes(b"x")
    for name in ("a.png", "b_mask.tif", "z.png"):
        (tmp_path / "msk" / name).write_bytes(b"x")
    pairs, lonely, orphans = pair_by_stem(tmp_path / "img", tmp_path / "msk")
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png"), ("b.tif", "b_mask.tif")]
    assert [p.name for p in lonely] == ["c.png"] and [p.name for p in orphans] == ["z.png"]


def test_mask_shape_must_match_its_image(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    tifffile.imwrite(tmp_path / "i" / "x.tif", np.zeros((10, 12), np.uint8))
    tifffile.imwrite(tmp_path / "m" / "x.tif", np.zeros((10, 11), np.uint8))
    with pytest.raises(InputError, match=r"mask .*x.tif has shape \(10, 11\).*\(10, 12\)"):
        load_training_pairs(tmp_path / "i", tmp_path / "m")


def test_write_tiff_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(TypeError):
        write_tiff(path, object())
    assert list(tmp_path.iterdir()) == []
    write_tiff(path, np.ones((5, 5), np.uint8))
    np.testing.assert_array_equal(tifffile.imread(path), 1)


def _labelme(path, shapes, size=(20, 30), image_data=None):
    data = {
        "version": "5.4.1",
        "shapes": shapes,
        "imagePath": None,
        "imageData": image_data,
        "imageHeight": size[0],
        "imageWidth": size[1],
    }
    path.write_text(json.dumps(data))
    return path


def _shape(label, kind, points):
    return {"label": label, "shape_type": kind, "points": points, "group_id": None, "flags": {}}


def test_labelme_shapes_are_rasterised_like_labelme(tmp_path):
    path = _labelme(
        tmp_path / "cat.json",
        [
            _shape("cat", "rectangle", [[2, 3], [6, 8]]),
            _shape("dog", "polygon", [[10, 2], [14, 2], [14, 6], [10, 6]]),
            _shape("cat", "circle", [[22, 10], [24, 10]]),
            _shape("dog", "point", [[5, 15]]),
        ],
    )
    ann = read_labelme(path)
    assert ann.names == {0: "_background_", 1: "cat", 2: "dog"}
    expected = np.zeros((20, 30), np.uint8)
    expected[3:9, 2:7] = 1  # rectangle corners included
    expected[2:7, 10:15] = 2  # polygon with its outline
    yy, xx = np.mgrid[0:20, 0:30]
    expected[(yy - 10) ** 2 + (xx - 22) ** 2 <= 4] = 1
    point = (yy - 15) ** 2 + (xx - 5) ** 2 <= 9
    expected[point] = 2
    got = ann.labels
    # Polygon and rectangle pixels are exact; discs may differ on their rim only.
    np.testing.assert_array_equal(got[:9, :15], expected[:9, :15])
    assert (got[expected == 1] == 1).mean() > 0.8 and (got[point] == 2).mean() > 0.8
    assert got[0, 0] == 0 and got[19, 29] == 0


def test_labelme_embedded_image_and_names_across_files(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 16), 200, np.uint8)).save(buf, format="PNG")
    a = _labelme(
        tmp_path / "a.json",
        [_shape("zebra", "polygon", [[0, 0], [5, 0], [5, 5]])],
        (12, 16),
        base64.b64encode(buf.getvalue()).decode(),
    )
    b = _labelme(tmp_path / "b.json", [_shape("ant", "line", [[0, 6], [15, 6]])], (12, 16))
    values = label_names([a, b])
    assert values == {"_background_": 0, "ant": 1, "zebra": 2}
    ann = read_labelme(a, values, load_image=True)
    assert ann.image.shape == (12, 16) and ann.labels.max() == 2
    assert (read_labelme(b, values).labels[6] == 1).all()


def test_bad_labelme_files_are_explained(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(
        '{"shapes": [{"label": "a", "shape_type": "polygon", "points": [[1, 1]]}], "imageHeight": 5, "imageWidth": 5}'
    )
    with pytest.raises(InputError, match="x.json: shape 0 \\(polygon\\) has 1 points"):
        read_labelme(bad)
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a labelme annotation"):
        read_labelme(tmp_path / "y.json")
