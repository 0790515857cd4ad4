"""Training-step and prediction speed, as a share of the processor's peak; and two Keras
backends side by side.

Usage:
    KERAS_BACKEND=jax python benchmarks/bench_gpu.py [--presets classic light]
        [--precision mixed_float16] [--peak-tflops T] [--out FILE]
    python benchmarks/bench_gpu.py --backends tensorflow jax [--presets light] [--precision float32]
    python benchmarks/bench_gpu.py --tiny            # seconds, any machine (the test suite runs it)

Measured under the backend this process runs (JAX where TensorFlow is not installed):

- **train**: steps of the product's network, loss (masked softmax cross-entropy) and
  optimizer (Adam), compiled as ``train`` compiles them, on random patches held in memory:
  512x512 patches at ``--batch-512`` per step, and the tutorial's 128x128 at batch 20.
  Images/s, megapixels/s, and the achieved TFLOP/s: three forward passes per image (the
  backward pass computes two products per convolution) at the convolutions' FLOPs
  (``Architecture.flops_per_pixel``: about 1,470 GFLOP per megapixel for ``classic``, 92
  for ``light``, batch norm and ReLU not counted).
- **predict**: ``UNetModel.predict`` (tiles, blending, softmax) on a ``--predict-side``
  square image, and the bare network (``predict_on_batch``) on the same pixels as
  2048-pixel tiles; megapixels/s and TFLOP/s.
- The share of peak: achieved / ``--peak-tflops`` (default: the dense float16 tensor peak
  of known NVIDIA GPUs under mixed precision, their float32 peak otherwise; none on a CPU).

``--backends A B`` runs the same cases once per backend, each in its own process, one
after the other, and reports each backend's figures and their ratio (the second over the
first). Records are appended as JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, machine_info

#: Dense peak TFLOP/s (float16/bfloat16 tensor cores, float32) of GPUs by device name.
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
    "V100": (125.0, 15.7),
    "T4": (65.0, 8.1),
}


def device_name() -> str:
    """The first accelerator's name, or ``cpu``."""
    from napari_unet_cat._backend import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else str(device.device_kind)
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return "cpu"


def peak_tflops(name: str, precision: str) -> float | None:
    for key, (half, single) in PEAK_TFLOPS.items():
        if key in name.upper():
            return half if precision.startswith("mixed") else single
    return None


def build(preset: str, precision: str, *, n_channels: int = 1, base_filters=None, depth=None):
    """The product's network for ``preset`` under ``precision``, as a ``UNetModel``."""
    from napari_unet_cat.config import ClassInfo, ModelConfig, architecture_from_preset
    from napari_unet_cat.resources import dtype_policy
    from napari_unet_cat.segmenter import UNetModel
    from napari_unet_cat.unet import build_unet

    arch = architecture_from_preset(preset, n_channels=n_channels, n_classes=2, base_filters=base_filters, depth=depth)
    with dtype_policy(precision):
        keras_model = build_unet(2, n_channels, base_filters=arch.base_filters, depth=arch.depth)
    return UNetModel(keras_model, ModelConfig(architecture=arch, classes=[ClassInfo(0), ClassInfo(1)]))


def train_speed(model, side: int, batch: int, steps: int, rounds: int = 3) -> dict:
    """Images/s of training steps on ``side``-pixel patches, best of ``rounds``."""
    from napari_unet_cat._backend import keras
    from napari_unet_cat.losses import MaskedCrossEntropy

    keras_model = model.keras_model
    keras_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedCrossEntropy(), jit_compile="auto")
    rng = np.random.default_rng(0)
    n_channels = model.config.architecture.n_channels
    x = rng.random((batch * steps, side, side, n_channels), dtype=np.float32)
    y = rng.integers(0, 2, (batch * steps, side, side)).astype(np.int32)
    keras_model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # compiles
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        keras_model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # returns once the loss is read: synced
        seconds.append(time.perf_counter() - started)
    images_per_second = batch * steps / min(seconds)
    flops = 3 * model.config.architecture.flops_per_pixel * side * side * images_per_second
    return {
        "images_per_s": round(images_per_second, 2),
        "mpx_per_s": round(images_per_second * side * side / 1e6, 3),
        "tflops": round(flops / 1e12, 4),
    }


