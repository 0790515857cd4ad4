"""Streamed mask files: labels written block by block as prediction finishes their rows.

A writer takes ``blocks``: ``(plane_index, row_start, labels)`` for blocks of whole rows,
in order, plane after plane (see :func:`row_blocks`). Only the block in hand is held, so
a mask larger than memory can be written. Each file is written under a temporary name
and renamed into place: it is complete or absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_write

#: ``(plane_index, row_start, labels)``: a block of whole rows of one plane.
Block = tuple[tuple[int, ...], int, np.ndarray]


def check_chunk(chunk: int) -> int:
    """A file chunk side: a positive multiple of 16 (TIFF tiles must be)."""
    if chunk < 16 or chunk % 16:
        raise InputError(f"chunk must be a positive multiple of 16 (received {chunk})")
    return int(chunk)


def row_blocks(rows: Iterable[tuple[tuple[int, ...], bool, np.ndarray]], chunk: int) -> Iterator[Block]:
    """Regroup ``(plane_index, plane_done, labels)`` runs of consecutive rows into blocks of
    ``chunk`` rows (fewer at a plane's end)."""
    held: list[np.ndarray] = []
    rows_held = top = 0
    plane = None
    for index, plane_done, labels in rows:
        if index != plane:
            plane, held, rows_held, top = index, [], 0, 0
        held.append(labels)
        rows_held += labels.shape[0]
        while rows_held >= chunk or (rows_held and plane_done):
            block = np.concatenate(held)
            yield index, top, block[:chunk]
            held = [block[chunk:]]
            rows_held = held[0].shape[0]
            top += chunk


def write_tiff_blocks(
    path: str | os.PathLike, shape: tuple[int, ...], dtype, blocks: Iterable[Block], chunk: int
) -> Path:
    """Write ``blocks`` into a tiled, compressed TIFF of ``shape`` (stacks become pages;
    BigTIFF when over 2 GiB), atomically."""
    import tifffile

    width = shape[-1]

    def tiles():
        for _, _, block in blocks:
            for c in range(0, width, chunk):
                yield np.ascontiguousarray(block[:, c : c + chunk])

    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return atomic_write(
        path,
        lambda tmp: tifffile.imwrite(
            tmp,
            data=tiles(),
            shape=shape,
            dtype=dtype,
            tile=(chunk, chunk),
            compression="zlib",
            bigtiff=nbytes > 2**31 - 2**26,
        ),
    )


def write_zarr_blocks(
    path: str | os.PathLike, shape: tuple[int, ...], dtype, blocks: Iterable[Block], chunk: int
) -> Path:
    """Write ``blocks`` into a zarr array (a ``.zarr`` folder) of ``shape``, chunks
    ``chunk`` pixels square and one plane deep. The folder is built under a temporary
    name; one already at ``path`` is replaced only once the new one is whole."""
    import zarr

    path = Path(path)
    n_stack = len(shape) - 2
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp.zarr", dir=path.parent))
    try:
        array = zarr.open_array(str(tmp), mode="w", shape=shape, dtype=dtype, chunks=(1,) * n_stack + (chunk, chunk))
        for index, top, block in blocks:
            array[(*index, slice(top, top + block.shape[0]))] = block
        if path.exists():
            old = path.with_name(f".{path.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)  # left by a run killed just here
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
