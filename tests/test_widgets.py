"""The napari widgets in a real viewer (under Xvfb): they open from the manifest, train on
a worker, plot, preview, stop, save, and put predictions into Labels layers."""

from __future__ import annotations

import gc
import io

import numpy as np
import pytest
from PIL import Image

from napari_unet_cat.synthetic import make_image, strokes_from_mask

from .conftest import foreground_iou

#: Every test here needs a display and a napari viewer: ``-m "not gui"`` runs the rest.
pytestmark = pytest.mark.gui

PLUGIN = "napari-unet-cat"
WAIT_MS = 240_000


def _fast(widget, epochs=6):
    """Small settings so that a test trains in seconds on two cores: a new tiny network
    (not a built-in one, which ``auto`` would choose for these bright-on-dark images)."""
    if widget.start_from.value.startswith("auto"):
        widget.start_from.value = "a new model"
    widget.base_filters.value = 8
    widget.epochs.value = epochs
    widget.patch_size.value = 64
    widget.batch_size.value = 8
    widget.learning_rate.value = "3e-3"
    widget.val_fraction.value = 0.0


def _one_short_epoch(train, qtbot, batch_size: int) -> None:
    """Train one short epoch with the panel's start (a built-in model, by default)."""
    train.epochs.value = 1
    train.patch_size.value = 64
    train.batch_size.value = batch_size
    train.val_fraction.value = 0.0
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)


@pytest.fixture
def painted(make_napari_viewer):
    """A viewer with a synthetic image and strokes painted over it."""
    viewer = make_napari_viewer()
    image, mask = make_image((160, 160), seed=11)
    strokes = strokes_from_mask(mask, fraction=0.08, seed=11)
    viewer.add_image(image, name="cells")
    viewer.add_labels(strokes, name="cells labels")
    return viewer, image, mask


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


@pytest.mark.parametrize(
    "name, kind",
    [("Train U-Net", "TrainWidget"), ("Segment with U-Net", "SegmentWidget"), ("Segment a folder", "FolderWidget")],
)
def test_each_widget_opens_from_the_manifest(make_napari_viewer, name, kind):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert type(widget).__name__ == kind
    assert dock.name.startswith(name)


def test_the_sample_opens_ready_to_train_on_its_strokes(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_cells")
    train = _dock(viewer, "Train U-Net")
    assert train.image.value.name == "synthetic cells"
    assert train.labels.value.name == "synthetic cells strokes"  # not the hidden full mask
    assert train.settings().label_mode == "sparse"
    from napari_unet_cat.config import PRESET_LEARNING_RATES
    from napari_unet_cat.resources import resolve_preset

    # The network every interface defaults to, and the learning rate of what it picks here.
    assert train.preset.value == "auto"
    assert train.settings().learning_rate == PRESET_LEARNING_RATES[resolve_preset("auto")[0]]
    train.preset.value = "classic"  # the tutorial's network brings the tutorial's rate
    assert train.settings().learning_rate == 1e-4


def test_pairs_by_name_match_the_longest_image_name_and_skip_predictions(make_napari_viewer):
    from napari_unet_cat._qt.layers import pair_layers_by_name

    viewer = make_napari_viewer()
    blank = np.zeros((16, 16), np.uint8)
    for name in ("cell", "cell 2"):
        viewer.add_image(blank, name=name)
    for name in ("cell labels", "cell 2 labels", "cell U-Net", "other labels"):
        viewer.add_labels(blank, name=name)
    pairs = {(image.name, labels.name) for image, labels in pair_layers_by_name(viewer)}
    assert pairs == {("cell", "cell labels"), ("cell 2", "cell 2 labels")}


def test_train_on_strokes_then_segment_into_labels(painted, qtbot, tmp_path):
    viewer, image, mask = painted
    train = _dock(viewer, "Train U-Net")
    assert train.image.value.name == "cells" and train.labels.value.name == "cells labels"
    _fast(train, epochs=8)
    train.start()
    assert train.worker is not None  # training runs off the GUI thread
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)

    # The plot has one point per epoch; the preview shows the model on the plane on screen.
    assert len(train.plot.rows) == 8 and train.plot.series("loss")[-1] < train.plot.series("loss")[0]
    preview = viewer.layers["U-Net preview"]
    assert preview.data.shape == image.shape and set(np.unique(preview.data)) <= {0, 2}  # background shows as 0
    assert train.model is not None and train.save_button.enabled
    from napari_unet_cat._qt.session import Session  # what the model learnt from, for its rounds of corrections

    assert Session.trained_on(train.model) == [(viewer.layers["cells"], viewer.layers["cells labels"])]

    train.save_path.value = tmp_path / "painted.keras"
    assert train.save() == tmp_path / "painted.keras"

    segment = _dock(viewer, "Segment with U-Net")
    segment.model_path.value = tmp_path / "painted.keras"
    segment.image.value = viewer.layers["cells"]
    segment.probabilities.value = True
    segment.run()
    qtbot.waitUntil(lambda: "cells U-Net" in viewer.layers, timeout=WAIT_MS)
    result = viewer.layers["cells U-Net"]
    assert result.data.shape == image.shape
    assert set(np.unique(result.data)) <= {1, 2}  # the painted values, never 0
    assert foreground_iou(result.data, mask, value=2) > 0.7
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert "cells p(2)" in viewer.layers


