"""Training throughput with the defaults a user gets, against a bare Keras ``fit``.

Usage:
    python benchmarks/bench_train_speed.py DATA [--preset light] [--batches 4 8 20]
                                           [--steps 15] [--rounds 3] [--cli-epochs 3]
                                           [--images N] [--out FILE] [--quick]

``DATA`` holds ``train/images`` and ``train/masks`` (the nuclei folder). Everything runs
in one invocation, so that all figures share one machine and one moment:

  bare    ``keras_model.fit`` of the network the preset builds, on patches of ``DATA``
          already in memory (no augmentation, no validation), for each batch size with
          XLA off and on: images/s and CPU cores busy (user and kernel). Rounds of all
          settings are interleaved, so a slow spell of a shared machine hits every one.
  loop    our training loop in this process (``Trainer``) with the CLI's defaults
          (batch 20, augmentation, 10% held out), and with augmentation or validation off:
          images/s over whole epochs after the first (validation and checkpoints
          included), and cores busy.
  cli     ``napari-unet-cat train --preset PRESET --epochs N`` as a user types it, as a
          child process: patches per second from its own history, over epochs 2..N
          (everything the epochs did, validation included), and the cores the process
          kept busy over its whole run. Once, after the rest; with ``--cli-in-rounds``
          once per round, between the others, so that the same slow spells hit it.

The ratio asked of the product is the CLI's images/s over the fastest bare setting.
``--cases`` picks the loop cases; ``--cli-args`` passes more ``train`` arguments (for
example ``--steps-per-epoch 40`` for shorter epochs, each validated in full).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_record, machine_info, steal_seconds


def cpu_seconds() -> tuple[float, float]:
    """User and kernel CPU seconds of this process so far."""
    t = os.times()
    return t.user, t.system


def load_pairs(data: Path, n: int):
    from napari_unet_cat.io import list_images, read_image

    paths = list_images(data / "train" / "images")
    if n:
        paths = paths[:n]
    masks = data / "train" / "masks"
    images = [read_image(p) for p in paths]
    labels = [read_image(masks / p.name) for p in paths]
    return paths, images, labels


def step_clock():
    """A callback noting time and CPU at the end of every step.

    A bare ``fit`` is timed from its first step's end to its last's: a ``fit`` on NumPy
    arrays sometimes idles in TensorFlow for seconds after its last step, which is not
    training speed.
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[float, float, float]] = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append((time.perf_counter(), *cpu_seconds()))

        def span(self) -> tuple[float, float, float]:
            """Wall, user and kernel seconds from the first step's end to the last's."""
            (t0, u0, s0), (t1, u1, s1) = self.marks[0], self.marks[-1]
            return t1 - t0, u1 - u0, s1 - s0

    return StepClock()


class BareFit:
    """A bare ``fit`` of one (batch, XLA) setting; each round trains on the same patches."""

    def __init__(self, config, x, y, batch: int, xla: bool, rate: float):
        import keras

        from napari_unet_cat.losses import ClassIoU, MaskedCrossEntropy
        from napari_unet_cat.unet import build_network

        keras.utils.set_random_seed(0)
        self.batch, self.xla = batch, xla
        self.model = build_network(config, "float32")
        self.model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss=MaskedCrossEntropy(None),
            metrics=[ClassIoU(i, name=f"iou_{i}") for i in range(len(config.class_values))],
            jit_compile=xla,
        )
        self.x, self.y = x[: len(x) // batch * batch], y[: len(y) // batch * batch]
        self.model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)  # build and trace

    def round(self) -> tuple[float, float, float, float]:
        """Images/s, user and kernel CPU seconds, and wall seconds."""
        clock = step_clock()
        self.model.fit(self.x, self.y, batch_size=self.batch, verbose=0, shuffle=False, callbacks=[clock])
        wall, user, kernel = clock.span()
        return (len(clock.marks) - 1) * self.batch / wall, user, kernel, wall


