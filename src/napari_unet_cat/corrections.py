"""Training a model further on the results a person corrected (human in the loop).

A model segments; a person corrects some objects (napari's brush, or the proofreading
tools); :func:`train_on_corrections` fine-tunes the model on the corrected label images
at a tenth of its learning rate for a short time, beside some of the annotations it learnt
from before (as many annotated pixels as the corrections hold, so that the round adds to
what it knows rather than trading it for a few corrected objects), and records the round
in the model's settings (``config.corrections``). The corrected images are then segmented
again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from .errors import InputError

#: How long one round trains by default: corrections are few, and the model already works.
ROUND_SECONDS = 60.0
#: The share of a round's change to the weights that the new model keeps (1: all of it).
ROUND_KEEP = 1.0


def changed_objects(before: np.ndarray, after: np.ndarray) -> int:
    """How many objects a correction touched: the labels, before or after, of the pixels
    whose label changed (a merge of two objects counts both, a deleted one counts)."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise InputError(f"the corrected labels of shape {after.shape} differ from the shape {before.shape} given")
    changed = before != after
    touched = set(np.unique(before[changed]).tolist()) | set(np.unique(after[changed]).tolist())
    return len(touched - {0})


#: Pixels of background kept around each corrected object when a round trains on the
#: corrections alone (the rest of the image is left out of the loss).
RING = 8


def corrected_regions(before: np.ndarray, after: np.ndarray, ring: int = RING) -> np.ndarray:
    """Instance labels for training on what a person corrected, and on nothing else: the
    objects a correction touched as they are now (``after``), with ``ring`` pixels of what
    surrounds them, and -1 (not annotated) everywhere else, so that the rest of the
    model's own output is not learnt back. Int32."""
    from scipy.ndimage import binary_dilation

    before, after = np.asarray(before), np.asarray(after)
    changed = before != after
    touched = np.isin(after, np.unique(after[changed])) & (after > 0)
    region = touched | changed
    if ring > 0 and region.any():
        region = binary_dilation(region, structure=np.ones((3,) * region.ndim, bool), iterations=ring)
    return np.where(region, after.astype(np.int64), -1).astype(np.int32)


def annotated_pixels(labels, label_mode: str) -> int:
    """How many pixels of ``labels`` teach something: the nonzero ones of painted strokes
    (``sparse``), every one not marked -1 otherwise."""
    labels = np.asarray(labels)
    return int(np.count_nonzero(labels != 0 if label_mode == "sparse" else labels >= 0))


def rehearsal(
    earlier: tuple[Sequence, Sequence] | None, targets: Sequence, label_mode: str, seed: int = 0
) -> tuple[list, list]:
    """The ``earlier`` ``(images, labels)`` a round trains on beside its corrected
    ``targets``: drawn at random (anew each round, by ``seed``) until they hold as many
    annotated pixels as the corrections, at least one image, so that about half of the
    round's patches rehearse what the model knew and half learn the corrections."""
    if earlier is None:
        return [], []
    images, labels = earlier
    if len(images) != len(labels):
        raise InputError(f"got {len(images)} earlier images and {len(labels)} earlier label images")
    wanted = sum(annotated_pixels(t, label_mode) for t in targets)
    chosen, held = [], 0
    for i in np.random.default_rng(seed).permutation(len(images)):
        if chosen and held >= wanted:
            break
        chosen.append(i)
        held += annotated_pixels(labels[i], label_mode)
    return [images[i] for i in chosen], [labels[i] for i in chosen]


def train_on_corrections(
    model,
    images: Sequence,
    corrected: Sequence,
    *,
    before: Sequence | None = None,
    earlier: tuple[Sequence, Sequence] | None = None,
    seconds: float = ROUND_SECONDS,
    names: Sequence[str] | None = None,
    axes: str | Sequence[str | None] | None = None,
    on_epoch: Callable | None = None,
    stop_event: threading.Event | None = None,
    seed: int = 0,
    only_corrected: bool | None = None,
    keep: float = ROUND_KEEP,
):
    """Fine-tune ``model`` on ``corrected`` label images of ``images`` and return the new
    model (``model`` itself is not changed).

    Args:
        model: The :class:`~napari_unet_cat.segmenter.UNetModel` that made the labels.
        images: The images the labels belong to.
        corrected: Their labels as corrected: objects for an instance model, class values
            (every pixel a class) for a semantic one.
        before: The labels as the model made them, to count the objects changed.
        earlier: ``(images, labels)`` the model learnt from before (its training
            annotations, as it was trained on them); each round rehearses some of them,
            as many annotated pixels as the corrections hold (:func:`rehearsal`).
        seconds: How long to train (at a tenth of the first training's learning rate).
        names: Names of the images, for the record and messages.
        axes: The images' axes, as for :class:`~napari_unet_cat.training.Trainer`.
        on_epoch: Called with each :class:`~napari_unet_cat.training.EpochReport`.
        stop_event: Set it to end the round after the current step.
        seed: The round's random seed.
        only_corrected: Train on the corrected objects and a ring around them only
            (:func:`corrected_regions`; needs ``before``). Default: for an instance model
            given ``before``; a semantic model trains on the whole corrected images.
        keep: The share of the round's change to the weights kept: the new weights are
            ``before + keep * (trained - before)``, between the model and the round's
            fine-tuned network (1 keeps the fine-tuned one; less damps what a few
            corrections teach, round after round).

    Returns:
        The fine-tuned model; its ``config.corrections`` ends with this round's record.
    """
    check_keep(keep)  # before the round's minute, not after it
    started = time.perf_counter()
    targets = training_labels(model, corrected, before, only_corrected)
    trainer = round_trainer(
        model, images, targets, seconds=seconds, names=names, axes=axes, stop_event=stop_event, seed=seed,
        earlier=rehearsal(earlier, targets, model.config.training.label_mode, seed),
    )  # fmt: skip
    trainer.run(on_epoch)
    return finish_round(model, trainer, started, before=before, corrected=corrected, n_corrected=len(images), keep=keep)


