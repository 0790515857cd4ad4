"""Overlap-tile prediction of volumes by a 3D network, streamed in slabs of Z-planes.

The volume is cut into blocks whose input windows overlap by their margins (the paper's
overlap-tile strategy, in three axes), mirrored at the volume's faces, read one block at
a time (a lazy volume is never loaded whole) and blended. Slabs of finished Z-planes are
handed out as soon as no later block reaches them, in the same ``(index, (start, stop),
probabilities)`` form as the bands of planes (:func:`napari_unet_cat.inference.iter_bands`),
the first axis of the volume's layout being Z: what is held is a slab of blocks' depth,
however many planes the volume has.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .arrays import Layout, apply_normalization, channels_last, percentile_range, reflect_index
from .errors import InputError
from .inference import Band, ProgressCallback, SlabBlender, TiledNetwork
from .tiling import AxisTiles, axis_tiles, round_up

#: Largest block side (Y and X) chosen automatically, and its depth in Z: blocks
#: larger than this compute little less overlap for much more memory.
MAX_AUTO_SIDE = 256
MAX_AUTO_DEPTH = 64
#: Estimated activation bytes one 3D network call may hold, whatever the memory allows:
#: TensorFlow's CPU 3D convolutions abort the process (``std::bad_alloc``) once the widest
#: activation of a call passes about 2e8 values (measured: 4 filters at 7 blocks of
#: 64x256x256, 8 filters at 4), with gigabytes still free. 3 GiB is 1.3e8 values.
MAX_CALL_BYTES = 3 * 2**30


def volume_layout(layout: Layout, name: str = "image") -> Layout:
    """The layout of ``layout``'s volumes: the last stack axis (Z) joins the spatial
    axes, so that ``spatial`` is ``(Z, Y, X)`` and each index of ``plane_shape`` is a volume."""
    if not layout.plane_shape:
        raise InputError(
            f"{name} is a single plane of shape {layout.spatial}, but this model segments volumes (Z, Y, X): "
            "give a z-stack, or its axes (for example --axes ZYX)"
        )
    return dataclasses.replace(
        layout, plane_shape=layout.plane_shape[:-1], spatial=(layout.plane_shape[-1], *layout.spatial)
    )


@dataclass(frozen=True)
class BlockPlan:
    """How a volume is cut: its padding and the blocks along each of Z, Y and X."""

    pad: tuple[tuple[int, int], ...]
    axes: tuple[AxisTiles, AxisTiles, AxisTiles]
    batch_size: int

    @property
    def window(self) -> tuple[int, int, int]:
        return tuple(a.window for a in self.axes)

    def __len__(self) -> int:
        return math.prod(len(a.starts) for a in self.axes)


def plan_blocks(
    network: TiledNetwork,
    spatial: tuple[int, int, int],
    *,
    z_multiple: int,
    memory_budget: int,
    block: tuple[int, int, int] | None = None,
    batch_size: int | None = None,
) -> BlockPlan:
    """Blocks for a volume of ``spatial`` voxels ``(Z, Y, X)``: each side a multiple of
    the network's grid (``z_multiple`` in Z, ``size_multiple`` in Y and X), with a
    margin of the receptive radius (at most a quarter of the block) on each side, and
    as many blocks a call as ``memory_budget`` (at most :data:`MAX_CALL_BYTES`) allows.

    Raises:
        InputError: A block side is too small for the network or its margin.
    """
    memory_budget = min(memory_budget, MAX_CALL_BYTES)
    k = network.size_multiple
    multiples = (z_multiple, k, k)
    padded = tuple(round_up(n, m) for n, m in zip(spatial, multiples))
    if block is None:
        block = auto_block(network, padded, z_multiple, memory_budget)
    block = tuple(min(round_up(int(b), m), p) for b, m, p in zip(block, multiples, padded))
    axes = []
    for length, side, m in zip(padded, block, multiples):
        margin = min(round_up(network.receptive_radius, m), max(m, (side // 4) // m * m))
        if side < length and side - 2 * margin < m:
            raise InputError(f"block side {side} is too small for a margin of {margin} voxels on each side")
        axes.append(axis_tiles(length, side, margin if side < length else 0, m))
    pad = tuple((0, p - n) for n, p in zip(spatial, padded))
    per_block = network.bytes_per_pixel * math.prod(block)
    batch = batch_size or int(max(1, min(8, memory_budget // max(per_block, 1))))
    return BlockPlan(pad, tuple(axes), batch)


def auto_block(network: TiledNetwork, padded: tuple[int, int, int], z_multiple: int, memory_budget: int):
    """The largest block (at most :data:`MAX_AUTO_DEPTH` deep, :data:`MAX_AUTO_SIDE`
    wide) whose activations fit ``memory_budget``; never larger than the volume."""
    k = network.size_multiple
    voxels = max(1, memory_budget // network.bytes_per_pixel)
    depth = min(padded[0], round_up(MAX_AUTO_DEPTH, z_multiple))
    side = int(np.sqrt(voxels / depth)) // k * k
    side = int(np.clip(side, 4 * k, max(4 * k, MAX_AUTO_SIDE)))
    return depth, min(side, padded[1]), min(side, padded[2])


def read_block(source, layout: Layout, index: tuple[int, ...], coords: list[np.ndarray]) -> np.ndarray:
    """Voxels at ``coords`` (one range per axis, Z, Y, X; mirrored back inside the
    volume where they leave it) of volume ``index`` as float32 ``(z, y, x, C)``. Only
    their bounding box is read, so this works on lazy arrays."""
    coords = [reflect_index(np.asarray(c), n) for c, n in zip(coords, layout.spatial)]
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    block = channels_last(np.asarray(source[(*index, *box)]), layout)
    for axis, (c, s) in enumerate(zip(coords, box)):
        block = np.take(block, c - s.start, axis=axis)
    return block


def volume_range(source, layout: Layout, index, normalization) -> tuple[np.ndarray, np.ndarray]:
    """The normalization percentiles of volume ``index``, from a strided subsample."""
    step = max(1, int((math.prod(layout.spatial) / (1 << 21)) ** (1 / 3)))
    sample = np.asarray(source[(*index, *(slice(None, None, step),) * 3)])
    return percentile_range(channels_last(sample, layout, dtype=None), normalization)


def iter_slabs(
    network: TiledNetwork,
    source,
    layout: Layout,
    plan: BlockPlan,
    *,
    progress: ProgressCallback | None = None,
) -> Iterator[Band]:
    """Probabilities of each volume of ``source`` (``layout`` from :func:`volume_layout`),
    slab by slab of finished Z-planes: ``(volume_index, (z_start, z_stop), (dz, Y, X, classes))``."""
    total = max(1, int(np.prod(layout.plane_shape, dtype=np.int64))) * len(plan)
    done = 0
    for index in np.ndindex(*layout.plane_shape):
        yield from _volume_slabs(network, source, layout, index, plan)
        done += len(plan)
        if progress is not None:
            progress(done, total)


def _volume_slabs(network: TiledNetwork, source, layout: Layout, index, plan: BlockPlan) -> Iterator[Band]:
    lo, hi = volume_range(source, layout, index, network.normalization)
    z_axis, y_axis, x_axis = plan.axes
    window = plan.window
    blender = SlabBlender((y_axis.length, x_axis.length), network.n_classes)
    across = list(itertools.product(range(len(y_axis.starts)), range(len(x_axis.starts))))
    keep = [(before, before + n) for (before, _), n in zip(plan.pad, layout.spatial)]
    for i, z in enumerate(z_axis.starts):
        z_weights = z_axis.weights(i)
        blender.reach(z + window[0])
        for b in range(0, len(across), plan.batch_size):
            chosen = across[b : b + plan.batch_size]
            blocks = []
            for r, c in chosen:
                corner = (z, y_axis.starts[r], x_axis.starts[c])
                coords = [np.arange(s, s + w) for s, w in zip(corner, window)]
                blocks.append(apply_normalization(read_block(source, layout, index, coords), lo, hi))
            outputs = network.infer(np.stack(blocks))
            del blocks
            for (r, c), out in zip(chosen, outputs):
                weights = z_weights[:, None, None] * y_axis.weights(r)[None, :, None] * x_axis.weights(c)[None, None, :]
                blender.add((z, y_axis.starts[r], x_axis.starts[c]), out, weights)
            del outputs
        final = z_axis.length if i == len(z_axis.starts) - 1 else z_axis.starts[i + 1]
        slab = blender.release(final, keep[0], keep[1:])
        if slab is not None:
            yield index, slab[0], slab[1]