class OurLoop:
    """Our ``Trainer``; each round is one whole epoch (its ``fit`` call, validation and all)."""

    def __init__(self, images, labels, preset: str, steps: int | None, change: dict):
        from napari_unet_cat import training
        from napari_unet_cat.config import PRESET_LEARNING_RATES, TrainingSettings

        settings = TrainingSettings(
            epochs=10_000, steps_per_epoch=steps, learning_rate=PRESET_LEARNING_RATES[preset], **change
        )
        self.trainer = training.Trainer(images, labels, settings=settings, preset=preset)
        self.epochs = self.trainer.epochs()
        next(self.epochs)  # the first epoch traces the graphs (and makes the input pipeline)

    def round(self) -> tuple[float, float, float, float]:
        """Images/s, user and kernel CPU seconds, and wall seconds."""
        t0, (u0, s0) = time.perf_counter(), cpu_seconds()
        report = next(self.epochs)
        wall = time.perf_counter() - t0
        u1, s1 = cpu_seconds()
        return report.patches / wall, u1 - u0, s1 - s0, wall


LOOP_CASES = {
    "defaults": {},
    "no augmentation": {"augment": False},
    "no validation": {"val_fraction": 0.0},
    "one input thread": {"input_threads": 1},
}


class CliRun:
    """One ``napari-unet-cat train`` child process per round (see :func:`bench_cli`)."""

    def __init__(self, data: Path, preset: str, epochs: int, n_images: int, extra: list[str]):
        self.args = (data, preset, epochs, n_images, extra)
        self.last: dict = {}

    def round(self) -> tuple[float, float, float, float]:
        self.last = bench_cli(*self.args)
        wall = self.last["process_seconds"]
        busy = self.last["process_cores_busy"] * wall
        kernel = busy * self.last["process_kernel_share"]
        return self.last["images_per_s"], busy - kernel, kernel, wall


