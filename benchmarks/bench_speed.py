"""Speed and memory of prediction and training, as ratios against the bare Keras model.

Usage:
    python benchmarks/bench_speed.py [--parts predict train memory stream tiles cluster]
                                     [--presets light classic] [--quick]

Parts (each compares within one process, or one fresh process per size for memory):
  predict  megapixels/s of ``segment_folder`` (the ``predict`` command) on a folder of
           512x512 images, against ``keras_model.predict_on_batch`` on the same pixels
           already in memory, one image per call and in batches of 8 (median of
           interleaved rounds)
  train    images/s of our training loop (``Trainer``: augmented patches drawn by the
           input pipeline) against ``keras_model.fit`` of the same network on the same number
           of patches held in memory, same batch and optimizer (medians of 3 epochs each)
  memory   peak resident memory (Linux VmHWM, reset just before predicting) of
           ``UNetModel.predict`` on square images of 1k to 8k pixels held in memory,
           each in a fresh process, and what predicting added to the memory before
  stream   the same for ``UNetModel.predict_to_tiff`` reading a tiled, compressed TIFF
           lazily and writing the mask band by band (what ``predict`` does for large
           images), and whether that mask equals the in-memory one
  cluster  a folder of 512x512 images segmented in one process and on a local Dask
           cluster (``predict --workers``): times, and whether the masks are the same
  process  the installed ``predict`` command as a whole process (a child, TensorFlow's
           start-up and runtime included): seconds per 512x512 image of a folder,
           start-up excluded as the difference of a 16-image and a 1-image run, against
           the bare network on the same pixels (``predict_on_batch`` per image in another
           child); and the peak resident memory of the whole process on an uncompressed
           tiled TIFF of 8192x8192 against one of 2048x2048
  tiles    time and peak memory of predicting a 2048x2048 image against the tile size,
           and with the automatic choice (time of a second call, graphs traced)

Models have random weights (speed does not depend on them); images are synthetic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

PARTS = ("predict", "train", "memory", "stream", "tiles", "cluster", "process")


def untrained_model(preset: str, n_channels: int = 1):
    from napari_unet_cat.config import ClassInfo, ModelConfig, architecture_from_preset
    from napari_unet_cat.segmenter import UNetModel
    from napari_unet_cat.unet import build_unet

    arch = architecture_from_preset(preset, n_channels=n_channels, n_classes=2)
    keras_model = build_unet(2, n_channels, base_filters=arch.base_filters, depth=arch.depth)
    return UNetModel(keras_model, ModelConfig(architecture=arch, classes=[ClassInfo(0), ClassInfo(1)]))


def status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_measuring() -> float:
    """Reset the peak to the current resident memory (Linux) and return that."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def bench_predict(preset: str, n_images: int, size: int = 512, repeats: int = 5) -> dict:
    import tifffile

    from napari_unet_cat.batch import segment_folder
    from napari_unet_cat.synthetic import make_image

    model = untrained_model(preset)
    images = [make_image((size, size), seed=i)[0] for i in range(n_images)]
    megapixels = n_images * size * size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, image in enumerate(images):
            tifffile.imwrite(folder / f"{i:03d}.tif", image)
        segment_folder(model, folder, Path(tmp) / "warm-up", tile_size=size)  # traces the graph
        x = np.stack([(im.astype(np.float32) / 255)[..., None] for im in images])
        model.keras_model.predict_on_batch(x[:1])
        model.keras_model.predict_on_batch(x[:8])
        bare_one, bare_batch, ours = [], [], []
        for round_ in range(repeats):
            # Interleaved rounds: a slow moment of a shared machine hits one round, not one side.
            t0 = time.perf_counter()
            for i in range(n_images):
                model.keras_model.predict_on_batch(x[i : i + 1])
            bare_one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(0, n_images, 8):
                model.keras_model.predict_on_batch(x[i : i + 8])
            bare_batch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = segment_folder(model, folder, Path(tmp) / f"out{round_}")
            ours.append(time.perf_counter() - t0)
            assert len(report.done) == n_images, report.summary()
    ratios_one = [b / o for b, o in zip(bare_one, ours)]
    ratios_batch = [b / o for b, o in zip(bare_batch, ours)]
    return {
        "part": "predict",
        "preset": preset,
        "images": n_images,
        "size": size,
        "rounds": repeats,
        "ours_mpx_s": megapixels / min(ours),
        "bare_one_mpx_s": megapixels / min(bare_one),
        "bare_batch8_mpx_s": megapixels / min(bare_batch),
        "ratio_vs_one": float(np.median(ratios_one)),
        "ratio_vs_batch8": float(np.median(ratios_batch)),
        "ratios_vs_one": ratios_one,
    }


