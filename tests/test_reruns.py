"""Folder runs that users re-run: names that clash, another model, two runs at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet_cat.batch import LOG_NAME, SegmentOptions, segment_folder
from napari_unet_cat.cluster import segment_one
from napari_unet_cat.errors import InputError
from napari_unet_cat.folder_state import FolderLock
from napari_unet_cat.io import file_stem, pair_by_stem
from napari_unet_cat.synthetic import make_image


def _images(folder, names, shape=(64, 64)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image, _ = make_image(shape, seed=70 + i)
        if name.endswith((".tif", ".tiff")):
            tifffile.imwrite(folder / name, image)
        else:
            Image.fromarray(image).save(folder / name)
    return folder


def _other_model(model):
    from napari_unet_cat._backend import keras
    from napari_unet_cat.segmenter import UNetModel

    clone = keras.models.clone_model(model.keras_model)
    clone.set_weights([w * 1.01 for w in model.keras_model.get_weights()])
    return UNetModel(clone, model.config)


def test_ome_tiff_suffixes_count_as_one():
    assert file_stem("cells.ome.tif") == "cells" and file_stem("cells.OME.TIFF") == "cells"
    assert file_stem("cells.tif") == "cells" and file_stem("a.b.png") == "a.b"


def test_ome_tiffs_pair_with_their_masks_and_name_their_outputs(tmp_path, tiny_model):
    _images(tmp_path / "images", ["cells.ome.tif"])
    _images(tmp_path / "masks", ["cells.tif"])
    pairs, lonely, _ = pair_by_stem(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("cells.ome.tif", "cells.tif")] and not lonely
    report = segment_folder(tiny_model, tmp_path / "images", tmp_path / "out")
    assert report.ok and (tmp_path / "out" / "cells.tif").exists()
    assert not (tmp_path / "out" / "cells.ome.tif").exists()


def test_two_inputs_of_one_stem_stop_before_any_work(tmp_path, tiny_model):
    _images(tmp_path / "in", ["a.tif", "a.png", "b.png"])
    with pytest.raises(InputError, match=r"a\.png and a\.tif") as info:
        segment_folder(tiny_model, tmp_path / "in", tmp_path / "out")
    assert "a.tif" in str(info.value) and not list((tmp_path / "out").glob("*.tif"))


def test_a_rerun_with_another_model_needs_overwrite(tmp_path, tiny_model):
    _images(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    assert segment_folder(tiny_model, tmp_path / "in", out).ok
    # The same model again: everything is skipped, as before.
    assert len(segment_folder(tiny_model, tmp_path / "in", out).skipped) == 2
    other = _other_model(tiny_model)
    assert other.fingerprint() != tiny_model.fingerprint()
    with pytest.raises(InputError, match="overwrite") as info:
        segment_folder(other, tmp_path / "in", out)
    assert tiny_model.fingerprint() in str(info.value)
    redone = segment_folder(other, tmp_path / "in", out, overwrite=True)
    assert len(redone.done) == 2
    records = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert records[-1]["model"] == other.fingerprint()


def test_a_saved_model_has_the_fingerprint_of_the_model(tmp_path, tiny_model):
    from napari_unet_cat.loading import load_model

    tiny_model.save(tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").fingerprint() == tiny_model.fingerprint()


def test_a_second_run_on_one_folder_stops_while_the_first_runs(tmp_path, tiny_model):
    _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out), pytest.raises(InputError, match="another run"):
        segment_folder(tiny_model, tmp_path / "in", out)
    assert not (out / FolderLock.NAME).exists()  # released when the first ended
    assert segment_folder(tiny_model, tmp_path / "in", out).ok


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, tiny_model):
    import socket

    _images(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    (out / FolderLock.NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    assert segment_folder(tiny_model, tmp_path / "in", out).ok
    assert not (out / FolderLock.NAME).exists()
    # A lock held by a live process is not.
    (out / FolderLock.NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    with pytest.raises(InputError, match=str(os.getpid())):
        segment_folder(tiny_model, tmp_path / "in", out, overwrite=True)


def test_cluster_workers_keep_a_bounded_cache_keyed_by_fingerprint(tmp_path, tiny_model):
    from napari_unet_cat import cluster

    _images(tmp_path / "in", ["a.png"])
    model_file = tiny_model.save(tmp_path / "m.keras")
    cluster._WORKER_MODELS.clear()
    for key in ("one", "two", "three", "two"):
        status, why, _, _ = segment_one(
            str(model_file), str(tmp_path / "in" / "a.png"), str(tmp_path), SegmentOptions(min_size=0, fingerprint=key)
        )
        assert status == "done", why
    assert list(cluster._WORKER_MODELS) == ["three", "two"]
    assert np.asarray(tifffile.imread(tmp_path / "a.tif")).shape == (64, 64)