def test_instance_sample_trains_objects_and_segments_them(make_napari_viewer, qtbot):
    from napari_unet_cat._qt.session import SESSION_MODEL
    from napari_unet_cat.evaluation import evaluate_instances

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "touching_cells")
    train = _dock(viewer, "Train U-Net")
    assert train.labels.value.name == "touching cells instances"
    # The widget sees object ids and offers the instance mode.
    assert train.settings().label_mode == "instances"
    assert "instance" in train.status.value
    _fast(train, epochs=6)
    train.val_fraction.value = 0.2
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert len(train.plot.rows) == 6
    # One validation object score per epoch, plotted beside the IoU.
    assert all("val_ap_50" in row for row in train.plot.rows)
    preview = viewer.layers["U-Net preview"]
    assert preview.data.max() > 3  # objects, not the three classes

    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["touching cells"]
    segment.run()
    qtbot.waitUntil(lambda: "touching cells U-Net" in viewer.layers, timeout=WAIT_MS)
    objects = viewer.layers["touching cells U-Net"]
    truth = viewer.layers["touching cells instances"].data
    assert objects.metadata["objects"] and objects.data.max() > 10 and objects.data.shape == truth.shape
    # The widget delivers the core's objects (a 6-epoch tiny model's quality varies with
    # TensorFlow's threads, so the wiring is what is checked here; quality is benchmarked).
    expected = train.model.predict(viewer.layers["touching cells"].data)
    assert evaluate_instances([objects.data], [expected])["ap"]["0.5"] > 0.95
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    # The class map is there on request.
    segment.output.value = "classes"
    segment.run()
    qtbot.waitUntil(
        lambda: segment.worker is None and viewer.layers["touching cells U-Net"].data.max() <= 2, timeout=WAIT_MS
    )


def test_training_continues_from_a_model_file(painted, qtbot, tmp_path):
    viewer, _, _ = painted
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=2)
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    train.save_path.value = tmp_path / "first.keras"
    train.save()

    assert train.resume_path.native.isHidden()
    train.start_from.value = "a model file"
    assert not train.resume_path.native.isHidden()  # the file field shows only for this choice
    train.resume_path.value = tmp_path / "first.keras"
    train.epochs.value = 2
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.plot.series("epoch") == [3, 4]  # the file's history goes on
    assert len(train.model.config.history) == 4


def test_stop_ends_training_early_and_keeps_a_model(painted, qtbot):
    viewer, image, _ = painted
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=500)
    train.start()
    qtbot.waitUntil(lambda: len(train.plot.rows) >= 1, timeout=WAIT_MS)
    # While the model works, full garbage collections leave the older objects alone (a
    # walk over all of napari's and TensorFlow's stalled the viewer); after, they don't.
    assert gc.get_freeze_count() > 0
    train.stop()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert gc.get_freeze_count() == 0
    assert 1 <= len(train.plot.rows) < 500
    assert train.trainer.stopped == "stopped"
    assert train.model.predict(image).shape == image.shape


def test_the_heap_stays_frozen_until_the_last_model_run_ends():
    from napari_unet_cat._qt.threads import heap_frozen

    assert gc.get_freeze_count() == 0
    with heap_frozen():
        first = gc.get_freeze_count()
        made_meanwhile = [[] for _ in range(100)]
        with heap_frozen():  # a second run freezes what the first made since
            assert gc.get_freeze_count() >= first + len(made_meanwhile)
        assert first > 0 and gc.get_freeze_count() >= first + len(made_meanwhile)  # the first still runs
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), heap_frozen():
        raise RuntimeError("a failed run unfreezes too")
    assert gc.get_freeze_count() == 0


def test_closing_napari_during_training_stops_the_worker(painted, qtbot):
    viewer, _, _ = painted
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=500)
    train.start()
    qtbot.waitUntil(lambda: len(train.plot.rows) >= 1, timeout=WAIT_MS)
    trainer, worker = train.trainer, train.worker
    viewer.close()
    qtbot.waitUntil(lambda: trainer.stopped == "stopped", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert trainer.epochs_done < 500


def test_stacks_train_on_painted_planes_and_preview_the_plane_on_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    pairs = [make_image((96, 96), seed=s) for s in (1, 2, 3)]
    stack = np.stack([p[0] for p in pairs])
    labels = np.zeros(stack.shape, np.uint8)
    labels[1] = strokes_from_mask(pairs[1][1], fraction=0.1, seed=1)
    viewer.add_image(stack, name="stack")
    viewer.add_labels(labels, name="stack labels")
    viewer.dims.set_current_step(0, 2)
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=2)
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    preview = viewer.layers["U-Net preview"].data
    assert preview.shape == stack.shape
    assert preview[2].any() and not preview[0].any()  # only the plane on screen is previewed


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda v: v.add_labels(np.zeros((160, 160), np.uint8), name="empty"), "nothing painted"),
        (lambda v: v.add_labels(np.ones((80, 80), np.uint8), name="small"), "has shape"),
    ],
    ids=["nothing-painted", "wrong-shape"],
)
def test_bad_layers_get_a_clear_message_and_no_worker(painted, setup, message):
    viewer, _, _ = painted
    layer = setup(viewer)
    train = _dock(viewer, "Train U-Net")
    train.labels.value = layer
    train.start()
    assert train.worker is None
    assert message in train.status.value and layer.name in train.status.value


def test_model_with_other_channels_is_explained(painted, qtbot, tiny_model, tmp_path):
    viewer, _, _ = painted
    path = tiny_model.save(tmp_path / "gray.keras")
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="colour", rgb=True)
    segment = _dock(viewer, "Segment with U-Net")
    segment.model_path.value = path
    segment.image.value = viewer.layers["colour"]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert "3 channels" in segment.status.value and "trained on 1" in segment.status.value
    assert "colour U-Net" not in viewer.layers