def predict_speed(model, side: int, tile: int, rounds: int = 3) -> dict:
    """Megapixels/s of ``UNetModel.predict`` on a ``side`` image and of the bare network."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (side, side), dtype=np.uint8)
    tile = min(tile, side)
    tiles = (side // tile) ** 2
    x = rng.random((tiles, tile, tile, 1), dtype=np.float32)
    model.predict(image[:tile, :tile])  # traces
    model.keras_model.predict_on_batch(x[:1])
    ours, bare = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict(image)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(tiles):
            np.asarray(model.keras_model.predict_on_batch(x[i : i + 1]))
        bare.append(time.perf_counter() - started)
    mpx = side * side / 1e6
    per_pixel = model.config.architecture.flops_per_pixel
    return {
        "side": side,
        "ours_mpx_per_s": round(mpx / min(ours), 3),
        "bare_mpx_per_s": round(tiles * tile * tile / 1e6 / min(bare), 3),
        "ours_tflops": round(per_pixel * side * side / min(ours) / 1e12, 4),
        "ours_vs_bare": round(min(bare) / min(ours) * side * side / (tiles * tile * tile), 3),
    }


def run_cases(args) -> dict:
    """Every case under this process's backend."""
    from napari_unet_cat._backend import keras

    name = device_name()
    peak = args.peak_tflops or peak_tflops(name, args.precision)
    rows = []
    tiny = {"base_filters": 4, "depth": 2} if args.tiny else {}
    cases = [(64, 2)] if args.tiny else [(512, args.batch_512), (128, 20)]
    for preset in args.presets:
        for side, batch in cases:
            model = build(preset, args.precision, **tiny)
            row = {"preset": preset, "what": "train", "side": side, "batch": batch}
            row.update(train_speed(model, side, batch, args.steps, rounds=1 if args.tiny else 3))
            row["share_of_peak"] = round(row["tflops"] / peak, 4) if peak else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            keras.utils.clear_session(free_memory=True)
        model = build(preset, args.precision, **tiny)
        row = {"preset": preset, "what": "predict"}
        row.update(predict_speed(model, args.predict_side, 64 if args.tiny else 2048, rounds=1 if args.tiny else 3))
        row["share_of_peak"] = round(row["ours_tflops"] / peak, 4) if peak else None
        rows.append(row)
        print(json.dumps(row), flush=True)
        keras.utils.clear_session(free_memory=True)
    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "device": name,
        "precision": args.precision,
        "peak_tflops": peak,
        "rows": rows,
    }


def in_backend(backend: str, argv: list[str]) -> dict:
    """This script's cases in a child process under ``backend``."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--child"], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode:
        raise RuntimeError(f"the {backend} run failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def side_by_side(results: list[dict]) -> list[dict]:
    """Each case's figures under each backend, and the second backend's over the first's."""
    first, second = results[0], results[1]
    rows = []
    for a, b in zip(first["rows"], second["rows"]):
        key = "images_per_s" if a["what"] == "train" else "ours_mpx_per_s"
        rows.append(
            {
                "preset": a["preset"],
                "what": a["what"],
                "side": a["side"],
                first["backend"]: a[key],
                second["backend"]: b[key],
                "ratio": round(b[key] / a[key], 3),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["classic", "light"])
    parser.add_argument("--precision", default=None, help="Keras dtype policy (default: mixed_float16 on a GPU)")
    parser.add_argument("--batch-512", type=int, default=8, help="batch of the 512x512 training case")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per round")
    parser.add_argument("--predict-side", type=int, default=None, help="side of the predicted image")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the processor's peak, for the share")
    parser.add_argument("--backends", nargs=2, metavar=("FIRST", "SECOND"), help="compare two Keras backends")
    parser.add_argument("--tiny", action="store_true", help="tiny network and sizes: checks the script runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:
        args.presets, args.steps = ["light"], 2
        args.predict_side = args.predict_side or 128
    if args.backends:
        passed = list(argv if argv is not None else sys.argv[1:])
        at = passed.index("--backends")
        rest = passed[:at] + passed[at + 3 :]  # the same cases, without --backends A B
        results = [in_backend(backend, rest) for backend in args.backends]
        record = {"benchmark": "backends", "machine": machine_info(), "results": results}
        record["side_by_side"] = side_by_side(results)
        for row in record["side_by_side"]:
            print(json.dumps(row), flush=True)
    else:
        from napari_unet_cat import resources

        if args.precision is None:
            args.precision = resources.resolve_precision("auto")
        if args.predict_side is None:
            args.predict_side = 4096 if resources.uses_accelerator() else 1024
        record = {"benchmark": "gpu", "machine": machine_info(), **run_cases(args)}
        if args.child:
            print("RESULT " + json.dumps(record), flush=True)
            return record
    record["command"] = " ".join(["benchmarks/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])])
    record["tiny"] = args.tiny
    append_record(args.out, record)
    print(f"results: {args.out}")
    return record


if __name__ == "__main__":
    main()