def training_labels(model, corrected, before=None, only_corrected: bool | None = None) -> list:
    """What a round trains on: the corrected regions alone (instance models, by default,
    see :func:`corrected_regions`), or the corrected images whole."""
    if only_corrected is None:
        only_corrected = before is not None and model.config.is_instance_model
    if not only_corrected:
        return list(corrected)
    if before is None:
        raise InputError("training on the corrected objects alone needs the labels as the model made them")
    if not model.config.is_instance_model:
        raise InputError("training on the corrected objects alone is for instance models")
    return [corrected_regions(b, a) for b, a in zip(before, corrected)]


def round_trainer(
    model,
    images: Sequence,
    corrected: Sequence,
    *,
    seconds: float = ROUND_SECONDS,
    names: Sequence[str] | None = None,
    axes=None,
    stop_event: threading.Event | None = None,
    seed: int = 0,
    earlier: tuple[Sequence, Sequence] = ((), ()),
):
    """The :class:`~napari_unet_cat.training.Trainer` of one round (iterate its ``epochs()``
    for progress, then :func:`finish_round`): the ``corrected`` images, then the
    ``earlier`` ones it rehearses (see :func:`rehearsal`)."""
    from .config import TrainingSettings
    from .training import Trainer

    if not len(images) or len(images) != len(corrected):
        raise InputError(f"got {len(images)} images and {len(corrected)} corrected label images")
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
    earlier_images, earlier_labels = earlier
    images = [*images, *earlier_images]
    corrected = [*corrected, *earlier_labels]
    names += [f"earlier annotation {i + 1}" for i in range(len(earlier_images))]
    training = model.config.training
    settings = TrainingSettings(
        epochs=100_000,
        time_budget_s=float(seconds),
        label_mode=training.label_mode,
        # A tenth of the first training's rate, once: later rounds keep it.
        learning_rate=training.learning_rate if model.config.corrections else training.learning_rate / 10,
        patch_size=training.patch_size,
        batch_size=training.batch_size,
        val_fraction=0.0,  # the corrections are all there is: none held out
        border_width=training.border_width,
        w0=training.w0,
        sigma=training.sigma,
        class_balance=training.class_balance,
        seed=seed,
    )
    if axes is not None and not isinstance(axes, str):
        axes = [*axes, *([None] * len(earlier_images))]
    return Trainer(images, corrected, settings=settings, model=model, names=names, axes=axes, stop_event=stop_event)


def finish_round(
    model, trainer, started: float, *, before=None, corrected=None, n_corrected: int | None = None,
    keep: float = ROUND_KEEP,
):  # fmt: skip
    """The model ``trainer`` trained, ``keep`` of the way from ``model`` (see
    :func:`blend_weights`), with this round recorded in ``config.corrections`` (its first
    ``n_corrected`` images the corrected ones, the rest rehearsed)."""
    tuned = trainer.model
    if keep != 1.0:
        blend_weights(tuned.keras_model, model.keras_model, keep)
    n_corrected = len(trainer.names) if n_corrected is None else n_corrected
    record = {
        "round": len(model.config.corrections) + 1,
        "images": list(trainer.names)[:n_corrected],
        "rehearsed_images": len(trainer.names) - n_corrected,
        "seconds": round(time.perf_counter() - started, 1),
        "patches": int(sum(row.get("patches", 0) for row in trainer.history[len(model.config.history) :])),
        "keep": keep,
    }
    if before is not None and corrected is not None:
        record["objects_changed"] = int(sum(changed_objects(b, a) for b, a in zip(before, corrected)))
    tuned.config.corrections = [*model.config.corrections, record]
    return tuned


def blend_weights(network, start, keep: float) -> None:
    """Set ``network``'s floating-point weights to ``start``'s plus ``keep`` of the way to
    its own (the two networks of one architecture); other variables stay ``network``'s."""
    check_keep(keep)
    mine, theirs = network.get_weights(), start.get_weights()
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
        raise InputError("the fine-tuned network's weights do not match the model it started from")
    network.set_weights(
        [b + keep * (a - b) if np.issubdtype(a.dtype, np.floating) else a for a, b in zip(mine, theirs)]
    )


def check_keep(keep: float) -> None:
    """Refuse a share of a training's change outside (0, 1]."""
    if not 0.0 < keep <= 1.0:
        raise InputError(f"the share of the change kept must be in (0, 1] (received {keep})")