def test_unreadable_model_file_is_explained(painted, qtbot, tiny_model, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer, image, _ = painted
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a model")
    segment = _dock(viewer, "Segment with U-Net")
    segment.model_path.value = bad
    seen = len(notification_manager.records)
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert "broken.keras" in segment.status.value
    assert any("broken.keras" in str(n.message) for n in notification_manager.records[seen:])
    # The error cost one message: the same widget then segments with a good model.
    segment.model_path.value = tiny_model.save(tmp_path / "good.keras")
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert viewer.layers["cells U-Net"].data.shape == image.shape


def test_folder_widget_runs_the_batch_function(make_napari_viewer, qtbot, tiny_model, tmp_path):
    viewer = make_napari_viewer()
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        Image.fromarray(make_image((70, 90), seed=i)[0]).save(inp / f"im{i}.png")
    (inp / "broken.png").write_bytes(b"")
    model = tiny_model.save(tmp_path / "m.keras")
    folder = _dock(viewer, "Segment a folder")
    folder.model_path.value = model
    folder.input_dir.value = inp
    folder.output_dir.value = tmp_path / "out"
    folder.run()
    qtbot.waitUntil(lambda: folder.worker is None, timeout=WAIT_MS)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["im0.tif", "im1.tif", "im2.tif"]
    assert folder.report is not None and len(folder.report.done) == 3 and len(folder.report.failed) == 1
    assert "3 segmented" in folder.status.value and "broken.png" in folder.status.value
    assert folder.progress.value == folder.progress.max == 4


def test_labelme_file_opens_as_image_and_labels(make_napari_viewer, tmp_path):
    import json

    Image.fromarray(np.full((20, 30), 100, np.uint8)).save(tmp_path / "cat.png")
    shapes = [{"label": "cat", "shape_type": "polygon", "points": [[2, 2], [10, 2], [10, 10], [2, 10]]}]
    data = {"shapes": shapes, "imagePath": "cat.png", "imageData": None, "imageHeight": 20, "imageWidth": 30}
    (tmp_path / "cat.json").write_text(json.dumps(data))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "cat.json"), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["cat", "cat labels"]
    labels = viewer.layers["cat labels"].data
    assert labels[2:11, 2:11].all() and labels.sum() == 81


def _big_painted(viewer, side=1024):
    image, mask = make_image((side, side), seed=3, n_objects=(60, 80))
    viewer.add_image(image, name="big")
    viewer.add_labels(strokes_from_mask(mask, fraction=0.02, seed=3), name="big labels")


def test_stop_at_once_ends_training_during_data_preparation(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _big_painted(viewer)
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=50)
    train.start()
    train.stop()  # before the worker has built its trainer
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model is None and "stopped" in train.status.value
    assert not train.plot.rows  # no epoch ran
    assert train.train_button.enabled  # ready for the next run, whose stop is a fresh one
    train.epochs.value = 1
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model is not None and len(train.plot.rows) == 1


def test_closing_napari_at_once_stops_the_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _big_painted(viewer)
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=500)
    train.start()
    worker = train.worker
    stop = train._stop_event
    viewer.close()
    assert stop.is_set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)


def test_continuing_from_a_model_file_leaves_its_cached_weights_alone(painted, qtbot, tmp_path):
    from napari_unet_cat._qt.session import Session

    viewer, _, _ = painted
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=1)
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    train.save_path.value = tmp_path / "first.keras"
    train.save()
    cached = Session.load(tmp_path / "first.keras")
    before = [w.copy() for w in cached.keras_model.get_weights()]
    train.start_from.value = "a model file"
    train.resume_path.value = tmp_path / "first.keras"
    train.epochs.value = 2
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert Session.load(tmp_path / "first.keras") is cached
    assert all(np.array_equal(a, b) for a, b in zip(before, cached.keras_model.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(before, train.model.keras_model.get_weights()))
    assert len(cached.config.history) == 1  # nor its settings


def test_segmenting_again_keeps_the_users_corrections(painted, qtbot, tiny_model):
    from napari_unet_cat._qt.session import SESSION_MODEL, Session

    viewer, _, _ = painted
    viewer.layers["cells"].translate = (5, 7)
    Session.set(tiny_model)
    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["cells"]
    segment.probabilities.value = True

    def run_and_wait():
        segment.run()
        qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)

    run_and_wait()
    first = viewer.layers["cells U-Net"]
    assert tuple(first.translate) == (5, 7) and tuple(viewer.layers["cells p(1)"].translate) == (5, 7)
    run_and_wait()  # not edited: replaced, no second layer, no duplicate probabilities
    names = [layer.name for layer in viewer.layers]
    assert names.count("cells U-Net") == 1 and "cells U-Net [2]" not in names
    assert names.count("cells p(1)") == 1 and "cells p(1) [1]" not in names
    viewer.layers["cells U-Net"].data[0:10, 0:10] = 1  # the user paints a correction
    edited = viewer.layers["cells U-Net"].data.copy()
    run_and_wait()
    assert "cells U-Net [2]" in viewer.layers
    np.testing.assert_array_equal(viewer.layers["cells U-Net"].data, edited)


