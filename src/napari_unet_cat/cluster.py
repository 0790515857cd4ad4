"""Segmenting a folder on a Dask cluster: a local one (a worker per GPU, or per 4 CPU
cores) or a scheduler's, whose workers see the same files."""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from .errors import InputError
from .io import read_image_with_axes
from .segment_file import SegmentOptions, failure_reason, predict_or_stream, write_outputs


def run_on_cluster(
    model, plan, output_dir, options: SegmentOptions, record, report, should_stop, scheduler, workers
) -> None:
    """Segment the planned files on a Dask cluster, recording outcomes as they come."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError(
            "running on a cluster needs the 'distributed' package: pip install \"napari-unet-cat[cluster]\""
        ) from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".napari-unet-cat-", dir=output_dir) as tmp:
        # Workers load the model from a file saved here, beside the outputs they write.
        # (A bioimage.io package of another tool goes as its own file.)
        model_file = model.save(Path(tmp) / "model.keras") if hasattr(model, "save") else model.path
        cluster, client = _connect(scheduler, workers)
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
            _collect(client, futures, record, report, should_stop)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _connect(scheduler: str, workers: int | None):
    """``(cluster, client)``: a local cluster of its own (``scheduler == "local"``), or a
    client of the scheduler at that address (``cluster`` None)."""
    from distributed import Client, LocalCluster

    if scheduler != "local":
        return None, Client(scheduler, set_as_default=False)
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
            client.run(use_gpu, i % gpus, workers=[address])
    return cluster, client


def _collect(client, futures: dict, record, report, should_stop) -> None:
    """Record each file's outcome as its task ends; cancel the rest when told to stop."""
    from distributed import as_completed

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
            status, why, seconds = "failed", failure_reason(err), 0.0
        record(path, status, why, seconds, notes)


def use_gpu(index: int) -> None:
    """Run in a cluster worker: compute on GPU ``index`` only (before TensorFlow loads)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(index)


#: Models a cluster worker keeps, by fingerprint, the most recently used last.
_WORKER_MODELS: OrderedDict[str, object] = OrderedDict()


WORKER_MODELS_KEPT = 2


def segment_one(
    model_file: str, image_path: str, output_dir: str, options: SegmentOptions
) -> tuple[str, str, float, dict]:
    """Segment one image into ``output_dir`` (runs on a cluster worker): ``(status, why,
    seconds, notes)``, the notes for the log (such as the scale used). Each model is
    loaded once per worker process (keyed by its fingerprint, so a changed file is
    loaded again) and at most ``WORKER_MODELS_KEPT`` are kept."""
    from .loading import load_model

    t0 = time.perf_counter()
    key = options.fingerprint or f"{model_file}@{os.stat(model_file).st_mtime}"
    if key in _WORKER_MODELS:
        _WORKER_MODELS.move_to_end(key)
    else:
        _WORKER_MODELS[key] = load_model(model_file, trust_package_code=options.trust_package_code)
        while len(_WORKER_MODELS) > WORKER_MODELS_KEPT:
            _WORKER_MODELS.popitem(last=False)
    model = _WORKER_MODELS[key]
    path = Path(image_path)
    notes: dict = {}
    try:
        image = read_image_with_axes(path, options.axes)
        result = predict_or_stream(model, image, path, Path(output_dir), options, notes)
        if result is not None:
            write_outputs(path, Path(output_dir), result)
        return "done", "", time.perf_counter() - t0, notes
    except Exception as err:
        return "failed", failure_reason(err), time.perf_counter() - t0, notes
