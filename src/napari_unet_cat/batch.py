"""Segment every image of a folder: the engine behind ``napari-unet-cat predict`` and the
napari folder widget.

Each file is segmented by :mod:`~napari_unet_cat.segment_file`; the folder's lock and log
are :mod:`~napari_unet_cat.folder_state`; a Dask cluster's run is :mod:`~napari_unet_cat.cluster`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .folder_state import LOG_NAME, FolderLock, check_same_model, log_outcome, remove_leftovers
from .io import list_images, read_image_with_axes
from .measurements import write_csv
from .segment_file import (
    SegmentOptions,
    classes_path,
    failure_reason,
    objects_path,
    output_paths,
    predict_or_stream,
    write_outputs,
)
from .volume_modes import check_volume_mode

#: The folder's summary of the measurements: one row per image.
SUMMARY_NAME = "objects.csv"

__all__ = ["LOG_NAME", "BatchReport", "FileProgress", "SegmentOptions", "segment_folder"]

FileProgress = Callable[[int, int, Path, str], None]


@dataclass
class BatchReport:
    """What a folder run did: files written, skipped (already done) and failed (with why)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled

    def summary(self) -> str:
        text = (
            f"{len(self.done)} segmented, {len(self.skipped)} skipped (already done), "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        )
        if self.cancelled:
            text += " (cancelled)"
        for path, why in self.failed:
            text += f"\n  failed: {path}: {why}"
        return text


def _check_distinct_outputs(images: list[Path], output_dir: Path) -> None:
    """Two inputs of one stem (``a.tif``, ``a.png``) would write one mask: stop first."""
    seen: dict[Path, Path] = {}
    for path in images:
        mask = output_paths(path, output_dir)[0]
        if mask in seen:
            raise InputError(
                f"{seen[mask].name} and {path.name} in {path.parent} would both be segmented into {mask}: "
                "rename one of them, or move it to another folder"
            )
        seen[mask] = path