def test_training_on_a_lazy_layer_reads_only_its_annotated_planes(make_napari_viewer, qtbot):
    import dask.array as da

    viewer = make_napari_viewer()
    image, mask = make_image((128, 128), seed=21)
    planes_read: set[int] = set()

    def load(block, block_info=None):
        plane = block_info[0]["chunk-location"][0]
        planes_read.add(plane)
        return np.broadcast_to(image, block.shape).astype(np.float32)

    # 40 planes: 2.6 MB as float32, never held whole by the training.
    lazy = da.zeros((40, 128, 128), chunks=(1, 128, 128), dtype=np.float32).map_blocks(load, dtype=np.float32)
    labels = np.zeros((40, 128, 128), np.uint8)
    labels[17] = strokes_from_mask(mask, fraction=0.08, seed=21)
    viewer.add_image(lazy, name="stack")
    viewer.add_labels(labels, name="stack labels")
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=1)
    train.preview.value = False
    displayed = set(planes_read)  # what napari drew
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model is not None
    assert planes_read - displayed <= {17}, sorted(planes_read)


def test_two_channel_layers_train_and_segment_as_one_input(make_napari_viewer, qtbot):
    from napari_unet_cat._qt.session import SESSION_MODEL

    viewer = make_napari_viewer()
    image, mask = make_image((128, 128), seed=31)
    noise = np.random.default_rng(0).integers(0, 60, image.shape, dtype=np.uint8)
    viewer.add_image(np.stack([image, noise]), channel_axis=0, name=["DAPI", "membrane"])  # two layers
    viewer.add_labels(strokes_from_mask(mask, fraction=0.08, seed=31), name="DAPI labels")
    train = _dock(viewer, "Train U-Net")
    train.image.value = viewer.layers["DAPI"]
    train.labels.value = viewer.layers["DAPI labels"]
    train.channels.value = [viewer.layers["membrane"]]
    _fast(train, epochs=2)
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    model = train.model
    assert model.n_channels == 2 and model.config.channel_names == ["DAPI", "membrane"]

    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["DAPI"]
    segment.run()  # one layer for a two-channel model: a clear message, nothing runs
    assert segment.worker is None and "DAPI, membrane" in segment.status.value
    segment.channels.value = [viewer.layers["membrane"]]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert viewer.layers["DAPI U-Net"].data.shape == image.shape


def test_one_layer_with_its_channels_first_trains_with_its_axes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, mask = make_image((96, 96), seed=32)
    viewer.add_image(np.stack([image, 255 - image]), name="two channels")  # (2, Y, X): napari shows two planes
    viewer.add_labels(strokes_from_mask(mask, fraction=0.08, seed=32), name="two channels labels")
    train = _dock(viewer, "Train U-Net")
    train.image.value = viewer.layers["two channels"]
    train.labels.value = viewer.layers["two channels labels"]
    _fast(train, epochs=1)
    train.start()  # without axes the (Y, X) labels do not fit a stack of two planes
    assert train.worker is None and "axes" in train.status.value
    train.axes.value = "CYX"
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model.n_channels == 2
    assert viewer.layers["U-Net preview"].data.shape == image.shape


def test_the_preview_shows_a_first_guess_before_the_first_epoch_ends(painted, qtbot):
    viewer, _, _ = painted
    train = _dock(viewer, "Train U-Net")
    _fast(train, epochs=2)
    train.show_uncertainty.value = True
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    # By the order of events, not by time: the forest's guess, then the network's.
    assert train.preview_history == ["first guess (random forest)", "U-Net", "U-Net"]
    doubt = viewer.layers["U-Net uncertainty"].data  # the network's, beside its preview
    assert doubt.shape == viewer.layers["U-Net preview"].data.shape and doubt.max() > 0 and doubt.max() <= 1
    # The panel said which one the preview showed, each time.
    said = train.preview_messages
    assert "random forest" in said[0] and "preview: the U-Net after epoch 1" in said[1] and len(said) == 3


def test_strokes_on_fluorescence_start_from_the_builtin_nuclei_model(painted, qtbot):
    """By default, strokes on bright objects on a dark background fine-tune the built-in
    nuclei network (a new output layer for the strokes' classes), whose own answer is the
    first preview; the panel says so, and the shipped file stays as it was."""
    from napari_unet_cat.builtin import builtin_path, file_sha256

    viewer, _, mask = painted
    shipped = file_sha256(builtin_path("nuclei"))
    train = _dock(viewer, "Train U-Net")
    assert train.start_from.value.startswith("auto")
    _one_short_epoch(train, qtbot, batch_size=4)
    assert train.preview_history == ["first guess (the starting model, before training)", "U-Net"]
    assert "started from built-in: nuclei" in train.preview_messages[0]
    assert "batch normalization kept" in train._note  # strokes: the network's statistics stay
    model = train.model
    assert model.class_values == [1, 2] and model.config.gray_input and not model.config.is_instance_model
    assert model.config.architecture.base_filters == 16  # the built-in network's, not a new one's
    # The nuclei network finds the synthetic cells after one short epoch.
    shown = viewer.layers["U-Net preview"].data
    assert foreground_iou(shown > 0, mask > 0) > 0.5
    assert file_sha256(builtin_path("nuclei")) == shipped


def test_strokes_on_a_photo_start_from_the_builtin_pets_model(make_napari_viewer, qtbot):
    """A colour photo: the built-in pets network is the start, at the photo's long side."""
    from scipy.ndimage import binary_erosion
    from skimage import data

    from napari_unet_cat import load_model

    photo = data.chelsea()
    pets = load_model("pets")
    animal = pets.predict(photo) > 0
    strokes = np.zeros(photo.shape[:2], np.uint8)
    rows, cols = np.nonzero(binary_erosion(animal, iterations=8))
    strokes[rows[::40], cols[::40]] = 2
    rows, cols = np.nonzero(binary_erosion(~animal, iterations=8))
    strokes[rows[::40], cols[::40]] = 1
    viewer = make_napari_viewer()
    viewer.add_image(photo, name="chelsea", rgb=True)
    viewer.add_labels(strokes, name="chelsea strokes")
    train = _dock(viewer, "Train U-Net")
    assert "built-in: pets" in train.start_from.choices
    assert "built-in: pets" in _dock(viewer, "Segment with U-Net").source.choices
    train.image.value, train.labels.value = viewer.layers["chelsea"], viewer.layers["chelsea strokes"]
    _one_short_epoch(train, qtbot, batch_size=2)
    assert train.preview_history[0] == "first guess (the starting model, before training)"
    assert "started from built-in: pets (a colour photo)" in train.preview_messages[0]
    model = train.model
    assert model.class_values == [1, 2] and model.n_channels == 3
    assert model.config.long_side == pets.config.long_side
    assert viewer.layers["U-Net preview"].data.shape == photo.shape[:2]


