"""Training on corrected results: a round fine-tunes a copy, records itself, and learns."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_cat.corrections import changed_objects, train_on_corrections
from napari_unet_cat.errors import InputError
from napari_unet_cat.synthetic import make_image


def test_changed_objects_counts_what_a_correction_touched():
    before = np.zeros((10, 10), np.uint16)
    before[1:4, 1:4], before[5:9, 5:9], before[1:3, 6:9] = 1, 2, 3
    after = before.copy()
    after[after == 2] = 1  # merged 2 into 1
    after[1:3, 6:9] = 0  # deleted 3
    assert changed_objects(before, after) == 3
    assert changed_objects(before, before) == 0
    with pytest.raises(InputError, match="differ"):
        changed_objects(before, after[:5])


def test_a_round_fine_tunes_a_copy_and_records_itself(tiny_model, tmp_path):
    from napari_unet_cat import load_model

    images, masks = zip(*(make_image((96, 96), seed=90 + i) for i in range(2)))
    before = [tiny_model.predict(im) for im in images]
    weights = [w.copy() for w in tiny_model.keras_model.get_weights()]
    tuned = train_on_corrections(tiny_model, list(images), list(masks), before=before, seconds=4, names=["a", "b"])
    assert all(np.array_equal(a, b) for a, b in zip(weights, tiny_model.keras_model.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(weights, tuned.keras_model.get_weights()))
    (record,) = tuned.config.corrections
    assert record["round"] == 1 and record["images"] == ["a", "b"] and record["patches"] > 0
    assert record["objects_changed"] == sum(changed_objects(b, m) for b, m in zip(before, masks))
    assert tuned.config.training.learning_rate == pytest.approx(tiny_model.config.training.learning_rate / 10)
    again = load_model(tuned.save(tmp_path / "tuned.keras"))  # the history of rounds travels in the file
    assert again.config.corrections == tuned.config.corrections


def test_a_round_of_an_instance_model_trains_on_the_corrected_objects_alone():
    from napari_unet_cat.corrections import corrected_regions

    before = np.zeros((40, 40), np.uint16)
    before[5:10, 5:10], before[25:30, 25:30] = 1, 2
    after = before.copy()
    after[25:30, 25:30] = 0  # a false object deleted
    after[25:32, 5:12] = 7  # a missed object added
    regions = corrected_regions(before, after, ring=2)
    assert regions.dtype == np.int32 and (regions[7, 7] == -1)  # untouched object 1: not annotated
    assert (regions[25:32, 5:12] == 7).all() and regions[24, 5] == 0  # the new object and its ring
    assert (regions[25:30, 25:30] == 0).all()  # the deleted one: background to learn
    assert regions[0, 39] == -1


def test_a_round_rehearses_the_annotations_the_model_learnt_from_before(tiny_model):
    from napari_unet_cat.corrections import annotated_pixels, rehearsal

    earlier = [make_image((96, 96), seed=70 + i) for i in range(5)]
    earlier_images, earlier_masks = [e[0] for e in earlier], [e[1] for e in earlier]
    corrected = np.full((96, 96), -1, np.int32)
    corrected[:40, :96] = 0  # a corrected region of 3840 pixels: a 96x96 earlier image holds more
    drawn, drawn_masks = rehearsal((earlier_images, earlier_masks), [corrected], "instances", seed=3)
    assert (
        len(drawn) == 1
        and drawn_masks[0] is earlier_masks[next(i for i, e in enumerate(earlier_images) if e is drawn[0])]
    )
    whole = [np.zeros((96, 96), np.int32)] * 3  # 3 images' worth of corrections: 3 earlier images
    assert len(rehearsal((earlier_images, earlier_masks), whole, "dense", seed=3)[0]) == 3
    assert len(rehearsal((earlier_images, earlier_masks), whole * 4, "dense")[0]) == 5  # all there are
    assert annotated_pixels(np.array([[0, 1], [2, 0]]), "sparse") == 2  # strokes: 0 is not annotated
    assert rehearsal(None, whole, "dense") == ([], [])
    with pytest.raises(InputError, match="4 earlier label images"):
        rehearsal((earlier_images, earlier_masks[:4]), whole, "dense")

    image, mask = make_image((96, 96), seed=95)
    tuned = train_on_corrections(
        tiny_model, [image], [mask], earlier=(earlier_images, earlier_masks), seconds=3, names=["fixed"]
    )
    (record,) = tuned.config.corrections
    assert record["images"] == ["fixed"] and record["rehearsed_images"] == 1


def test_fine_tuning_can_keep_batch_normalization_as_trained(tiny_model):
    """Asked for (and for strokes), a run from a trained network leaves its batch
    normalization as it was; for whole masks it trains it by default, as a new network's."""
    from napari_unet_cat._backend import keras
    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.training import Trainer

    def norms(network):
        return [w.copy() for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)
                for w in layer.get_weights()]  # fmt: skip

    image, mask = make_image((96, 96), seed=96)
    settings = TrainingSettings(epochs=1, steps_per_epoch=2, batch_size=4, patch_size=64, val_fraction=0.0)
    trained = Trainer([image], [1 - mask], settings=settings, model=tiny_model)  # a correction far from the model
    assert not trained.batch_norm_kept and not trained.batch_norm_note
    changed = trained.run().keras_model
    assert not all(np.array_equal(a, b) for a, b in zip(norms(tiny_model.keras_model), norms(changed)))
    settings.keep_batch_norm = True
    kept = Trainer([image], [1 - mask], settings=settings, model=tiny_model)
    assert kept.batch_norm_kept and "batch normalization kept" in kept.batch_norm_note
    same = kept.run().keras_model
    assert all(np.array_equal(a, b) for a, b in zip(norms(tiny_model.keras_model), norms(same)))
    assert not all(np.array_equal(a, b) for a, b in zip(tiny_model.keras_model.get_weights(), same.get_weights()))
    assert all(layer.trainable for layer in same.layers)  # a later run decides anew
    new = Trainer([image], [mask], settings=settings, base_filters=4, depth=2)
    assert not new.batch_norm_kept  # a new network has nothing to keep
    strokes = TrainingSettings(epochs=1, steps_per_epoch=2, batch_size=4, patch_size=64, label_mode="sparse")
    painted = np.where(np.arange(96)[:, None] % 8 == 0, mask + 1, 0)  # rows of strokes
    started = Trainer([image], [painted], settings=strokes, pretrained=tiny_model, base_filters=4, depth=2)
    assert started.batch_norm_kept  # strokes on a trained network keep it by default


