"""New models for painted classes that start from a trained network (a built-in model).

A few strokes say which pixels belong to which class but little about where objects end;
a network that has seen thousands of such images already knows. A model started from one
keeps that network's layers and the way it reads images (channels, normalization,
working scale), and gets a new output layer for the painted classes, initialized from the
network's own: the painted background from its background, a single painted object class
from the mean of its object classes (so "any animal" or "nucleus, inside or border"), and
object classes one for one where both have as many. Its first prediction is then already
the trained network's answer, which the strokes correct.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from .config import NONZERO, ClassInfo, ModelConfig, TrainingSettings
from .errors import InputError

#: Gray images whose normalized median lies below this look like fluorescence: dark
#: background, bright objects.
DARK_BACKGROUND = 0.35
#: Colour images whose channels differ by more than this share of the range are photos.
COLOUR_DIFFERENCE = 0.02


def head_sources(source_values: Sequence[int], target_values: Sequence[int], *, source_background: int = 0) -> list:
    """For each target class, the indices of the source classes its output starts from.

    The lowest target value is background (as painted strokes are read) and starts
    from the source's ``source_background``; the other target classes start from the
    source's other classes: all of them averaged when there is one target object
    class, one each in order when the counts match, else from all of them averaged too.
    """
    source_values = list(source_values)
    if source_background not in source_values:
        raise InputError(f"the starting model has no background class {source_background} (classes {source_values})")
    background = source_values.index(source_background)
    objects = [i for i in range(len(source_values)) if i != background]
    targets = sorted(target_values)
    n_objects = len(targets) - 1
    if n_objects == len(objects):
        return [[background]] + [[i] for i in objects]
    return [[background]] + [list(objects)] * n_objects


def transferred_head(kernel: np.ndarray, bias: np.ndarray, sources: list, prior_weights: Sequence[float] = ()):
    """``(kernel, bias)`` of a new output layer whose class ``k`` is the mean of the
    source classes ``sources[k]``, plus ``log(len(sources[k]))`` on its bias: the logit of
    the merged classes is ``logsumexp`` of theirs, which that equals where they are equal
    and bounds from below elsewhere. ``prior_weights``: the source's training class
    weights, which its prediction divides out; folded into the bias here (``-log w``)."""
    bias = np.asarray(bias, np.float32)
    if len(prior_weights):
        bias = bias - np.log(np.asarray(prior_weights, np.float32))
    kernel = np.asarray(kernel, np.float32)
    new_kernel = np.stack([kernel[..., rows].mean(axis=-1) for rows in sources], axis=-1)
    new_bias = np.asarray([bias[rows].mean() + np.log(len(rows)) for rows in sources], np.float32)
    return new_kernel, new_bias


def transferred_config(
    source: ModelConfig, class_values: Sequence[int], settings: TrainingSettings, class_names: dict | None = None
) -> ModelConfig:
    """The settings of a new model of ``class_values`` (named by ``class_names``) built on
    ``source``'s network: its architecture (but the classes), normalization, scale, long
    side and colour handling."""
    if source.ndim != settings.ndim:
        raise InputError(f"a {source.ndim}D model cannot start a {settings.ndim}D one")
    names = class_names or {}
    config = ModelConfig(
        architecture=copy.deepcopy(source.architecture),
        classes=[ClassInfo(int(v), names.get(v, "")) for v in class_values],
        normalization=copy.deepcopy(source.normalization),
        scale=source.scale,
        long_side=source.long_side,
        gray_input=source.gray_input,
        channel_names=list(source.channel_names),
    )
    config.architecture.n_classes = len(class_values)
    if source.card:  # the new model's card says where it started, not the source's scores
        from .training_setup import started_from

        config.card = {"started_from": started_from(source.card)}
    return config


def copy_weights(source_network, target_network, sources: list, prior_weights: Sequence[float] = ()) -> None:
    """Every layer's weights from ``source_network`` into ``target_network``, the output
    layer ``logits`` made from the source's by :func:`transferred_head`."""
    for layer in target_network.layers:
        weights = source_network.get_layer(layer.name).get_weights()
        if not weights:
            continue
        if layer.name == "logits":
            weights = list(transferred_head(weights[0], weights[1], sources, prior_weights))
        layer.set_weights(weights)