def test_the_loss_plot_paints_each_series_it_has(qtbot):
    from napari_unet_cat._qt.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 200)
    blank = plot.grab().toImage()
    rows = [
        {"epoch": 1, "loss": 0.9, "mean_iou": 0.4, "val_loss": float("nan"), "val_mean_iou": 0.3},
        {"epoch": 2, "loss": 0.5, "mean_iou": 0.6, "val_loss": 0.7, "val_mean_iou": 0.5, "val_ap_50": 0.4},
        {"epoch": 3, "loss": 0.3, "mean_iou": 0.8, "val_loss": 0.4, "val_mean_iou": 0.7, "val_ap_50": 0.6},
    ]
    for row in rows:
        plot.add(row)
    assert plot.series("val_loss")[0] != plot.series("val_loss")[0]  # NaN kept, not drawn
    assert plot.title("mean IoU") == "mean IoU, objects' AP@0.5"
    image = plot.grab().toImage()

    def pixels_of(img, colour: str) -> int:
        """Pixels near ``colour`` (the lines are antialiased)."""
        from qtpy.QtGui import QColor

        want = QColor(colour)
        count = 0
        for x in range(img.width()):
            for y in range(img.height()):
                got = QColor(img.pixel(x, y))
                near = abs(got.red() - want.red()) + abs(got.green() - want.green()) + abs(got.blue() - want.blue())
                count += near < 60
        return count

    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):  # training, validation, AP
        assert pixels_of(image, colour) > pixels_of(blank, colour)
    plot.clear()
    assert plot.rows == [] and plot.series("loss") == []


def test_export_for_bioimageio_from_the_segment_widget(painted, qtbot, tiny_model, tmp_path):
    from bioimageio.spec import InvalidDescr, load_model_description

    from napari_unet_cat import load_model

    viewer, image, _ = painted
    segment = _dock(viewer, "Segment with U-Net")
    segment.model_path.value = tiny_model.save(tmp_path / "cells.keras")
    segment.image.value = viewer.layers["cells"]
    panel = segment.open_export()
    assert panel.native.isVisible()
    panel.export()  # no package path yet: a message, no worker
    assert panel.worker is None and "choose the package file" in panel.status.value
    panel.path.value = tmp_path / "cells"
    panel.model_name.value = "Painted cells"
    panel.description.value = "Synthetic cells painted in napari."
    panel.authors.value = "A. Tester, B. Tester"
    panel.export()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=WAIT_MS)
    assert panel.status.value == f"wrote {tmp_path / 'cells.zip'}"
    descr = load_model_description(tmp_path / "cells.zip")
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert (descr.name, [a.name for a in descr.authors]) == ("Painted cells", ["A. Tester", "B. Tester"])
    # The package is also a model file for the plugin: the same widget segments with it.
    segment.model_path.value = tmp_path / "cells.zip"
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    expected = load_model(tmp_path / "cells.keras").predict(image)
    np.testing.assert_array_equal(viewer.layers["cells U-Net"].data, expected)


def test_the_builtin_nuclei_model_segments_an_rgb_layer_and_fine_tunes(make_napari_viewer, qtbot):
    """Segment with the shipped model (no file chosen), then fine-tune from it on the
    corrected objects: a new model, the shipped file untouched."""
    from napari_unet_cat.builtin import builtin_path, file_sha256
    from napari_unet_cat.synthetic import make_instance_image

    shipped = file_sha256(builtin_path("nuclei"))
    viewer = make_napari_viewer()
    image, truth = make_instance_image((160, 160), seed=3, n_objects=(12, 16), radius=(8.0, 13.0))
    viewer.add_image(np.repeat(image[..., None], 3, axis=-1), name="nuclei", rgb=True)
    segment = _dock(viewer, "Segment with U-Net")
    assert "built-in: nuclei" in segment.source.choices
    segment.source.value = "built-in: nuclei"
    assert segment.model_path.native.isHidden()  # no file to choose
    segment.image.value = viewer.layers["nuclei"]
    segment.auto_scale.value = True  # nuclei of the training size: a scale near 1
    segment.run()
    qtbot.waitUntil(lambda: "nuclei U-Net" in viewer.layers, timeout=WAIT_MS)
    objects = viewer.layers["nuclei U-Net"]
    assert objects.data.shape == image.shape and objects.data.max() >= 6
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    used = objects.metadata["napari_unet_cat_scale"]
    assert 0.7 <= used <= 1.4 and f"estimated scale {used:g}" in segment.status.value

    objects.data = truth  # the user's corrections
    train = _dock(viewer, "Train U-Net")
    train.image.value = viewer.layers["nuclei"]
    train.labels.value = objects
    train.start_from.value = "built-in: nuclei"
    assert train.settings().label_mode == "instances"
    assert float(train.learning_rate.value) == pytest.approx(1e-4)  # a tenth of the model's
    train.epochs.value = 1
    train.batch_size.value = 4
    train.val_fraction.value = 0.0
    train.preview.value = False
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model is not None and train.model.config.gray_input
    assert len(train.model.config.history) > 1  # the built-in model's epochs, then this one
    assert file_sha256(builtin_path("nuclei")) == shipped


