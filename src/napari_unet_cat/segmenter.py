"""A trained U-Net and its prediction engine: tiles, bands, objects, streamed outputs.

The model file's format (save and load) is :mod:`napari_unet_cat.model_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .arrays import (
    Layout,
    apply_normalization,
    argmax_last,
    infer_layout,
    percentile_range,
    plane_indices,
    plane_subsample,
    read_window,
    resize_plane,
    scaled_shape,
    smallest_int_dtype,
    to_canonical,
)
from .config import ModelConfig
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


class UNetModel:
    """A trained U-Net, its classes and its settings.

    Attributes:
        keras_model: The underlying ``keras.Model`` (images in, logits out).
        config: The :class:`~napari_unet_cat.config.ModelConfig` saved with it.
    """

    def __init__(self, keras_model, config: ModelConfig):
        self.keras_model = keras_model
        self.config = config
        self._probability_model = None
        # Keras's JAX backend keeps a model's state on the model between calls and hands
        # its buffers to each compiled call, so two threads predicting with one model at
        # once (a Dask worker's threads) can find them gone: one call at a time there.
        # TensorFlow's calls are thread-safe and run side by side.
        from ._backend import keras

        tensorflow = keras.backend.backend() == "tensorflow"
        self._network_lock = contextlib.nullcontext() if tensorflow else threading.Lock()

    # -- description -------------------------------------------------------------------
    @property
    def class_values(self) -> list[int]:
        """Label values written for each class, in class-index order."""
        return self.config.class_values

    @property
    def class_names(self) -> dict[int, str]:
        return {c.value: c.name for c in self.config.classes}

    @property
    def n_channels(self) -> int:
        return self.config.architecture.n_channels

    def __repr__(self) -> str:
        arch = self.config.architecture
        return (
            f"UNetModel(preset={arch.preset!r}, base_filters={arch.base_filters}, depth={arch.depth}, "
            f"channels={arch.n_channels}, classes={self.class_values}, scale={self.config.scale})"
        )

    def at_scale(self, scale: float) -> UNetModel:
        """This model, predicting at ``scale`` of full resolution instead of its own (the
        network is shared, not copied): for objects of another size than it was trained
        on, e.g. ``at_scale(0.5)`` for nuclei twice as large as a scale-1 model's. The
        smallest object and seed kept grow with the objects (by ``(own / scale)**2``)."""
        import copy

        if not 0 < scale <= 4:
            raise InputError(f"scale must be in (0, 4] (received {scale})")
        config = copy.deepcopy(self.config)
        area = (config.scale / scale) ** 2
        config.scale = float(scale)
        config.min_object_size = int(round(config.min_object_size * area))
        config.min_seed_size = int(round(config.min_seed_size * area))
        config.object_areas = [a * area for a in config.object_areas]
        return self._sharing_network(config)

    def with_object_extent(self, extent: float | None) -> UNetModel:
        """This model with its objects grown to where ``p(background) < extent`` (None:
        not grown; see ``config.object_extent``); the network is shared, not copied."""
        import copy

        if extent is not None and not 0 < extent <= 1:
            raise InputError(f"the objects' extent must be in (0, 1] (received {extent})")
        config = copy.deepcopy(self.config)
        config.object_extent = None if extent is None else float(extent)
        return self._sharing_network(config)

    def _sharing_network(self, config: ModelConfig) -> UNetModel:
        """A model with ``config`` around this model's network."""
        model = UNetModel(self.keras_model, config)
        model._network_lock = self._network_lock  # one network: one lock where calls take turns
        return model

    @property
    def knows_object_sizes(self) -> bool:
        """Trained on instance masks, with the sizes of its training objects recorded
        (what :meth:`estimate_scale` compares with)."""
        return self.is_instance_model and len(self.config.object_areas) >= 2

    def estimate_scale(
        self, image, *, axes: str | None = None, min_objects: int = 5, max_side: int = 1024
    ) -> float | None:
        """The scale at which the objects of ``image`` would look as large as this
        instance model's training objects: one prediction at the model's own scale of
        the first plane (its central ``max_side`` square when larger), then ``scale *
        sqrt(median training area / median area found)``. None when fewer than
        ``min_objects`` objects are found (nothing to judge by).

        Measured in docs/benchmarks.md ("The built-in nuclei model"): on test images
        zoomed by 0.5, 1 and 2, the estimated scale scored AP@0.5 at least as high as
        the model's own scale at every zoom.
        """
        if not self.knows_object_sizes:
            raise InputError(
                "estimating the scale needs a model trained on instance masks (it compares the sizes of the "
                "objects found with the training objects'); give a scale instead"
            )
        image, axes = to_canonical(image, axes)
        layout = infer_layout(
            np.shape(image),
            n_channels=self.config.architecture.n_channels,
            axes=axes,
            channel_names=self.config.channel_names,
            gray=self.config.gray_input,
        )
        first = next(iter(plane_indices(layout)))
        (h, w), side = layout.spatial, int(max_side)
        y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
        # Only the central square is read, so a lazy or huge plane is never loaded whole.
        plane = read_window(image, layout, first, np.arange(y0, min(h, y0 + side)), np.arange(x0, min(w, x0 + side)))
        objects = self.predict(plane, axes="YXC", output="instances")
        _, areas = np.unique(objects[objects > 0], return_counts=True)
        if areas.size < min_objects:
            return None
        trained = self.config.object_areas[1]  # full-resolution pixels, as ``areas``
        scale = self.config.scale * float(np.sqrt(trained / np.median(areas)))
        return float(np.clip(scale, 0.05, 4.0))

    # -- prediction --------------------------------------------------------------------
    def auto_tile_size(
        self,
        memory_budget: int | None = None,
        spatial: tuple[int, int] | None = None,
        border: int = 0,
    ) -> int:
        """Tile side for prediction when none is given.

        Args:
            memory_budget: Bytes of activations one tile may use (default: from the
                free memory, see :func:`napari_unet_cat.resources.memory_budget`).
            spatial: The plane's ``(height, width)``, when known.
            border: Mirror border, as for :meth:`predict`.

        Returns:
            The largest side whose activations fit the budget (at most
            ``MAX_AUTO_TILE``); given ``spatial``, the side up to that which makes the
            network compute the fewest pixels (tiles times tile area) for the plane: the
            network's speed per pixel hardly depends on the tile side (tile-size curve
            in benchmarks/bench_speed.py), so overlap is what costs.
        """
        from . import resources

        arch = self.config.architecture
        k = arch.size_multiple
        budget = resources.memory_budget() if memory_budget is None else int(memory_budget)
        side = int(np.sqrt(budget / (BYTES_PER_PIXEL_PER_FILTER * arch.base_filters)))
        largest = int(np.clip(side // k * k, 4 * k, max(MAX_AUTO_TILE // k * k, 4 * k)))
        if spatial is None:
            return largest
        best_cost, best_tile = None, largest
        for tile in range(largest, max(4 * k, largest // 2) - 1, -k):
            margin = self._margin(tile)
            if tile - 2 * margin < k:
                continue
            plans = plan_plane(spatial, tile_size=tile, margin=margin, multiple=k, border=border)
            cost = len(plans) * plans.rows.window * plans.cols.window
            if best_cost is None or cost < best_cost:
                best_cost, best_tile = cost, tile
        return best_tile

    def fingerprint(self) -> str:
        """A short hash of what the model computes: its weights, network, classes,
        normalization and scale (the same for a model and its file, loaded or not). Folder
        runs record it, so that one output folder never mixes two models' masks."""
        import dataclasses
        import hashlib

        c = self.config
        described = {
            "architecture": dataclasses.asdict(c.architecture),
            "classes": [x.to_dict() for x in c.classes],
            "normalization": dataclasses.asdict(c.normalization),
            "scale": c.scale,
            "label_mode": c.training.label_mode,
        }
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
        for weights in self.keras_model.get_weights():
            digest.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
        return "sha256:" + digest.hexdigest()[:16]

    @property
    def is_instance_model(self) -> bool:
        """Trained on instance masks: predicts objects (one label each) by default."""
        return self.config.is_instance_model

    def object_maker(self, instances: str | None = None, *, min_size: int | None = None, split: bool = False):
        """The :class:`~napari_unet_cat.instances.ObjectMaker` for ``instances`` (``watershed``,
        ``components``, or None for this model's own: the watershed for an instance model).
        ``min_size`` None is the model's own (``config.min_object_size``)."""
        from .instances import ObjectMaker

        method = instances or ("watershed" if self.is_instance_model else "components")
        size = self.config.min_object_size if min_size is None else min_size
        watershed = method == "watershed"
        seeds = self.config.min_seed_size if watershed else 0
        extent = self.config.object_extent if watershed else None
        return ObjectMaker(
            method, self.class_values, min_size=size, split=split, min_seed_size=seeds, extent_threshold=extent
        )

    def _wants_objects(self, output: str | None, instances: str | None) -> bool:
        if output not in (None, "classes", "instances", "probabilities"):
            raise InputError(f"output must be 'classes', 'instances' or 'probabilities' (received {output!r})")
        if instances not in (None, "watershed", "components"):
            raise InputError(f"instances must be 'watershed' or 'components' (received {instances!r})")
        if output is None:
            return self.is_instance_model or instances is not None
        return output == "instances"

    def predict(
        self,
        image,
        tile_size: int | None = None,
        return_probabilities: bool = False,
        *,
        output: str | None = None,
        instances: str | None = None,
        min_size: int | None = None,
        split: bool = False,
        axes: str | None = None,
        rgb: bool | None = None,
        margin: int | None = None,
        border: int | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        test_time_augmentation: bool = False,
        progress: ProgressCallback | None = None,
        name: str = "image",
    ):
        """Segment an image of any size: 2D, with channels, or a stack of planes.

        Args:
            image: Array-like (NumPy, memory-mapped, dask): ``(Y, X)``, ``(Y, X, C)`` or
                stacks ``(..., Y, X[, C])``, with the channels the model was trained on.
            tile_size: Side of the square tiles the network sees (rounded up to a
                multiple of ``2**depth``); default: chosen from ``memory_budget``.
            return_probabilities: Also return per-class probabilities.
            output: ``classes`` (the class map, with the label values used in
                training), ``instances`` (objects, one label each) or ``probabilities``;
                default: ``instances`` for a model trained on instance masks, else
                ``classes``.
            instances: How objects are made: ``watershed`` (the default of an instance
                model: seeds from its interior class, grown over the foreground) or
                ``components`` (connected parts of each class but the background, the
                class of value 0 or else the lowest; the fallback for semantic models).
                Giving it asks for objects.
            min_size: Objects smaller than this many pixels (full resolution) are removed;
                default: the model's own, the area of its smallest training objects
                (their 5th percentile; 0 for models not trained on instances).
            split: With ``components``, split touching blobs where their distance
                transform has several peaks.
            axes: The image's axes in any order, such as ``YX``, ``YXC``, ``CYX``,
                ``ZYX`` or ``TCZYX`` (``C`` channels, ``S`` RGB samples, other letters
                stacks); default: guessed (a last axis of at most 4, or of the model's
                channel count, is channels). The result has the stack axes in their
                order, then Y and X.
            rgb: Whether the last axis is colour, when known (napari's ``rgb`` flag).
            margin: Context pixels around each tile's kept core (default: the
                network's receptive radius, at most a quarter of the tile).
            border: Mirror padding added at the image borders (default 0: the network
                sees zeros beyond the image, as at the edges of its training patches;
                planes are mirror-padded only up to a multiple of ``2**depth``).
            batch_size: Tiles per network call (default: as many as fit the budget, up
                to the pixels of the largest automatic tile).
            memory_budget: Bytes of activations allowed per network call (default: a
                quarter of the free memory, of the GPU when one is used).
            test_time_augmentation: Average the probabilities over the 8 flips and
                90-degree rotations of each tile (as the U-Net paper did); 8x the time.
            progress: Called with ``(tiles_done, tiles_total)`` as tiles finish.
            name: How to call the image in error messages.

        Returns:
            Labels of the image's spatial shape (leading stack axes kept): class values,
            or objects numbered 1..N over the whole image (uint16 or uint32 as needed);
            with ``return_probabilities``, the tuple ``(labels, probabilities)`` where
            probabilities have a last axis of classes; with
            ``output="probabilities"``, the probabilities alone.
        """
        objects = self._wants_objects(output, instances)
        maker = self.object_maker(instances, min_size=min_size, split=split) if objects else None
        layout, bands = self.iter_bands(
            image,
            tile_size,
            axes=axes,
            rgb=rgb,
            margin=margin,
            border=border,
            batch_size=batch_size,
            memory_budget=memory_budget,
            test_time_augmentation=test_time_augmentation,
            progress=progress,
            name=name,
        )
        values = np.asarray(self.class_values)
        keep_probs = return_probabilities or output == "probabilities"
        shape = layout.plane_shape + layout.spatial
        labels = None
        if output != "probabilities":
            labels = np.zeros(shape, dtype=np.uint32 if objects else smallest_int_dtype(int(values.max())))
        probs = np.zeros((*shape, len(values)), dtype=np.float32) if keep_probs else None
        plane_probs = None  # the current plane's probabilities, for its objects
        next_id = 1
        for index, rows, band in bands:
            if probs is not None:
                probs[(*index, slice(*rows))] = band
            if not objects:
                if labels is not None:
                    labels[(*index, slice(*rows))] = values[argmax_last(band)]
                continue
            if plane_probs is None:
                plane_probs = (
                    probs[index] if probs is not None else np.zeros((*layout.spatial, len(values)), np.float32)
                )
            plane_probs[slice(*rows)] = band
            if rows[1] == layout.spatial[0]:
                # The plane is complete: its objects, numbered on from the last plane's.
                plane_objects = maker.label_plane(plane_probs)
                labels[index] = np.where(plane_objects > 0, plane_objects + np.uint32(next_id - 1), 0)
                next_id += int(plane_objects.max())
                plane_probs = None
        if objects:
            labels = labels.astype(smallest_int_dtype(max(next_id - 1, 1)), copy=False)
        if output == "probabilities":
            return probs
        return (labels, probs) if return_probabilities else labels

    def labels_from_probabilities(
        self,
        probabilities: np.ndarray,
        *,
        output: str = "classes",
        instances: str | None = None,
        min_size: int | None = None,
        split: bool = False,
    ) -> np.ndarray:
        """Class map (``output="classes"``) or objects (``"instances"``) of probabilities
        ``(..., Y, X, classes)`` as :meth:`predict` returns them; objects are numbered
        1..N over all planes (uint16 or uint32 as needed)."""
        probs = np.asarray(probabilities, np.float32)
        values = np.asarray(self.class_values)
        if probs.ndim < 3 or probs.shape[-1] != len(values):
            raise InputError(
                f"probabilities of shape {probs.shape} do not fit this model's {len(values)} classes "
                "(expected (..., Y, X, classes))"
            )
        if output == "classes":
            return values[argmax_last(probs)].astype(smallest_int_dtype(int(values.max())))
        if output != "instances":
            raise InputError(f"output must be 'classes' or 'instances' (received {output!r})")
        maker = self.object_maker(instances, min_size=min_size, split=split)
        labels = np.zeros(probs.shape[:-1], np.uint32)
        next_id = 1
        for index in np.ndindex(*probs.shape[:-3]):
            plane = maker.label_plane(probs[index])
            labels[index] = np.where(plane > 0, plane + np.uint32(next_id - 1), 0)
            next_id += int(plane.max())
        return labels.astype(smallest_int_dtype(max(next_id - 1, 1)), copy=False)

    def predict_to_tiff(
        self,
        image,
        path: str | os.PathLike,
        tile_size: int | None = None,
        *,
        chunk: int = 256,
        progress: ProgressCallback | None = None,
        name: str = "image",
        **options,
    ) -> Path:
        """Segment ``image`` straight into a tiled, compressed TIFF file, band by band.

        Only a band of rows of probabilities is held at a time and the labels are
        written as they are finished, so with a lazy ``image`` (memory-mapped TIFF,
        zarr, dask) the memory used stays about the same however large the image is.
        The labels are the same as :meth:`predict` gives; objects are the same up to
        their numbering, those across band edges included (see
        :class:`~napari_unet_cat.instances.BandStitcher`: rows are held until every
        object reaching them is complete), and are written as uint32. The file is
        written under a temporary name and renamed, so it is complete or absent.

        Args:
            image: As for :meth:`predict`.
            path: The TIFF file to write (BigTIFF when over 2 GiB); stacks become pages.
            tile_size: As for :meth:`predict`.
            chunk: Side of the TIFF's square tiles.
            progress: Called with ``(tiles_done, tiles_total)``.
            name: How to call the image in error messages.
            **options: ``output`` (``classes`` or ``instances``), ``instances``,
                ``min_size``, ``split``, ``axes``, ``rgb``, ``margin``, ``border``, ``batch_size``,
                ``memory_budget``, ``test_time_augmentation``, as for :meth:`predict`.

        Returns:
            The path written.
        """
        import tifffile

        from .io import atomic_write

        layout, blocks, dtype = self._label_blocks(image, tile_size, chunk, progress, name, options)
        shape = layout.plane_shape + layout.spatial

        def tiles():
            for _, _, block in blocks:
                for c in range(0, layout.spatial[1], chunk):
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

    def predict_to_zarr(
        self,
        image,
        path: str | os.PathLike,
        tile_size: int | None = None,
        *,
        chunk: int = 512,
        progress: ProgressCallback | None = None,
        name: str = "image",
        **options,
    ) -> Path:
        """Segment ``image`` straight into a zarr array (a ``.zarr`` folder), band by band.

        As :meth:`predict_to_tiff`, with the same labels and the same memory use; the
        array's chunks are ``chunk`` pixels square (one plane deep for stacks). The
        folder is written under a temporary name and renamed, so it is complete or
        absent; an existing one at ``path`` is replaced only once the new one is whole.

        Returns:
            The path written.
        """
        import shutil

        import zarr

        path = Path(path)
        layout, blocks, dtype = self._label_blocks(image, tile_size, chunk, progress, name, options)
        shape = layout.plane_shape + layout.spatial
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp.zarr", dir=path.parent))
        try:
            array = zarr.open_array(
                str(tmp), mode="w", shape=shape, dtype=dtype, chunks=(1,) * len(layout.plane_shape) + (chunk, chunk)
            )
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

    def _label_blocks(self, image, tile_size, chunk: int, progress, name: str, options: dict):
        """``(layout, blocks, dtype)`` where ``blocks`` yields ``(plane_index, row_start,
        labels)`` for blocks of ``chunk`` whole rows (fewer at a plane's end), in order."""
        if chunk < 16 or chunk % 16:
            raise InputError(f"chunk must be a positive multiple of 16 (received {chunk})")
        options = dict(options)
        output = options.pop("output", None)
        instances = options.pop("instances", None)
        min_size = options.pop("min_size", None)
        split = options.pop("split", False)
        if output == "probabilities":
            raise InputError(
                "probabilities are not streamed into a mask file: use predict(..., output='probabilities')"
            )
        objects = self._wants_objects(output, instances)
        maker = self.object_maker(instances, min_size=min_size, split=split) if objects else None
        layout, bands = self.iter_bands(image, tile_size, progress=progress, name=name, **options)
        values = np.asarray(self.class_values)
        dtype = np.dtype(np.uint32) if objects else smallest_int_dtype(int(values.max()))

        def label_rows():
            """``(plane_index, plane_done, labels)`` for consecutive rows of each plane."""
            from .instances import BandStitcher

            stitcher, next_id = None, 1
            for index, (_, stop), band in bands:
                done = stop == layout.spatial[0]
                if not objects:
                    yield index, done, values[argmax_last(band)].astype(dtype)
                    continue
                if stitcher is None:
                    stitcher = BandStitcher(maker, layout.spatial[0])
                    stitcher.next_id = next_id
                for _, rows in stitcher.add(band):
                    yield index, done, rows
                if done:
                    next_id, stitcher = stitcher.next_id, None

        def blocks():
            held: list[np.ndarray] = []
            rows_held = top = 0
            plane = None
            for index, plane_done, rows in label_rows():
                if index != plane:
                    plane, held, rows_held, top = index, [], 0, 0
                held.append(rows)
                rows_held += rows.shape[0]
                while rows_held >= chunk or (rows_held and plane_done):
                    block = np.concatenate(held)
                    yield index, top, block[:chunk]
                    held = [block[chunk:]]
                    rows_held = held[0].shape[0]
                    top += chunk

        return layout, blocks(), dtype

    def iter_bands(
        self,
        image,
        tile_size: int | None = None,
        *,
        axes: str | None = None,
        rgb: bool | None = None,
        margin: int | None = None,
        border: int | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        test_time_augmentation: bool = False,
        progress: ProgressCallback | None = None,
        name: str = "image",
    ):
        """Plan the prediction of ``image`` and return ``(layout, bands)``, where
        ``bands`` yields ``(plane_index, (row_start, row_stop), probabilities)`` for
        consecutive bands of rows, plane after plane (arguments as for :meth:`predict`).
        Errors in the arguments are raised here, before any band is computed."""
        arch = self.config.architecture
        k = arch.size_multiple
        image, axes = to_canonical(image, axes, name=name)
        layout = infer_layout(
            np.shape(image),
            n_channels=arch.n_channels,
            rgb=rgb,
            axes=axes,
            name=name,
            channel_names=self.config.channel_names,
            gray=self.config.gray_input,
        )
        border = 0 if border is None else int(border)
        if border < 0:
            raise InputError(f"border must not be negative (received {border})")
        if tile_size is not None and tile_size < k:
            raise InputError(f"tile size must be at least {k} for this model (received {tile_size})")
        if memory_budget is None:
            from .resources import memory_budget as free_memory_budget

            memory_budget = free_memory_budget()
        scale = self.config.scale
        work_spatial = scaled_shape(layout.spatial, scale) if scale != 1.0 else layout.spatial
        if tile_size:
            tile = round_up(int(tile_size), k)
        else:
            tile = self.auto_tile_size(memory_budget, work_spatial, border)
        margin = self._margin(tile) if margin is None else round_up(int(margin), k)
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
            per_tile = BYTES_PER_PIXEL_PER_FILTER * arch.base_filters * tile * tile
            largest = self.auto_tile_size(memory_budget)
            batch_size = int(max(1, min(64, memory_budget // per_tile, largest * largest // (tile * tile))))
        plans = plan_plane(work_spatial, tile_size=tile, margin=margin, multiple=k, border=border)
        tta = bool(test_time_augmentation)

        def bands():
            total = layout.n_planes * len(plans)
            done = 0
            for index in plane_indices(layout):
                if scale != 1.0:
                    # A rescaled plane is held whole: its bands join, then return to full size.
                    plane = self._scaled_plane(image, layout, index)
                    parts = self._predict_plane(
                        plane, _in_memory_layout(plane), (), plans, batch_size, normalized=True, tta=tta
                    )
                    whole = np.concatenate([band for _, band in parts])
                    yield index, (0, layout.spatial[0]), resize_plane(whole, layout.spatial)
                else:
                    for rows, band in self._predict_plane(image, layout, index, plans, batch_size, tta=tta):
                        yield index, rows, band
                done += len(plans)
                if progress is not None:
                    progress(done, total)

        return layout, bands()

    def _margin(self, tile: int) -> int:
        arch = self.config.architecture
        k = arch.size_multiple
        return min(round_up(arch.receptive_radius, k), max(k, (tile // 4) // k * k))

    def _scaled_plane(self, image, layout: Layout, index) -> np.ndarray:
        """One plane, normalized and resized by the model's scale (held in memory)."""
        rows = np.arange(layout.spatial[0])
        cols = np.arange(layout.spatial[1])
        plane = read_window(image, layout, index, rows, cols)
        plane = apply_normalization(plane, *percentile_range(plane, self.config.normalization))
        return resize_plane(plane, scaled_shape(layout.spatial, self.config.scale))

    def _predict_plane(
        self,
        source,
        layout: Layout,
        index,
        plans: PlaneTiling,
        batch_size: int,
        *,
        normalized: bool = False,
        tta: bool = False,
    ):
        """Yield ``((row_start, row_stop), probabilities)`` bands of one plane, top to bottom.

        Tiles are read one window at a time, so a lazy source is never loaded whole; a
        band of finished rows is released as soon as no later tile touches it.
        """
        if normalized:
            lo, hi = np.float32(0), np.float32(1)
        else:
            lo, hi = percentile_range(plane_subsample(source, layout, index), self.config.normalization)
        (pad_top, _), (pad_left, _) = plans.pad
        height, width = layout.spatial
        if len(plans) == 1:
            # One window holds the whole padded plane: no blending to do.
            rows = np.arange(plans.rows.length) - pad_top
            cols = np.arange(plans.cols.length) - pad_left
            window = apply_normalization(read_window(source, layout, index, rows, cols), lo, hi)
            out = self._infer(window[None], tta=tta)[0]
            yield (0, height), out[pad_top : pad_top + height, pad_left : pad_left + width]
            return
        n_classes = len(self.class_values)
        padded_w = plans.cols.length
        win_h, win_w = plans.window
        acc = np.zeros((0, padded_w, n_classes), np.float32)
        wsum = np.zeros((0, padded_w), np.float32)
        acc_start = 0
        col_weights = [plans.cols.weights(j) for j in range(len(plans.cols.starts))]
        for i, r in enumerate(plans.rows.starts):
            row_w = plans.rows.weights(i)
            rows = np.arange(r, r + win_h) - pad_top
            need = r + win_h - acc_start
            if need > acc.shape[0]:
                grow = need - acc.shape[0]
                acc = np.concatenate([acc, np.zeros((grow, padded_w, n_classes), np.float32)])
                wsum = np.concatenate([wsum, np.zeros((grow, padded_w), np.float32)])
            # One batch of windows at a time, each blended in as soon as it is computed: the
            # memory held does not grow with the number of tiles across the plane.
            for b in range(0, len(plans.cols.starts), batch_size):
                starts = plans.cols.starts[b : b + batch_size]
                windows = [
                    apply_normalization(
                        read_window(source, layout, index, rows, np.arange(c, c + win_w) - pad_left), lo, hi
                    )
                    for c in starts
                ]
                outputs = self._infer(np.stack(windows), tta=tta)
                del windows
                for j, (c, out) in enumerate(zip(starts, outputs), start=b):
                    w = row_w[:, None] * col_weights[j][None, :]
                    acc[r - acc_start : r - acc_start + win_h, c : c + win_w] += out * w[..., None]
                    wsum[r - acc_start : r - acc_start + win_h, c : c + win_w] += w
                del outputs
            final = plans.rows.length if i == len(plans.rows.starts) - 1 else plans.rows.starts[i + 1]
            # Rows before ``final`` get no more contributions: emit those inside the image.
            lo_row, hi_row = max(acc_start, pad_top), min(final, pad_top + height)
            if hi_row > lo_row:
                band = acc[lo_row - acc_start : hi_row - acc_start, pad_left : pad_left + width]
                band_w = wsum[lo_row - acc_start : hi_row - acc_start, pad_left : pad_left + width]
                yield (lo_row - pad_top, hi_row - pad_top), band / band_w[..., None]
            drop = final - acc_start
            acc, wsum, acc_start = acc[drop:], wsum[drop:], final

    def _infer(self, batch: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Softmax probabilities of a batch of ``(N, Y, X, C)`` tiles (averaged over the
        dihedral transforms when test-time augmentation is on)."""
        if not tta:
            return self._softmax(batch)
        total = np.zeros((*batch.shape[:3], len(self.class_values)), np.float32)
        for flip in (False, True):
            flipped = batch[:, :, ::-1] if flip else batch
            for turns in range(4):
                # Tile sides are multiples of 2**depth, so every transform keeps the
                # pooling grid on the same pixels and maps back exactly.
                out = self._softmax(np.ascontiguousarray(np.rot90(flipped, turns, axes=(1, 2))))
                out = np.rot90(out, -turns, axes=(1, 2))
                total += out[:, :, ::-1] if flip else out
        return total / 8

    def _softmax(self, batch: np.ndarray) -> np.ndarray:
        with self._network_lock:
            return self._softmax_unlocked(batch)

    def _softmax_unlocked(self, batch: np.ndarray) -> np.ndarray:
        if self._probability_model is None:
            from ._backend import keras
            from .unet import PriorCorrection

            # The softmax runs inside the compiled network call (in float32 whatever
            # the network's precision), sharing the network's weights; so does undoing
            # the class weights an instance model was trained with.
            logits = self.keras_model.outputs[0]
            probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
            weights = self.config.class_prior_weights
            if weights:
                probabilities = PriorCorrection(weights, dtype="float32", name="prior_correction")(probabilities)
            self._probability_model = keras.Model(self.keras_model.inputs, probabilities)
        return np.asarray(self._probability_model.predict_on_batch(batch), dtype=np.float32)

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, weights_dtype: str = "float32") -> Path:
        """Write the model file, atomically; see :func:`napari_unet_cat.model_file.save_model`."""
        from .model_file import save_model

        return save_model(self, path, weights_dtype=weights_dtype)

    def export_bioimageio(self, path: str | os.PathLike, sample, **fields) -> Path:
        """Write a bioimage.io model package (a ``.zip``) that other tools run; ``sample``
        is a real image the test tensors are made from. The fields (``name``,
        ``description``, ``authors``, ``license``...) are those of
        :func:`napari_unet_cat.bioimageio.export_bioimageio`."""
        from .bioimageio import export_bioimageio

        return export_bioimageio(self, path, sample, **fields)


def _in_memory_layout(plane: np.ndarray) -> Layout:
    """Layout of a prepared ``(Y, X, C)`` plane."""
    return Layout(plane_shape=(), spatial=plane.shape[:2], channels=plane.shape[2], channel_axis=True)