def fitting_builtin(image, axes: str | None = None) -> tuple[str | None, str]:
    """``(name, why)``: the built-in model that fits ``image`` (any layout; its middle
    plane is looked at), or ``(None, why not)``; see :func:`builtin_for_image`."""
    from .arrays import get_plane, infer_layout, to_canonical
    from .builtin import builtin_models

    image, axes = to_canonical(image, axes)
    layout = infer_layout(np.shape(image), axes=axes)
    index = tuple(n // 2 for n in layout.plane_shape)
    return builtin_for_image(get_plane(image, layout, index), list(builtin_models()))


def builtin_for_image(plane: np.ndarray, names: Sequence[str]) -> tuple[str | None, str]:
    """``(name, why)``: the built-in model among ``names`` that fits one ``(Y, X, C)``
    plane, or ``(None, why not)``.

    A colour photo (three channels that differ) fits ``pets``; a gray image (one channel,
    or three equal ones) with a dark background (fluorescence) fits ``nuclei``. Only a
    strided sample is read.
    """
    plane = np.asarray(plane)
    if plane.ndim == 2:
        plane = plane[..., None]
    channels = plane.shape[-1]
    if channels not in (1, 3):
        return None, f"the built-in models read one channel or RGB, not {channels} channels"
    step = max(1, int(np.ceil(np.sqrt(plane.shape[0] * plane.shape[1] / 250_000))))
    sample = plane[::step, ::step].astype(np.float32)
    low, high = np.percentile(sample, [1, 99.8])
    span = max(float(high - low), 1e-6)
    if channels == 3:
        spread = float(np.mean(sample.max(axis=-1) - sample.min(axis=-1))) / span
        if spread > COLOUR_DIFFERENCE:
            return ("pets", "a colour photo") if "pets" in names else (None, "a colour photo, and no photo model")
    median = (float(np.median(sample.mean(axis=-1))) - low) / span
    if median < DARK_BACKGROUND:
        return ("nuclei", "bright objects on a dark background") if "nuclei" in names else (None, "no nuclei model")
    return None, "no built-in model fits (not a colour photo, not bright objects on a dark background)"


def can_continue(config: ModelConfig, label_mode: str, labels: Sequence) -> bool:
    """Whether ``labels`` (annotations in ``label_mode``) can train ``config``'s model
    further as it is: the same label mode, and no value it does not know. Otherwise a
    new model of the annotations' classes starts from its network."""
    if config.training.label_mode != label_mode:
        return False
    if label_mode == "instances":
        return True
    known = set(config.class_values) | ({0} if label_mode == "sparse" else set())
    known |= {int(v) for v in config.value_map if v != NONZERO}
    return all(set(np.unique(np.asarray(lab)).tolist()) <= known for lab in labels)


def network_guess(model, sources: list):
    """A function of a prepared training plane (normalized, at the working scale,
    ``(Y, X, C)``) to the probabilities ``model`` gives it, its classes summed into the
    new classes by ``sources`` (see :func:`head_sources`): the guesses that guide the
    unpainted pixels of a model started from ``model``."""
    import dataclasses

    from .inference import in_memory_layout, plan_tiles, plane_bands
    from .resources import memory_budget

    network = dataclasses.replace(model.tiled_network(), scale=1.0)

    def guess(plane: np.ndarray) -> np.ndarray:
        plan = plan_tiles(network, plane.shape[:2], memory_budget=memory_budget())
        bands = plane_bands(network, plane, in_memory_layout(plane), (), plan, normalized=True)
        probabilities = np.concatenate([band for _, band in bands])
        return np.stack([probabilities[..., rows].sum(axis=-1) for rows in sources], axis=-1)

    return guess