def bench_train(preset: str, steps: int, batch: int = 8, patch: int = 128, rounds: int = 5) -> dict:
    """Our training loop against a bare ``fit`` of the same network on patches held in
    memory, epoch by epoch in turn (so that a slower spell of the machine hits both):
    medians of ``rounds`` epochs each, and of their step times."""
    import keras

    from napari_unet_cat.config import TrainingSettings
    from napari_unet_cat.losses import ClassIoU, MaskedCrossEntropy
    from napari_unet_cat.synthetic import make_dataset
    from napari_unet_cat.training import Trainer

    images, masks = make_dataset(16, (256, 256), seed=0)
    settings = TrainingSettings(
        epochs=rounds + 1, steps_per_epoch=steps, batch_size=batch, patch_size=patch, val_fraction=0
    )
    step_ends: dict[str, list[list[float]]] = {"ours": [], "bare": []}

    def our_step(step: int, _steps: int, _loss: float) -> None:
        if step == 1:
            step_ends["ours"].append([])
        step_ends["ours"][-1].append(time.perf_counter())

    trainer = Trainer(images, masks, settings=settings, preset=preset, on_step=our_step)
    x, y = trainer.data.sampler.batch(np.random.default_rng(0), batch * steps)

    # The bare twin: the same network and weights, compiled on its own, fitted on the
    # patches in memory, each epoch timed by a callback from its first step to its end.
    # (Whole ``fit`` calls would be unfair to it: here a ``fit`` on NumPy arrays sometimes
    # returns ~10 s after its last step, inside TensorFlow, which halved it in earlier runs.)
    # Our epochs are timed whole, each ``fit`` call's setup included.
    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            step_ends["bare"].append([])

        def on_train_batch_end(self, step, logs=None):
            step_ends["bare"][-1].append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            bare.append(batch * steps / (time.perf_counter() - self.started))

    twin = keras.models.clone_model(trainer.keras_model)
    twin.set_weights(trainer.keras_model.get_weights())
    twin.compile(keras.optimizers.Adam(1e-3), MaskedCrossEntropy(), metrics=[ClassIoU(0), ClassIoU(1)])
    ours: list[float] = []
    bare: list[float] = []
    epochs = trainer.epochs()
    next(epochs)  # traces
    step_ends["ours"].clear()
    twin.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # traced
    for _ in range(rounds):
        ours.append(next(epochs).images_per_second)
        twin.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[Timer()])
    epochs.close()
    step_s = {k: float(np.median([np.diff(ends) for ends in v])) for k, v in step_ends.items()}
    return {
        "part": "train",
        "preset": preset,
        "batch": batch,
        "patch": patch,
        "rounds": rounds,
        "ours_images_s": float(np.median(ours)),
        "bare_fit_images_s": float(np.median(bare)),
        "ratio": float(np.median(ours) / np.median(bare)),
        "ours_step_s": step_s["ours"],
        "bare_step_s": step_s["bare"],
        "step_ratio": step_s["bare"] / step_s["ours"],
        "ours_each": ours,
        "bare_each": bare,
    }


def memory_child(size: int, tile: int | None, preset: str, timed_again: bool = False) -> dict:
    """Runs in a fresh process: peak memory added by predicting one ``size``-square image
    (and, with ``timed_again``, the time of a second prediction, graphs then traced)."""
    model = untrained_model(preset)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size), dtype=np.uint8)
    model.predict(image[:256, :256], tile_size=tile)  # trace the graph first
    chosen = tile or model.auto_tile_size(spatial=(size, size))
    before = start_measuring()
    t0 = time.perf_counter()
    labels = model.predict(image, tile_size=tile)
    seconds = time.perf_counter() - t0
    assert labels.shape == (size, size)
    result = {"size": size, "tile": tile, "chosen_tile": chosen, "seconds": seconds}
    if timed_again:
        t0 = time.perf_counter()
        model.predict(image, tile_size=tile)
        result["seconds_again"] = time.perf_counter() - t0
    return {**result, "base_mb": before, "peak_mb": status_mb("VmHWM")}


