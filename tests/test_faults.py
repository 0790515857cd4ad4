"""Faults: processes killed at any moment, a full disk, odd paths. Outputs stay complete or
absent, inputs untouched, and a second run finishes the job."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet_cat.batch import LOG_NAME, segment_folder
from napari_unet_cat.loading import load_model
from napari_unet_cat.synthetic import make_image


@pytest.fixture(scope="module")
def model_file(tiny_model, tmp_path_factory):
    return tiny_model.save(tmp_path_factory.mktemp("model") / "tiny.keras")


def _write_images(folder: Path, n: int, shape=(180, 200)) -> dict[str, str]:
    folder.mkdir(parents=True)
    for i in range(n):
        tifffile.imwrite(folder / f"cell {i:02d}.tif", make_image(shape, seed=900 + i)[0])
    return _digests(folder)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _predict_command(model: Path, inp: Path, out: Path) -> list[str]:
    args = ["predict", "--model", str(model), "--input", str(inp), "--output", str(out), "--quiet"]
    return [sys.executable, "-m", "napari_unet_cat", *args]


def _log_entries(out: Path) -> list[dict]:
    path = out / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_batch_killed_at_random_moments_finishes_identically(model_file, tmp_path):
    inp = tmp_path / "in"
    n_images = 24
    before = _write_images(inp, n_images, shape=(400, 400))
    reference = tmp_path / "reference"
    assert segment_folder(load_model(model_file), inp, reference).ok

    out = tmp_path / "out"
    rng = np.random.default_rng(1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    left_undone = []  # outputs present right after each kill, when some were still missing
    for _ in range(3):
        proc = subprocess.Popen(_predict_command(model_file, inp, out), env=env, stderr=subprocess.DEVNULL)
        target = len([e for e in _log_entries(out) if e["status"] == "done"]) + 1
        deadline = time.monotonic() + 120
        killed = False
        # Wait until this run has written at least one more mask, then kill it at a random moment.
        while proc.poll() is None and time.monotonic() < deadline:
            if len([e for e in _log_entries(out) if e["status"] == "done"]) >= target:
                time.sleep(float(rng.uniform(0, 0.05)))
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
        written = len(list(out.glob("*.tif")))
        if killed and written < n_images:
            left_undone.append(written)
    # A fast machine may finish a run between the poll and the kill; two interrupted runs are needed.
    assert len(left_undone) >= 2, f"only {left_undone} runs were cut short: the test proves nothing"

    final = subprocess.run(_predict_command(model_file, inp, out), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tif") == sorted(
        p.name for p in reference.iterdir() if p.suffix == ".tif"
    )
    assert not list(out.glob(".*"))  # no temporary file left behind
    for mask in reference.glob("*.tif"):
        np.testing.assert_array_equal(tifffile.imread(out / mask.name), tifffile.imread(mask))
    done = [e["file"] for e in _log_entries(out) if e["status"] == "done"]
    assert len(done) == len(set(done))  # none written twice
    assert _digests(inp) == before  # inputs untouched


def test_training_killed_mid_run_leaves_a_model_that_loads_and_resumes(tmp_path):
    from PIL import Image

    from napari_unet_cat.cli import main

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i in range(6):
        image, mask = make_image((96, 96), seed=40 + i)
        Image.fromarray(image).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "masks" / f"{i}.png")
    model = tmp_path / "model.keras"
    common = ["--preset", "light", "--base-filters", "8", "--depth", "2", "--patch-size", "64", "--batch-size", "8"]
    argv = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--out", str(model)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_unet_cat", *argv, *common, "--epochs", "1000"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not model.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # well into a later epoch, possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    saved = load_model(model)
    epochs_saved = len(saved.config.history)
    assert epochs_saved >= 1
    labels = saved.predict(make_image((90, 110), seed=3)[0])
    assert labels.shape == (90, 110) and set(np.unique(labels)) <= {0, 1}
    assert main([*argv, *common, "--resume", str(model), "--epochs", "2"]) == 0
    assert len(load_model(model).config.history) == epochs_saved + 2


def test_a_full_disk_fails_the_file_cleanly_and_the_run_resumes(model_file, tmp_path, monkeypatch):
    inp = tmp_path / "in"
    _write_images(inp, 3, shape=(64, 64))
    out = tmp_path / "out"
    real_imwrite = tifffile.imwrite
    calls = []

    def disk_full_on_second_file(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"II*\0" + b"\0" * 100)  # a partial file, as a full disk leaves
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_imwrite(path, data, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", disk_full_on_second_file)
    report = segment_folder(model_file, inp, out)
    assert [p.name for p in report.done] == ["cell 00.tif", "cell 02.tif"]
    ((failed, why),) = report.failed
    assert failed.name == "cell 01.tif" and "No space left on device" in why
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tif" or p.name.startswith(".")) == [
        "cell 00.tif",
        "cell 02.tif",
    ]  # no partial mask, no temporary file
    monkeypatch.setattr(tifffile, "imwrite", real_imwrite)  # space freed
    again = segment_folder(model_file, inp, out)
    assert [p.name for p in again.done] == ["cell 01.tif"] and len(again.skipped) == 2 and again.ok


def test_odd_paths_and_an_output_folder_inside_the_input(model_file, tmp_path):
    inp = tmp_path / "données brutes" / "série 1"
    before = _write_images(inp, 2, shape=(48, 40))
    out = inp / "masques U-Net"
    report = segment_folder(model_file, inp, out)
    assert report.ok and len(report.done) == 2
    assert tifffile.imread(out / "cell 00.tif").shape == (48, 40)
    assert _digests(inp) == before
    # A second run sees only the images, not its own outputs in the subfolder.
    assert len(segment_folder(model_file, inp, out).skipped) == 2


def test_an_output_folder_that_cannot_be_made_or_written_is_named(model_file, tmp_path, monkeypatch):
    from napari_unet_cat.errors import InputError

    inp = tmp_path / "in"
    _write_images(inp, 1, shape=(32, 32))
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot create the output folder .*a file"):
        segment_folder(model_file, inp, blocker / "out")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    # Tests may run as root, whom permissions do not stop: ask the check itself.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only)
    with pytest.raises(InputError, match="read-only is not writable"):
        segment_folder(model_file, inp, read_only)
