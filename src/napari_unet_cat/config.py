"""Settings that travel with a model: architecture, classes, normalization, training.

Everything here is plain data (dataclasses of numbers and strings) so that it can be
written into the model file as JSON and read back without running any code. Nothing
in this module imports Keras.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InputError
from .resources import PRECISIONS

LabelMode = Literal["sparse", "dense", "instances"]
LABEL_MODES = ("dense", "sparse", "instances")

#: Named network sizes. ``classic`` is the original U-Net of the tutorial and paper
#: (64 to 1024 filters over four poolings, about 31 M parameters); ``light`` is a
#: quarter of its width, about 16x fewer weights, for training on a laptop CPU
#: (see docs/benchmarks.md for the measurements behind the choice).
PRESETS: dict[str, dict[str, Any]] = {
    "classic": {"base_filters": 64, "depth": 4},
    "light": {"base_filters": 16, "depth": 4},
}

#: Adam's learning rate for each preset: the tutorial's 1e-4 for its network; ten times
#: that for ``light``, which reaches a useful preview in under a minute on a CPU where
#: 1e-4 takes several (docs/benchmarks.md).
PRESET_LEARNING_RATES: dict[str, float] = {"classic": 1e-4, "light": 1e-3}
#: What every interface offers: ``auto`` picks ``classic`` on a GPU and ``light`` on a CPU
#: (:func:`napari_unet_cat.resources.resolve_preset`).
PRESET_CHOICES = ("auto", *sorted(PRESETS))

IGNORE = "ignore"
#: Value-map key for every nonzero value (``--map nonzero=1``); explicit values win over it.
NONZERO = "nonzero"


@dataclass
class ClassInfo:
    """One class the model predicts: the label value it is written as, and a name."""

    value: int
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": int(self.value), "name": self.name}


@dataclass
class Normalization:
    """Per-image percentile normalization: ``low`` percentile to 0, ``high`` to 1."""

    low: float = 1.0
    high: float = 99.8
    per_channel: bool = True

    def validate(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise InputError(
                "normalization percentiles must satisfy 0 <= low < high <= 100; "
                f"received low={self.low}, high={self.high}"
            )


@dataclass
class Architecture:
    """The U-Net's shape; see :func:`napari_unet_cat.unet.build_unet`."""

    n_channels: int = 1
    n_classes: int = 2
    base_filters: int = 64
    depth: int = 4
    batch_norm: bool = True
    kernel_l2: float = 0.0
    preset: str = "classic"
    #: 2: a network of planes; 3: of volumes (the 3D U-Net).
    ndim: int = 2
    #: Volumes: how many levels (the deepest) also halve Z (None: all); the ones above
    #: halve Y and X only, so that Z coarser than Y and X is pooled towards isotropic voxels.
    z_pools: int | None = None

    @property
    def size_multiple(self) -> int:
        """Tile sides must be a multiple of this (one halving per level)."""
        return 2**self.depth

    @property
    def z_multiple(self) -> int:
        """A volume's block depth must be a multiple of this (1 for planes)."""
        if self.ndim == 2:
            return 1
        return 2 ** (self.depth if self.z_pools is None else self.z_pools)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context, each side, that can change one output pixel.

        Two 3x3 convolutions per level on each side of the U and at the bottom give
        ``4 * (2**depth - 1) + 2 * 2**depth`` (92 at depth 4, the paper's 572 -> 388
        tiles); the 2x2 poolings and up-convolutions add up to ``2**depth - 1`` more for
        pixels off their grid (measured: 23 at depth 2, 51 at depth 3, 107 at depth 4).
        """
        return 5 * (2**self.depth - 1) + 2 * 2**self.depth

    @property
    def flops_per_pixel(self) -> int:
        """Floating-point operations of one forward pass, per input pixel.

        The convolutions' multiply-adds (3x3, the 2x2 stride-2 up-convolutions and the
        final 1x1), counted twice: batch norm, ReLU and pooling, a few operations per
        value, are left out. Level ``i`` runs on ``4**-i`` of the pixels, so each level of
        the original U-Net costs about the same; a training step costs about three
        forward passes (the backward pass computes two products per convolution).
        """
        f = [self.base_filters * 2**level for level in range(self.depth + 1)]
        macs = 9 * (self.n_channels * f[0] + f[0] * f[0])  # the first level, full resolution
        for level in range(1, self.depth + 1):  # down the U, and the bottom
            macs += 9 * (f[level - 1] * f[level] + f[level] * f[level]) / 4**level
        for level in range(self.depth):  # up: the up-convolution, then two convolutions
            macs += 4 * f[level + 1] * f[level] / 4 ** (level + 1)
            macs += 9 * (2 * f[level] * f[level] + f[level] * f[level]) / 4**level
        macs += f[0] * self.n_classes
        return int(round(2 * macs))

    def validate(self) -> None:
        checks = {
            "n_channels": self.n_channels >= 1,
            "n_classes": self.n_classes >= 2,
            "base_filters": self.base_filters >= 1,
            "depth": 1 <= self.depth <= 6,
            "kernel_l2": self.kernel_l2 >= 0,
            "ndim": self.ndim in (2, 3),
            "z_pools": self.z_pools is None or 0 <= self.z_pools <= self.depth,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise InputError(f"invalid architecture settings: {shown}")


#: The tutorial's batch, and the strokes path's: a few strokes on one image train for a
#: minute or two, where optimizer steps count more than patches per step (on a CPU a
#: batch of 8 trains as many images per second as 20, with 2.5x the steps; measured in
#: docs/benchmarks.md, "A few strokes on one image").
DEFAULT_BATCH_SIZE = 20
SPARSE_BATCH_SIZE = 8
#: Volumes: a 3D patch holds Z times a plane's voxels, so fewer go to one step.
VOLUME_BATCH_SIZE = 4
#: The side of a training patch, where none is given: the tutorial's 128 for planes, 64
#: (in Y and X) for volumes.
PLANE_PATCH_SIZE = 128
VOLUME_PATCH_SIZE = 64


@dataclass
class TrainingSettings:
    """How to train. Defaults are the tutorial's: Adam at 1e-4, batch 20 (8 for sparse
    strokes), 128x128 patches, 10% of the images held out for validation."""

    epochs: int = 50
    #: None: :data:`SPARSE_BATCH_SIZE` for sparse strokes, :data:`VOLUME_BATCH_SIZE` for
    #: volumes, else :data:`DEFAULT_BATCH_SIZE`.
    batch_size: int | None = None
    #: The Y and X side of a patch (None: 128, or :data:`VOLUME_PATCH_SIZE` for volumes).
    patch_size: int | None = None
    #: 2: train a network of planes; 3: a 3D U-Net of volumes (new models; a continued
    #: model keeps its own).
    ndim: int = 2
    #: Volumes: the Z side of a patch (None: chosen by the trainer for the network's Z
    #: halvings, see :func:`napari_unet_cat.training_setup.volume_settings`).
    patch_depth: int | None = None
    learning_rate: float = 1e-4
    val_fraction: float = 0.1
    label_mode: LabelMode = "dense"
    steps_per_epoch: int | None = None
    time_budget_s: float | None = None
    #: Lower the learning rate along a cosine to a twentieth of its start, over the time
    #: budget when there is one, else over the planned steps (epochs x steps per
    #: epoch), so that the run ends on settled weights.
    anneal: bool = True
    augment: bool = True
    elastic: bool = True
    class_weights: dict[int, float] | None = None
    seed: int = 0
    monitor: str = "val_loss"
    #: ``auto`` (mixed float16 on a GPU, float32 on a CPU), ``float32``,
    #: ``mixed_float16`` or ``mixed_bfloat16``.
    precision: str = "auto"
    #: XLA compilation: None lets Keras decide (on for GPUs and JAX, off on CPUs).
    xla: bool | None = None
    #: Split each batch across GPUs: None means when more than one is seen.
    data_parallel: bool | None = None
    #: Sparse strokes: also learn from a random forest's confident guesses of the pixels
    #: nobody painted (at ``guide_weight`` of a stroke's weight in the loss), so that a
    #: few strokes on one image cannot lead the network far from what their filter
    #: features say. None: when the strokes cover under a quarter of at most 16 planes
    #: (the napari strokes path); False: never.
    forest_guide: bool | None = None
    guide_weight: float = 0.3
    guide_confidence: float = 0.8
    #: Instance masks: width in pixels (at the training scale) of the object border
    #: class, and the U-Net paper's weight map ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``.
    border_width: int = 2
    w0: float = 10.0
    sigma: float = 5.0
    #: Instance masks: the class weights ``w_c`` are each class's pixel share to the
    #: power ``-class_balance`` (1: the paper's inverse frequency; 0: none).
    class_balance: float = 0.5
    #: Threads that draw and augment patches beside the network's own (1: drawn on the
    #: training thread). Measured in benchmarks/bench_train_speed.py.
    input_threads: int = 2
    #: Starting from a trained network, keep its batch normalization as it is (its
    #: statistics and scales; the layers run as in prediction) rather than train it.
    #: None: kept for painted strokes (``sparse``), whose patches are a narrow sample of
    #: one image or a few, trained for whole masks (measured: docs/benchmarks.md, "The
    #: built-in pets model"). A new network always trains it.
    keep_batch_norm: bool | None = None

    def __post_init__(self) -> None:
        if self.patch_size is None:
            self.patch_size = VOLUME_PATCH_SIZE if self.ndim == 3 else PLANE_PATCH_SIZE
        if self.batch_size is None:
            if self.ndim == 3:
                self.batch_size = VOLUME_BATCH_SIZE
            else:
                self.batch_size = SPARSE_BATCH_SIZE if self.label_mode == "sparse" else DEFAULT_BATCH_SIZE

    @property
    def patch_shape(self) -> tuple[int, ...]:
        """A training patch's sides: ``(Y, X)``, or ``(Z, Y, X)`` for volumes."""
        side = (self.patch_size, self.patch_size)
        return side if self.ndim == 2 else (self.patch_depth or self.patch_size, *side)

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1 (received {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1 (received {self.batch_size})")
        if self.patch_size < 8:
            problems.append(f"patch_size must be at least 8 (received {self.patch_size})")
        if self.ndim not in (2, 3):
            problems.append(f"ndim must be 2 (planes) or 3 (volumes) (received {self.ndim})")
        if self.patch_depth is not None and self.patch_depth < 1:
            problems.append(f"patch_depth must be at least 1 (received {self.patch_depth})")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            problems.append(f"learning_rate must be a positive number (received {self.learning_rate})")
        if self.learning_rate > 1.0:
            problems.append(f"learning_rate must be at most 1 (received {self.learning_rate})")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must be in [0, 1) (received {self.val_fraction})")
        if self.label_mode not in LABEL_MODES:
            problems.append(f"label_mode must be one of {', '.join(LABEL_MODES)} (received {self.label_mode!r})")
        if not 0 <= self.guide_weight <= 1 or not 0.5 <= self.guide_confidence <= 1:
            problems.append(
                "the forest guide needs 0 <= guide_weight <= 1 and 0.5 <= guide_confidence <= 1 (received "
                f"guide_weight={self.guide_weight}, guide_confidence={self.guide_confidence})"
            )
        if self.border_width < 1:
            problems.append(f"border_width must be at least 1 pixel (received {self.border_width})")
        if not 0 <= self.class_balance <= 1:
            problems.append(f"class_balance must be in [0, 1] (received {self.class_balance})")
        if self.w0 < 0 or not self.sigma > 0:
            problems.append(f"the weight map needs w0 >= 0 and sigma > 0 (received w0={self.w0}, sigma={self.sigma})")
        if self.input_threads < 1:
            problems.append(f"input_threads must be at least 1 (received {self.input_threads})")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            problems.append(f"steps_per_epoch must be at least 1 (received {self.steps_per_epoch})")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append(f"time budget must be positive (received {self.time_budget_s} s)")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)} (received {self.precision!r})")
        if self.class_weights and any(w < 0 for w in self.class_weights.values()):
            problems.append(f"class weights must not be negative (received {self.class_weights})")
        if problems:
            raise InputError("invalid training settings: " + "; ".join(problems))


