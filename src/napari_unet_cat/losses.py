"""Loss and metrics that ignore unannotated pixels, written with ``keras.ops`` only.

Targets are int class indices of shape ``(batch, Y, X)`` (``(batch, Z, Y, X)`` for
volumes) with ``-1`` for "not annotated"; predictions are logits ``(batch, Y, X,
n_classes)``. Weighted targets (from instance masks) are float ``(batch, Y, X, 2)``:
the class index, then the pixel's loss weight (the U-Net paper's weight map).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._backend import keras

ops = keras.ops


def split_targets(y_true, y_pred):
    """``(class indices as int32, per-pixel weights or None)`` of plain or weighted
    targets (weighted ones have as many axes as the logits ``y_pred``)."""
    if len(y_true.shape) == len(y_pred.shape):
        return ops.cast(ops.round(y_true[..., 0]), "int32"), ops.cast(y_true[..., 1], "float32")
    return ops.cast(y_true, "int32"), None


@keras.saving.register_keras_serializable(package="napari_unet_cat")
class MaskedCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy averaged over annotated pixels only.

    Pixels whose target is negative contribute nothing, and the mean is taken over the
    annotated pixels of the whole batch, so a batch with few strokes is not diluted by
    the unannotated rest. Optional ``class_weights`` (one per class index) weight each
    pixel by its target class; weighted targets bring a weight for every pixel (the
    mean is then the weighted mean).
    """

    def __init__(self, class_weights: Sequence[float] | None = None, name: str = "masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        target, pixel_weight = split_targets(y_true, y_pred)
        annotated = target >= 0
        safe_target = ops.where(annotated, target, ops.zeros_like(target))
        pixel_loss = ops.sparse_categorical_crossentropy(safe_target, ops.cast(y_pred, "float32"), from_logits=True)
        weight = ops.cast(annotated, "float32")
        if pixel_weight is not None:
            weight = weight * pixel_weight
        if self.class_weights is not None:
            table = ops.convert_to_tensor(self.class_weights, dtype="float32")
            weight = weight * ops.take(table, safe_target)
        total = ops.sum(pixel_loss * weight)
        return total / ops.maximum(ops.sum(weight), 1.0)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="napari_unet_cat")
class ClassIoU(keras.metrics.Metric):
    """Intersection over union of one class, over annotated pixels, accumulated over batches."""

    def __init__(self, class_index: int, name: str | None = None, **kwargs):
        super().__init__(name=name or f"iou_{class_index}", **kwargs)
        self.class_index = int(class_index)
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.union = self.add_variable(shape=(), initializer="zeros", name="union")

    def update_state(self, y_true, y_pred, sample_weight=None):
        target, _ = split_targets(y_true, y_pred)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        annotated = target >= 0
        is_target = ops.logical_and(annotated, ops.equal(target, self.class_index))
        is_predicted = ops.logical_and(annotated, ops.equal(predicted, self.class_index))
        both = ops.sum(ops.cast(ops.logical_and(is_target, is_predicted), "float32"))
        either = ops.sum(ops.cast(ops.logical_or(is_target, is_predicted), "float32"))
        self.intersection.assign_add(both)
        self.union.assign_add(either)

    def result(self):
        # A class absent from both targets and predictions made no error: IoU 1.
        return ops.where(self.union > 0, self.intersection / ops.maximum(self.union, 1.0), 1.0)

    def reset_state(self):
        self.intersection.assign(0.0)
        self.union.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "class_index": self.class_index}
