"""What a training run starts from: its images in canonical order, the settings of the
model it makes (new, or continued from another), and the part of the annotation it holds out.

These are the steps :class:`~napari_unet_cat.training.Trainer` takes before its first
epoch, each a function of its own so that each can be read and tested alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .arrays import to_canonical
from .config import (
    ClassInfo,
    ModelConfig,
    Normalization,
    TrainingSettings,
    architecture_from_preset,
    z_pools_for,
)
from .dataset import check_not_instances, collect_classes, split_validation
from .errors import InputError
from .instances import INSTANCE_CLASSES, class_balance

#: Instance models remove objects smaller than this share of the 5th percentile of the
#: training objects' areas, and watershed seeds smaller than ``MIN_SEED_SHARE`` of it
#: (chosen on a split of the training images: benchmarks/bench_instances.py, "choose",
#: and docs/benchmarks.md).
MIN_OBJECT_SHARE = 1.0
MIN_SEED_SHARE = 0.5
#: A held-out set with fewer annotated pixels of some class than this cannot choose
#: between epochs (a few strokes on one image hold out a handful of blocks).
MIN_VALIDATION_PIXELS = 300


@dataclass
class NewModel:
    """What a new model is made of (ignored when a model is continued)."""

    #: ``classic``, ``light`` or ``auto`` (see :func:`~napari_unet_cat.resources.resolve_preset`).
    preset: str = "auto"
    base_filters: int | None = None
    depth: int | None = None
    kernel_l2: float = 0.0
    normalization: Normalization | None = None
    scale: float = 1.0
    #: Instead of ``scale``: scale so the median longer image side becomes this many pixels.
    target_size: int | None = None
    class_names: dict[int, str] | None = None
    channel_names: Sequence[str] | None = None
    gray: bool = False
    #: The images' voxel size ``[Z, Y, X]`` (None: not known) and its unit.
    voxel_size: Sequence[float] | None = None
    voxel_unit: str = ""
    #: Instead of ``scale``: resize each image so its longer side is this many pixels
    #: (photos; see :attr:`~napari_unet_cat.config.ModelConfig.long_side`).
    long_side: int | None = None


@dataclass
class Start:
    """What a run inherits: from a model it continues, or from the labels of a new one."""

    value_map: dict
    class_values: list[int]
    normalization: Normalization
    scale: float
    gray: bool
    #: Each image resized to this longer side instead of by ``scale`` (None: ``scale``).
    long_side: int | None = None
    #: The continued model's channels (None: read from the images).
    n_channels: int | None = None
    #: A copy of the continued model's settings (None: a new model).
    config: ModelConfig | None = None
    history: list[dict] = field(default_factory=list)
    #: The class weights the continued model was trained with (None: from the labels).
    class_weights: list[float] | None = None


def canonical_inputs(images: Sequence, labels: Sequence, names, axes) -> tuple[list, list[str], list[str]]:
    """``(images, names, axes)``: the images with their axes in canonical order, a name
    for each (``image 1``...) and each one's canonical axes.

    Raises:
        InputError: The images and labels (or axes) do not pair up, or there are none.
    """
    if len(images) != len(labels):
        raise InputError(f"got {len(images)} images but {len(labels)} label images")
    if not len(images):
        raise InputError("no training images given")
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(images))]
    per_image = [axes] * len(images) if axes is None or isinstance(axes, str) else list(axes)
    if len(per_image) != len(images):
        raise InputError(f"got axes for {len(per_image)} images but {len(images)} images")
    canonical, image_axes = [], []
    for image, name, given in zip(images, names, per_image):
        image, found = to_canonical(image, given, name=f"image {name}")
        canonical.append(image)
        image_axes.append(found)
    return canonical, names, image_axes


def continued_start(model, settings: TrainingSettings, value_map: dict | None = None) -> Start:
    """The start of a run that trains ``model`` further (its classes, channels,
    normalization, scale and class weights kept; ``model`` itself never changed)."""
    config = copy.deepcopy(model.config)
    if config.card:  # a model card describes the model it started from, not this one
        config.card = {"started_from": started_from(config.card)}
    if settings.ndim != config.ndim:
        settings.ndim = config.ndim  # a model's dimensionality is its own
        if config.ndim == 2:
            settings.patch_depth = None
    mode = config.training.label_mode
    if settings.label_mode != mode:
        raise InputError(
            f"the model was trained with {mode} labels; continue with label mode {mode!r} "
            f"(received {settings.label_mode!r})"
        )
    return Start(
        value_map=config.value_map if value_map is None else value_map,
        class_values=config.class_values,
        normalization=config.normalization,
        scale=config.scale,
        gray=config.gray_input,
        long_side=config.long_side,
        n_channels=config.architecture.n_channels,
        config=config,
        history=list(config.history),
        # Fine-tuning weighs the classes as the model's first training did, so that the
        # probability correction it carries (the inverse of those weights) still fits.
        class_weights=config.class_prior_weights or None,
    )


def new_start(
    labels: Sequence,
    names: Sequence[str],
    settings: TrainingSettings,
    recipe: NewModel,
    value_map: dict | None = None,
    *,
    allow_many_classes: bool = False,
) -> Start:
    """The start of a run that makes a new model: its classes read from ``labels``."""
    value_map = value_map or {}
    scale = recipe.scale
    if recipe.target_size is not None:
        if recipe.target_size < 8:
            raise InputError(f"target size must be at least 8 pixels (received {recipe.target_size})")
        sides = [max(np.shape(lab)[-2:]) for lab in labels]  # shapes only: lazy labels stay lazy
        scale = float(recipe.target_size / np.median(sides))
    if not 0 < scale <= 4:
        raise InputError(f"scale must be in (0, 4] (received {scale})")
    if recipe.long_side is not None:
        if recipe.long_side < 16:
            raise InputError(f"the long side must be at least 16 pixels (received {recipe.long_side})")
        if settings.ndim != 2:
            raise InputError("a long side resizes photos: it is for 2D models, not --ndim 3")
    if settings.label_mode != "instances" and not allow_many_classes:
        check_not_instances(labels, names, settings.label_mode, value_map)
    normalization = recipe.normalization or Normalization()
    normalization.validate()
    return Start(
        value_map=value_map,
        class_values=collect_classes(labels, mode=settings.label_mode, value_map=value_map, names=names),
        normalization=normalization,
        scale=scale,
        gray=bool(recipe.gray),
        long_side=None if recipe.long_side is None else int(recipe.long_side),
    )


def pretrained_start(
    labels: Sequence, names: Sequence[str], settings: TrainingSettings, source: ModelConfig, value_map=None,
    allow_many_classes: bool = False,
) -> Start:  # fmt: skip
    """The start of a new model of ``labels``' classes on a trained network's layers:
    the classes read from ``labels``, the way images are read (channels, normalization,
    scale or long side, colour) taken from the trained model's ``source`` settings."""
    if settings.ndim != source.ndim:
        raise InputError(f"a {source.ndim}D model cannot start a {settings.ndim}D one (received ndim {settings.ndim})")
    recipe = NewModel(normalization=copy.deepcopy(source.normalization), scale=source.scale)
    start = new_start(labels, names, settings, recipe, value_map, allow_many_classes=allow_many_classes)
    start.long_side, start.gray, start.n_channels = source.long_side, source.gray_input, source.architecture.n_channels
    return start