def bench_interleaved(
    images,
    labels,
    preset: str,
    batches: list[int],
    steps: int,
    rounds: int,
    loop_steps: int | None,
    parts,
    cases=None,
    cli: CliRun | None = None,
) -> list[dict]:
    """Bare ``fit`` for each (batch, XLA), our loop for each case and the CLI as a child
    process, round-robin: one round of each in turn, ``rounds`` times, so a slow spell of
    the machine hits all."""
    from napari_unet_cat.config import PRESET_LEARNING_RATES, TrainingSettings
    from napari_unet_cat.training import Trainer

    runners: dict[tuple, object] = {}
    if "bare" in parts:
        rate = PRESET_LEARNING_RATES[preset]
        probe = Trainer(images, labels, settings=TrainingSettings(val_fraction=0, augment=False), preset=preset)
        x, y = probe.data.sampler.batch(np.random.default_rng(0), max(batches) * steps)
        for batch in batches:
            for xla in (False, True):
                runners[("bare", batch, xla)] = BareFit(probe.config, x, y, batch, xla, rate)
    if "loop" in parts:
        for name, change in LOOP_CASES.items():
            if cases is None or name in cases:
                runners[("loop", name)] = OurLoop(images, labels, preset, loop_steps, change)
    if cli is not None:
        runners[("cli",)] = cli
    measured: dict[tuple, list] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            measured[key].append(runner.round())
    rows = []
    for key, values in measured.items():
        rates = [v[0] for v in values]
        row = {
            "part": key[0],
            "images_per_s": float(np.median(rates)),
            "rounds": [round(r, 2) for r in rates],
            "cores_busy": float(np.median([(u + k) / wall for _, u, k, wall in values])),
            "kernel_share": float(np.median([k / max(u + k, 1e-9) for _, u, k, _ in values])),
        }
        if key[0] == "bare":
            row.update(batch=key[1], xla=key[2])
        elif key[0] == "cli":
            last = runners[key].last
            row.update({k: last[k] for k in ("argv", "epochs", "epoch_images_per_s")}, batch=20, xla=False)
        else:
            trainer = runners[key].trainer
            row.update(case=key[1], batch=trainer.settings.batch_size, steps_per_epoch=trainer.steps_per_epoch)
            row["xla"] = bool(trainer.keras_model.jit_compile)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_cli(data: Path, preset: str, epochs: int, n_images: int, extra: list[str]) -> dict:
    """The ``train`` command as a child process, with the defaults a user gets."""
    from napari_unet_cat import load_model

    with tempfile.TemporaryDirectory() as tmp:
        images = data / "train" / "images"
        masks = data / "train" / "masks"
        if n_images:
            images, masks = Path(tmp) / "images", Path(tmp) / "masks"
            images.mkdir()
            masks.mkdir()
            for p in sorted((data / "train" / "images").iterdir())[:n_images]:
                (images / p.name).symlink_to(p.resolve())
                (masks / p.name).symlink_to((data / "train" / "masks" / p.name).resolve())
        out = Path(tmp) / "model.keras"
        argv = [sys.executable, "-m", "napari_unet_cat", "train", "--images", str(images), "--masks", str(masks)]
        argv += ["--out", str(out), "--preset", preset, "--epochs", str(epochs), *extra]
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        log = child.stdout.read()
        if status:
            raise RuntimeError(f"train failed:\n{log}")
        history = load_model(out).config.history
    later = history[1:]
    seconds = history[-1]["seconds"] - history[0]["seconds"]
    return {
        "part": "cli",
        "argv": " ".join(["napari-unet-cat", *argv[3:]]).replace(tmp, "TMP"),
        "epochs": len(history),
        "images_per_s": sum(r["patches"] for r in later) / seconds,
        "epoch_images_per_s": [round(r["images_per_second"], 2) for r in history],
        "process_seconds": wall,
        "process_cores_busy": (usage.ru_utime + usage.ru_stime) / wall,
        "process_kernel_share": usage.ru_stime / max(usage.ru_utime + usage.ru_stime, 1e-9),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--preset", default="light")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 20])
    parser.add_argument("--steps", type=int, default=15, help="steps of the largest batch per bare round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cli-epochs", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, help="steps per epoch of the loop part (default: a pass)")
    parser.add_argument("--images", type=int, default=0, help="use the first N training images (0: all)")
    parser.add_argument("--parts", nargs="+", default=["bare", "loop", "cli"], choices=["bare", "loop", "cli"])
    parser.add_argument("--cases", nargs="+", choices=list(LOOP_CASES), help="loop cases to run (default: all)")
    parser.add_argument(
        "--cli-in-rounds",
        action="store_true",
        help="run the CLI once per round, between the others (else once, after them)",
    )
    parser.add_argument("--cli-args", nargs=argparse.REMAINDER, default=[], help="extra train arguments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.steps, args.rounds = [2, 4], 2, 1
        args.cli_epochs = 2
        args.loop_steps, args.images = 2, args.images or 4
    from napari_unet_cat import __version__

    steal0 = steal_seconds()
    started = time.perf_counter()
    _, images, labels = load_pairs(args.data, args.images)
    rows: list[dict] = []
    extra = list(args.cli_args)
    if args.quick:
        extra += ["--steps-per-epoch", "2", "--batch-size", "2"]
    cli = None
    if "cli" in args.parts and args.cli_in_rounds:
        cli = CliRun(args.data, args.preset, args.cli_epochs, args.images, extra)
    if "bare" in args.parts or "loop" in args.parts or cli is not None:
        rows += bench_interleaved(
            images,
            labels,
            args.preset,
            args.batches,
            args.steps,
            args.rounds,
            args.loop_steps,
            args.parts,
            cases=args.cases,
            cli=cli,
        )
    if "cli" in args.parts and cli is None:
        rows.append(bench_cli(args.data, args.preset, args.cli_epochs, args.images, extra))
        print(json.dumps(rows[-1]), flush=True)
    bare = [r for r in rows if r["part"] == "bare"]
    summary: dict = {}
    if bare:
        best = max(bare, key=lambda r: r["images_per_s"])
        summary["bare_best"] = {k: best[k] for k in ("batch", "xla", "images_per_s")}
        for r in rows:
            if r["part"] in ("loop", "cli"):
                key = "cli" if r["part"] == "cli" else f"loop {r['case']}"
                summary[f"ratio {key}"] = round(r["images_per_s"] / best["images_per_s"], 3)
    record = {
        "benchmark": "train_speed",
        "version": __version__,
        "preset": args.preset,
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
        "steal_seconds": round(steal_seconds() - steal0, 1),
        "quick": args.quick,
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    append_record(args.out, record)


if __name__ == "__main__":
    main()
