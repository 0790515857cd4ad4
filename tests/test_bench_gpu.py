"""benchmarks/bench_gpu.py runs on any machine at tiny sizes, so that it does not rot
between the times a GPU is at hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_benchmark_runs_tiny_on_the_cpu(bench_gpu, tmp_path):
    out = tmp_path / "gpu.json"
    record = bench_gpu.main(["--tiny", "--out", str(out)])
    rows = record["rows"]
    assert [r["what"] for r in rows] == ["train", "predict"]
    assert rows[0]["images_per_s"] > 0 and rows[0]["tflops"] > 0
    assert rows[1]["ours_mpx_per_s"] > 0 and rows[1]["bare_mpx_per_s"] > 0
    assert record["precision"] == "float32" and record["device"] == "cpu"
    assert json.loads(out.read_text().splitlines()[-1])["rows"] == rows


def test_flops_per_pixel_follow_the_architecture():
    from napari_unet_cat.config import architecture_from_preset

    classic = architecture_from_preset("classic", n_channels=1, n_classes=2)
    light = architecture_from_preset("light", n_channels=1, n_classes=2)
    # The original U-Net: about 1.47 GFLOP a pixel's forward pass (the convolutions).
    assert 1.40e6 < classic.flops_per_pixel < 1.55e6
    # A quarter of the width costs about a sixteenth.
    assert 14 < classic.flops_per_pixel / light.flops_per_pixel < 17
    # One 3x3 convolution more at full resolution is 2 * 9 * cin * cout FLOPs a pixel.
    wider = architecture_from_preset("classic", n_channels=2, n_classes=2)
    assert wider.flops_per_pixel - classic.flops_per_pixel == 2 * 9 * 64