def test_export_cuts_the_sample_from_the_plane_on_screen(painted, qtbot, tiny_model, tmp_path):
    """A stack's package sample is the plane the viewer shows, not its first plane."""
    import zipfile

    from napari_unet_cat._qt.export_panel import export_job

    viewer, image, _ = painted
    stack = viewer.add_image(np.stack([image[::-1], image, image[:, ::-1]]), name="stack")
    viewer.dims.set_current_step(0, 1)
    segment = _dock(viewer, "Segment with U-Net")
    segment.model_path.value = tiny_model.save(tmp_path / "cells.keras")
    segment.image.value = stack
    panel = segment.open_export()
    panel.path.value = tmp_path / "stack.zip"
    panel.export()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=WAIT_MS)
    assert panel.status.value == f"wrote {tmp_path / 'stack.zip'}"
    export_job(tiny_model, viewer.layers["cells"], tmp_path / "plane.zip", panel.fields())

    def sample(path):
        with zipfile.ZipFile(path) as package, package.open("test_input.npy") as member:
            return np.load(io.BytesIO(member.read()))

    np.testing.assert_array_equal(sample(tmp_path / "stack.zip"), sample(tmp_path / "plane.zip"))


def test_the_train_widget_picks_the_batch_by_label_mode(make_napari_viewer):
    viewer = make_napari_viewer()
    train = _dock(viewer, "Train U-Net")
    assert train.batch_size.value == 0  # auto
    train.mode.value = "sparse strokes (0 = not annotated)"
    assert train.settings().batch_size == 8
    train.mode.value = "dense masks (0 = background)"
    assert train.settings().batch_size == 20
    train.batch_size.value = 12
    assert train.settings().batch_size == 12


def test_the_panels_are_under_layers_segment_and_open_from_there(make_napari_viewer):
    """Layers > Segment > U-Net Cat lists the three panels; choosing one docks it."""
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    app = get_app_model()
    submenus = [item.submenu for item in app.menus.get_menu("napari/layers/segment") if hasattr(item, "submenu")]
    assert "napari-unet-cat.menu" in submenus
    commands = [item.command.id for item in app.menus.get_menu("napari-unet-cat.menu")]
    assert commands == [
        f"{PLUGIN}.train_widget",
        f"{PLUGIN}.segment_widget",
        f"{PLUGIN}.folder_widget",
        f"{PLUGIN}.proofread_widget",
    ]
    app.commands.execute_command(f"{PLUGIN}.folder_widget").result()
    docked = {name: type(widget).__name__ for name, widget in viewer.window.dock_widgets.items()}
    assert docked == {"Segment a folder (U-Net Cat)": "FolderWidget"}


def test_the_preferences_live_in_napari_and_fill_the_panels(plugin_settings, npe2pm, make_napari_viewer):
    """Preferences > U-Net Cat: the manifest's defaults, and a value set there reaches the panels."""
    from npe2 import PluginManifest

    from napari_unet_cat._qt.preferences import Preferences, preferences

    if PLUGIN not in npe2pm:
        npe2pm.register(PluginManifest.from_distribution(PLUGIN))
    from napari.settings import get_plugin_settings

    assert preferences() == Preferences()  # the manifest's defaults
    settings = get_plugin_settings(PLUGIN).defaults
    settings.tile_size, settings.network = 256, "classic"
    assert preferences() == Preferences(tile_size=256, network="classic")
    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment with U-Net")
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    assert segment.tile_size.value == 256 and train.preset.value == "classic"
    assert train.learning_rate.value == "0.0001"  # the classic network's rate


def test_measure_objects_fills_the_features_a_sortable_table_and_a_csv(make_napari_viewer, qtbot, tmp_path):
    from napari_unet_cat.measurements import measure, read_csv
    from napari_unet_cat.synthetic import make_instance_image

    viewer = make_napari_viewer()
    image, objects = make_instance_image((128, 120), seed=8)
    viewer.add_image(image, name="cells", scale=(0.5, 0.5))
    viewer.add_labels(objects, name="cells objects", scale=(0.5, 0.5), translate=(10, 20))
    panel = _dock(viewer, "Measure objects")
    panel.labels.value = viewer.layers["cells objects"]
    panel.image.value = viewer.layers["cells"]
    panel.run()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=WAIT_MS)
    expected = measure(objects, image, pixel_size=(0.5, 0.5))
    features = viewer.layers["cells objects"].features
    assert list(features["label"]) == list(expected["label"])
    np.testing.assert_allclose(features["area_um2"], expected["area_um2"])
    assert panel.table.native.rowCount() == len(expected["label"])
    assert panel.counts.value == f"{len(expected['label'])} objects"
    # Sorted by area, largest first; a click on the top row selects that object.
    column = list(panel.table_data).index("area")
    from qtpy.QtCore import Qt

    panel.table.native.sortItems(column, Qt.SortOrder.DescendingOrder)
    panel._on_row(0, 0)
    largest = int(expected["label"][np.argmax(expected["area"])])
    assert viewer.layers["cells objects"].selected_label == largest
    i = int(np.argmax(expected["area"]))
    centre = (expected["centroid_y"][i] * 0.5 + 10, expected["centroid_x"][i] * 0.5 + 20)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert tuple(camera.center[-2:]) == pytest.approx(centre)
    panel.csv_path.value = tmp_path / "objects.csv"
    panel.save()
    assert list(read_csv(tmp_path / "objects.csv")["label"]) == list(expected["label"])


