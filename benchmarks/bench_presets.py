"""Training speed of the U-Net at several widths, to choose the ``light`` preset.

Usage: python benchmarks/bench_presets.py [--widths 64 32 16 8] [--steps 3]

Measures images per second of ``keras_model.fit`` on random 128x128 RGB patches, batch 20,
after one warm-up epoch, all in one process so the figures compare as ratios.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 32, 16, 8])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per width")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()

    import keras
    import numpy as np

    from napari_unet_cat.losses import ClassIoU, MaskedCrossEntropy
    from napari_unet_cat.unet import build_unet

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.random((n, args.patch, args.patch, 3), dtype=np.float32)
    y = rng.integers(-1, 2, (n, args.patch, args.patch)).astype(np.int16)
    print(f"{'base filters':>12} {'parameters':>12} {'images/s':>9} {'vs classic':>10}")
    baseline = None
    for width in args.widths:
        model = build_unet(2, 3, base_filters=width)
        model.compile(keras.optimizers.Adam(1e-4), MaskedCrossEntropy(), metrics=[ClassIoU(0), ClassIoU(1)])
        model.fit(x[: args.batch], y[: args.batch], batch_size=args.batch, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
        speed = n / (time.perf_counter() - start)
        baseline = baseline or speed
        print(f"{width:>12} {model.count_params():>12,} {speed:>9.1f} {speed / baseline:>9.1f}x", flush=True)


if __name__ == "__main__":
    main()