def segment_folder(
    model,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    tile_size: int | None = None,
    probabilities: bool = False,
    test_time_augmentation: bool = False,
    overwrite: bool = False,
    progress: FileProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    instances: str | None = None,
    min_size: int | None = None,
    split: bool = False,
    classes: bool = False,
    axes: str | None = None,
    auto_scale: bool = False,
    trust_package_code: bool = False,
    measure: bool = False,
    pixel_size: tuple[float, ...] | None = None,
    volume: str | None = None,
) -> BatchReport:
    """Segment every image in ``input_dir`` into ``output_dir`` as ``<stem>.tif``.

    A file that cannot be read or segmented is recorded in the report and the run goes
    on. Outputs are written atomically (temporary file, then rename), so each one is
    complete or absent; outputs already present are skipped unless ``overwrite``.
    Each file's outcome is appended to ``output_dir/napari-unet-cat-log.jsonl``.

    Args:
        model: A :class:`~napari_unet_cat.segmenter.UNetModel`, a model file, a built-in
            model's name, or a bioimage.io package (ours, or any other tool's).
        input_dir: Folder of images (TIFF, PNG, JPEG...; not searched recursively).
        output_dir: Folder for the masks; created if missing; must differ from ``input_dir``.
        tile_size: Tile side for prediction (default: automatic).
        probabilities: Also write ``<stem>_probabilities.tif`` (float32, classes last).
        test_time_augmentation: Average over flips and 90-degree rotations (8x slower).
        overwrite: Redo images whose mask already exists.
        progress: Called with ``(index, total, path, status)`` after each file (status
            ``done``, ``skipped`` or ``failed``).
        should_stop: Polled between files; return True to cancel the rest.
        scheduler: Run on a Dask cluster (:mod:`~napari_unet_cat.cluster`): ``"local"``,
            or a scheduler's address (``tcp://host:8786``) whose workers see the files.
        workers: Worker processes of the local cluster (default: one per GPU, else one
            per 4 CPU cores).
        instances: Objects instead of classes: ``watershed`` or ``components`` (see
            :meth:`~napari_unet_cat.segmenter.UNetModel.predict`; an instance model's are).
        min_size: Objects smaller than this many pixels are removed (default: the model's).
        split: With ``components``, split touching blobs along distance-transform peaks.
        classes: When the masks are objects, also write ``<stem>_classes.tif``.
        axes: The images' axes (``CYX``, ``TZCYX``...), overruling what each file says;
            default: read from the file (ImageJ, OME-TIFF, OME-Zarr) or guessed.
        auto_scale: For an instance model: segment each image at the scale that
            :meth:`~napari_unet_cat.segmenter.UNetModel.estimate_scale` finds (in the log).
        trust_package_code: A bioimage.io package of another tool may run the Python
            code it carries (see :mod:`~napari_unet_cat.package_model`). Such a package
            writes its main output as ``<stem>.tif``, the others ``<stem>_<output>.tif``.
        measure: Also write ``<stem>_objects.csv`` (a row per object: see
            :func:`~napari_unet_cat.measurements.measure`) and the folder's ``objects.csv``
            (a row per image), in ``pixel_size`` units (µm; default: each file's own).
            ``pixel_size`` (``(Y, X)`` or ``(Z, Y, X)``) serves the ``three-axes`` volume mode too.
        volume: How a 2D model answers a z-stack (:mod:`~napari_unet_cat.volume_modes`;
            default: by each file's axes, see :func:`~napari_unet_cat.volume_modes.resolve_volume_mode`).

    Returns:
        A :class:`BatchReport`.
    """
    from .loading import resolve_model

    started = time.perf_counter()
    model = resolve_model(model, trust_package_code=trust_package_code)
    objects = _check_model_settings(model, instances, min_size, split, auto_scale)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    images = list_images(input_dir)
    _check_distinct_outputs(images, output_dir)
    _prepare_output_folder(input_dir, output_dir)
    with FolderLock(output_dir):
        options = SegmentOptions(
            tile_size=tile_size, probabilities=probabilities, test_time_augmentation=test_time_augmentation,
            objects=objects, instances=instances, min_size=None if min_size is None else int(min_size),
            split=bool(split), classes=bool(classes and objects), fingerprint=model.fingerprint(), axes=axes,
            auto_scale=bool(auto_scale), trust_package_code=bool(trust_package_code), measure=bool(measure),
            pixel_size=None if pixel_size is None else tuple(float(v) for v in pixel_size),
            volume=None if volume is None else check_volume_mode(volume),
        )  # fmt: skip
        check_same_model(output_dir, options.fingerprint, overwrite)
        remove_leftovers(output_dir)
        run = _FolderRun(model, images, output_dir, options, progress)
        run.go(_plan(images, output_dir, options, overwrite), should_stop, scheduler, workers)
        if measure:
            write_summary(images, output_dir)
        run.report.seconds = time.perf_counter() - started
        return run.report


def write_summary(images: list[Path], output_dir: Path) -> Path:
    """The folder's ``objects.csv``: a row per image whose ``<stem>_objects.csv`` exists
    (its count and sizes), made anew from those files, so that a run resumed after a kill
    summarizes every image, those of the earlier run included."""
    from .measurements import read_csv, summarize

    rows = []
    for path in images:
        table_path = objects_path(path, output_dir)
        if table_path.exists():
            rows.append(summarize(path.name, read_csv(table_path)))
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["image", "objects"]
    table = {c: np.asarray([row.get(c, "") for row in rows], dtype=object) for c in columns}
    return write_csv(output_dir / SUMMARY_NAME, table)


def _check_model_settings(model, instances, min_size, split: bool, auto_scale: bool) -> bool:
    """Whether the masks are objects; bad settings fail here, before any file is read."""
    from .package_model import is_package_model

    if is_package_model(model):
        given = [n for n, v in (("instances", instances), ("min_size", min_size), ("split", split)) if v]
        if auto_scale:
            given.append("auto_scale")
        if given:
            raise InputError(
                f"{', '.join(given)} apply to this plugin's models; {model.path.name} is a bioimage.io package that "
                "makes its own outputs"
            )
        return False
    objects = model.wants_objects(None, instances)
    model.object_maker(instances, min_size=min_size, split=split)
    if auto_scale and not model.knows_object_sizes:
        raise InputError(
            "an automatic scale needs a model trained on instance masks (it compares the sizes of the objects "
            "found with the training objects'); give a scale instead"
        )
    return objects