def test_proofreading_merges_splits_deletes_and_napari_undoes_each(make_napari_viewer):
    viewer = make_napari_viewer()
    yy, xx = np.indices((40, 60))
    labels = np.zeros((40, 60), np.uint16)
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 144] = 5
    labels[(yy - 20) ** 2 + (xx - 40) ** 2 < 144] = 5  # two discs, wrongly one object
    labels[2:5, 2:5] = 9
    layer = viewer.add_labels(labels.copy(), name="objects")
    panel = _dock(viewer, "Proofread objects")
    assert panel.labels.value is layer and panel.shortcuts.value.startswith("keys on the Labels layer")
    panel.tool.value = "split: click two points in one object"
    panel.click((20, 18))
    assert np.array_equal(layer.data, labels)  # one click of two: nothing yet
    panel.click((20, 40))
    assert set(np.unique(layer.data)) == {0, 5, 9, 10}
    panel.tool.value = "merge: click two objects"
    panel.click((20, 18))
    panel.click((20, 40))
    assert np.array_equal(layer.data, labels)
    panel.tool.value = "delete: click an object"
    panel.click((3, 3))
    assert 9 not in layer.data
    panel.click((30, 1))  # the background: said, nothing changed
    assert "no object" in panel.status.value
    panel.renumber()
    assert set(np.unique(layer.data)) == {0, 1}
    for _ in range(4):  # renumber, delete, merge, split: each one undo
        panel.undo()
    assert np.array_equal(layer.data, labels)
    panel.min_size.value = 10
    panel.delete_small()
    assert 9 not in layer.data and 5 in layer.data
    layer.undo()  # napari's own undo, as Ctrl+Z
    assert np.array_equal(layer.data, labels)
    # The keys pick the tools while the layer is selected; closing the panel lets them go.
    keys = {str(key): action for key, action in layer.keymap.items()}
    keys["M"](layer)
    assert panel.tool.value == "merge: click two objects"
    keys["Escape"](layer)
    assert panel.tool.value == "off"
    panel.on_close()
    assert not {str(key) for key in layer.keymap} & {"M", "S", "D", "Escape"}


def test_segment_shows_where_it_is_unsure_and_ranks_the_objects(painted, qtbot, tiny_model):
    from napari_unet_cat._qt.session import SESSION_MODEL, Session

    viewer, _, mask = painted
    learnt_from = (viewer.layers["cells"], viewer.add_labels(mask, name="cells mask"))  # as if trained here
    Session.set(tiny_model, trained_on=[learnt_from])
    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["cells"]
    segment.output.value = "objects: connected components"
    segment.uncertainty.value = True
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    doubt = viewer.layers["cells uncertainty"].data
    prediction = viewer.layers["cells U-Net"]
    assert doubt.shape == prediction.data.shape and doubt.min() >= 0 and doubt.max() <= 1
    ranked = prediction.features
    assert set(ranked["label"]) == set(np.unique(prediction.data)) - {0}
    assert list(ranked["uncertainty"]) == sorted(ranked["uncertainty"], reverse=True)
    assert prediction.metadata["least_sure"][0] == ranked["label"][0]
    assert "least sure of objects" in segment.status.value
    panel = _dock(viewer, "Measure objects")  # the ranking travels into the measurements
    panel.labels.value = prediction
    panel.run()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=WAIT_MS)
    assert "uncertainty" in panel.table_data and "uncertainty" in prediction.features.columns


def test_training_on_corrections_fine_tunes_and_segments_again_keeping_the_edits(painted, qtbot, tiny_model):
    from napari_unet_cat._qt.session import SESSION_MODEL, Session

    viewer, _, mask = painted
    learnt_from = (viewer.layers["cells"], viewer.add_labels(mask, name="cells mask"))  # as if trained here
    Session.set(tiny_model, trained_on=[learnt_from])
    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["cells"]
    segment.retrain_button.changed.emit(True)  # nothing corrected yet: said, nothing run
    assert "no corrected prediction" in segment.status.value and segment.worker is None
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    prediction = viewer.layers["cells U-Net"]
    prediction.data_setitem(np.nonzero(np.ones((20, 20), bool)), 1)  # a correction in the top-left corner
    corrected = np.asarray(prediction.data).copy()
    segment.round_seconds.value = 5
    segment.train_on_corrections()
    qtbot.waitUntil(lambda: "cells U-Net [2]" in viewer.layers, timeout=WAIT_MS)
    tuned = Session.model
    assert tuned is not tiny_model and tuned.config.corrections[-1]["images"] == ["cells U-Net"]
    assert tuned.config.corrections[-1]["objects_changed"] >= 1
    np.testing.assert_array_equal(viewer.layers["cells U-Net"].data, corrected)  # the edits are kept
    assert "round 1" in segment.status.value and "beside 1 it was trained on before" in segment.status.value
    assert tuned.config.corrections[-1]["rehearsed_images"] == 1  # the annotations it learnt from, rehearsed
    assert Session.trained_on(tuned) == [learnt_from]  # and rehearsed again by the next round


