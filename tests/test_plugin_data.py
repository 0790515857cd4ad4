"""The reader and sample-data contributions, through npe2 as napari calls them."""

import json

import numpy as np
from PIL import Image


def test_labelme_reader_gives_image_and_named_labels(tmp_path):
    from napari_unet_cat._reader import get_reader

    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "cat.png")
    shapes = [{"label": "cat", "shape_type": "rectangle", "points": [[2, 3], [6, 8]]}]
    data = {"shapes": shapes, "imagePath": "cat.png", "imageData": None, "imageHeight": 20, "imageWidth": 30}
    (tmp_path / "cat.json").write_text(json.dumps(data))
    (tmp_path / "other.json").write_text(json.dumps({"not": "labelme"}))
    assert get_reader(str(tmp_path / "other.json")) is None
    layers = get_reader(str(tmp_path / "cat.json"))(str(tmp_path / "cat.json"))
    (image, image_meta, image_kind), (labels, meta, kind) = layers
    assert image_kind == "image" and image.shape == (20, 30, 3) and image_meta["rgb"]
    assert kind == "labels" and meta["metadata"]["label_names"][1] == "cat"
    expected = np.zeros((20, 30), np.uint8)
    expected[3:9, 2:7] = 1
    np.testing.assert_array_equal(labels, expected)


def test_sample_data_is_contributed():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    keys = {s.key for s in pm.get_manifest("napari-unet-cat").contributions.sample_data}
    assert keys == {"synthetic_cells", "touching_cells", "chelsea"}
    from napari_unet_cat._sample_data import chelsea_cat, synthetic_cells, touching_cells
    from napari_unet_cat.instances import looks_like_instances

    (cells, _, _), (instances, _, instances_kind) = touching_cells()
    assert cells.shape == instances.shape == (256, 256) and instances_kind == "labels"
    assert looks_like_instances(instances)

    (image, _, _), (strokes, _, kind), (mask, mask_meta, _) = synthetic_cells()
    assert image.shape == mask.shape == strokes.shape == (256, 256) and kind == "labels"
    assert set(np.unique(strokes)) == {0, 1, 2} and (strokes > 0).mean() < 0.1
    assert set(np.unique(mask)) == {0, 1} and mask_meta["visible"] is False
    assert chelsea_cat()[0][0].shape[-1] == 3