@dataclass
class ModelConfig:
    """Everything needed to rebuild a trained model and use it on new images."""

    architecture: Architecture = field(default_factory=Architecture)
    classes: list[ClassInfo] = field(default_factory=list)
    normalization: Normalization = field(default_factory=Normalization)
    scale: float = 1.0
    #: Photos: each image is resized so that its longer side is this many pixels, in
    #: training and prediction alike, instead of by ``scale`` (None: ``scale`` holds).
    #: A photo's subject fills about the same share of it whatever the camera's pixels.
    long_side: int | None = None
    tile_size: int = 128
    training: TrainingSettings = field(default_factory=TrainingSettings)
    value_map: dict[int, int | str] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    package_version: str = ""
    format_version: int = 1
    #: Areas (pixels at full resolution) of the training objects: percentiles 5, 50, 95
    #: (instance models only; what the model has seen).
    object_areas: list[float] = field(default_factory=list)
    #: One name per input channel, in order (napari layer names, when trained in napari).
    channel_names: list[str] = field(default_factory=list)
    #: Objects smaller than this (pixels, full resolution) are removed by default, and
    #: watershed seeds smaller than ``min_seed_size``.
    min_object_size: int = 0
    min_seed_size: int = 0
    #: Instance models: objects found at ``p(background) < 0.5`` are grown over the
    #: pixels where it is below this (None: not grown). The built-in nuclei model's was
    #: chosen on the images its training held out (benchmarks/train_builtin.py).
    object_extent: float | None = None
    #: Instance models: the class weights of training, undone on the probabilities at
    #: prediction (:class:`~napari_unet_cat.unet.PriorCorrection`); empty for none.
    class_prior_weights: list[float] = field(default_factory=list)
    #: A one-channel model that also reads colour (RGB, RGBA) images, as the mean of
    #: their colour channels: grayscale and equal-channel RGB images then both work.
    gray_input: bool = False
    #: What the model is for, how it was made and its limits, for people (the built-in
    #: models carry one; ``info`` prints it).
    card: dict[str, Any] = field(default_factory=dict)
    #: Each round of training on corrected results: its images, objects changed, seconds
    #: (:func:`napari_unet_cat.corrections.train_on_corrections`).
    corrections: list[dict[str, Any]] = field(default_factory=list)
    #: The voxel size of the training images, ``[Z, Y, X]`` in ``voxel_unit`` (empty when
    #: not known): what a 3D model's pooling was shaped for.
    voxel_size: list[float] = field(default_factory=list)
    voxel_unit: str = ""

    @property
    def ndim(self) -> int:
        """2: the network sees planes; 3: volumes."""
        return self.architecture.ndim

    @property
    def class_values(self) -> list[int]:
        return [c.value for c in self.classes]

    def scale_for(self, spatial: Sequence[int]) -> float:
        """The scale the network sees an image of ``spatial`` (..., Y, X) pixels at."""
        return working_scale(self.scale, self.long_side, spatial)

    @property
    def trained_voxel_size(self) -> tuple[float, ...] | None:
        """The ``(Z, Y, X)`` voxel size of the training stacks, or None when not known."""
        return tuple(self.voxel_size) if len(self.voxel_size) == 3 else None

    @property
    def is_instance_model(self) -> bool:
        """Trained on instance masks: predictions are objects by default."""
        return self.training.label_mode == "instances"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # JSON object keys are strings: keep maps as lists of pairs to round-trip ints.
        data["value_map"] = [[k if k == NONZERO else int(k), v] for k, v in self.value_map.items()]
        weights = self.training.class_weights
        data["training"]["class_weights"] = (
            None if weights is None else [[int(k), float(v)] for k, v in weights.items()]
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        training = dict(data.get("training", {}))
        if training.get("class_weights") is not None:
            training["class_weights"] = {int(k): float(v) for k, v in training["class_weights"]}
        return cls(
            architecture=_build(Architecture, data.get("architecture", {})),
            classes=[_build(ClassInfo, c) for c in data.get("classes", [])],
            normalization=_build(Normalization, data.get("normalization", {})),
            scale=float(data.get("scale", 1.0)),
            long_side=None if data.get("long_side") is None else int(data["long_side"]),
            tile_size=int(data.get("tile_size", 128)),
            training=_build(TrainingSettings, training),
            value_map={(k if k == NONZERO else int(k)): v for k, v in data.get("value_map", [])},
            history=list(data.get("history", [])),
            package_version=str(data.get("package_version", "")),
            format_version=int(data.get("format_version", 1)),
            object_areas=[float(a) for a in data.get("object_areas", [])],
            channel_names=[str(n) for n in data.get("channel_names", [])],
            class_prior_weights=[float(w) for w in data.get("class_prior_weights", [])],
            min_object_size=int(data.get("min_object_size", 0)),
            min_seed_size=int(data.get("min_seed_size", 0)),
            object_extent=None if data.get("object_extent") is None else float(data["object_extent"]),
            gray_input=bool(data.get("gray_input", False)),
            card=dict(data.get("card", {})),
            corrections=[dict(r) for r in data.get("corrections", [])],
            voxel_size=[float(v) for v in data.get("voxel_size", [])],
            voxel_unit=str(data.get("voxel_unit", "")),
        )


def working_scale(scale: float, long_side: int | None, spatial: Sequence[int]) -> float:
    """``scale``, or with ``long_side`` the scale that makes the longer of the last two
    sides of ``spatial`` that many pixels."""
    if long_side is None:
        return float(scale)
    return float(long_side) / max(1, max(int(n) for n in spatial[-2:]))


def _build(kind: type, values: dict[str, Any]) -> Any:
    """Build a dataclass from a dict, ignoring keys a newer version may have added."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


def z_pools_for(voxel_size: Sequence[float] | None, depth: int) -> int | None:
    """How many levels of a 3D U-Net should halve Z for voxels of ``voxel_size``
    (``[Z, Y, X]``): the first ``log2(Z / Y)`` levels (rounded) halve Y and X only, the
    deeper ones Z too, so that those see about isotropic voxels. None (every level) when the voxels are
    isotropic or their size is not known."""
    if not voxel_size or len(voxel_size) != 3 or min(voxel_size) <= 0:
        return None
    coarser = round(math.log2(voxel_size[0] / min(voxel_size[1:])))
    if coarser <= 0:
        return None
    return max(0, depth - coarser)


def architecture_from_preset(preset: str, *, n_channels: int, n_classes: int, **overrides: Any) -> Architecture:
    """Architecture of a named preset, with any field overridden."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    arch = Architecture(n_channels=n_channels, n_classes=n_classes, preset=preset, **values)
    arch.validate()
    return arch


def _parse_pairs(
    entries: list[str] | None, convert, what: str, example: str, keys: tuple[str, ...] = ()
) -> dict[int | str, Any]:
    """Parse ``VALUE=X`` strings into ``{VALUE: convert(X)}``; ``convert`` raises ValueError.
    Besides whole numbers, the words in ``keys`` are accepted as VALUE."""
    pairs: dict[int | str, Any] = {}
    for entry in entries or []:
        key, sep, target = entry.partition("=")
        try:
            if not sep:
                raise ValueError
            word = key.strip().lower()
            pairs[word if word in keys else int(key)] = convert(target.strip())
        except ValueError:
            raise InputError(f"cannot read {what} {entry!r}: expected {example}") from None
    return pairs


def parse_value_map(entries: list[str] | None) -> dict[int | str, int | str]:
    """Parse ``VALUE=CLASS`` or ``VALUE=ignore`` strings, e.g. ``255=1``; ``nonzero=1``
    maps every nonzero value (values given on their own still win)."""

    def target(text: str) -> int | str:
        return IGNORE if text.lower() == IGNORE else int(text)

    return _parse_pairs(
        entries,
        target,
        "value map entry",
        "VALUE=CLASS, VALUE=ignore or nonzero=CLASS, for example 255=1",
        keys=(NONZERO,),
    )


def parse_class_weights(entries: list[str] | None) -> dict[int, float] | None:
    """Parse ``VALUE=WEIGHT`` strings (e.g. ``1=5``); None when none are given."""

    def weight(text: str) -> float:
        value = float(text)
        if not 0 <= value < math.inf:
            raise ValueError(text)
        return value

    return _parse_pairs(entries, weight, "class weight", "VALUE=WEIGHT, for example 1=5") or None
