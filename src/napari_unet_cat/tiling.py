"""Overlap-tile geometry: where each tile reads, which output pixels it writes, how much.

A plane that does not fit in one tile is cut into tiles of one size whose input windows
overlap by ``2 * margin`` pixels: each tile's *core* is the part of its output kept at
full weight, and the ``margin`` pixels around it are context only. Cores tile the plane
exactly; near their edges a linear cross-fade over ``blend`` pixels hides any seam.
When ``margin`` is at least the network's receptive radius, the context seen by a
pixel is the same as in a single whole-plane pass, so tiled and whole results agree.

Window starts are multiples of the network's size multiple (``2**depth``), so pooling
windows fall on the same pixels in every tile as in the whole plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class AxisTiles:
    """Tiles along one axis of a (padded) plane of ``length`` pixels."""

    length: int
    window: int
    starts: tuple[int, ...]
    cores: tuple[tuple[int, int], ...]
    blend: int

    def weights(self, i: int) -> np.ndarray:
        """Blending weight of each of tile ``i``'s ``window`` output pixels (0 outside its share)."""
        start = self.starts[i]
        core_start, core_stop = self.cores[i]
        x = np.arange(start, start + self.window, dtype=np.float32) + 0.5
        w = np.ones(self.window, dtype=np.float32)
        if self.blend > 0:
            if core_start > 0:
                w = np.minimum(w, np.clip((x - core_start + self.blend) / (2 * self.blend), 0, 1))
            if core_stop < self.length:
                w = np.minimum(w, np.clip((core_stop + self.blend - x) / (2 * self.blend), 0, 1))
        else:
            w[(x < core_start) | (x > core_stop)] = 0
        return w


def axis_tiles(length: int, window: int, margin: int, multiple: int, blend: int | None = None) -> AxisTiles:
    """Plan tiles along an axis.

    Args:
        length: Pixels along the axis; a multiple of ``multiple``.
        window: Tile side; a multiple of ``multiple``.
        margin: Context pixels kept each side of a core; a multiple of ``multiple``.
        multiple: The network's size multiple.
        blend: Half-width of the cross-fade at core edges (default ``margin // 2``; at
            most half the shortest core).

    Returns:
        The :class:`AxisTiles`. A length that fits in one window gets one window of
        exactly that length.
    """
    if length % multiple or window % multiple or margin % multiple:
        raise ValueError(f"length={length}, window={window} and margin={margin} must be multiples of {multiple}")
    if length <= window:
        return AxisTiles(length, length, (0,), ((0, length),), 0)
    if window - 2 * margin < multiple:
        raise ValueError(f"tile side {window} leaves no core inside a margin of {margin} on each side")
    blend = margin // 2 if blend is None else min(blend, margin)
    core = window - 2 * margin
    n = math.ceil(length / core)
    # Spread the cores evenly on the multiple grid: none is a sliver and none is longer
    # than ``core``, so every core keeps its full margin of context inside the window.
    units, core_units = length // multiple, core // multiple
    n = math.ceil(units / core_units)
    bounds = [round(i * units / n) * multiple for i in range(n + 1)]
    starts, cores = [], []
    for i in range(n):
        core_start, core_stop = bounds[i], bounds[i + 1]
        start = min(max(core_start - margin, 0), length - window)
        starts.append(start)
        cores.append((core_start, core_stop))
    # Cross-fades from both ends of a core must not meet inside it, or weights would sum
    # past 1 there: a core as short as the margin allows shortens the fade.
    blend = min(blend, min(stop - start for start, stop in cores) // 2)
    return AxisTiles(length, window, tuple(starts), tuple(cores), blend)


@dataclass(frozen=True)
class PlaneTiling:
    """How to cut one plane into tiles: padding, then tiles along rows and columns."""

    spatial: tuple[int, int]
    pad: tuple[tuple[int, int], tuple[int, int]]
    rows: AxisTiles
    cols: AxisTiles

    @property
    def window(self) -> tuple[int, int]:
        return (self.rows.window, self.cols.window)

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)


def plan_plane(
    spatial: tuple[int, int],
    *,
    tile_size: int,
    margin: int,
    multiple: int,
    border: int,
    blend: int | None = None,
) -> PlaneTiling:
    """Tiles for a plane of ``spatial`` size.

    The plane is first mirror-padded by ``border`` pixels each side (at least) and up to
    a multiple of ``multiple``, the extra going to the end; then tiled per axis.
    """
    pads = []
    axes = []
    for n in spatial:
        padded = round_up(n + 2 * border, multiple)
        before = border
        pads.append((before, padded - n - before))
        axes.append(axis_tiles(padded, tile_size, margin, multiple, blend))
    return PlaneTiling(tuple(spatial), (pads[0], pads[1]), axes[0], axes[1])
