"""The same folder run on a local Dask cluster (worker processes) as in one process."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_unet_cat.batch import LOG_NAME, segment_folder
from napari_unet_cat.cli import main
from napari_unet_cat.synthetic import make_image


def test_a_local_cluster_writes_what_one_process_writes(tiny_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(5):
        tifffile.imwrite(inp / f"im{i}.tif", make_image((90 + 10 * i, 110), seed=70 + i)[0])
    (inp / "broken.png").write_bytes(b"not an image")
    model = tiny_model.save(tmp_path / "model.keras")

    single = segment_folder(tiny_model, inp, tmp_path / "single")
    argv = ["predict", "--model", str(model), "--input", str(inp), "--output", str(tmp_path / "cluster")]
    assert main([*argv, "--workers", "2", "--quiet"]) == 1  # one file is broken
    assert "5 segmented, 0 skipped (already done), 1 failed" in capsys.readouterr().out

    assert [p.name for p in single.done] == [f"im{i}.tif" for i in range(5)]
    for path in single.done:
        mask = f"{path.stem}.tif"
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "cluster" / mask), tifffile.imread(tmp_path / "single" / mask)
        )
    log = [json.loads(line) for line in (tmp_path / "cluster" / LOG_NAME).read_text().splitlines()]
    assert sorted((e["file"].rsplit("/", 1)[-1], e["status"]) for e in log) == sorted(
        [(f"im{i}.tif", "done") for i in range(5)] + [("broken.png", "failed")]
    )
    assert not [p for p in (tmp_path / "cluster").iterdir() if p.name.startswith(".")]  # model copy removed


def test_two_runs_on_one_scheduler_never_receive_each_others_results(tiny_model, tmp_path):
    """The same file names, two models, one scheduler, at the same time: each run's
    masks are its own model's (task keys carry a run id)."""
    import threading

    from distributed import LocalCluster

    from napari_unet_cat._backend import keras
    from napari_unet_cat.segmenter import UNetModel

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        tifffile.imwrite(inp / f"im{i}.tif", make_image((64, 64), seed=80 + i)[0])
    clone = keras.models.clone_model(tiny_model.keras_model)
    weights = tiny_model.keras_model.get_weights()
    clone.set_weights([*weights[:-2], -weights[-2], -weights[-1]])  # the last layer flipped: masks inverted
    inverted = UNetModel(clone, tiny_model.config)
    expected = {}
    for name, model in (("a", tiny_model), ("b", inverted)):
        segment_folder(model, inp, tmp_path / f"single-{name}")
        expected[name] = [tifffile.imread(tmp_path / f"single-{name}" / f"im{i}.tif") for i in range(3)]
    assert not np.array_equal(expected["a"][0], expected["b"][0])
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        runs = [
            threading.Thread(
                target=segment_folder, args=(m, inp, tmp_path / n), kwargs={"scheduler": cluster.scheduler_address}
            )
            for n, m in (("a", tiny_model), ("b", inverted))
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    for name in ("a", "b"):
        for i in range(3):
            np.testing.assert_array_equal(tifffile.imread(tmp_path / name / f"im{i}.tif"), expected[name][i])
