"""A trained U-Net: its description, its variants, and prediction with it.

The tiled engine is :mod:`~napari_unet_cat.inference`, the streamed mask files
:mod:`~napari_unet_cat.writers`, the model file's format :mod:`~napari_unet_cat.model_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .arrays import Layout, argmax_last, infer_layout, plane_indices, read_window, smallest_int_dtype, to_canonical
from .config import ModelConfig
from .errors import InputError
from .inference import BYTES_PER_PIXEL_PER_FILTER, Band, ProgressCallback, TiledNetwork, plan_tiles
from .instances import PlaneNumbering

#: What :meth:`UNetModel.predict` may return.
OUTPUTS = ("classes", "instances", "probabilities")
#: How objects may be made (see :meth:`UNetModel.predict`).
OBJECT_METHODS = ("watershed", "components")


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
        smallest object and seed kept grow with the objects (by ``(own / scale)**2``).
        A model that resizes each photo to a long side then uses ``scale`` instead."""
        import copy

        if not 0 < scale <= 4:
            raise InputError(f"scale must be in (0, 4] (received {scale})")
        config = copy.deepcopy(self.config)
        area = (config.scale / scale) ** 2
        config.scale = float(scale)
        config.long_side = None
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
        image, layout = self.read_layout(image, axes)
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
    def tiled_network(self, spatial: tuple[int, ...] | None = None) -> TiledNetwork:
        """This model as the tiled engine sees it (:class:`~napari_unet_cat.inference.TiledNetwork`),
        for an image of ``spatial`` pixels (its scale, where the model resizes each photo)."""
        arch = self.config.architecture
        return TiledNetwork(
            infer=self.tile_probabilities,
            n_classes=len(self.class_values),
            size_multiple=arch.size_multiple,
            receptive_radius=arch.receptive_radius,
            bytes_per_pixel=BYTES_PER_PIXEL_PER_FILTER * arch.base_filters,
            normalization=self.config.normalization,
            scale=self.config.scale if spatial is None else self.config.scale_for(spatial),
        )

    @property
    def halo(self) -> int:
        """Context pixels each side that a tile needs for its core to equal a whole-image
        pass (the receptive radius on the network's grid)."""
        return self.tiled_network().margin(1 << 30)

    def auto_tile_size(
        self,
        memory_budget: int | None = None,
        spatial: tuple[int, int] | None = None,
        border: int = 0,
    ) -> int:
        """Tile side for prediction when none is given: the largest that fits
        ``memory_budget`` bytes of activations (default: from the free memory, see
        :func:`napari_unet_cat.resources.memory_budget`), or, given the plane's
        ``(height, width)``, the side up to that which computes the fewest pixels
        (see :meth:`napari_unet_cat.inference.TiledNetwork.auto_tile_size`)."""
        from .resources import memory_budget as free_memory_budget

        budget = free_memory_budget() if memory_budget is None else int(memory_budget)
        return self.tiled_network().auto_tile_size(budget, spatial, border)

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

    def wants_objects(self, output: str | None = None, instances: str | None = None) -> bool:
        """Whether ``output`` and ``instances`` (as for :meth:`predict`) ask for objects."""
        if output not in (None, *OUTPUTS):
            raise InputError(f"output must be 'classes', 'instances' or 'probabilities' (received {output!r})")
        if instances not in (None, *OBJECT_METHODS):
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
        objects = self.wants_objects(output, instances)
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
        keep_probs = return_probabilities or output == "probabilities"
        labels, probs = self._gather(layout, bands, maker, keep_probs, labels=output != "probabilities")
        if output == "probabilities":
            return probs
        return (labels, probs) if return_probabilities else labels

    def _gather(self, layout: Layout, bands: Iterator[Band], maker, keep_probs: bool, *, labels: bool = True):
        """``(labels, probabilities)`` of the whole image from its ``bands`` (each None
        when not asked for): class values, or objects numbered across planes by ``maker``."""
        values = np.asarray(self.class_values)
        shape = layout.plane_shape + layout.spatial
        objects = maker is not None
        out = np.zeros(shape, np.uint32 if objects else smallest_int_dtype(int(values.max()))) if labels else None
        probs = np.zeros((*shape, len(values)), dtype=np.float32) if keep_probs else None
        plane_probs = None  # the current plane's probabilities, for its objects
        numbering = PlaneNumbering()
        for index, rows, band in bands:
            if probs is not None:
                probs[(*index, slice(*rows))] = band
            if not objects:
                if out is not None:
                    out[(*index, slice(*rows))] = values[argmax_last(band)]
                continue
            if plane_probs is None:
                plane_probs = (
                    probs[index] if probs is not None else np.zeros((*layout.spatial, len(values)), np.float32)
                )
            plane_probs[slice(*rows)] = band
            if rows[1] == layout.spatial[0]:  # the plane is complete: its objects
                out[index] = numbering.add(maker.label_plane(plane_probs))
                plane_probs = None
        return (numbering.fit(out) if objects else out), probs

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
        numbering = PlaneNumbering()
        for index in np.ndindex(*probs.shape[: -2 - self.config.ndim]):
            labels[index] = numbering.add(maker.label_plane(probs[index]))
        return numbering.fit(labels)

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
        from .writers import write_tiff_blocks

        layout, blocks, dtype = self.label_blocks(image, tile_size, chunk, progress=progress, name=name, **options)
        return write_tiff_blocks(path, layout.plane_shape + layout.spatial, dtype, blocks, chunk)

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
        from .writers import write_zarr_blocks

        layout, blocks, dtype = self.label_blocks(image, tile_size, chunk, progress=progress, name=name, **options)
        return write_zarr_blocks(path, layout.plane_shape + layout.spatial, dtype, blocks, chunk)

    def label_blocks(
        self,
        image,
        tile_size: int | None,
        chunk: int,
        *,
        output: str | None = None,
        instances: str | None = None,
        min_size: int | None = None,
        split: bool = False,
        **options,
    ):
        """``(layout, blocks, dtype)`` where ``blocks`` yields ``(plane_index, row_start,
        labels)`` for blocks of ``chunk`` whole rows (fewer at a plane's end), in order
        (see :mod:`~napari_unet_cat.writers`); other options as for :meth:`iter_bands`."""
        from .writers import check_chunk, row_blocks

        chunk = check_chunk(chunk)
        if output == "probabilities":
            raise InputError(
                "probabilities are not streamed into a mask file: use predict(..., output='probabilities')"
            )
        objects = self.wants_objects(output, instances)
        maker = self.object_maker(instances, min_size=min_size, split=split) if objects else None
        layout, bands = self.iter_bands(image, tile_size, **options)
        values = np.asarray(self.class_values)
        dtype = np.dtype(np.uint32) if objects else smallest_int_dtype(int(values.max()))
        rows = _label_rows(bands, layout, values, dtype, maker)
        if self.config.ndim == 3:  # the files are written plane by plane
            layout, rows = _planes_layout(layout), _slabs_as_planes(rows)
        return layout, row_blocks(rows, chunk), dtype

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
    ) -> tuple[Layout, Iterator[Band]]:
        """Plan the prediction of ``image`` and return ``(layout, bands)``, where
        ``bands`` yields ``(plane_index, (row_start, row_stop), probabilities)`` for
        consecutive bands of rows, plane after plane (arguments as for :meth:`predict`).
        Errors in the arguments are raised here, before any band is computed."""
        from . import inference
        from .resources import memory_budget as free_memory_budget

        image, layout = self.read_layout(image, axes, rgb=rgb, name=name)
        network = self.tiled_network(layout.spatial)
        if test_time_augmentation:
            network = _with_tta(network)
        budget = free_memory_budget() if memory_budget is None else int(memory_budget)
        if self.config.ndim == 3:
            return self._volume_bands(image, layout, network, budget, tile_size, batch_size, progress, name)
        plan = plan_tiles(
            network,
            layout.spatial,
            memory_budget=budget,
            tile_size=tile_size,
            margin=margin,
            border=0 if border is None else int(border),
            batch_size=batch_size,
        )
        return layout, inference.iter_bands(network, image, layout, plan, progress=progress)

    def _volume_bands(self, image, layout, network, budget, tile_size, batch_size, progress, name):
        """``(volume layout, slabs)`` of a 3D model's prediction (see :mod:`~napari_unet_cat.volume_inference`)."""
        from . import volume_inference

        volumes = volume_inference.volume_layout(layout, name)
        arch = self.config.architecture
        block = None
        if tile_size:
            depth = self.config.training.patch_depth or tile_size
            block = (max(depth, 2 * arch.z_multiple), tile_size, tile_size)
        plan = volume_inference.plan_blocks(
            network, volumes.spatial, z_multiple=arch.z_multiple, memory_budget=budget, block=block,
            batch_size=batch_size,
        )  # fmt: skip
        return volumes, volume_inference.iter_slabs(network, image, volumes, plan, progress=progress)

    def read_layout(self, image, axes: str | None = None, *, rgb: bool | None = None, name: str = "image"):
        """``(image, layout)``: ``image`` with its axes in canonical order, and where its
        planes, rows, columns and channels lie for this model (see
        :func:`~napari_unet_cat.arrays.infer_layout`)."""
        image, axes = to_canonical(image, axes, name=name)
        layout = infer_layout(
            np.shape(image),
            n_channels=self.config.architecture.n_channels,
            rgb=rgb,
            axes=axes,
            name=name,
            channel_names=self.config.channel_names,
            gray=self.config.gray_input,
        )
        return image, layout

    def tile_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(N, Y, X, classes)`` of normalized tiles ``(N, Y, X, C)``,
        float32, with the class weights of training undone for an instance model."""
        with self._network_lock:
            return self._probabilities_unlocked(batch)

    def _probabilities_unlocked(self, batch: np.ndarray) -> np.ndarray:
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


def _with_tta(network: TiledNetwork) -> TiledNetwork:
    """``network`` averaged over the 8 flips and rotations of each tile."""
    import dataclasses
    import functools

    from .inference import dihedral_average

    return dataclasses.replace(network, infer=functools.partial(dihedral_average, network.infer))


def _planes_layout(volumes: Layout) -> Layout:
    """The plane layout of a volume layout (Z back among the stack axes)."""
    import dataclasses

    return dataclasses.replace(
        volumes, plane_shape=(*volumes.plane_shape, volumes.spatial[0]), spatial=tuple(volumes.spatial[1:])
    )


def _slabs_as_planes(rows):
    """``(volume_index, done, labels)`` slabs of consecutive Z-planes as whole planes
    ``((*volume_index, z), True, plane)``, in order."""
    z_done: dict[tuple[int, ...], int] = {}
    for index, _, slab in rows:
        z = z_done.get(index, 0)
        for plane in slab:
            yield (*index, z), True, plane
            z += 1
        z_done[index] = z


def _label_rows(bands: Iterator[Band], layout: Layout, values: np.ndarray, dtype, maker):
    """``(plane_index, plane_done, labels)`` for consecutive rows of each plane: class
    values, or (given an object ``maker``) objects numbered across the whole image."""
    from .instances import BandStitcher

    stitcher, next_id = None, 1
    for index, (_, stop), band in bands:
        done = stop == layout.spatial[0]
        if maker is None:
            yield index, done, values[argmax_last(band)].astype(dtype)
            continue
        if stitcher is None:
            stitcher = BandStitcher(maker, layout.spatial[0])
            stitcher.next_id = next_id
        for _, rows in stitcher.add(band):
            yield index, done, rows
        if done:
            next_id, stitcher = stitcher.next_id, None