def new_config(start: Start, recipe: NewModel, n_channels: int, label_mode: str, ndim: int = 2) -> ModelConfig:
    """The settings of a new model for ``start``'s classes and ``n_channels`` channels."""
    from .resources import resolve_preset

    arch = architecture_from_preset(
        resolve_preset(recipe.preset)[0],
        n_channels=n_channels,
        n_classes=len(start.class_values),
        base_filters=recipe.base_filters,
        depth=recipe.depth,
        kernel_l2=recipe.kernel_l2,
        ndim=ndim,
    )
    if ndim == 3:
        arch.z_pools = z_pools_for(recipe.voxel_size, arch.depth)
    names_by_value = dict(INSTANCE_CLASSES) if label_mode == "instances" else (recipe.class_names or {})
    config = ModelConfig(
        architecture=arch,
        classes=[ClassInfo(v, names_by_value.get(v, "")) for v in start.class_values],
        normalization=start.normalization,
        scale=start.scale,
        long_side=start.long_side,
        value_map=start.value_map,
        gray_input=start.gray,
        voxel_size=[float(v) for v in recipe.voxel_size or []],
        voxel_unit=recipe.voxel_unit if recipe.voxel_size else "",
    )
    if recipe.channel_names is not None:
        if len(recipe.channel_names) != n_channels:
            raise InputError(
                f"got {len(recipe.channel_names)} channel names ({', '.join(recipe.channel_names)}) for images of "
                f"{n_channels} channels"
            )
        config.channel_names = [str(n) for n in recipe.channel_names]
    return config


