"""Tiled inference: probabilities of an image of any size from a network that sees tiles.

This module knows nothing of the model class or its file: it is given a
:class:`TiledNetwork` (a function from a batch of normalized tiles to probabilities, and
the few numbers that size the tiles) and an image with its :class:`~napari_unet_cat.arrays.Layout`.
Planes are cut into overlapping tiles (:mod:`~napari_unet_cat.tiling`), read one window
at a time (a lazy image is never loaded whole), blended, and handed out as bands of
finished rows, so that what is held stays about the same however large the plane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .arrays import (
    Layout,
    apply_normalization,
    percentile_range,
    plane_indices,
    plane_subsample,
    read_window,
    resize_plane,
    scaled_shape,
)
from .config import Normalization
from .errors import InputError
from .tiling import PlaneTiling, plan_plane, round_up

#: Largest tile side chosen automatically (memory permitting). Larger tiles would save
#: little: with the default margin, 2048-pixel tiles already compute only about 1.2x the
#: pixels of the plane, while their memory grows with the square of the side.
MAX_AUTO_TILE = 2048
#: Bytes of activations per pixel and base filter held at once during inference
#: (measured: see benchmarks/bench_speed.py, tile-size curve).
BYTES_PER_PIXEL_PER_FILTER = 48

ProgressCallback = Callable[[int, int], None]
#: ``(plane_index, (row_start, row_stop), probabilities)`` of consecutive rows.
Band = tuple[tuple[int, ...], tuple[int, int], np.ndarray]


@dataclass(frozen=True)
class TiledNetwork:
    """What the tiled engine needs of a network.

    Attributes:
        infer: Probabilities ``(N, Y, X, classes)`` of normalized tiles ``(N, Y, X, C)``.
        n_classes: Classes in the output.
        size_multiple: Tile sides and window starts are multiples of this (``2**depth``).
        receptive_radius: Pixels of context each side that can change one output pixel.
        bytes_per_pixel: Bytes of activations held per input pixel during one call.
        normalization: How each plane is normalized before the network sees it.
        scale: The resolution the network works at, as a fraction of the image's.
    """

    infer: Callable[[np.ndarray], np.ndarray]
    n_classes: int
    size_multiple: int
    receptive_radius: int
    bytes_per_pixel: int
    normalization: Normalization
    scale: float = 1.0

    def margin(self, tile: int) -> int:
        """Context pixels kept around a tile's core: the receptive radius, at most a
        quarter of the tile, on the network's grid."""
        k = self.size_multiple
        return min(round_up(self.receptive_radius, k), max(k, (tile // 4) // k * k))

    def auto_tile_size(self, memory_budget: int, spatial: tuple[int, int] | None = None, border: int = 0) -> int:
        """The largest tile side whose activations fit ``memory_budget`` (at most
        ``MAX_AUTO_TILE``); given the plane's ``spatial`` shape, the side up to that which
        makes the network compute the fewest pixels (tiles times tile area): speed per
        pixel hardly depends on the side (benchmarks/bench_speed.py), so overlap is what costs."""
        k = self.size_multiple
        side = int(np.sqrt(memory_budget / self.bytes_per_pixel))
        largest = int(np.clip(side // k * k, 4 * k, max(MAX_AUTO_TILE // k * k, 4 * k)))
        if spatial is None:
            return largest
        best_cost, best_tile = None, largest
        for tile in range(largest, max(4 * k, largest // 2) - 1, -k):
            margin = self.margin(tile)
            if tile - 2 * margin < k:
                continue
            plans = plan_plane(spatial, tile_size=tile, margin=margin, multiple=k, border=border)
            cost = len(plans) * plans.rows.window * plans.cols.window
            if best_cost is None or cost < best_cost:
                best_cost, best_tile = cost, tile
        return best_tile


@dataclass(frozen=True)
class TilePlan:
    """How one image is cut: the tiles of each plane and how many go to one call."""

    tiles: PlaneTiling
    tile: int
    margin: int
    batch_size: int


def plan_tiles(
    network: TiledNetwork,
    spatial: tuple[int, int],
    *,
    memory_budget: int,
    tile_size: int | None = None,
    margin: int | None = None,
    border: int = 0,
    batch_size: int | None = None,
) -> TilePlan:
    """Tiles for a plane of ``spatial`` pixels (at full resolution), checking the settings.

    Raises:
        InputError: A setting is out of range, naming it and the value received.
    """
    k = network.size_multiple
    if border < 0:
        raise InputError(f"border must not be negative (received {border})")
    if tile_size is not None and tile_size < k:
        raise InputError(f"tile size must be at least {k} for this model (received {tile_size})")
    work = scaled_shape(spatial, network.scale) if network.scale != 1.0 else spatial
    tile = round_up(int(tile_size), k) if tile_size else network.auto_tile_size(memory_budget, work, border)
    margin = network.margin(tile) if margin is None else round_up(int(margin), k)
    if margin < 0:
        raise InputError(f"margin must not be negative (received {margin})")
    if tile - 2 * margin < k:
        raise InputError(
            f"tile size {tile} is too small for a context margin of {margin} pixels on each side; "
            f"use a tile of at least {2 * margin + k} or a smaller margin"
        )
    if batch_size is None:
        # As many tiles per call as the budget allows, but never more pixels than the
        # largest automatic tile holds: memory then stays about the same whatever the
        # image's size (batching more gains little speed).
        per_tile = network.bytes_per_pixel * tile * tile
        largest = network.auto_tile_size(memory_budget)
        batch_size = int(max(1, min(64, memory_budget // per_tile, largest * largest // (tile * tile))))
    tiles = plan_plane(work, tile_size=tile, margin=margin, multiple=k, border=border)
    return TilePlan(tiles, tile, margin, int(batch_size))


def iter_bands(
    network: TiledNetwork,
    image,
    layout: Layout,
    plan: TilePlan,
    *,
    progress: ProgressCallback | None = None,
) -> Iterator[Band]:
    """Probabilities of ``image``, band by band of finished rows, plane after plane."""
    total = layout.n_planes * len(plan.tiles)
    done = 0
    for index in plane_indices(layout):
        if network.scale != 1.0:
            # A rescaled plane is held whole: its bands join, then return to full size.
            plane = scaled_plane(image, layout, index, network)
            parts = plane_bands(network, plane, in_memory_layout(plane), (), plan, normalized=True)
            whole = np.concatenate([band for _, band in parts])
            yield index, (0, layout.spatial[0]), resize_plane(whole, layout.spatial)
        else:
            for rows, band in plane_bands(network, image, layout, index, plan):
                yield index, rows, band
        done += len(plan.tiles)
        if progress is not None:
            progress(done, total)


def scaled_plane(image, layout: Layout, index, network: TiledNetwork) -> np.ndarray:
    """One plane, normalized and resized to the network's scale (held in memory)."""
    plane = read_window(image, layout, index, np.arange(layout.spatial[0]), np.arange(layout.spatial[1]))
    plane = apply_normalization(plane, *percentile_range(plane, network.normalization))
    return resize_plane(plane, scaled_shape(layout.spatial, network.scale))


def in_memory_layout(plane: np.ndarray) -> Layout:
    """Layout of a prepared ``(Y, X, C)`` plane."""
    return Layout(plane_shape=(), spatial=plane.shape[:2], channels=plane.shape[2], channel_axis=True)


def plane_bands(
    network: TiledNetwork, source, layout: Layout, index, plan: TilePlan, *, normalized: bool = False
) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """``((row_start, row_stop), probabilities)`` bands of one plane, top to bottom.

    Tiles are read one window at a time, so a lazy source is never loaded whole; a band
    of finished rows is released as soon as no later tile touches it.
    """
    plans = plan.tiles
    if normalized:
        lo, hi = np.float32(0), np.float32(1)
    else:
        lo, hi = percentile_range(plane_subsample(source, layout, index), network.normalization)
    (pad_top, _), (pad_left, _) = plans.pad
    height, width = layout.spatial
    if len(plans) == 1:
        # One window holds the whole padded plane: no blending to do.
        rows = np.arange(plans.rows.length) - pad_top
        cols = np.arange(plans.cols.length) - pad_left
        window = apply_normalization(read_window(source, layout, index, rows, cols), lo, hi)
        out = network.infer(window[None])[0]
        yield (0, height), out[pad_top : pad_top + height, pad_left : pad_left + width]
        return
    blender = SlabBlender((plans.cols.length,), network.n_classes)
    win_h, win_w = plans.window
    col_weights = [plans.cols.weights(j) for j in range(len(plans.cols.starts))]
    for i, r in enumerate(plans.rows.starts):
        row_w = plans.rows.weights(i)
        rows = np.arange(r, r + win_h) - pad_top
        blender.reach(r + win_h)
        # One batch of windows at a time, each blended in as soon as it is computed: the
        # memory held does not grow with the number of tiles across the plane.
        for b in range(0, len(plans.cols.starts), plan.batch_size):
            starts = plans.cols.starts[b : b + plan.batch_size]
            windows = [
                apply_normalization(
                    read_window(source, layout, index, rows, np.arange(c, c + win_w) - pad_left), lo, hi
                )
                for c in starts
            ]
            outputs = network.infer(np.stack(windows))
            del windows
            for j, (c, out) in enumerate(zip(starts, outputs), start=b):
                blender.add((r, c), out, row_w[:, None] * col_weights[j][None, :])
            del outputs
        final = plans.rows.length if i == len(plans.rows.starts) - 1 else plans.rows.starts[i + 1]
        # Rows before ``final`` get no more contributions: hand out those inside the image.
        band = blender.release(final, (pad_top, pad_top + height), ((pad_left, pad_left + width),))
        if band is not None:
            yield band[0], band[1]


class SlabBlender:
    """Weighted sums of overlapping tiles (or blocks) over the rows (or Z-planes) not yet
    finished; ``cross_shape`` is the shape across them (``(X,)``, or ``(Y, X)``)."""

    def __init__(self, cross_shape: tuple[int, ...], n_classes: int):
        self.acc = np.zeros((0, *cross_shape, n_classes), np.float32)
        self.wsum = np.zeros((0, *cross_shape), np.float32)
        self.start = 0

    def reach(self, stop: int) -> None:
        """Make room for rows up to ``stop``."""
        grow = stop - self.start - self.acc.shape[0]
        if grow > 0:
            self.acc = np.concatenate([self.acc, np.zeros((grow, *self.acc.shape[1:]), np.float32)])
            self.wsum = np.concatenate([self.wsum, np.zeros((grow, *self.wsum.shape[1:]), np.float32)])

    def add(self, corner: tuple[int, ...], out: np.ndarray, weights: np.ndarray) -> None:
        """Add ``out`` (weighted) whose first voxel is at ``corner`` (padded coordinates)."""
        first = corner[0] - self.start
        box = (slice(first, first + out.shape[0]), *(slice(c, c + n) for c, n in zip(corner[1:], out.shape[1:-1])))
        self.acc[box] += out * weights[..., None]
        self.wsum[box] += weights

    def release(self, final: int, keep_rows: tuple[int, int], keep_cross: tuple[tuple[int, int], ...]):
        """Drop the rows before ``final``; return ``((start, stop), band)`` of those among
        ``keep_rows`` (padded coordinates, returned unpadded), cut to ``keep_cross`` across,
        or None."""
        lo, hi = max(self.start, keep_rows[0]), min(final, keep_rows[1])
        band = None
        if hi > lo:
            box = (slice(lo - self.start, hi - self.start), *(slice(*k) for k in keep_cross))
            band = (lo - keep_rows[0], hi - keep_rows[0]), self.acc[box] / self.wsum[box][..., None]
        drop = final - self.start
        self.acc, self.wsum, self.start = self.acc[drop:], self.wsum[drop:], final
        return band


def dihedral_average(infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """``infer`` averaged over the 8 flips and 90-degree rotations of ``(N, Y, X, C)`` tiles
    (or of ``(N, Z, Y, X, C)`` blocks, turned in their Y-X planes): test-time augmentation,
    as the U-Net paper did. Tile sides are multiples of the network's size multiple, so
    every transform keeps the pooling grid on the same pixels and maps back exactly."""
    plane = (batch.ndim - 3, batch.ndim - 2)
    total = None
    for flip in (False, True):
        flipped = np.flip(batch, plane[1]) if flip else batch
        for turns in range(4):
            out = np.rot90(infer(np.ascontiguousarray(np.rot90(flipped, turns, axes=plane))), -turns, axes=plane)
            out = np.flip(out, plane[1]) if flip else out
            total = out.astype(np.float32) if total is None else total + out
    return total / 8