def _prepare_output_folder(input_dir: Path, output_dir: Path) -> None:
    """Create ``output_dir`` (not the input folder) and check that it can be written."""
    if output_dir.exists() and output_dir.resolve() == input_dir.resolve():
        raise InputError(
            f"the output folder {output_dir} is the input folder: choose another, inputs are never overwritten"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the output folder {output_dir}: {err}") from None
    if not os.access(output_dir, os.W_OK):
        raise InputError(f"the output folder {output_dir} is not writable")


def _plan(
    images: list[Path], output_dir: Path, options: SegmentOptions, overwrite: bool
) -> list[tuple[Path, str, str]]:
    """What each file needs, decided up front (so that the next image to segment can be
    read while the model works on the current one): ``(path, action, why)`` with action
    ``segment``, ``skipped`` (its outputs are there) or ``failed``."""
    inputs = {p.resolve() for p in images}
    plan = []
    for path in images:
        mask_path, prob_path = output_paths(path, output_dir)
        if mask_path.resolve() in inputs or prob_path.resolve() in inputs:
            plan.append((path, "failed", f"its output {mask_path} would overwrite an input"))
        elif (
            mask_path.exists()
            and (prob_path.exists() or not options.probabilities)
            and (classes_path(path, output_dir).exists() or not options.classes)
            and (objects_path(path, output_dir).exists() or not options.measure)
            and not overwrite
        ):
            plan.append((path, "skipped", ""))
        else:
            plan.append((path, "segment", ""))
    return plan


class _FolderRun:
    """One run over a folder's planned files, under the folder's lock: records each
    outcome in the report and the log, and segments on this machine with the next image
    read and the last mask written beside the model's work."""

    def __init__(self, model, images: list[Path], output_dir: Path, options: SegmentOptions, progress):
        self.model, self.output_dir, self.options, self.progress = model, output_dir, options, progress
        self.total = len(images)
        self.finished = 0
        self.report = BatchReport()

    def record(self, path: Path, status: str, why: str, seconds: float, notes: dict | None = None) -> None:
        {"done": self.report.done, "skipped": self.report.skipped}.get(status, []).append(path)
        if status == "failed":
            self.report.failed.append((path, why))
        log_outcome(
            self.output_dir, path, status, why, seconds, self.options.fingerprint, notes if status == "done" else None
        )
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.total, path, status)

    def _write(self, path: Path, result, t0: float) -> tuple[str, str, float]:
        try:
            write_outputs(path, self.output_dir, result)
            return "done", "", time.perf_counter() - t0
        except Exception as err:
            return "failed", failure_reason(err), time.perf_counter() - t0

    def go(self, plan, should_stop, scheduler: str | None, workers: int | None) -> None:
        """Segment the planned files here, or on a Dask cluster given a ``scheduler``."""
        if scheduler is None:
            self.here(plan, should_stop)
            return
        from .cluster import run_on_cluster

        run_on_cluster(
            self.model, plan, self.output_dir, self.options, self.record, self.report, should_stop, scheduler, workers
        )

    def here(self, plan, should_stop) -> None:
        """Segment the planned files on this machine, in order."""
        to_read = iter([path for path, action, _ in plan if action == "segment"])
        with (
            ThreadPoolExecutor(1, thread_name_prefix="read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
        ):
            next_read = _submit_read(reader, to_read, self.options.axes)
            pending = None  # (path, future of write, notes)
            try:
                for path, action, why in plan:
                    if should_stop is not None and should_stop():
                        self.report.cancelled = True
                        break
                    if action != "segment":
                        self.record(path, action, why, 0.0)
                        continue
                    t0 = time.perf_counter()
                    read, next_read = next_read, _submit_read(reader, to_read, self.options.axes)
                    notes: dict = {}
                    try:
                        result = predict_or_stream(
                            self.model, read.result(), path, self.output_dir, self.options, notes
                        )
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as err:  # one bad file must not end the run
                        pending = self._settle(pending)
                        self.record(path, "failed", failure_reason(err), time.perf_counter() - t0)
                        continue
                    pending = self._settle(pending)
                    if result is None:
                        self.record(path, "done", "", time.perf_counter() - t0, notes)
                    else:
                        pending = (path, writer.submit(self._write, path, result, t0), notes)
                    del result
            finally:
                self._settle(pending)
                if next_read is not None:
                    next_read.cancel()

    def _settle(self, pending) -> None:
        """Wait for the mask being written, and record its outcome."""
        if pending is not None:
            path, future, notes = pending
            self.record(path, *future.result(), notes)


def _submit_read(reader: ThreadPoolExecutor, paths, axes: str | None = None) -> Future | None:
    path = next(paths, None)
    return None if path is None else reader.submit(read_image_with_axes, path, axes)
