"""One image of a folder: segmented into its mask file (and probabilities and class map).

:func:`~napari_unet_cat.batch.segment_folder` runs this for each file, on this machine or
on a cluster's workers (:mod:`~napari_unet_cat.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import file_stem, write_tiff

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
    ``{"labels", "probabilities", "classes"}`` (what was asked for). ``notes`` receives
    what the log should say (the scale used, with ``auto_scale``).

    A large one (without probabilities) goes straight into its mask file band by band,
    never whole in memory, and gives ``None``; its class map, when asked for beside its
    objects, is streamed in a second pass.
    """
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


def is_package_model(model) -> bool:
    """Whether ``model`` is a bioimage.io package of another tool."""
    from .package_model import PackageModel

    return isinstance(model, PackageModel)


def main_output(model) -> str:
    """A package's main output, written as ``<stem>.tif``: its first label output, or
    else its first output."""
    labels = [o for o in model.output_ids if model.output_is_labels(o)]
    return (labels or model.output_ids)[0]


def write_outputs(path: Path, output_dir: Path, result: dict) -> None:
    """Write the mask (and the probabilities and class map) of ``path``, each atomically;
    a package's outputs: its main one as ``<stem>.tif``, the others ``<stem>_<output>.tif``."""
    mask_path, prob_path = output_paths(path, output_dir)
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
