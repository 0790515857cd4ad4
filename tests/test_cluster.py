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
