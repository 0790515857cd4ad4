"""Segment every image of a folder: the engine behind ``napari-unet-cat predict`` and the
napari folder widget."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import file_stem, list_images, read_image_with_axes, write_tiff

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
    """Where the mask and the probabilities of ``image_path`` go (``cells.ome.tif`` gives
    ``cells.tif``)."""
    stem = file_stem(image_path)
    return output_dir / f"{stem}.tif", output_dir / f"{stem}_probabilities.tif"


def classes_path(image_path: Path, output_dir: Path) -> Path:
    """Where the class map of ``image_path`` goes when objects are the main output."""
    return output_dir / f"{file_stem(image_path)}_classes.tif"


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


class FolderLock:
    """One run at a time per output folder: a lock file holding the run's host and pid.

    A second run stops with a message that names the first; a lock left by a killed run
    on this machine (its process is gone) is taken over.
    """

    NAME = ".napari-unet-cat.lock"

    def __init__(self, folder: Path):
        self.path = Path(folder) / self.NAME
        self.held = False

    def __enter__(self) -> FolderLock:
        import socket

        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._alive(owner, me["host"]):
                    raise InputError(
                        f"another run (process {owner.get('pid')} on {owner.get('host')}) is writing into "
                        f"{self.path.parent}; wait for it to end or choose another output folder (if no run is "
                        f"going, delete {self.path})"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its run was killed
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise InputError(f"cannot take the lock {self.path}: another run keeps taking it")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: half-written by a killed run

    @staticmethod
    def _alive(owner: dict, host: str) -> bool:
        if owner.get("host") != host:
            return True  # another machine's run: it cannot be checked from here
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True

    def __exit__(self, *exc) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.held = False


def _check_same_model(output_dir: Path, fingerprint: str, overwrite: bool) -> None:
    """Refuse to mix two models' masks in one folder: a re-run with another model needs
    ``overwrite``. Logs of older versions (no fingerprint) are not checked."""
    if overwrite:
        return
    log = output_dir / LOG_NAME
    if not log.exists():
        return
    others = set()
    with contextlib.suppress(OSError), open(log, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed run
            if record.get("status") == "done" and record.get("model") not in (None, fingerprint):
                others.add(record["model"])
    if others:
        raise InputError(
            f"the masks in {output_dir} were made by another model ({', '.join(sorted(others))}; this one is "
            f"{fingerprint}): use --overwrite (overwrite=True) to redo them with this model, or another output folder"
        )


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
        workers: Worker processes of the local cluster (default: one per GPU, each worker
            on its own GPU; without GPUs one per 4 CPU cores, at least 1).
        instances: Objects instead of classes: ``watershed`` or ``components`` (see
            :meth:`~napari_unet_cat.segmenter.UNetModel.predict`). An instance model
            writes objects whatever this says.
        min_size: Objects smaller than this many pixels are removed (default: the
            model's own; see :meth:`~napari_unet_cat.segmenter.UNetModel.predict`).
        split: With ``components``, split touching blobs along distance-transform peaks.
        classes: When the masks are objects, also write the class map as
            ``<stem>_classes.tif``.
        axes: The images' axes (``CYX``, ``TZCYX``...), overruling what each file says;
            default: read from the file (ImageJ, OME-TIFF, OME-Zarr) or guessed.
        auto_scale: For an instance model: segment each image at the scale at which its
            objects look as large as the training objects
            (:meth:`~napari_unet_cat.segmenter.UNetModel.estimate_scale`, one more
            network pass over at most 1024x1024 pixels); the scale used is in the log.

    Returns:
        A :class:`BatchReport`.
    """
    from .model_file import load_model
    from .segmenter import UNetModel

    started = time.perf_counter()
    if not isinstance(model, UNetModel):
        model = load_model(model)
    objects = model._wants_objects(None, instances)
    model.object_maker(instances, min_size=min_size, split=split)  # bad settings fail here, before any file
    if auto_scale and not model.knows_object_sizes:  # before any file, not at each one
        raise InputError(
            "an automatic scale needs a model trained on instance masks (it compares the sizes of the objects "
            "found with the training objects'); give a scale instead"
        )
    classes = bool(classes and objects)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    images = list_images(input_dir)
    _check_distinct_outputs(images, output_dir)
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
    with FolderLock(output_dir):
        fingerprint = model.fingerprint()
        _check_same_model(output_dir, fingerprint, overwrite)
        _remove_leftovers(output_dir)
        return _run(
            model,
            images,
            output_dir,
            fingerprint,
            started,
            probabilities=probabilities,
            overwrite=overwrite,
            classes=classes,
            progress=progress,
            should_stop=should_stop,
            scheduler=scheduler,
            workers=workers,
            options={
                "tile_size": tile_size,
                "probabilities": probabilities,
                "test_time_augmentation": test_time_augmentation,
                "objects": objects,
                "instances": instances,
                "min_size": None if min_size is None else int(min_size),
                "split": bool(split),
                "classes": classes,
                "fingerprint": fingerprint,
                "axes": axes,
                "auto_scale": bool(auto_scale),
            },
        )