def stream_child(path: str, preset: str) -> dict:
    """Runs in a fresh process: peak memory added by streaming a tiled, compressed TIFF
    (read lazily, tile by tile) into a tiled mask file (``UNetModel.predict_to_tiff``, what
    ``predict`` does for large images); then whether the mask equals the in-memory one."""
    import tifffile

    from napari_unet_cat import io

    model = untrained_model(preset)
    io.MEMMAP_THRESHOLD = 0  # read lazily whatever the size, as a whole-slide image would be
    image = io.read_image(path)
    assert not isinstance(image, np.ndarray), type(image)
    model.predict(np.asarray(image[:256, :256]))  # trace the graph first
    mask_path = Path(path).with_suffix(".mask.tif")
    before = start_measuring()
    t0 = time.perf_counter()
    model.predict_to_tiff(image, mask_path)
    seconds = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    identical = bool((tifffile.imread(mask_path) == model.predict(tifffile.imread(path))).all())
    mask_path.unlink()
    return {
        "size": image.shape[0],
        "chosen_tile": model.auto_tile_size(spatial=image.shape),
        "seconds": seconds,
        "base_mb": before,
        "peak_mb": peak,
        "identical_to_in_memory": identical,
    }


def bench_cluster(preset: str, n_images: int, workers: int = 2, size: int = 512) -> dict:
    """The same folder segmented in this process and on a local Dask cluster."""
    import tifffile

    from napari_unet_cat.batch import segment_folder
    from napari_unet_cat.synthetic import make_image

    model = untrained_model(preset)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(n_images):
            tifffile.imwrite(folder / f"{i:03d}.tif", make_image((size, size), seed=i)[0])
        segment_folder(model, folder, Path(tmp) / "warm-up")
        t0 = time.perf_counter()
        single = segment_folder(model, folder, Path(tmp) / "single")
        single_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cluster = segment_folder(model, folder, Path(tmp) / "cluster", scheduler="local", workers=workers)
        cluster_s = time.perf_counter() - t0
        assert single.ok and cluster.ok, (single.summary(), cluster.summary())
        same = all(
            (tifffile.imread(Path(tmp) / "single" / p.name) == tifffile.imread(Path(tmp) / "cluster" / p.name)).all()
            for p in sorted(folder.iterdir())
        )
    return {
        "part": "cluster",
        "preset": preset,
        "images": n_images,
        "size": size,
        "workers": workers,
        "single_s": single_s,
        "cluster_s": cluster_s,
        "ratio": single_s / cluster_s,
        "same_masks": same,
    }


