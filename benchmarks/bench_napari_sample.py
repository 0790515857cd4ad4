"""Train in a real napari viewer, as a new user would: how useful the preview gets and how
live the viewer stays.

Usage (Linux without a display: under Xvfb):
    xvfb-run -a python benchmarks/bench_napari_sample.py [--epochs 30] [--image sample|nuclei]
        [--data ../shared/data/nuclei] [--stop-after 4] [--screenshot docs/images/train-in-napari.png]

``--image sample`` opens File > Open Sample > "Synthetic cells with labels" through the
plugin manifest; ``--image nuclei`` opens a 1-megapixel fluorescence image (the top-left
1024 x 1024 of the first 1040 x 1388 image of ``DATA/train``) with strokes painted on 2%
of its pixels by ``bench_strokes.paint_strokes``. "Train U-Net" is docked with its defaults
(light preset and its Adam 1e-3, patch 128, batch 20, 10% validation) and trains on the
strokes. It records:

  preview      after every epoch, the preview's foreground IoU against the full mask and
               the time since Train was pressed
  first        the time from Train to the first preview (start-up included), and to the
               network's first preview
  stalls       the delays of a 50 ms timer on the Qt event loop from Train to the end:
               longest and 99th percentile (``--diagnose``: what the GUI thread was doing
               in each gap over 0.25 s)
  stop         Stop is pressed after ``--stop-after`` epochs (or when the preview reaches
               ``--until-iou``): the seconds until the worker finished, and the median
               training step beside it
  headless     the same training (same layers and settings, ``--stop-after`` epochs) run
               headless in this process before Train is pressed and again after the
               widget's run: the widget's images/s over the headless images/s (epochs
               after the first, medians)

With ``--screenshot`` it saves a picture of the whole window at the end.

``--ceiling`` (with ``--image nuclei``) opens no viewer: it segments the image with the
built-in nuclei model and gives the foreground IoU, precision and recall of its objects and
of its pixels below each ``p(background)`` threshold: what the starting model's own
probabilities allow, before any stroke moves an edge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record

STALL_LIMIT_S = 0.25
TICK_S = 0.05


def foreground_iou(pred, truth) -> float:
    pred, truth = pred == 2, truth > 0
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union else 1.0


def nuclei_image(data: Path, split: str = "train", share: float = 0.02):
    """The largest image of ``DATA/split`` (its top-left 1024 x 1024 at most), its mask
    and strokes on ``share`` of its pixels (inside nuclei and on background away from them)."""
    from bench_strokes import paint_strokes
    from napari_unet_cat.io import list_images, read_image

    paths = list_images(data / split / "images")
    if not paths:
        raise SystemExit(f"no image in {data / split / 'images'}")
    images = {path: read_image(path) for path in paths}
    path = max(paths, key=lambda p: images[p].shape[0] * images[p].shape[1])
    mask = read_image(data / split / "masks" / path.name)[:1024, :1024] > 0
    image = images[path][:1024, :1024, :3]
    return image, mask.astype(np.uint8), paint_strokes(mask.astype(np.uint8), share, seed=0)


class StallWatch:
    """A 50 ms timer on the Qt event loop; the gaps between its ticks, less the 50 ms, are
    the stalls. (A 10 ms timer took a few percent of the training speed itself: each tick
    takes Python's GIL from the training threads.)

    With ``diagnose``, a watchdog thread notes the GUI thread's Python stack whenever it
    has not ticked for ``STALL_LIMIT_S``.
    """

    def __init__(self, diagnose: bool = False):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(int(TICK_S * 1000))
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.samples: list[tuple[float, str]] = []
        self._diagnose = diagnose
        self._running = threading.Event()
        self._main = threading.main_thread().ident

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()
        if self._diagnose:
            self._running.set()
            threading.Thread(target=self._watch, daemon=True).start()

    def stop(self) -> None:
        self.timer.stop()
        self._running.clear()

    def _watch(self) -> None:
        while self._running.is_set():
            time.sleep(0.05)
            if self.ticks and time.perf_counter() - self.ticks[-1] > STALL_LIMIT_S + TICK_S:
                mine = threading.get_ident()
                stacks = []
                for ident, frame in sys._current_frames().items():
                    if ident != mine:
                        name = "GUI" if ident == self._main else f"thread {ident}"
                        stacks.append(f"[{name}]\n" + "".join(traceback.format_stack(frame, limit=5)))
                self.samples.append((time.perf_counter(), "\n".join(stacks)))

    def summary(self) -> dict:
        gaps = np.maximum(np.diff(np.asarray(self.ticks)) - TICK_S, 0)
        if not gaps.size:
            return {"longest_s": float("nan"), "p99_s": float("nan"), "over_limit": 0}
        return {
            "longest_s": round(float(gaps.max()), 3),
            "p99_s": round(float(np.percentile(gaps, 99)), 3),
            "over_limit": int((gaps > STALL_LIMIT_S).sum()),
            "ticks": int(gaps.size),
        }

    def long_gaps(self) -> list[tuple[float, float]]:
        ticks = np.asarray(self.ticks)
        gaps = np.diff(ticks) - TICK_S
        return [(float(ticks[i]), float(gaps[i])) for i in np.flatnonzero(gaps > STALL_LIMIT_S)]


def headless_rate(image, strokes, settings, epochs: int, pretrained=None) -> list[float]:
    """Images/s per epoch of the same training without a viewer (from the same start)."""
    import dataclasses

    from napari_unet_cat.training import Trainer

    settings = dataclasses.replace(settings, epochs=epochs)
    trainer = Trainer([image], [strokes], settings=settings, preset="light", pretrained=pretrained)
    return [r.images_per_second for r in trainer.epochs()]


def panel_start(choice: str, image):
    """The built-in model the Train panel starts from for ``choice`` (None: a new one)."""
    from napari_unet_cat.builtin import builtin_model_name
    from napari_unet_cat.loading import load_model
    from napari_unet_cat.transfer import fitting_builtin

    name = fitting_builtin(image)[0] if choice.startswith("auto") else builtin_model_name(choice)
    return load_model(name) if name else None


def ceiling(image, truth) -> dict:
    """The built-in nuclei model on ``image``: foreground ``(IoU, precision, recall)`` of
    its objects and of ``p(background) < t`` for a few ``t``."""
    from napari_unet_cat import load_model

    labels, probabilities = load_model("nuclei").predict(image, return_probabilities=True)
    truth = truth > 0

    def scores(found):
        hit = float((found & truth).sum())
        return {"iou": round(hit / (found | truth).sum(), 3), "precision": round(hit / max(found.sum(), 1), 3),
                "recall": round(hit / truth.sum(), 3)}  # fmt: skip

    record = {"objects": scores(labels > 0)}
    for threshold in (0.3, 0.5, 0.7, 0.9, 0.97):
        record[f"p(background) < {threshold}"] = scores(probabilities[..., 0] < threshold)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", choices=("sample", "nuclei"), default="sample")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/nuclei"))
    parser.add_argument("--split", default="train", help="--image nuclei: the folder of DATA to take it from")
    parser.add_argument("--share", type=float, default=0.02, help="--image nuclei: share of the pixels painted")
    parser.add_argument(
        "--start-from", default=None, help="the Train panel's start (default: its own, auto), e.g. 'a new model'"
    )
    parser.add_argument("--epochs", type=int, default=30, help="upper bound on epochs")
    parser.add_argument(
        "--until-iou", type=float, default=0.9, help="press Stop once the preview reaches this IoU (above 1: never)"
    )
    parser.add_argument("--stop-after", type=int, default=0, help="press Stop during epoch N+1 (0: never)")
    parser.add_argument("--learning-rate", default=None, help="instead of the preset's")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds between docking and Train")
    parser.add_argument("--diagnose", action="store_true", help="record what the GUI thread did in long stalls")
    parser.add_argument("--no-headless", action="store_true", help="skip the headless comparison")
    parser.add_argument(
        "--no-heap-freeze",
        action="store_true",
        help="model work without the widgets' garbage-collector freeze (the code before it, for comparison)",
    )
    parser.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the window at the end")
    parser.add_argument("--out", type=Path, default=None, help="append the figures to this JSON-lines file")
    parser.add_argument("--ceiling", action="store_true", help="--image nuclei: the starting model's own answer")
    args = parser.parse_args()
    if args.ceiling:
        image, truth, _ = nuclei_image(args.data, args.split, args.share)
        record = {"benchmark": "napari_sample_ceiling", "split": args.split, "shape": list(image.shape),
                  **ceiling(image, truth)}  # fmt: skip
        print(json.dumps(record, indent=1))
        if args.out:
            append_record(args.out, record)
        return
    if args.no_heap_freeze:
        from napari_unet_cat._qt import threads

        threads.FREEZE_HEAP = False

    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    opened = time.perf_counter()
    viewer = napari.Viewer(title="napari-unet-cat")
    viewer.window._qt_window.resize(1800, 1000)
    if args.image == "sample":
        viewer.open_sample("napari-unet-cat", "synthetic_cells")
        image_layer, strokes_layer = viewer.layers["synthetic cells"], viewer.layers["synthetic cells strokes"]
        truth = viewer.layers["synthetic cells mask"].data
    else:
        image, truth, strokes = nuclei_image(args.data, args.split, args.share)
        image_layer = viewer.add_image(image, name="nuclei", rgb=True)
        strokes_layer = viewer.add_labels(strokes, name="nuclei strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unet-cat", "Train U-Net")
    train.image.value = image_layer
    train.labels.value = strokes_layer
    train.epochs.value = args.epochs
    if args.start_from:
        train.start_from.value = args.start_from
    if args.learning_rate:
        train.learning_rate.value = args.learning_rate
    settings = train.settings()
    painted = 100 * (np.asarray(strokes_layer.data) > 0).mean()
    print(f"image {image_layer.data.shape}, {painted:.1f}% of pixels painted; settings: {settings}", flush=True)
    data = (np.asarray(image_layer.data), np.asarray(strokes_layer.data))
    headless_epochs = args.stop_after or 3
    start = panel_start(train.start_from.value, data[0])
    headless_before = [] if args.no_headless else headless_rate(*data, settings, headless_epochs, start)
    for _ in range(20):
        QApplication.processEvents()
    print(f"viewer ready in {time.perf_counter() - opened:.1f} s", flush=True)
    if args.settle:
        # A user chooses layers and settings before pressing Train: the widget's
        # import of the model code runs meanwhile.
        end = time.perf_counter() + args.settle
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.02)

    scores: list[tuple[int, float, float]] = []
    step_times: list[float] = []
    events: list[tuple[float, str]] = []
    first: dict[str, float] = {}
    stop_pressed: list[float] = []
    finished: list[float] = []
    watch = StallWatch(args.diagnose)

    def press_stop(why: str) -> None:
        if not stop_pressed:
            stop_pressed.append(time.perf_counter())
            events.append((stop_pressed[0], f"stop ({why})"))
            train.stop()

    def on_step(step, steps, loss) -> None:
        step_times.append(time.perf_counter())
        if args.stop_after and len(scores) >= args.stop_after and step >= 2:
            press_stop(f"after {args.stop_after} epochs")

    def on_epoch(value) -> None:
        report, preview = value
        now = time.perf_counter()
        first.setdefault("preview_s", now - started)
        iou = foreground_iou(preview[1], truth) if preview is not None else float("nan")
        if report is None:
            first["first_guess_iou"] = iou
            events.append((now, "first guess shown"))
            print(f"first guess  {now - started:6.1f} s  preview IoU {iou:.3f}", flush=True)
            return
        first.setdefault("unet_preview_s", now - started)
        events.append((now, f"epoch {report.epoch}"))
        # Only whole epochs count for the speed (one cut short by Stop ran a few steps).
        rate = report.images_per_second if not report.stopped else float("nan")
        scores.append((report.epoch, now - started, iou, rate))
        print(
            f"epoch {report.epoch:3d}  {now - started:6.1f} s  loss {report.loss:.4f}  preview IoU {iou:.3f}  "
            f"{report.images_per_second:.1f} img/s",
            flush=True,
        )
        if iou >= args.until_iou:
            press_stop(f"preview IoU {iou:.3f}")

    draws: list[float] = []
    viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(lambda _e: draws.append(time.perf_counter()))
    train.relay.step.connect(on_step)
    watch.start()
    started = time.perf_counter()
    train.start()
    train.worker.yielded.connect(on_epoch)
    train.worker.finished.connect(lambda: finished.append(time.perf_counter()))
    # The event loop as napari runs it (waiting for events, not polling).
    loop = QEventLoop()
    train.worker.finished.connect(loop.quit)
    QTimer.singleShot(3600_000, loop.quit)
    loop.exec_()
    for _ in range(20):
        QApplication.processEvents()
    watch.stop()

    # The first guess counts as a preview too (epoch 0).
    shown = [(0, first["preview_s"], first["first_guess_iou"], 0.0)] if "first_guess_iou" in first else []
    hits = {t: next(((e, s) for e, s, iou, _ in shown + scores if iou >= t), None) for t in (0.7, 0.8, 0.9)}
    for threshold, hit in hits.items():
        text = f"epoch {hit[0]} after {hit[1]:.0f} s" if hit else "not reached"
        print(f"preview foreground IoU >= {threshold}: {text}")
    steps = np.diff(np.asarray(step_times))
    median_step = float(np.median(steps)) if steps.size else float("nan")
    record = {
        "benchmark": "napari_sample",
        "heap_freeze": not args.no_heap_freeze,
        "image": args.image,
        "shape": list(image_layer.data.shape),
        "painted_percent": round(float(painted), 2),
        "epochs_run": len(scores),
        "first_preview_s": round(first.get("preview_s", float("nan")), 1),
        "first_guess_iou": round(first.get("first_guess_iou", float("nan")), 3),
        "first_unet_preview_s": round(first.get("unet_preview_s", float("nan")), 1),
        "stalls": watch.summary(),
        "median_step_s": round(median_step, 3),
        "canvas_draws": len(draws),
        "widget_images_per_s": [round(r, 2) for *_, r in scores],
        "preview_iou": [round(iou, 3) for _, _, iou, _ in scores],
        "preview_s": [round(t, 1) for _, t, _, _ in scores],
        "seconds_to_iou": {str(t): (round(hit[1], 1) if hit else None) for t, hit in hits.items()},
        "started_from": train.trainer.first_guess_kind if train.trainer is not None else "",
    }
    if stop_pressed and finished:
        record["stop_s"] = round(finished[0] - stop_pressed[0], 2)
    for start, gap in watch.long_gaps():
        near = min(events, key=lambda e: abs(e[0] - start), default=(start, "?"))
        print(f"stall {gap:.2f} s at {start - started:.1f} s (nearest event: {near[1]} at {near[0] - started:.1f} s)")
    for at, stack in watch.samples[:12]:
        print(f"--- threads at {at - started:.1f} s:\n{stack}")

    if args.screenshot is not None:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()  # start-up notices would cover the image
        for _ in range(20):
            QApplication.processEvents()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        strokes_layer.visible = True
        viewer.screenshot(str(args.screenshot), canvas_only=False)
        print(f"screenshot: {args.screenshot}")
    viewer.close()
    whole = [r for *_, r in scores[1:] if np.isfinite(r)]  # after the first (tracing) epoch
    if not args.no_headless and whole:
        # Headless before the widget's run and after it: a slower spell of the machine
        # then does not fall on one side only.
        headless_after = headless_rate(*data, settings, headless_epochs, start)
        headless = headless_before[1:] + headless_after[1:]
        record["headless_images_per_s"] = [round(r, 2) for r in headless_before + headless_after]
        record["widget_over_headless"] = round(float(np.median(whole)) / float(np.median(headless)), 3)
    print(json.dumps(record), flush=True)
    if args.out is not None:
        append_record(args.out, record)


if __name__ == "__main__":
    main()