def _run(
    model,
    images,
    output_dir,
    fingerprint,
    started,
    *,
    probabilities,
    overwrite,
    classes,
    progress,
    should_stop,
    scheduler,
    workers,
    options,
) -> BatchReport:
    """The run itself, under the folder's lock (see :func:`segment_folder`)."""
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

    def record(path: Path, status: str, why: str, seconds: float, notes: dict | None = None) -> None:
        nonlocal finished
        {"done": report.done, "skipped": report.skipped}.get(status, []).append(path)
        if status == "failed":
            report.failed.append((path, why))
        _log(output_dir, path, status, why, seconds, fingerprint, notes if status == "done" else None)
        finished += 1
        if progress is not None:
            progress(finished, len(images), path, status)

    def write(path: Path, result, t0: float) -> tuple[str, str, float]:
        try:
            _write_outputs(path, output_dir, result, options)
            return "done", "", time.perf_counter() - t0
        except Exception as err:
            return "failed", _reason(err), time.perf_counter() - t0

    if scheduler is not None:
        _run_on_cluster(model, plan, output_dir, options, record, report, should_stop, scheduler, workers)
        report.seconds = time.perf_counter() - started
        return report

    to_read = iter([path for path, action, _ in plan if action == "segment"])
    with (
        ThreadPoolExecutor(1, thread_name_prefix="read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
    ):
        next_read = _submit_read(reader, to_read, options.get("axes"))
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
                next_read = _submit_read(reader, to_read, options.get("axes"))
                notes: dict = {}
                try:
                    image = read.result()
                    result = _predict_or_stream(model, image, path, output_dir, options, notes)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # one bad file must not end the run
                    if pending is not None:
                        record(pending[0], *pending[1].result(), pending[2])
                        pending = None
                    record(path, "failed", _reason(err), time.perf_counter() - t0)
                    continue
                del image
                if pending is not None:
                    record(pending[0], *pending[1].result(), pending[2])
                    pending = None
                if result is None:
                    record(path, "done", "", time.perf_counter() - t0, notes)
                else:
                    pending = (path, writer.submit(write, path, result, t0), notes)
                del result
        finally:
            if pending is not None:
                record(pending[0], *pending[1].result(), pending[2])
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
        gpus = 0
        if scheduler == "local":
            from .resources import nvidia_gpu_count

            gpus = nvidia_gpu_count()
            # One worker per GPU where there are GPUs, else one per 4 CPU cores.
            n = workers or (gpus or max(1, (os.cpu_count() or 1) // 4))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            # Not the process's default client: two runs at once (napari and a script, or
            # two threads) must not leave dask's global scheduler pointing at a closed one.
            client = Client(cluster, set_as_default=False)
            if gpus:
                # Each worker on a GPU of its own, round robin, before it imports TensorFlow.
                for i, address in enumerate(sorted(client.scheduler_info()["workers"])):
                    client.run(_use_gpu, i % gpus, workers=[address])
        else:
            cluster, client = None, Client(scheduler, set_as_default=False)
        try:
            futures = {}
            run_id = uuid.uuid4().hex[:12]  # two runs on one scheduler never share a key
            for path, action, why in plan:
                if action != "segment":
                    record(path, action, why, 0.0)
                    continue
                future = client.submit(
                    segment_one,
                    str(model_file),
                    str(path),
                    str(output_dir),
                    options,
                    key=f"segment-{run_id}-{path.name}",
                )
                futures[future] = path
            for future in as_completed(list(futures), loop=client.loop):
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    client.cancel(list(futures))
                    break
                path = futures[future]
                notes = None
                try:
                    status, why, seconds, notes = future.result()
                except Exception as err:  # a worker died, or the task could not run
                    status, why, seconds = "failed", _reason(err), 0.0
                record(path, status, why, seconds, notes)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _use_gpu(index: int) -> None:
    """Run in a cluster worker: compute on GPU ``index`` only (before TensorFlow loads)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(index)


#: Models a cluster worker keeps, by fingerprint, the most recently used last.
_WORKER_MODELS: OrderedDict[str, object] = OrderedDict()
WORKER_MODELS_KEPT = 2


def segment_one(model_file: str, image_path: str, output_dir: str, options: dict) -> tuple[str, str, float, dict]:
    """Segment one image into ``output_dir`` (runs on a cluster worker): ``(status, why,
    seconds, notes)``, the notes for the log (such as the scale used). Each model is
    loaded once per worker process (keyed by its fingerprint, so a changed file is
    loaded again) and at most ``WORKER_MODELS_KEPT`` are kept."""
    from .model_file import load_model

    t0 = time.perf_counter()
    key = options.get("fingerprint") or f"{model_file}@{os.stat(model_file).st_mtime}"
    if key in _WORKER_MODELS:
        _WORKER_MODELS.move_to_end(key)
    else:
        _WORKER_MODELS[key] = load_model(model_file)
        while len(_WORKER_MODELS) > WORKER_MODELS_KEPT:
            _WORKER_MODELS.popitem(last=False)
    model = _WORKER_MODELS[key]
    path = Path(image_path)
    notes: dict = {}
    try:
        image = read_image_with_axes(path, options.get("axes"))
        result = _predict_or_stream(model, image, path, Path(output_dir), options, notes)
        if result is not None:
            _write_outputs(path, Path(output_dir), result, options)
        return "done", "", time.perf_counter() - t0, notes
    except Exception as err:
        return "failed", _reason(err), time.perf_counter() - t0, notes


def _predict_or_stream(model, image, path: Path, output_dir: Path, options: dict, notes: dict | None = None):
    """Predict ``image``, an ``(array, axes)`` pair from :func:`read_image_with_axes`:
    ``{"labels", "probabilities", "classes"}`` (what was asked for). ``notes`` receives
    what the log should say (the scale used, with ``auto_scale``).

    A large one (without probabilities) goes straight into its mask file band by band,
    never whole in memory, and gives ``None``; its class map, when asked for beside its
    objects, is streamed in a second pass.
    """
    image, axes = image
    if options.get("auto_scale"):
        estimate = model.estimate_scale(image, axes=axes)
        if estimate is not None:
            model = model.at_scale(round(estimate, 3))
        if notes is not None:
            # Too few objects to judge by: the model's own scale.
            notes["scale"] = model.config.scale
            notes["scale_estimated"] = estimate is not None
    common = {
        "tile_size": options["tile_size"],
        "test_time_augmentation": options["test_time_augmentation"],
        "axes": axes,
    }
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


def _submit_read(reader: ThreadPoolExecutor, paths, axes: str | None = None) -> Future | None:
    path = next(paths, None)
    return None if path is None else reader.submit(read_image_with_axes, path, axes)


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


def _log(
    output_dir: Path, path: Path, status: str, why: str, seconds: float, model: str = "", notes: dict | None = None
) -> None:
    record = {"file": str(path), "status": status, "seconds": round(seconds, 3), "time": time.time()}
    if model:
        record["model"] = model
    record.update(notes or {})
    if why:
        record["error"] = why
    try:
        with open(output_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass  # the log is a convenience; the masks are the result