def finish_config(config: ModelConfig, settings: TrainingSettings, planes, *, continued: bool) -> None:
    """Record in ``config`` how it is trained, and for instance masks the sizes of the
    training objects, the smallest object and seed kept, and (for a new model) the
    class weights that prediction undoes."""
    arch = config.architecture
    k = arch.size_multiple
    if settings.patch_size % k:
        raise InputError(
            f"patch size {settings.patch_size} is not a multiple of {k} (2**depth for depth "
            f"{arch.depth}); try {max(k, settings.patch_size // k * k)}"
        )
    kz = arch.z_multiple
    if arch.ndim == 3 and settings.patch_depth % kz:
        raise InputError(
            f"patch depth {settings.patch_depth} is not a multiple of {kz} (the Z halvings of this 3D network); "
            f"try {max(kz, settings.patch_depth // kz * kz)}"
        )
    config.training = settings
    config.tile_size = settings.patch_size
    config.package_version = __version__
    if settings.label_mode != "instances":
        return
    config.object_areas = object_areas(planes, config.scale)
    if continued:  # a continued model keeps the correction it was trained with
        return
    # The weights prepare_planes gave the loss (the same shares, recounted).
    weights = class_balance([p.targets for p in planes], power=settings.class_balance)
    config.class_prior_weights = [round(float(w), 6) for w in weights]
    if config.object_areas:
        config.min_object_size = int(round(MIN_OBJECT_SHARE * config.object_areas[0]))
        config.min_seed_size = int(round(MIN_SEED_SHARE * config.object_areas[0]))


def planned_depth(recipe: NewModel, model=None) -> tuple[int, int | None]:
    """``(depth, z_pools)`` of the network a run will train: ``model``'s, or a new one's."""
    from .config import PRESETS
    from .resources import resolve_preset

    if model is not None:
        return model.config.architecture.depth, model.config.architecture.z_pools
    depth = recipe.depth or PRESETS[resolve_preset(recipe.preset)[0]]["depth"]
    return depth, z_pools_for(recipe.voxel_size, depth)


def volume_settings(settings: TrainingSettings, depth: int, z_pools: int | None) -> None:
    """Give a 3D run a patch depth where none was set: the Y-X side shortened by as
    much as Z is coarser (the levels that halve Y and X only), on the network's Z grid."""
    if settings.ndim != 3 or settings.patch_depth is not None:
        return
    z_pools = depth if z_pools is None else z_pools
    kz = 2**z_pools
    settings.patch_depth = max(kz, settings.patch_size // 2 ** (depth - z_pools) // kz * kz)


def choose_validation(planes, settings: TrainingSettings, class_values) -> tuple[list, list, str]:
    """``(train_planes, val_planes, note)``: the held-out split, or none (and why, in
    ``note``) when the held-out annotation is too small to tell a good epoch from a bad
    one; training then uses all the annotation and keeps the last (annealed) weights."""
    train_planes, val_planes = split_validation(
        planes, settings.val_fraction, patch=settings.patch_shape, seed=settings.seed
    )
    if not val_planes:
        return train_planes, val_planes, ""
    too_small = too_small_to_judge(val_planes, class_values)
    if not too_small:
        return train_planes, val_planes, ""
    note = (
        f"the held-out annotation is too small to judge ({too_small}): training on all of it "
        "and keeping the last weights"
    )
    return list(planes), [], note


def too_small_to_judge(val_planes, class_values) -> str:
    """What makes held-out annotation too small to choose weights by ("" if nothing)."""
    counts = np.zeros(len(class_values), np.int64)
    for p in val_planes:
        t = p.targets[p.targets >= 0]
        counts += np.bincount(t.ravel(), minlength=len(class_values))[: len(class_values)]
    short = [f"class {v}: {n} pixels" for v, n in zip(class_values, counts) if n < MIN_VALIDATION_PIXELS]
    return ", ".join(short)


def object_areas(planes, scale: float) -> list[float]:
    """Percentiles 5, 50 and 95 of the training objects' areas (volumes, for 3D
    objects), in full-resolution pixels (voxels)."""
    areas = []
    for p in planes:
        if p.instances is not None:
            counts = np.bincount(np.maximum(p.instances, 0).ravel())[1:]
            areas.append(counts[counts > 0])
    if not areas or not sum(a.size for a in areas):
        return []
    found = np.concatenate(areas) / (scale * scale)
    return [round(float(v), 1) for v in np.percentile(found, [5, 50, 95])]


def started_from(card: dict) -> str:
    """What a model trained further from a model with ``card`` says of its start."""
    if list(card) == ["started_from"]:
        return card["started_from"]
    what = card.get("what", "a model with a model card")
    return f"{what}; then trained further, so that the starting model's scores do not describe this one"
