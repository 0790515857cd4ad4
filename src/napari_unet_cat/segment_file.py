"""One image of a folder: segmented into its mask file (and probabilities and class map).

:func:`~napari_unet_cat.batch.segment_folder` runs this for each file, on this machine or
on a cluster's workers (:mod:`~napari_unet_cat.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError
from .io import file_stem, write_tiff
from .measurements import measure, write_csv
from .package_model import is_package_model
from .volume_modes import resolve_volume_mode

#: Images with more values than this are segmented straight into their (tiled) mask
#: file, band by band, instead of as a whole array in memory.
STREAM_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class SegmentOptions:
    """How each file of a folder is segmented and what is written for it (see
    :func:`~napari_unet_cat.batch.segment_folder` for each setting)."""

    tile_size: int | None = None
    probabilities: bool = False
    test_time_augmentation: bool = False
    #: Write objects (one label each) rather than classes.
    objects: bool = False
    instances: str | None = None
    min_size: int | None = None
    split: bool = False
    classes: bool = False
    #: The model's fingerprint (what cluster workers key their loaded models by).
    fingerprint: str = ""
    axes: str | None = None
    auto_scale: bool = False
    #: A bioimage.io package may run its own code (see :mod:`~napari_unet_cat.package_model`).
    trust_package_code: bool = False
    #: Also write ``<stem>_objects.csv``: a row of measurements per object.
    measure: bool = False
    #: The pixel size along (Z,) Y, X for the measurements (None: the file's own, if any).
    pixel_size: tuple[float, ...] | None = None
    unit: str = "um"
    #: How a 2D model answers a z-stack (:mod:`~napari_unet_cat.volume_modes`; None: by its axes).
    volume: str | None = None


def output_paths(image_path: Path, output_dir: Path) -> tuple[Path, Path]:
    """Where the mask and the probabilities of ``image_path`` go (``cells.ome.tif`` gives
    ``cells.tif``)."""
    stem = file_stem(image_path)
    return output_dir / f"{stem}.tif", output_dir / f"{stem}_probabilities.tif"


def classes_path(image_path: Path, output_dir: Path) -> Path:
    """Where the class map of ``image_path`` goes when objects are the main output."""
    return output_dir / f"{file_stem(image_path)}_classes.tif"


def predict_or_stream(model, image, path: Path, output_dir: Path, options: SegmentOptions, notes: dict | None = None):
    """Predict ``image``, an ``(array, axes)`` pair from :func:`read_image_with_axes`:
    ``{"labels", "probabilities", "classes"}`` (what was asked for), with ``"objects"``,
    their measurements, when ``options.measure``. ``notes`` receives what the log should
    say (the scale used, with ``auto_scale``).

    A large one (without probabilities) goes straight into its mask file band by band,
    never whole in memory, and gives ``None`` (its measurements, read back from the mask
    file, are written here); its class map, when asked for beside its objects, is
    streamed in a second pass.
    """
    result = _predict(model, image, path, output_dir, options, notes)
    if not options.measure:
        return result
    array, axes = image
    spatial = 3 if _answers_in_3d(model, axes, options) else 2
    if result is None:
        labels = tifffile.imread(output_paths(path, output_dir)[0])
        write_csv(objects_path(path, output_dir), measure_labels(labels, array, path, model, options, spatial))
        return None
    labels = result["outputs"][result["main"]] if "outputs" in result else result["labels"]
    result["objects"] = measure_labels(labels, array, path, model, options, spatial)
    return result


def _answers_in_3d(model, axes: str | None, options: SegmentOptions) -> bool:
    """Whether the mask's objects are 3D: a volume model's, or a 2D model's in a volume mode."""
    if is_package_model(model):
        return model.ndim == 3
    return model.config.ndim == 3 or resolve_volume_mode(model, axes, options.volume) != "planes"


def _predict(model, image, path: Path, output_dir: Path, options: SegmentOptions, notes: dict | None):
    """What :func:`predict_or_stream` predicts, before any measurement."""
    image, axes = image
    if is_package_model(model):
        return {"outputs": model.predict(image, axes=axes, name=str(path)), "main": main_output(model)}
    if options.auto_scale:
        estimate = model.estimate_scale(image, axes=axes)
        if estimate is not None:
            model = model.at_scale(round(estimate, 3))
        if notes is not None:
            # Too few objects to judge by: the model's own scale.
            notes["scale"] = model.config.scale
            notes["scale_estimated"] = estimate is not None
    common = {
        "tile_size": options.tile_size,
        "test_time_augmentation": options.test_time_augmentation,
        "axes": axes,
    }
    objects = {"instances": options.instances, "min_size": options.min_size, "split": options.split}
    output = "instances" if options.objects else "classes"
    mode = resolve_volume_mode(model, axes, options.volume)
    if mode != "planes":
        return _predict_volumes(model, image, axes, path, options, mode, output, common)
    if not options.probabilities and np.prod(np.shape(image), dtype=np.int64) > STREAM_PIXELS:
        model.predict_to_tiff(
            image, output_paths(path, output_dir)[0], name=str(path), output=output, **objects, **common
        )
        if options.classes:
            model.predict_to_tiff(image, classes_path(path, output_dir), name=str(path), output="classes", **common)
        return None
    wants_probs = options.probabilities or options.classes
    probs = model.predict(image, output="probabilities", name=str(path), **common) if wants_probs else None
    result = {"probabilities": probs if options.probabilities else None, "classes": None}
    if probs is None:
        result["labels"] = model.predict(image, output=output, name=str(path), **objects, **common)
        return result
    # One network pass serves every output.
    class_map = model.labels_from_probabilities(probs, output="classes")
    result["labels"] = (
        model.labels_from_probabilities(probs, output=output, **objects) if options.objects else class_map
    )
    if options.classes:
        result["classes"] = class_map
    return result