def test_a_round_can_keep_a_share_of_its_change_to_the_weights(tiny_model):
    """``keep`` sets the new weights between the model's and the fine-tuned network's."""
    from napari_unet_cat._backend import keras
    from napari_unet_cat.corrections import blend_weights

    start = tiny_model.keras_model
    moved = keras.models.clone_model(start)
    moved.set_weights([w + 1.0 if np.issubdtype(w.dtype, np.floating) else w for w in start.get_weights()])
    blend_weights(moved, start, 0.25)
    assert all(np.allclose(a, b + 0.25) for a, b in zip(moved.get_weights(), start.get_weights()))
    with pytest.raises(InputError, match=r"received 0\)"):
        blend_weights(moved, start, 0)
    with pytest.raises(InputError, match=r"in \(0, 1\] \(received 1.5\)"):  # at once, before a round's training
        train_on_corrections(tiny_model, [np.zeros((32, 32))], [np.zeros((32, 32), int)], keep=1.5)

    image, mask = make_image((96, 96), seed=97)
    tuned = train_on_corrections(tiny_model, [image], [1 - mask], seconds=3, keep=0.5)
    (record,) = tuned.config.corrections
    assert record["keep"] == 0.5
    assert not all(np.array_equal(a, b) for a, b in zip(start.get_weights(), tuned.keras_model.get_weights()))
