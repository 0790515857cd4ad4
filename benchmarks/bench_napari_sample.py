"""Train on the synthetic sample in a real napari viewer, as a new user would, and time it.

Usage (Linux without a display: under Xvfb):
    xvfb-run -a python benchmarks/bench_napari_sample.py [--epochs 30] [--screenshot docs/images/train-in-napari.png]

Opens napari, loads File > Open Sample > "Synthetic cells with labels" through the plugin
manifest, docks "Train U-Net" with its default settings (light preset and its Adam 1e-3, the
tutorial's patch 128, batch 20, 10% validation; ``--learning-rate`` to compare) and
trains on the sample's painted strokes. After every epoch it scores the live preview against the sample's full mask
(foreground IoU) and prints the wall-clock time since Train was pressed, so the table
answers "how long until the preview is useful". With ``--screenshot`` it saves a
picture of the whole window at the end (the README's figure).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def foreground_iou(pred, truth) -> float:
    pred, truth = pred == 2, truth > 0
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="upper bound on epochs")
    parser.add_argument("--until-iou", type=float, default=0.9, help="stop once the preview reaches this IoU")
    parser.add_argument("--learning-rate", default=None, help="instead of the preset's")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the window at the end")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-unet-cat")
    viewer.window._qt_window.resize(1800, 1000)
    viewer.open_sample("napari-unet-cat", "synthetic_cells")
    truth = viewer.layers["synthetic cells mask"].data
    strokes = viewer.layers["synthetic cells strokes"].data
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-cat", "Train U-Net")
    train.epochs.value = args.epochs
    if args.learning_rate:
        train.learning_rate.value = args.learning_rate
    print(f"sample {truth.shape}, {100 * (strokes > 0).mean():.1f}% of pixels painted; settings: {train.settings()}")

    scores: list[tuple[int, float, float]] = []
    started = time.perf_counter()

    def on_epoch(value) -> None:
        report, preview = value
        iou = foreground_iou(preview[1], truth) if preview is not None else float("nan")
        scores.append((report.epoch, time.perf_counter() - started, iou))
        print(f"epoch {report.epoch:3d}  {scores[-1][1]:6.1f} s  loss {report.loss:.4f}  preview IoU {iou:.3f}")
        if iou >= args.until_iou:
            train.stop()

    train.start()
    train.worker.yielded.connect(on_epoch)
    train.wait(timeout_s=3600)
    for _ in range(20):
        QApplication.processEvents()
    first = {t: next(((e, s) for e, s, iou in scores if iou >= t), None) for t in (0.7, 0.8, 0.9)}
    for threshold, hit in first.items():
        text = f"epoch {hit[0]} after {hit[1]:.0f} s" if hit else "not reached"
        print(f"preview foreground IoU >= {threshold}: {text}")
    if args.screenshot is not None:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()  # start-up notices would cover the image
        for _ in range(20):
            QApplication.processEvents()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.layers["synthetic cells strokes"].visible = True
        viewer.screenshot(str(args.screenshot), canvas_only=False)
        print(f"screenshot: {args.screenshot}")
    viewer.close()


if __name__ == "__main__":
    main()