def _predict_volumes(model, image, axes, path: Path, options: SegmentOptions, mode: str, output: str, common: dict):
    """What :func:`_predict` gives for the volumes of a z-stack by a 2D model in ``mode``."""
    from .volume_modes import segment_stack

    common = {k: v for k, v in common.items() if k != "axes"}
    if options.split:
        raise InputError("--split applies to plane objects; volume modes find objects in 3D")
    found = segment_stack(
        model, image, axes, mode=mode, voxel_size=_voxel_size(path, options, model), output=output,
        probabilities=options.probabilities or options.classes, instances=options.instances,
        min_size=options.min_size, **common,
    )  # fmt: skip
    probs = found["probabilities"]
    result = {"labels": found["labels"], "probabilities": probs if options.probabilities else None, "classes": None}
    if options.classes:
        if probs is None:
            result["classes"] = segment_stack(model, image, axes, mode="planes", output="classes", **common)["labels"]
        else:
            result["classes"] = model.labels_from_probabilities(probs, output="classes")
    return result


def _voxel_size(path: Path, options: SegmentOptions, model) -> tuple[float, ...] | None:
    """The voxel size ``(Z, Y, X)``: given, else the file's own, else the model's training images'."""
    size, _ = _pixel_size(path, options, 3)
    return model.config.trained_voxel_size if size is None else size


def main_output(model) -> str:
    """A package's main output, written as ``<stem>.tif``: its first label output, or
    else its first output."""
    labels = [o for o in model.output_ids if model.output_is_labels(o)]
    return (labels or model.output_ids)[0]


def objects_path(image_path: Path, output_dir: Path) -> Path:
    """Where the measurements of the objects of ``image_path`` go."""
    return output_dir / f"{file_stem(image_path)}_objects.csv"


def measure_labels(labels, image, path: Path, model, options: SegmentOptions, spatial: int = 2):
    """The measurements of a mask of ``image`` (see :func:`~napari_unet_cat.measurements.measure`):
    objects as they are numbered, or a class map's connected parts; in 3D (``spatial``
    3) for 3D objects, else plane by plane with a ``plane`` column (a stack of planes, or
    of time points). The pixel size is ``options.pixel_size``, else the file's own."""
    labels = np.asarray(labels)
    channels = _channels_last(image, labels.shape)
    classes = not (options.objects or getattr(model, "is_instance_model", False))
    if is_package_model(model):
        classes = not model.output_is_labels(main_output(model)) or labels.max(initial=0) <= 1
    size, unit = _pixel_size(path, options, spatial)
    planes = list(np.ndindex(*labels.shape[: labels.ndim - spatial]))
    tables = []
    for index in planes:
        values = None if channels is None else channels[index]
        table = measure(labels[index], values, pixel_size=size, unit=unit, classes=classes, name=str(path))
        if len(planes) > 1:
            table = {"plane": np.full(len(table["label"]), "/".join(map(str, index))), **table}
        tables.append(table)
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


def _channels_last(image, shape: tuple[int, ...]):
    """The image's values with the mask's shape plus a last axis of channels (None when
    they do not line up: an image the model resized, for example)."""
    values = np.asarray(image)
    if values.shape == shape:
        return values[..., None]
    if values.ndim == len(shape) + 1 and values.shape[:-1] == shape:
        return values
    return None


def _pixel_size(path: Path, options: SegmentOptions, spatial: int):
    """``(pixel size along the mask's spatial axes, unit)``, or ``(None, unit)``."""
    from .io import read_spatial_size

    if options.pixel_size is not None:
        size = tuple(options.pixel_size)
        return (size[-spatial:] if len(size) >= spatial else None), options.unit
    return read_spatial_size(path, spatial) or (None, options.unit)


def write_outputs(path: Path, output_dir: Path, result: dict) -> None:
    """Write the mask (and the probabilities and class map) of ``path``, each atomically;
    a package's outputs: its main one as ``<stem>.tif``, the others ``<stem>_<output>.tif``."""
    mask_path, prob_path = output_paths(path, output_dir)
    if result.get("objects") is not None:
        write_csv(objects_path(path, output_dir), result["objects"])
    if "outputs" in result:
        for output_id, values in result["outputs"].items():
            target = mask_path if output_id == result["main"] else output_dir / f"{file_stem(path)}_{output_id}.tif"
            write_tiff(target, values)
        return
    if result.get("probabilities") is not None:
        write_tiff(prob_path, result["probabilities"].astype(np.float32))
    if result.get("classes") is not None:
        write_tiff(classes_path(path, output_dir), result["classes"])
    write_tiff(mask_path, result["labels"])


def failure_reason(err: BaseException) -> str:
    """How a file's failure is told in the report and the log."""
    if isinstance(err, MemoryError):
        return "out of memory (try a smaller --tile-size)"
    if isinstance(err, (InputError, OSError)):
        return str(err)
    return f"{type(err).__name__}: {err}"
