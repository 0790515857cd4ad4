"""Real TensorFlow training on synthetic data, small enough for two CPU cores."""

import itertools
import threading
import time

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, label

from napari_unet_cat.config import TrainingSettings
from napari_unet_cat.errors import InputError
from napari_unet_cat.synthetic import make_dataset, make_image
from napari_unet_cat.training import Trainer, train

from .conftest import TINY, foreground_iou

FAST = {"batch_size": 8, "patch_size": 64, "learning_rate": 3e-3}


def test_tiny_model_learns_synthetic_cells(tiny_model):
    images, masks = make_dataset(5, (120, 100), seed=500)  # held out: seeds never trained on
    ious = [foreground_iou(tiny_model.predict(im), m) for im, m in zip(images, masks)]
    assert np.mean(ious) > 0.9, ious
    assert tiny_model.class_values == [0, 1]
    assert len(tiny_model.config.history) == 10
    assert {"loss", "val_loss", "iou_1", "val_iou_1", "val_mean_iou"} <= set(tiny_model.config.history[-1])


def _misleading_sparse_labels(mask: np.ndarray) -> np.ndarray:
    """One object in three painted 2, the others left unpainted (0); the left half of the
    background painted 1. Were 0 a class, unpainted objects would teach 'objects are 0'."""
    objects, _ = label(mask)
    out = np.zeros(mask.shape, np.uint8)
    out[(objects % 3 == 1) & (mask > 0)] = 2
    background = binary_erosion(mask == 0, iterations=1)
    background[:, mask.shape[1] // 2 :] = False
    out[background] = 1
    return out


def test_sparse_labels_ignore_unannotated_pixels():
    images, masks = make_dataset(10, (96, 96), seed=200)
    strokes = [_misleading_sparse_labels(m) for m in masks]
    assert all((s == 0).mean() > 0.4 for s in strokes)
    sparse = train(images, strokes, label_mode="sparse", epochs=10, val_fraction=0.0, **FAST, **TINY)
    assert sparse.class_values == [1, 2]
    test_images, test_masks = make_dataset(4, (96, 96), seed=900)
    preds = [sparse.predict(im) for im in test_images]
    # Unpainted objects did not pull predictions towards 0: every object is found as 2
    # (measured 0.82 to 0.87), and 0 ("not annotated") never comes out.
    assert np.mean([foreground_iou(p, m, value=2) for p, m in zip(preds, test_masks)]) > 0.7
    assert set(np.unique(np.concatenate([p.ravel() for p in preds]))) <= {1, 2}


def test_loss_ignores_unannotated_pixels_and_would_not_if_they_counted():
    import keras

    from napari_unet_cat.losses import MaskedCrossEntropy

    rng = np.random.default_rng(0)
    targets = rng.integers(-1, 2, (2, 16, 16)).astype("int32")
    logits = rng.normal(size=(2, 16, 16, 2)).astype("float32")
    changed = logits.copy()
    changed[targets < 0] = rng.normal(size=((targets < 0).sum(), 2)) * 10
    loss = MaskedCrossEntropy()
    same = [float(keras.ops.convert_to_numpy(loss(targets, x))) for x in (logits, changed)]
    assert same[0] == pytest.approx(same[1], rel=1e-6)
    counted = np.where(targets < 0, 0, targets)  # what counting "not annotated" as class 0 gives
    differ = [float(keras.ops.convert_to_numpy(loss(counted, x))) for x in (logits, changed)]
    assert abs(differ[0] - differ[1]) > 0.1


def test_one_image_holds_out_part_of_its_annotations():
    images, masks = make_dataset(1, (256, 256), seed=3)
    masks[0][:, :96] = 1  # plenty of both classes, so that the held-out blocks can judge
    trainer = Trainer(images, masks, settings=TrainingSettings(epochs=1, val_fraction=0.2, **FAST), **TINY)
    assert trainer.validation_note == ""
    assert trainer.data.val_x is not None and trainer.data.n_train_planes == 1
    train_targets = trainer.data.sampler.planes[0].targets
    held = trainer.data.val_y >= 0
    assert held.any() and (train_targets < 0).any()  # held-out pixels are hidden from training


def test_stacks_train_on_annotated_planes_only():
    images, masks = make_dataset(4, (64, 64), seed=30)
    stack, labels = np.stack(images), np.stack(masks).astype(np.uint8)
    sparse = np.where(labels > 0, 2, 1).astype(np.uint8)
    sparse[1:3] = 0  # planes 1 and 2 unannotated
    trainer = Trainer([stack], [sparse], settings=TrainingSettings(epochs=1, label_mode="sparse", **FAST), **TINY)
    assert sorted(p.source for p in trainer.data.planes) == ["image 1 plane (0,)", "image 1 plane (3,)"]


def test_stop_ends_within_an_epoch_and_keeps_the_best_model():
    images, masks = make_dataset(6, (96, 96), seed=40)
    reports = []
    steps = []

    def on_step(step, n, loss):
        steps.append(step)
        if len(reports) == 2 and step == 5:  # in the third epoch, from another thread
            stopper = threading.Thread(target=trainer.stop)
            stopper.start()
            stopper.join()

    settings = TrainingSettings(epochs=50, steps_per_epoch=40, val_fraction=0.2, **FAST)
    trainer = Trainer(images, masks, settings=settings, on_step=on_step, **TINY)
    for report in trainer.epochs():
        reports.append(report)
    assert trainer.stopped == "stopped"
    assert len(reports) == 3 and reports[-1].stopped == "stopped"
    assert len(steps) == 2 * 40 + 5  # the third epoch ended after the step that was running
    model = trainer.model
    assert model.predict(images[0]).shape == (96, 96)


def test_time_budget_ends_training():
    images, masks = make_dataset(4, (64, 64), seed=50)
    settings = TrainingSettings(epochs=1000, time_budget_s=4, val_fraction=0, **FAST)
    trainer = Trainer(images, masks, settings=settings, **TINY)
    model = trainer.run()
    assert trainer.stopped == "time budget"
    history = model.config.history
    assert 1 <= len(history) < 1000
    # The learning rate falls as the budget is spent (the rate of the last step of each
    # epoch, read back from the optimizer). On JAX this is the check that a rate written
    # between steps reaches the compiled step: Keras's JAX loop holds the optimizer's state
    # apart and writes it back over the variables at the epoch's end, so an ignored write
    # would read back as the starting rate.
    rates = [row["learning_rate"] for row in history]
    assert all(b <= a for a, b in itertools.pairwise(rates)) and rates[-1] < FAST["learning_rate"]


def test_annealing_follows_the_time_spent_and_can_be_turned_off():
    images, masks = make_dataset(2, (64, 64), seed=51)
    settings = TrainingSettings(epochs=1, time_budget_s=100, val_fraction=0, **FAST)
    trainer = Trainer(images, masks, settings=settings, **TINY)
    base = FAST["learning_rate"]
    for spent, expected in ((0, base), (50, base * (0.05 + 0.95 * 0.5)), (100, base * 0.05), (400, base * 0.05)):
        trainer._started = time.perf_counter() - spent
        assert trainer._learning_rate_now() == pytest.approx(expected, rel=1e-3)
    trainer.settings.anneal = False
    assert trainer._learning_rate_now() is None
    # Without a budget the cosine runs over the planned steps.
    trainer.settings.anneal, trainer.settings.time_budget_s, trainer.settings.epochs = True, None, 4
    planned = 4 * trainer.steps_per_epoch
    for done, expected in ((0, base), (planned // 2, base * (0.05 + 0.95 * 0.5)), (planned, base * 0.05)):
        trainer._steps_run = done
        assert trainer._learning_rate_now() == pytest.approx(expected, rel=1e-3)


def test_a_fixed_number_of_epochs_ends_on_a_low_learning_rate():
    images, masks = make_dataset(2, (64, 64), seed=52)
    model = Trainer(
        images, masks, settings=TrainingSettings(epochs=3, steps_per_epoch=4, val_fraction=0, **FAST), **TINY
    ).run()
    rates = [row["learning_rate"] for row in model.config.history]
    assert rates[0] > rates[1] > rates[2] and rates[2] < 0.1 * FAST["learning_rate"]


def test_the_same_seed_trains_the_same_model_and_another_seed_another():
    images, masks = make_dataset(3, (64, 64), seed=4)

    def weights(seed):
        # Three epochs of three steps, so that batches drawn ahead cross epoch ends.
        model = train(images, masks, epochs=3, steps_per_epoch=3, batch_size=4, patch_size=32, seed=seed, **TINY)
        return model.keras_model.get_weights()

    first = weights(1)
    again = weights(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = weights(2)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_batches_come_in_step_order_whatever_was_drawn_ahead():
    """Each (epoch, step) has one batch, however the steps are asked for and whichever
    were drawn ahead on the input threads."""
    from napari_unet_cat.batches import PatchBatches

    images, masks = make_dataset(2, (64, 64), seed=5)
    sampler = Trainer(
        images, masks, settings=TrainingSettings(epochs=1, **{**FAST, "patch_size": 32}), **TINY
    ).data.sampler

    def draws(threads, order):
        batches = PatchBatches(sampler, 2, steps=3, seed=7, threads=threads)
        try:
            out = {}
            for epoch, step in order:
                batches.epoch = epoch
                out[epoch, step] = batches[step]
            return out
        finally:
            batches.close()

    in_order = [(e, s) for e in range(2) for s in range(3)]
    alone = draws(1, in_order)
    # Asked again, out of order, and past what was drawn ahead.
    shuffled = draws(2, [(0, 0), (0, 1), (0, 0), (1, 2), (0, 2), (0, 1), (1, 0), (1, 1)])
    for key, (x, y) in shuffled.items():
        assert np.array_equal(x, alone[key][0]) and np.array_equal(y, alone[key][1]), key
    assert not np.array_equal(alone[0, 0][0], alone[1, 0][0])  # epochs draw anew

    # Keras's TensorFlow adapter reads steps 0 and 1 of each fit for their shapes, then
    # starts from 0: those come from what was drawn, not drawn a second time.
    batches = PatchBatches(sampler, 2, steps=3, seed=7, threads=2)
    drawn: dict[tuple[int, int], int] = {}
    plain_draw = batches.draw

    def counted(epoch, step):
        drawn[epoch, step] = drawn.get((epoch, step), 0) + 1
        return plain_draw(epoch, step)

    batches.draw = counted
    try:
        for epoch in range(2):
            batches.epoch = epoch
            for step in (0, 1, 0, 1, 2):
                x, _ = batches[step]
                assert np.array_equal(x, alone[epoch, step][0])
    finally:
        batches.close()
    assert all(drawn[epoch, step] == 1 for epoch in range(2) for step in range(3)), drawn


def test_a_few_held_out_strokes_do_not_choose_the_weights():
    """One image, a few strokes: the held-out blocks lack a class, so training uses every
    stroke and keeps the last weights, and says so."""
    from napari_unet_cat.synthetic import strokes_from_mask

    image, mask = make_image((256, 256), seed=60)
    strokes = strokes_from_mask(mask, fraction=0.01, seed=60)
    settings = TrainingSettings(epochs=3, steps_per_epoch=3, val_fraction=0.1, label_mode="sparse", **FAST)
    trainer = Trainer([image], [strokes], settings=settings, **TINY)
    assert "too small to judge" in trainer.validation_note and trainer.data.val_x is None
    reports = list(trainer.epochs())
    assert all(r.improved for r in reports)  # each epoch's weights replace the last
    last = [w.copy() for w in trainer.keras_model.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(last, trainer.model.keras_model.get_weights()))
    # Enough held-out annotation (whole masks) is still used to choose.
    dense = Trainer([image], [mask], settings=TrainingSettings(epochs=1, val_fraction=0.1, **FAST), **TINY)
    assert dense.validation_note == "" and dense.data.val_x is not None


def test_resuming_with_a_label_value_the_model_does_not_know_is_explained(tiny_model):
    images, masks = make_dataset(2, (64, 64), seed=61)
    masks[1] = masks[1] * 3  # values 0 and 3; the model knows 0 and 1
    with pytest.raises(InputError, match=r"3 that the model does not know") as info:
        Trainer(images, masks, settings=TrainingSettings(epochs=1, **FAST), model=tiny_model, names=["a", "b.png"])
    assert "b.png" in str(info.value)


def test_a_batch_larger_than_the_data_trains():
    images, masks = make_dataset(2, (64, 64), seed=62)
    model = train(images, masks, epochs=1, steps_per_epoch=2, val_fraction=0, batch_size=48, patch_size=64, **TINY)
    assert model.predict(images[0]).shape == (64, 64)


def test_resume_continues_the_history_and_keeps_classes(tiny_model, tmp_path):
    images, masks = make_dataset(4, (96, 96), seed=60)
    path = tiny_model.save(tmp_path / "start.keras")
    from napari_unet_cat import load_model

    model = load_model(path)
    before = len(model.config.history)
    resumed = train(images, masks, model=model, epochs=2, val_fraction=0, **FAST)
    assert len(resumed.config.history) == before + 2
    assert resumed.config.history[-1]["epoch"] == before + 2
    with pytest.raises(InputError, match="value 5"):
        train(images, [np.where(m > 0, 5, 0) for m in masks], model=model, epochs=1, **FAST)


def test_checkpoint_is_written_when_the_model_improves(tmp_path):
    from napari_unet_cat import load_model

    images, masks = make_dataset(4, (64, 64), seed=70)
    path = tmp_path / "ckpt.keras"
    Trainer(images, masks, settings=TrainingSettings(epochs=2, **FAST), checkpoint=path, **TINY).run()
    assert load_model(path).predict(images[0]).shape == (64, 64)


def test_scale_trains_small_and_predicts_full_size():
    images, masks = make_dataset(6, (128, 128), seed=80)
    model = train(images, masks, scale=0.5, epochs=2, val_fraction=0, **FAST, **TINY)
    assert model.config.scale == 0.5
    labels, probs = model.predict(images[0], return_probabilities=True)
    assert labels.shape == (128, 128) and probs.shape == (128, 128, 2)


def test_target_size_sets_the_scale():
    images, masks = make_dataset(3, (128, 128), seed=90)
    trainer = Trainer(images, masks, settings=TrainingSettings(epochs=1, **FAST), target_size=64, **TINY)
    assert trainer.config.scale == pytest.approx(0.5)


def test_rgb_images_train_with_three_channels():
    images, masks = make_dataset(4, (64, 64), seed=95, rgb=True)
    model = train(images, masks, epochs=1, val_fraction=0, **FAST, **TINY)
    assert model.n_channels == 3
    with pytest.raises(InputError, match="trained on 3"):
        model.predict(images[0][..., 0])


@pytest.mark.parametrize(
    "labels, message",
    [
        ([np.zeros((64, 64), np.uint8)], "no annotated pixels"),
        ([np.ones((64, 64), np.uint8)], "only one class"),
        ([np.tile(np.uint8([1, 2]), (32, 32))], "shape"),
    ],
)
def test_unusable_labels_are_explained(labels, message):
    image = make_dataset(1, (64, 64))[0]
    with pytest.raises(InputError, match=message):
        Trainer(image, labels, settings=TrainingSettings(label_mode="sparse", **FAST), **TINY)


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("batch_size", 0), ("learning_rate", -1.0), ("val_fraction", 1.5), ("patch_size", 4)],
)
def test_absurd_settings_are_refused(field, value):
    with pytest.raises(InputError, match=field):
        TrainingSettings(**{field: value}).validate()


def test_patch_larger_than_the_images_is_padded():
    images, masks = make_dataset(3, (40, 50), seed=99)
    model = train(images, masks, epochs=1, batch_size=50, patch_size=64, learning_rate=3e-3, **TINY)
    assert model.predict(images[0]).shape == (40, 50)


def test_a_first_guess_from_strokes_comes_before_any_epoch():
    from napari_unet_cat.synthetic import strokes_from_mask

    from .conftest import foreground_iou

    image, mask = make_image((160, 160), seed=61)
    strokes = strokes_from_mask(mask, fraction=0.05, seed=61)
    settings = TrainingSettings(epochs=1, val_fraction=0, label_mode="sparse", **FAST)
    trainer = Trainer([image], [strokes], settings=settings, **TINY)
    guess = trainer.first_guess(image)
    assert trainer.epochs_done == 0  # nothing trained yet
    assert guess.shape == image.shape and set(np.unique(guess)) <= {1, 2}
    assert foreground_iou(guess, mask, value=2) > 0.6


def test_the_preview_reuses_one_prediction_network_across_epochs():
    images, masks = make_dataset(2, (64, 64), seed=53)
    trainer = Trainer(
        images, masks, settings=TrainingSettings(epochs=3, steps_per_epoch=2, val_fraction=0, **FAST), **TINY
    )
    networks, outputs = [], []
    for _ in trainer.epochs():
        outputs.append(trainer.model.predict(images[0], return_probabilities=True)[1])
        networks.append(trainer.model._probability_model)
    assert networks[0] is networks[1] is networks[2]  # built once, not at every epoch
    assert not np.allclose(outputs[0], outputs[2])  # and it follows the weights as they train


def test_features_in_bands_equal_the_whole_plane_s():
    from napari_unet_cat.first_guess import feature_bands, features_at, pixel_features

    plane = np.random.default_rng(5).random((250, 40, 2), dtype=np.float32)
    whole = pixel_features(plane)
    banded = np.concatenate([f for _, _, f in feature_bands(plane, rows=100)])
    np.testing.assert_allclose(banded, whole, atol=1e-5)
    flat = np.array([0, 39, 4000, 5555, 250 * 40 - 1])
    np.testing.assert_allclose(features_at(plane, flat), whole.reshape(-1, whole.shape[-1])[flat], atol=1e-5)


def test_a_forest_guides_a_few_strokes_on_one_image():
    """Sparse strokes on one image: the pixels nobody painted get the forest's confident
    guesses at a lower loss weight; the strokes keep weight 1; held-out pixels stay out."""
    from napari_unet_cat.synthetic import strokes_from_mask

    image, mask = make_image((200, 200), seed=62)
    strokes = strokes_from_mask(mask, fraction=0.03, seed=62)
    settings = TrainingSettings(epochs=1, steps_per_epoch=2, val_fraction=0, label_mode="sparse", **FAST)
    trainer = Trainer([image], [strokes], settings=settings, **TINY)
    (plane,) = trainer.data.sampler.planes
    painted = strokes > 0
    assert trainer.guided_pixels > 10 * painted.sum()  # most of the image, not only the strokes
    np.testing.assert_array_equal(plane.weights[painted], 1.0)
    guessed = (plane.targets >= 0) & ~painted
    np.testing.assert_allclose(plane.weights[guessed], settings.guide_weight)
    assert (plane.weights[plane.targets < 0] == 0).all()
    # The guesses are mostly right (the forest is confident where they are kept).
    truth = mask[guessed].astype(int)  # class index 0 = value 1 (background), 1 = value 2
    assert (plane.targets[guessed] == truth).mean() > 0.9
    assert trainer.data.sampler.weighted and len(list(trainer.epochs())) == 1
    # The forest is the preview's first guess too: learnt once, and its guess of the
    # training image is not computed again.
    forest = trainer._first_guess
    calls = []
    original = forest.probabilities
    forest.probabilities = lambda plane: calls.append(plane) or original(plane)
    guess = trainer.first_guess(image)
    assert not calls and set(np.unique(guess)) <= {1, 2}
    assert foreground_iou(guess, mask, value=2) > 0.6
    trainer.first_guess(image[:, ::-1].copy())  # another image is guessed afresh
    assert len(calls) == 1
    # Off when asked, and for whole masks.
    off = Trainer([image], [strokes], settings=TrainingSettings(**{**settings.__dict__, "forest_guide": False}), **TINY)
    assert off.guided_pixels == 0 and not off.data.sampler.weighted
    dense = Trainer([image], [mask], settings=TrainingSettings(epochs=1, val_fraction=0, **FAST), **TINY)
    assert dense.guided_pixels == 0


def test_held_out_strokes_are_not_guessed_by_the_forest():
    image, mask = make_image((256, 256), seed=63, n_objects=(12, 14), radius=(14.0, 24.0))
    strokes = (mask + 1).astype(np.uint8)  # painted everywhere but the left quarter:
    strokes[:, :64] = 0  # enough to hold some blocks out, and pixels for the forest
    settings = TrainingSettings(epochs=1, val_fraction=0.3, label_mode="sparse", forest_guide=True, **FAST)
    trainer = Trainer([image], [strokes], settings=settings, **TINY)
    assert trainer.data.val_x is not None
    (plane,) = trainer.data.sampler.planes
    held = np.zeros(strokes.shape, bool)
    train_painted = plane.weights == 1.0
    held[(strokes > 0) & ~train_painted] = True  # painted, but not a training stroke
    assert held.any() and (plane.targets[held] < 0).all()
    assert trainer.guided_pixels > 0 and (plane.weights[:, :64] > 0).any()


def test_sparse_strokes_train_with_a_smaller_batch_by_default():
    """Strokes runs are short: batch 8 (more steps) unless a batch is given."""
    from napari_unet_cat.config import DEFAULT_BATCH_SIZE, SPARSE_BATCH_SIZE, ModelConfig, TrainingSettings

    assert (DEFAULT_BATCH_SIZE, SPARSE_BATCH_SIZE) == (20, 8)
    assert TrainingSettings().batch_size == 20
    assert TrainingSettings(label_mode="instances").batch_size == 20
    assert TrainingSettings(label_mode="sparse").batch_size == 8
    assert TrainingSettings(label_mode="sparse", batch_size=20).batch_size == 20
    # A model file's settings read back as written; a file without a batch gets the default.
    written = ModelConfig.from_dict({"training": {"label_mode": "sparse", "batch_size": 20}})
    assert written.training.batch_size == 20
    assert ModelConfig.from_dict({"training": {"label_mode": "sparse"}}).training.batch_size == 8
