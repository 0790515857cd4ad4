"""What every time-budgeted benchmark records beside its figures: the machine's speed.

Machines of one kind differ by up to 3x, so a figure bought with minutes of training is
only comparable with the machine's bare-fit images/s beside it.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def bare_fit_images_per_second(n_channels: int = 3, batch: int = 20, patch: int = 128, steps: int = 12) -> float:
    """Images/s of a plain keras ``fit`` of the light U-Net on random patches in memory."""
    from napari_unet_cat._backend import keras
    from napari_unet_cat.unet import build_unet

    model = build_unet(2, n_channels, base_filters=16, depth=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, patch, patch, n_channels), dtype=np.float32)
    y = rng.integers(0, 2, (batch * steps, patch, patch)).astype(np.int32)
    model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # builds and traces
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return batch * steps / (time.perf_counter() - started)


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests so far (Linux), 0 if unknown."""
    try:
        ticks = int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])
    except (OSError, IndexError, ValueError):
        return 0.0
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict:
    """The processor, the cores and the Python of this run."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def append_record(path: Path, record: dict) -> None:
    """Append one run's record to a JSON-lines results file (one run per line)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run_logged(argv: list[str], log_path: Path) -> float:
    """Run ``argv`` with its output in ``log_path``; the seconds it took.

    Raises:
        SystemExit: It failed (the log is named).
    """
    import subprocess

    print("$", " ".join(argv), flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} {argv[1]} failed (exit {done.returncode}); see {log_path}")
    return time.perf_counter() - started
