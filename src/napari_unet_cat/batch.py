"""Segment every image of a folder: the engine behind ``napari-unet-cat predict`` and the
napari folder widget."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import list_images, read_image, write_tiff

LOG_NAME = "napari-unet-cat-log.jsonl"
#: Images with more values than this are segmented straight into their (tiled) mask
#: file, band by band, instead of as a whole array in memory.
STREAM_PIXELS = 4096 * 4096
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


def classes_path(image_path: Path, output_dir: Path) -> Path:
    """Where the class map of ``image_path`` goes when objects are the main output."""
    return output_dir / f"{image_path.stem}_classes.tif"


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
    min_size: int = 0,
    split: bool = False,
    classes: bool = False,
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
        scheduler: Run on a Dask cluster: ``"local"`` for a ``LocalCluster`` on this
            machine, or a scheduler address (``tcp://host:8786``), whose workers must
            see the same files. Each worker process loads the model once. Needs the
            ``distributed`` package (``pip install "napari-unet-cat[cluster]"``).
        workers: Worker processes of the local cluster (default: one per 4 CPU cores,
            at least 1).
        instances: Objects instead of classes: ``watershed`` or ``components`` (see
            :meth:`~napari_unet_cat.segmenter.UNetModel.predict`). An instance model
            writes objects whatever this says.
        min_size: Objects smaller than this many pixels are removed.
        split: With ``components``, split touching blobs along distance-transform peaks.
        classes: When the masks are objects, also write the class map as
            ``<stem>_classes.tif``.

    Returns:
        A :class:`BatchReport`.
    """
    from .segmenter import UNetModel, load_model

    started = time.perf_counter()
    if not isinstance(model, UNetModel):
        model = load_model(model)
    objects = model._wants_objects(None, instances)
    model.object_maker(instances, min_size=min_size, split=split)  # bad settings fail here, before any file
    classes = bool(classes and objects)
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

    # Decide up front what each file needs, so that the next image to segment can be
    # read while the model works on the current one.
    plan: list[tuple[Path, str, str]] = []  # (path, "segment" | "skipped" | "failed", why)
    for path in images:
        mask_path, prob_path = output_paths(path, output_dir)
        if mask_path.resolve() in inputs or prob_path.resolve() in inputs:
            plan.append((path, "failed", f"its output {mask_path} would overwrite an input"))
        elif (
            mask_path.exists()
            and (prob_path.exists() or not probabilities)
            and (classes_path(path, output_dir).exists() or not classes)
            and not overwrite
        ):
            plan.append((path, "skipped", ""))
        else:
            plan.append((path, "segment", ""))
    finished = 0

    def record(path: Path, status: str, why: str, seconds: float) -> None:
        nonlocal finished
        {"done": report.done, "skipped": report.skipped}.get(status, []).append(path)
        if status == "failed":
            report.failed.append((path, why))
        _log(output_dir, path, status, why, seconds)
        finished += 1
        if progress is not None:
            progress(finished, len(images), path, status)

    def write(path: Path, result, t0: float) -> tuple[str, str, float]:
        try:
            _write_outputs(path, output_dir, result, options)
            return "done", "", time.perf_counter() - t0
        except Exception as err:
            return "failed", _reason(err), time.perf_counter() - t0

    options = {
        "tile_size": tile_size,
        "probabilities": probabilities,
        "test_time_augmentation": test_time_augmentation,
        "objects": objects,
        "instances": instances,
        "min_size": int(min_size),
        "split": bool(split),
        "classes": classes,
    }
    if scheduler is not None:
        _run_on_cluster(model, plan, output_dir, options, record, report, should_stop, scheduler, workers)
        report.seconds = time.perf_counter() - started
        return report

    to_read = iter([path for path, action, _ in plan if action == "segment"])
    with (
        ThreadPoolExecutor(1, thread_name_prefix="read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
    ):
        next_read = _submit_read(reader, to_read)
        pending = None  # (path, future of write)
        try:
            for path, action, why in plan:
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    break
                if action != "segment":
                    record(path, action, why, 0.0)
                    continue
                t0 = time.perf_counter()
                read = next_read
                next_read = _submit_read(reader, to_read)
                try:
                    image = read.result()
                    result = _predict_or_stream(model, image, path, output_dir, options)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # one bad file must not end the run
                    if pending is not None:
                        record(pending[0], *pending[1].result())
                        pending = None
                    record(path, "failed", _reason(err), time.perf_counter() - t0)
                    continue
                del image
                if pending is not None:
                    record(pending[0], *pending[1].result())
                    pending = None
                if result is None:
                    record(path, "done", "", time.perf_counter() - t0)
                else:
                    pending = (path, writer.submit(write, path, result, t0))
                del result
        finally:
            if pending is not None:
                record(pending[0], *pending[1].result())
            if next_read is not None:
                next_read.cancel()
    report.seconds = time.perf_counter() - started
    return report


def _run_on_cluster(model, plan, output_dir, options, record, report, should_stop, scheduler, workers) -> None:
    """Segment the planned files on a Dask cluster, recording outcomes as they come."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError(
            "running on a cluster needs the 'distributed' package: pip install \"napari-unet-cat[cluster]\""
        ) from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".napari-unet-cat-", dir=output_dir) as tmp:
        # Workers load the model from a file saved here, beside the outputs they write.
        model_file = model.save(Path(tmp) / "model.keras")
        if scheduler == "local":
            n = workers or max(1, (os.cpu_count() or 1) // 4)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            cluster, client = None, Client(scheduler)
        try:
            futures = {}
            for path, action, why in plan:
                if action != "segment":
                    record(path, action, why, 0.0)
                    continue
                future = client.submit(
                    segment_one, str(model_file), str(path), str(output_dir), options, key=f"segment-{path.name}"
                )
                futures[future] = path
            for future in as_completed(futures):
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    client.cancel(list(futures))
                    break
                path = futures[future]
                try:
                    status, why, seconds = future.result()
                except Exception as err:  # a worker died, or the task could not run
                    status, why, seconds = "failed", _reason(err), 0.0
                record(path, status, why, seconds)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


_WORKER_MODELS: dict[tuple[str, float], object] = {}


def segment_one(model_file: str, image_path: str, output_dir: str, options: dict) -> tuple[str, str, float]:
    """Segment one image into ``output_dir`` (runs on a cluster worker): ``(status, why,
    seconds)``. The model is loaded once per worker process and kept."""
    from .segmenter import load_model

    t0 = time.perf_counter()
    key = (model_file, os.stat(model_file).st_mtime)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = load_model(model_file)
    model = _WORKER_MODELS[key]
    path = Path(image_path)
    try:
        result = _predict_or_stream(model, read_image(path), path, Path(output_dir), options)
        if result is not None:
            _write_outputs(path, Path(output_dir), result, options)
        return "done", "", time.perf_counter() - t0
    except Exception as err:
        return "failed", _reason(err), time.perf_counter() - t0


def _predict_or_stream(model, image, path: Path, output_dir: Path, options: dict):
    """Predict ``image``: ``{"labels", "probabilities", "classes"}`` (what was asked for).

    A large one (without probabilities) goes straight into its mask file band by band,
    never whole in memory, and gives ``None``; its class map, when asked for beside its
    objects, is streamed in a second pass.
    """
    common = {"tile_size": options["tile_size"], "test_time_augmentation": options["test_time_augmentation"]}
    objects = {"instances": options["instances"], "min_size": options["min_size"], "split": options["split"]}
    output = "instances" if options["objects"] else "classes"
    if not options["probabilities"] and np.prod(np.shape(image), dtype=np.int64) > STREAM_PIXELS:
        model.predict_to_tiff(
            image, output_paths(path, output_dir)[0], name=str(path), output=output, **objects, **common
        )
        if options["classes"]:
            model.predict_to_tiff(image, classes_path(path, output_dir), name=str(path), output="classes", **common)
        return None
    wants_probs = options["probabilities"] or options["classes"]
    probs = model.predict(image, output="probabilities", name=str(path), **common) if wants_probs else None
    result = {"probabilities": probs if options["probabilities"] else None, "classes": None}
    if probs is None:
        result["labels"] = model.predict(image, output=output, name=str(path), **objects, **common)
        return result
    # One network pass serves every output.
    class_map = model.labels_from_probabilities(probs, output="classes")
    result["labels"] = (
        model.labels_from_probabilities(probs, output=output, **objects) if options["objects"] else class_map
    )
    if options["classes"]:
        result["classes"] = class_map
    return result


def _write_outputs(path: Path, output_dir: Path, result: dict, options: dict) -> None:
    """Write the mask (and the probabilities and class map) of ``path``, each atomically."""
    mask_path, prob_path = output_paths(path, output_dir)
    if result.get("probabilities") is not None:
        write_tiff(prob_path, result["probabilities"].astype(np.float32))
    if result.get("classes") is not None:
        write_tiff(classes_path(path, output_dir), result["classes"])
    write_tiff(mask_path, result["labels"])


def _submit_read(reader: ThreadPoolExecutor, paths) -> Future | None:
    path = next(paths, None)
    return None if path is None else reader.submit(read_image, path)


def _reason(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "out of memory (try a smaller --tile-size)"
    if isinstance(err, (InputError, OSError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _remove_leftovers(output_dir: Path) -> None:
    """Delete temporary files a killed run left behind (``.<stem>.<random>.tmp.tif``, and
    the model copy of a cluster run);
    one output folder takes one run at a time."""
    for leftover in output_dir.glob(".*.tmp.tif"):
        with contextlib.suppress(OSError):  # never fatal
            leftover.unlink()
    for leftover in output_dir.glob(".napari-unet-cat-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _log(output_dir: Path, path: Path, status: str, why: str, seconds: float) -> None:
    record = {"file": str(path), "status": status, "seconds": round(seconds, 3), "time": time.time()}
    if why:
        record["error"] = why
    try:
        with open(output_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass  # the log is a convenience; the masks are the result