def run_cli(*argv: str) -> tuple[float, float, str]:
    """Run ``napari-unet-cat ARGV`` in a child process: its seconds, peak RSS in MB and output."""
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "napari_unet_cat", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    if status:
        raise RuntimeError(f"napari-unet-cat {' '.join(argv)} failed:\n{output.decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024, output.decode(errors="replace")


def reported_seconds(output: str) -> float:
    """The seconds ``predict`` reports for its folder ("N segmented, ... in S s"): from the
    first image read to the last output written, without the process's start-up."""
    match = re.search(r"segmented, .* in ([0-9.]+) s", output)
    if match is None:
        raise RuntimeError(f"no summary line in the output of predict:\n{output}")
    return float(match.group(1))


def bare_child(model_path: str, folder: str) -> dict:
    """Seconds of ``predict_on_batch`` per image on a folder's pixels (graph traced first)."""
    import tifffile

    from napari_unet_cat.loading import load_model

    model = load_model(model_path)
    x = [(tifffile.imread(p).astype(np.float32) / 255)[None, ..., None] for p in sorted(Path(folder).iterdir())]
    model.keras_model.predict_on_batch(x[0])
    t0 = time.perf_counter()
    for image in x:
        model.keras_model.predict_on_batch(image)
    return {"seconds_per_image": (time.perf_counter() - t0) / len(x)}


def bench_process(preset: str, n_images: int = 32, size: int = 512, rounds: int = 3, sizes=(2048, 8192)) -> list[dict]:
    """The ``predict`` command as a whole process: speed per image and peak memory."""
    import tifffile

    from napari_unet_cat.synthetic import make_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = str(untrained_model(preset).save(tmp / "model.keras"))
        many, one = tmp / "many", tmp / "one"
        many.mkdir()
        one.mkdir()
        for i in range(n_images):
            tifffile.imwrite(many / f"{i:03d}.tif", make_image((size, size), seed=i)[0])
        (one / "000.tif").write_bytes((many / "000.tif").read_bytes())
        run_cli("predict", "--model", model_path, "--input", str(many), "--output", str(tmp / "warm-up"))
        # The process's start-up (imports, model load: 5-6 s, give or take a second on a
        # shared machine) would drown the difference of two runs; the seconds the command
        # reports start at its first image. A one-image run takes off the first call's
        # tracing, which the bare side does before its clock starts.
        ours, bare, outside = [], [], []
        for r in range(rounds):
            t_many, _, out_many = run_cli(
                "predict", "--model", model_path, "--input", str(many), "--output", str(tmp / f"m{r}")
            )
            t_one, _, out_one = run_cli(
                "predict", "--model", model_path, "--input", str(one), "--output", str(tmp / f"o{r}")
            )
            ours.append((reported_seconds(out_many) - reported_seconds(out_one)) / (n_images - 1))
            outside.append((t_many - t_one) / (n_images - 1))
            bare.append(in_fresh_process(f"bare_child({model_path!r}, {str(many)!r})")["seconds_per_image"])
        ratios = [b / o for b, o in zip(bare, ours)]
        rows.append(
            {
                "part": "process",
                "what": "predict",
                "preset": preset,
                "images": n_images,
                "size": size,
                "ours_s_per_image": float(np.median(ours)),
                "bare_s_per_image": float(np.median(bare)),
                "ratio": float(np.median(ratios)),
                "ratios": ratios,
                # the same from outside (process wall time, start-up noise included)
                "outside_s_per_image": float(np.median(outside)),
            }
        )
        peaks = {}
        for side in sizes:
            folder = tmp / f"big{side}"
            folder.mkdir()
            image = np.random.default_rng(0).integers(0, 255, (side, side), dtype=np.uint8)
            tifffile.imwrite(folder / "big.tif", image, tile=(512, 512), bigtiff=True)
            del image
            seconds, peaks[side], _ = run_cli(
                "predict", "--model", model_path, "--input", str(folder), "--output", str(tmp / f"out{side}")
            )
            rows.append(
                {
                    "part": "process",
                    "what": "memory",
                    "preset": preset,
                    "size": side,
                    "peak_mb": peaks[side],
                    "seconds": seconds,
                }
            )
            shutil.rmtree(folder)
        rows[-1]["vs_smallest"] = peaks[sizes[-1]] / peaks[sizes[0]]
    return rows


def in_fresh_process(call: str) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_speed as b; "
        f"print('RESULT', json.dumps(b.{call}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[7:])


def plot(results: list[dict], folder: Path) -> list[Path]:
    """Peak memory against image size, and time and memory against tile size, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    by_part = {part: [r for r in results if r["part"] == part] for part in ("memory", "stream", "tiles")}
    if by_part["memory"] or by_part["stream"]:
        fig = Figure(figsize=(4.8, 3.4), layout="constrained")
        ax = fig.subplots()
        for part, label in (("memory", "image in memory"), ("stream", "streamed, lazy TIFF in")):
            rows = sorted((r["size"], r["peak_mb"] / 1024) for r in by_part[part])
            if rows:
                ax.plot(*zip(*rows), marker="o", label=label)
        sizes = sorted({r["size"] for part in ("memory", "stream") for r in by_part[part]})
        ax.set(xlabel="image side (pixels, square)", ylabel="peak memory (GiB)", xscale="log", ylim=(0, None))
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(folder / "memory-vs-image-size.png", dpi=100)
        written.append(folder / "memory-vs-image-size.png")
    tiles = [r for r in by_part["tiles"] if r["tile"]]
    if tiles:
        fig = Figure(figsize=(4.8, 3.4), layout="constrained")
        ax = fig.subplots()
        sides = [r["tile"] for r in tiles]
        ax.plot(sides, [r.get("seconds_again", r["seconds"]) for r in tiles], marker="o", color="C0")
        ax.set(xlabel="tile side (pixels)", ylabel="seconds for 2048x2048", xscale="log", ylim=(0, None))
        ax.set_xticks(sides, [str(t) for t in sides])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        memory = ax.twinx()
        memory.plot(sides, [r["peak_mb"] / 1024 for r in tiles], marker="s", color="C1")
        memory.set(ylabel="peak memory (GiB)", ylim=(0, None))
        ax.yaxis.label.set_color("C0")
        memory.yaxis.label.set_color("C1")
        fig.savefig(folder / "tile-size.png", dpi=100)
        written.append(folder / "tile-size.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--presets", nargs="+", default=["light", "classic"])
    parser.add_argument("--images", type=int, default=24, help="512x512 images in the prediction folder")
    parser.add_argument("--steps", type=int, default=30, help="training steps timed")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--tiles", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local Dask cluster")
    parser.add_argument("--quick", action="store_true", help="light preset, few images and steps, sizes to 2k")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    parser.add_argument(
        "--plots", type=Path, help="folder for the PNG plots (default docs/images; quick: beside --out)"
    )
    args = parser.parse_args()
    if args.plots is None:
        args.plots = args.out.parent / "plots-quick" if args.quick else Path("docs/images")
    if args.quick:
        args.presets, args.images, args.steps = ["light"], 8, 8
        args.sizes, args.tiles = [1024, 2048], [512]

    import keras

    header = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "command": " ".join(sys.argv),
    }
    results: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(result: dict) -> None:
        results.append(result)
        print(json.dumps(result), flush=True)
        args.out.write_text(json.dumps({**header, "results": results}, indent=1))
        keras.utils.clear_session(free_memory=True)

    for preset in args.presets:
        if "predict" in args.parts:
            # classic predicts about 10x slower: half the images and 3 rounds keep the run short
            classic = preset == "classic"
            record(
                bench_predict(
                    preset,
                    max(4, args.images // 2) if classic else args.images,
                    repeats=3 if classic or args.quick else 5,
                )
            )
        if "train" in args.parts:
            # classic trains about 10x slower: fewer steps keep the run short
            steps = args.steps if preset != "classic" else max(4, args.steps // 5)
            record(bench_train(preset, steps, rounds=3 if args.quick else 5))
    if "memory" in args.parts:
        for size in args.sizes:
            record({"part": "memory", "preset": "light", **in_fresh_process(f"memory_child({size}, None, 'light')")})
    if "stream" in args.parts:
        import tifffile

        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes:
                path = Path(tmp) / f"{size}.tif"
                rng = np.random.default_rng(0)
                image = rng.integers(0, 255, (size, size), dtype=np.uint8)
                tifffile.imwrite(path, image, tile=(512, 512), compression="zlib", bigtiff=True)
                del image
                record(
                    {"part": "stream", "preset": "light", **in_fresh_process(f"stream_child({str(path)!r}, 'light')")}
                )
                path.unlink()
    if "cluster" in args.parts:
        record(bench_cluster("light", args.images, args.workers))
    if "process" in args.parts:
        for row in bench_process(
            "light",
            4 if args.quick else 32,
            rounds=1 if args.quick else 3,
            sizes=(1024, 2048) if args.quick else (2048, 8192),
        ):
            record(row)
    if "tiles" in args.parts:
        for tile in [*args.tiles, None]:  # None: the automatic choice
            record(
                {"part": "tiles", "preset": "light", **in_fresh_process(f"memory_child(2048, {tile}, 'light', True)")}
            )
    for path in plot(results, args.plots):
        print(f"plot: {path}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
