"""Segment every image of a folder: the engine behind ``napari-unet-cat predict`` and the
napari folder widget."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import list_images, read_image, write_tiff

LOG_NAME = "napari-unet-cat-log.jsonl"
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


def output_paths(image_path: Path, output_dir: Path) -> tuple[Path, Path]:
    """Where the mask and the probabilities of ``image_path`` go."""
    return output_dir / f"{image_path.stem}.tif", output_dir / f"{image_path.stem}_probabilities.tif"


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
) -> BatchReport:
    """Segment every image in ``input_dir`` into ``output_dir`` as ``<stem>.tif``.

    A file that cannot be read or segmented is recorded in the report and the run goes
    on. Outputs are written atomically (temporary file, then rename), so each one is
    complete or absent; outputs already present are skipped unless ``overwrite``.
    Each file's outcome is appended to ``output_dir/napari-unet-cat-log.jsonl``.

    Args:
        model: A :class:`~napari_unet_cat.segmenter.UNetModel` or a model file path.
        input_dir: Folder of images (TIFF, PNG, JPEG...; not searched recursively).
        output_dir: Folder for the masks; created if missing; must differ from ``input_dir``.
        tile_size: Tile side for prediction (default: automatic).
        probabilities: Also write ``<stem>_probabilities.tif`` (float32, classes last).
        test_time_augmentation: Average over flips and 90-degree rotations (8x slower).
        overwrite: Redo images whose mask already exists.
        progress: Called with ``(index, total, path, status)`` after each file, where
            status is ``done``, ``skipped`` or ``failed``.
        should_stop: Polled between files; return True to cancel the rest.

    Returns:
        A :class:`BatchReport`.
    """
    from .segmenter import UNetModel, load_model

    started = time.perf_counter()
    if not isinstance(model, UNetModel):
        model = load_model(model)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    images = list_images(input_dir)
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
    _remove_leftovers(output_dir)
    report = BatchReport()
    inputs = {p.resolve() for p in images}
    for i, path in enumerate(images):
        if should_stop is not None and should_stop():
            report.cancelled = True
            break
        mask_path, prob_path = output_paths(path, output_dir)
        t0 = time.perf_counter()
        if mask_path.resolve() in inputs or prob_path.resolve() in inputs:
            status, why = "failed", f"its output {mask_path} would overwrite an input"
        elif mask_path.exists() and (prob_path.exists() or not probabilities) and not overwrite:
            status, why = "skipped", ""
        else:
            try:
                image = read_image(path)
                result = model.predict(
                    image,
                    tile_size=tile_size,
                    return_probabilities=probabilities,
                    test_time_augmentation=test_time_augmentation,
                    name=str(path),
                )
                if probabilities:
                    labels, probs = result
                    write_tiff(prob_path, probs.astype(np.float32))
                else:
                    labels = result
                write_tiff(mask_path, labels)
                status, why = "done", ""
            except (KeyboardInterrupt, SystemExit):
                raise
            except MemoryError:
                status, why = "failed", "out of memory (try a smaller --tile-size)"
            except Exception as err:  # one bad file must not end the run
                status, why = (
                    "failed",
                    str(err) if isinstance(err, (InputError, OSError)) else f"{type(err).__name__}: {err}",
                )
        if status == "done":
            report.done.append(path)
        elif status == "skipped":
            report.skipped.append(path)
        else:
            report.failed.append((path, why))
        _log(output_dir, path, status, why, time.perf_counter() - t0)
        if progress is not None:
            progress(i + 1, len(images), path, status)
    report.seconds = time.perf_counter() - started
    return report


def _remove_leftovers(output_dir: Path) -> None:
    """Delete temporary files a killed run left behind (``.<stem>.<random>.tmp.tif``);
    one output folder takes one run at a time."""
    for leftover in output_dir.glob(".*.tmp.tif"):
        with contextlib.suppress(OSError):  # never fatal
            leftover.unlink()


def _log(output_dir: Path, path: Path, status: str, why: str, seconds: float) -> None:
    record = {"file": str(path), "status": status, "seconds": round(seconds, 3), "time": time.time()}
    if why:
        record["error"] = why
    try:
        with open(output_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass  # the log is a convenience; the masks are the result
