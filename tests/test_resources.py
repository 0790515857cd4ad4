"""Automatic tile size and memory budget from the machine's free memory."""

import sys

import numpy as np
import pytest

from napari_unet_cat import resources
from napari_unet_cat.tiling import plan_plane


def test_memory_budget_is_a_share_of_free_memory_within_bounds():
    assert resources.memory_budget(free=8 << 30) == 2 << 30
    assert resources.memory_budget(free=1 << 20) == resources.MIN_BUDGET
    assert resources.memory_budget(free=1 << 40) == resources.MAX_BUDGET


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_available_memory_is_read_on_linux():
    free = resources.available_memory()
    assert free is not None and 0 < free < 1 << 50
    assert resources.MIN_BUDGET <= resources.memory_budget() <= resources.MAX_BUDGET


def _cost(model, spatial, tile):
    k = model.config.architecture.size_multiple
    plans = plan_plane(spatial, tile_size=tile, margin=model.tiled_network().margin(tile), multiple=k, border=0)
    return len(plans) * plans.rows.window * plans.cols.window


@pytest.mark.parametrize("spatial", [(2048, 2048), (1500, 700), (5000, 333)])
def test_automatic_tile_computes_no_more_pixels_than_the_largest_tile(tiny_model, spatial):
    budget = 64 << 20
    largest = tiny_model.auto_tile_size(budget)
    chosen = tiny_model.auto_tile_size(budget, spatial)
    k = tiny_model.config.architecture.size_multiple
    assert chosen <= largest and chosen % k == 0
    assert _cost(tiny_model, spatial, chosen) <= _cost(tiny_model, spatial, largest)
    assert _cost(tiny_model, spatial, chosen) == min(
        _cost(tiny_model, spatial, t) for t in range(largest // 2, largest + 1, k)
    )


def test_a_plane_that_fits_is_one_window_and_a_small_budget_gives_small_tiles(tiny_model):
    k = tiny_model.config.architecture.size_multiple
    tile = tiny_model.auto_tile_size(1 << 30, (300, 500))
    plans = plan_plane((300, 500), tile_size=tile, margin=tiny_model.tiled_network().margin(tile), multiple=k, border=0)
    assert len(plans) == 1
    small = tiny_model.auto_tile_size(8 << 20)
    assert 4 * k <= small < tiny_model.auto_tile_size(1 << 30)
    image = np.random.default_rng(0).integers(0, 255, (200, 150)).astype(np.uint8)
    tiled = tiny_model.predict(image, memory_budget=8 << 20)
    whole = tiny_model.predict(image, tile_size=256)
    assert (tiled == whole).mean() > 0.999


def test_gpu_memory_grows_as_needed_and_the_visible_gpu_is_read(monkeypatch):
    import os

    import napari_unet_cat._backend  # noqa: F401  (sets the default before TensorFlow loads)
    from napari_unet_cat import resources

    assert os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH") in ("true", "false", "1", "0", "True", "False")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert resources.visible_gpu_id() == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2c-uuid")
    assert resources.visible_gpu_id() == "GPU-8f2c-uuid"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert resources.visible_gpu_id() == "0"


def test_a_cluster_worker_is_put_on_its_own_gpu(monkeypatch):
    import os

    from napari_unet_cat.cluster import use_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    use_gpu(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