def test_a_z_stack_trains_a_3d_unet_from_painted_slices_and_segments_in_3d(make_napari_viewer, qtbot, tmp_path):
    from napari_unet_cat._qt.session import SESSION_MODEL
    from napari_unet_cat._qt.train_widget import DIMS, INSTANCES_MODE
    from napari_unet_cat.synthetic import make_volume

    from .test_volumes import one_label_per_object

    viewer = make_napari_viewer()
    volume, truth = make_volume((16, 48, 48), seed=4, radius=(5.0, 8.0))
    painted = np.zeros_like(truth)
    painted[[4, 11]] = truth[[4, 11]]  # two slices painted, the rest left empty
    viewer.add_image(volume, name="nuclei")
    viewer.add_labels(painted, name="nuclei labels")
    viewer.dims.set_current_step(0, 7)
    train = _dock(viewer, "Train U-Net")
    train.mode.value = INSTANCES_MODE
    train.dims.value = next(k for k, v in DIMS.items() if v == 3)
    assert train.patch_size.value == 64  # volumes start from a smaller patch
    _fast(train, epochs=1)
    train.base_filters.value = 4
    train.patch_size.value = 16
    train.batch_size.value = 2
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
    assert train.model is not None and train.model.config.ndim == 3, train.status.value
    assert viewer.layers["U-Net preview"].data.shape == volume.shape  # the slice on screen, in its place
    assert train.preview_history == ["U-Net"]  # no plane forest for volumes
    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = SESSION_MODEL
    segment.image.value = viewer.layers["nuclei"]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    objects = viewer.layers["nuclei U-Net"].data
    assert objects.shape == volume.shape and one_label_per_object(objects)

    # A 2D model answers a stack the viewer calls z with 3D objects.
    flat = train_2d(volume, truth)
    segment.source.value = "a model file"
    segment.model_path.value = flat.save(tmp_path / "flat.keras")
    assert segment._volume_mode() == "planes"  # the viewer does not say the axis is z
    viewer.dims.axis_labels = ("z", "y", "x")
    assert segment._volume_mode() == "three-axes"
    viewer.layers.remove("nuclei U-Net")
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    objects = viewer.layers["nuclei U-Net"].data
    assert objects.shape == volume.shape and one_label_per_object(objects)


def test_a_z_stack_trains_a_2d_network_on_its_side_views_stretched_by_the_layer_scale(make_napari_viewer, qtbot):
    from napari_unet_cat._qt.train_widget import INSTANCES_MODE
    from napari_unet_cat.synthetic import make_volume

    viewer = make_napari_viewer()
    volume, truth = make_volume((12, 48, 48), seed=5, radius=(5.0, 8.0))
    painted = np.zeros_like(truth)
    painted[[3, 8]] = truth[[3, 8]]  # two XY slices painted
    viewer.add_image(volume, name="nuclei", scale=(2.0, 0.5, 0.5))  # Z steps 4x the pixel
    viewer.add_labels(painted, name="nuclei labels", scale=(2.0, 0.5, 0.5))
    train = _dock(viewer, "Train U-Net")
    train.mode.value = INSTANCES_MODE
    _fast(train, epochs=1)
    train.patch_size.value = 32
    train.preview.value = False

    def trained_note() -> str:
        train.start()
        qtbot.waitUntil(lambda: train.worker is None, timeout=WAIT_MS)
        assert train.model is not None, train.status.value
        return train._note

    # A stack the viewer does not call z: its painted XY planes alone, as Segment answers it.
    assert "stacks: training on their painted XY planes (2 planes in all)" in trained_note()
    assert train.model.config.voxel_size == [2.0, 0.5, 0.5]  # the layer's scale, recorded
    viewer.dims.axis_labels = ("z", "y", "x")
    note = trained_note()
    assert "XY, XZ and YZ planes" in note and "side views stretched 4.00x in Z" in note
    assert int(note.split("(")[1].split(" planes")[0]) == 2 + 2 * 48  # every XZ and YZ plane crosses a painted slice
    # Each stack by its own layer's scale: a second pair whose Z steps are 2x its pixels.
    viewer.add_image(volume, name="cells", scale=(1.0, 0.5, 0.5))
    viewer.add_labels(painted, name="cells labels", scale=(1.0, 0.5, 0.5))
    train.all_pairs.value = True
    assert "side views stretched 2.00x to 4.00x in Z" in trained_note()


def test_segment_answers_a_z_stack_on_three_axes_at_the_layer_voxel_size(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    from napari_unet_cat._qt import segment_widget
    from napari_unet_cat.synthetic import make_volume

    from .test_volumes import one_label_per_object

    volume, truth = make_volume((10, 40, 40), seed=6, radius=(4.0, 7.0))
    seen = []

    def spy(*args, voxel_size=None, **kwargs):
        seen.append(voxel_size)
        return volume_answer(*args, voxel_size=voxel_size, **kwargs)

    volume_answer = segment_widget.volume_answer
    monkeypatch.setattr(segment_widget, "volume_answer", spy)
    viewer = make_napari_viewer()
    viewer.add_image(volume, name="nuclei", scale=(3.0, 1.0, 1.0))
    viewer.dims.axis_labels = ("z", "y", "x")
    segment = _dock(viewer, "Segment with U-Net")
    segment.source.value = "a model file"
    segment.model_path.value = train_2d(volume, truth).save(tmp_path / "flat.keras")
    segment.image.value = viewer.layers["nuclei"]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert seen == [[3.0, 1.0, 1.0]]  # side views stretched 3x in Z, as the layer says
    assert one_label_per_object(viewer.layers["nuclei U-Net"].data)


def train_2d(volume, truth):
    """A tiny 2D instance model trained on a volume's planes."""
    from napari_unet_cat.training import train

    return train(
        [volume], [truth], axes="ZYX", epochs=1, steps_per_epoch=2, patch_size=32, label_mode="instances",
        base_filters=4, depth=2, preset="light",
    )  # fmt: skip
