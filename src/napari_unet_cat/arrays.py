"""Turning user images and label images into what the network eats, and back.

Conventions used throughout the package:

* A *plane* is one 2D image, ``(Y, X, C)`` float32 after preparation.
* An image is 2D ``(Y, X)``, 2D with channels ``(Y, X, C)`` (grayscale, RGB, RGBA with
  the alpha dropped, or any number of channels), or a stack of such planes with any
  number of leading axes (``(Z, Y, X)``, ``(T, Z, Y, X, C)``...). Stacks are handled
  plane by plane. Images whose axes are in another order (``CYX``, ``TCZYX``...) are
  seen through :class:`AxesView` in that order, without a copy; where the axes are not
  known (a file that does not say them, and no ``axes`` given), they are guessed: a
  last axis of at most 4 is channels.
* Encoded labels are int16 class *indices* ``0..n_classes-1`` with ``-1`` meaning
  "not annotated" (ignored by the loss). The model file maps indices back to the label
  values the user painted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .config import IGNORE, NONZERO, Normalization
from .errors import InputError

IGNORE_INDEX = -1
#: Percentiles are computed on at most about this many pixels of a plane (a regular
#: subsample), so that normalizing a huge plane costs little memory.
PERCENTILE_SAMPLE = 1 << 20


@dataclass(frozen=True)
class Layout:
    """Where the planes and channels of an array are.

    ``plane_shape`` is the shape of the leading (stack) axes, ``()`` for a 2D image;
    ``spatial`` is ``(Y, X)``; ``channels`` is the number of channels in the array
    (1 when there is no channel axis); ``channel_axis`` is ``True`` when the last axis
    holds channels; ``alpha`` is ``True`` when the fourth of four channels is an RGBA
    image's opacity (dropped), not a channel of its own; ``gray`` is ``True`` when a
    colour image goes to a one-channel model as the mean of its colour channels.
    """

    plane_shape: tuple[int, ...]
    spatial: tuple[int, int]
    channels: int
    channel_axis: bool
    alpha: bool = False
    gray: bool = False

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.plane_shape, dtype=np.int64)) if self.plane_shape else 1

    @property
    def used_channels(self) -> int:
        """Channels fed to the network: RGBA loses its alpha; gray is one."""
        if self.gray:
            return 1
        return 3 if self.alpha else self.channels


#: Axis letters: ``Y`` and ``X`` are rows and columns, ``C`` channels, ``S`` an RGB(A)
#: image's samples (channels too; a fourth is opacity); any other letter (``T``, ``Z``,
#: ``Q``, ``I``...) is a stack axis, handled plane by plane.
CHANNEL_LETTERS = "CS"


def check_axes(axes: str, ndim: int, *, name: str = "image") -> str:
    """``axes`` in upper case, checked against an array of ``ndim`` dimensions."""
    text = str(axes).strip().upper()
    problems = []
    if len(text) != ndim:
        problems.append(f"it names {len(text)} axes but the array has {ndim}")
    if len(set(text)) != len(text):
        problems.append("a letter appears twice")
    if "Y" not in text or "X" not in text:
        problems.append("it needs Y and X (rows and columns)")
    if sum(text.count(c) for c in CHANNEL_LETTERS) > 1:
        problems.append("it has more than one channel axis (C or S)")
    if not text.isalpha():
        problems.append("use letters only, such as YX, YXC, CYX, ZYX or TCZYX")
    if problems:
        raise InputError(f"axes {axes!r} do not fit {name}: {'; '.join(problems)}")
    return text


def canonical_axes(axes: str) -> str:
    """The order the package works in: stack axes as they come, then ``Y``, ``X``, and
    the channel axis last (``CZYX`` -> ``ZYXC``)."""
    stack = "".join(a for a in axes if a not in "YX" + CHANNEL_LETTERS)
    channel = "".join(a for a in axes if a in CHANNEL_LETTERS)
    return stack + "YX" + channel


class AxesView:
    """An array seen with its axes in another order, without reading or copying it.

    Indexing (integers and slices) reads only what it selects from the underlying array
    (NumPy, memory-mapped, zarr, dask), so a lazy image stays lazy.
    """

    def __init__(self, array, order: Sequence[int]):
        self.source = array
        self.order = tuple(int(i) for i in order)
        source_shape = tuple(int(n) for n in np.shape(array))
        self.shape = tuple(source_shape[i] for i in self.order)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        for k in key:
            if not isinstance(k, (slice, int, np.integer)):
                raise TypeError(f"AxesView takes integers and slices, not {type(k).__name__}")
        source_key = [slice(None)] * self.ndim
        for view_axis, source_axis in enumerate(self.order):
            source_key[source_axis] = key[view_axis]
        block = np.asarray(self.source[tuple(source_key)])
        # The axes left (not taken by an integer), in source order; put them in view order.
        kept = [a for a in range(self.ndim) if not isinstance(source_key[a], (int, np.integer))]
        wanted = [a for a in self.order if a in kept]
        return np.transpose(block, [kept.index(a) for a in wanted])

    def __array__(self, dtype=None, copy=None):
        out = np.transpose(np.asarray(self.source), self.order)
        return out if dtype is None else out.astype(dtype)


def to_canonical(array, axes: str | None, *, name: str = "image"):
    """``(array in the package's axis order, its axes)`` for an array of ``axes``;
    ``(array, None)`` unchanged when ``axes`` is None (the layout is then guessed)."""
    if axes is None:
        return array, None
    axes = check_axes(axes, len(np.shape(array)), name=name)
    target = canonical_axes(axes)
    if target == axes:
        return array, axes
    return AxesView(array, [axes.index(a) for a in target]), target


class StackedChannels:
    """Several arrays of one shape seen as the channels of one image (a last axis), read
    lazily: indexing reads the same region of each. napari keeps channels as separate
    Image layers; this makes them one input, in the order given."""

    def __init__(self, arrays: Sequence, names: Sequence[str] = ()):
        shapes = {tuple(np.shape(a)) for a in arrays}
        if len(shapes) != 1:
            listed = ", ".join(
                f"{n or i}: {np.shape(a)}" for i, (a, n) in enumerate(zip(arrays, list(names) or [""] * len(arrays)))
            )
            raise InputError(f"channel layers must all have one shape; received {listed}")
        self.arrays = list(arrays)
        self.shape = (*shapes.pop(), len(self.arrays))
        self.dtype = np.result_type(*[np.dtype(a.dtype) for a in self.arrays])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) >= self.ndim:  # a channel index or slice is given last
            channel = key[self.ndim - 1]
            parts = self.arrays[channel] if isinstance(channel, slice) else [self.arrays[channel]]
            key = key[: self.ndim - 1]
            block = np.stack([np.asarray(a[key]) for a in parts], axis=-1).astype(self.dtype, copy=False)
            return block if isinstance(channel, slice) else block[..., 0]
        return np.stack([np.asarray(a[key]) for a in self.arrays], axis=-1).astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        out = np.stack([np.asarray(a) for a in self.arrays], axis=-1)
        return out if dtype is None else out.astype(dtype)


def infer_layout(
    shape: Sequence[int],
    *,
    n_channels: int | None = None,
    rgb: bool | None = None,
    axes: str | None = None,
    name: str = "image",
    channel_names: Sequence[str] = (),
    gray: bool = False,
) -> Layout:
    """Decide which axes of an array of ``shape`` are planes, rows, columns, channels.

    Args:
        shape: The array's shape.
        n_channels: Channels the model expects, when a model exists. A last axis of that
            length (or 4 where 3 are expected: RGBA) is taken as channels.
        rgb: ``True`` when the caller knows the last axis is colour (napari's ``rgb``
            flag), ``False`` when it knows it is not.
        axes: The array's axes in the package's order (see :func:`to_canonical`), when
            known: then nothing is guessed. A last ``C`` is channels, all of them used;
            a last ``S`` is an RGB(A) image's samples.
        name: How to call the array in error messages.
        channel_names: The model's channel names, for error messages.
        gray: The model takes one channel and reads a colour image (3 channels, or 4
            with the alpha dropped) as the mean of its colour channels.

    Returns:
        The :class:`Layout`.
    """
    shape = tuple(int(s) for s in shape)
    if gray and n_channels not in (None, 1):
        raise InputError(f"gray input needs a one-channel model (received a model of {n_channels} channels)")
    trained = _trained_on(n_channels, channel_names)
    if len(shape) < 2:
        raise InputError(f"{name} has shape {shape}: at least two dimensions (rows, columns) are needed")
    if axes is not None:
        layout = _known_layout(
            shape, check_axes(axes, len(shape), name=name), None if gray else n_channels, name, trained
        )
        return _as_gray(layout, shape, name) if gray else layout
    last = shape[-1]
    if len(shape) == 2:
        channel_axis = False
    elif rgb is not None:
        channel_axis = rgb
    elif gray:
        channel_axis = last == 1 or (last in (3, 4) and len(shape) >= 3 and shape[-2] > 4)
    elif n_channels is not None:
        channel_axis = last == n_channels or (n_channels == 3 and last == 4) or (n_channels == 1 and last == 1)
        if not channel_axis and last in (2, 3, 4) and len(shape) == 3 and shape[-2] > 4:
            raise InputError(
                f"{name} has shape {shape}, which looks like {last} channels, but the model "
                f"was trained on {n_channels} channel{'s' if n_channels > 1 else ''}"
            )
    else:
        channel_axis = last <= 4
    if channel_axis:
        if len(shape) < 3:
            raise InputError(f"{name} has shape {shape}: no room for rows, columns and channels")
        spatial = (shape[-3], shape[-2])
        plane_shape = shape[:-3]
        channels = last
    else:
        spatial = (shape[-2], shape[-1])
        plane_shape = shape[:-2]
        channels = 1
    if min(spatial) < 1:
        raise InputError(f"{name} has shape {shape}: it is empty")
    alpha = channel_axis and channels == 4 and n_channels != 4
    if gray:
        layout = Layout(plane_shape, spatial, channels, channel_axis, alpha=alpha)
        return _as_gray(layout, shape, name)
    if n_channels is not None:
        used = 3 if alpha else channels
        if used != n_channels:
            raise InputError(
                f"{name} has {channels} channel{'s' if channels > 1 else ''} (shape {shape}, axes guessed as "
                f"{_guessed_axes(len(shape), channel_axis)}) but the model was trained on {trained}; if its "
                "channels are on another axis, say so with axes (--axes), for example CYX"
            )
    return Layout(plane_shape=plane_shape, spatial=spatial, channels=channels, channel_axis=channel_axis, alpha=alpha)


def _as_gray(layout: Layout, shape: tuple[int, ...], name: str) -> Layout:
    """``layout`` for a one-channel model that reads colour as gray: one channel stays,
    three (RGB) or four (RGBA, alpha dropped) are averaged; other counts are refused."""
    if layout.channels == 1:
        return dataclasses.replace(layout, alpha=False, gray=False)
    if layout.channels != 3 and not layout.alpha:
        raise InputError(
            f"{name} has {layout.channels} channels (shape {shape}) but the model takes one channel, and reads "
            "only grayscale or colour (RGB, RGBA) images: choose one channel"
        )
    return dataclasses.replace(layout, gray=True)


def stack_axes(n: int) -> str:
    """Letters for ``n`` stack axes: ``Z``, ``TZ``, ``QTZ``, ... (at most 7)."""
    letters = "WVURQTZ"
    if not 0 <= n <= len(letters):
        raise InputError(f"at most {len(letters)} stack axes are supported (received {n})")
    return letters[len(letters) - n :]


def _guessed_axes(ndim: int, channel_axis: bool) -> str:
    """The axes a guess amounts to, for messages."""
    return stack_axes(ndim - (3 if channel_axis else 2)) + "YX" + ("C" if channel_axis else "")


def _trained_on(n_channels: int | None, channel_names: Sequence[str]) -> str:
    names = [str(n) for n in channel_names if n]
    listed = f" ({', '.join(names)})" if len(names) == n_channels else ""
    return f"{n_channels} channel{'s' if n_channels != 1 else ''}{listed}"


def _known_layout(shape: tuple[int, ...], axes: str, n_channels: int | None, name: str, trained: str = "") -> Layout:
    if canonical_axes(axes) != axes:
        raise InputError(f"axes {axes} of {name} are not in the order Y, X, channels last: see to_canonical")
    channel_axis = axes[-1] in CHANNEL_LETTERS
    channels = shape[-1] if channel_axis else 1
    spatial = (shape[-3], shape[-2]) if channel_axis else (shape[-2], shape[-1])
    plane_shape = shape[: -3 if channel_axis else -2]
    if min(spatial) < 1:
        raise InputError(f"{name} has shape {shape}: it is empty")
    alpha = axes[-1] == "S" and channels == 4 and n_channels != 4
    used = 3 if alpha else channels
    if n_channels is not None and used != n_channels:
        raise InputError(
            f"{name} has {channels} channel{'s' if channels > 1 else ''} (shape {shape}, axes {axes}) but the "
            f"model was trained on {trained or n_channels}"
        )
    return Layout(plane_shape=plane_shape, spatial=spatial, channels=channels, channel_axis=channel_axis, alpha=alpha)


def plane_indices(layout: Layout) -> Iterable[tuple[int, ...]]:
    """Index tuples of the leading axes, one per plane (``()`` for a 2D image)."""
    return np.ndindex(*layout.plane_shape) if layout.plane_shape else iter([()])


def get_plane(array, layout: Layout, index: tuple[int, ...]) -> np.ndarray:
    """Plane ``index`` of ``array`` as float32 ``(Y, X, C)``, alpha dropped.

    Works for NumPy, memory-mapped and dask arrays: only the plane is read.
    """
    plane = array[index] if index else array
    return channels_last(np.asarray(plane), layout)


def channels_last(block: np.ndarray, layout: Layout, dtype=np.float32) -> np.ndarray:
    """A ``(h, w[, C])`` block as ``(h, w, C)`` (float32 unless ``dtype`` is None): a
    channel axis added, alpha dropped, colour averaged for a gray layout (in float32)."""
    if not layout.channel_axis:
        block = block[..., np.newaxis]
    elif layout.gray:
        return block[..., :3].mean(axis=-1, keepdims=True, dtype=np.float32)
    elif layout.alpha:
        block = block[..., :3]
    return block if dtype is None else block.astype(dtype, copy=False)


def normalize(plane: np.ndarray, norm: Normalization) -> np.ndarray:
    """Map the ``low``/``high`` percentiles of ``plane`` (``(Y, X, C)``) to 0 and 1.

    Non-finite pixels (NaN, +-Inf) are ignored for the percentiles and set to 0 (the
    low value), so the result is always finite.
    """
    return apply_normalization(plane, *percentile_range(plane, norm))


def percentile_range(plane, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """The ``low`` and ``high`` percentiles of a ``(Y, X, C)`` plane (or ``(Z, Y, X, C)``
    volume), per channel or joint.

    Computed on a regular subsample of at most about ``PERCENTILE_SAMPLE`` pixels, so a
    lazy (memory-mapped, dask) plane is read sparsely rather than loaded whole.
    """
    spatial = plane.shape[:-1]
    step = sample_step(spatial)
    sample = np.asarray(plane[(slice(None, None, step),) * len(spatial)])
    if sample.dtype.kind in "ui" and sample.dtype.itemsize <= 2:
        return _small_int_percentiles(sample, norm)
    sample = sample.astype(np.float32, copy=False)
    axis = tuple(range(len(spatial))) if norm.per_channel else None
    if np.isfinite(sample).all():
        lo, hi = np.percentile(sample, [norm.low, norm.high], axis=axis)
    else:
        sample = np.where(np.isfinite(sample), sample, np.nan)
        if np.isnan(sample).all():
            return np.float32(0), np.float32(1)
        with np.errstate(all="ignore"):
            lo, hi = np.nanpercentile(sample, [norm.low, norm.high], axis=axis)
        lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
    return np.asarray(lo, dtype=np.float32), np.asarray(hi, dtype=np.float32)


def _small_int_percentiles(sample: np.ndarray, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``np.percentile`` (linear method) of 8- and 16-bit integers from a histogram: the
    same values, without sorting (several times faster on the common image types)."""
    offset = int(np.iinfo(sample.dtype).min)
    columns = [sample[..., c] for c in range(sample.shape[-1])] if norm.per_channel else [sample]
    lows, highs = [], []
    for values in columns:
        flat = values.ravel().astype(np.int64) - offset
        cumulative = np.cumsum(np.bincount(flat))
        n = int(cumulative[-1])
        ends = []
        for q in (norm.low, norm.high):
            position = q / 100 * (n - 1)
            below = int(np.floor(position))
            t = position - below
            # The values of rank ``below`` and the one after, read off the histogram.
            a, b = np.searchsorted(cumulative, [below, min(below + 1, n - 1)], side="right") + offset
            a, b, diff = float(a), float(b), float(b - a)
            ends.append(a + diff * t if t < 0.5 else b - diff * (1 - t))  # NumPy's interpolation
        lows.append(ends[0])
        highs.append(ends[1])
    if not norm.per_channel:
        return np.float32(lows[0]), np.float32(highs[0])
    return np.asarray(lows, np.float32), np.asarray(highs, np.float32)


def sample_step(spatial: tuple[int, ...]) -> int:
    """Stride (along every axis) that leaves at most about ``PERCENTILE_SAMPLE`` pixels
    of a plane or volume."""
    size = float(np.prod(spatial, dtype=np.float64))
    return max(1, int((size / PERCENTILE_SAMPLE) ** (1 / max(1, len(spatial)))))


def plane_subsample(array, layout: Layout, index: tuple[int, ...]) -> np.ndarray:
    """A regular subsample of plane ``index`` as float32 ``(h, w, C)``, read with a stride
    so that a lazy array is never loaded whole (for :func:`percentile_range`)."""
    step = sample_step(layout.spatial)
    block = np.asarray(array[(*index, slice(None, None, step), slice(None, None, step))])
    # Kept in its own type: 8- and 16-bit images take a faster percentile path.
    return channels_last(block, layout, dtype=None)


def apply_normalization(window: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(window - lo) / (hi - lo)`` in float32, with non-finite pixels set to 0."""
    window = np.asarray(window, dtype=np.float32)
    out = (window - lo) / np.maximum(hi - lo, np.float32(1e-6))
    if not np.isfinite(out).all():
        out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32, copy=False)


def argmax_last(values: np.ndarray) -> np.ndarray:
    """``np.argmax(values, axis=-1)`` (first maximum wins), with a fast path for two
    classes, the common case, whose short last axis NumPy reduces pixel by pixel."""
    if values.shape[-1] == 2:
        return (values[..., 1] > values[..., 0]).view(np.uint8)
    return np.argmax(values, axis=-1)


def reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map positions outside ``[0, n)`` back inside by mirroring (NumPy's 'reflect' mode)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    m = np.mod(index, period)
    return np.where(m >= n, period - m, m)


def read_window(array, layout: Layout, index: tuple[int, ...], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixels ``rows x cols`` of plane ``index`` as float32 ``(h, w, C)``, alpha dropped.

    ``rows`` and ``cols`` may lie outside the plane: they are mirrored back inside.
    Only the bounding box of the needed pixels is read, so this works on lazy arrays.
    """
    rows = reflect_index(np.asarray(rows), layout.spatial[0])
    cols = reflect_index(np.asarray(cols), layout.spatial[1])
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    block = np.asarray(array[(*index, slice(r0, r1), slice(c0, c1))])
    return channels_last(block[rows - r0][:, cols - c0], layout)


def apply_value_map(labels: np.ndarray, value_map: dict[int | str, int | str]) -> np.ndarray:
    """Relabel a raw label image: each ``value -> class`` or ``value -> 'ignore'``.

    Ignored pixels become ``IGNORE_INDEX`` (-1) in the returned int32 array; all other
    values keep their (mapped) label value. The key ``"nonzero"`` maps every nonzero
    value first; values given on their own are mapped after it, so they win.
    """
    out = np.asarray(labels).astype(np.int32, copy=True)
    if not value_map:
        return out
    source = np.asarray(labels)
    if NONZERO in value_map:
        target = value_map[NONZERO]
        out[source != 0] = IGNORE_INDEX if target == IGNORE else int(target)
    for value, target in value_map.items():
        if value == NONZERO:
            continue
        out[source == value] = IGNORE_INDEX if target == IGNORE else int(target)
    return out


def annotated_values(labels: np.ndarray, mode: str) -> np.ndarray:
    """Sorted label values that count as annotations in ``mode`` (after a value map)."""
    values = np.unique(labels)
    values = values[values != IGNORE_INDEX]
    if mode == "sparse":
        values = values[values != 0]
    return values


def encode_labels(labels: np.ndarray, class_values: Sequence[int], mode: str, *, name: str = "labels") -> np.ndarray:
    """Class indices (int16, -1 = ignore) of a mapped label plane.

    In ``sparse`` mode 0 means "not annotated"; in ``dense`` mode 0 is a class like any
    other. A value that is not among ``class_values`` raises :class:`InputError`.
    """
    labels = np.asarray(labels)
    values = np.asarray(class_values, dtype=np.int64)
    ignore = labels == IGNORE_INDEX
    if mode == "sparse":
        ignore |= labels == 0
    present = np.unique(labels[~ignore])
    unknown = np.setdiff1d(present, values)
    if unknown.size:
        raise InputError(
            f"{name} contains label value{'s' if unknown.size > 1 else ''} "
            f"{', '.join(str(v) for v in unknown[:10])} that the model does not know "
            f"(its classes are {', '.join(str(v) for v in values)})"
        )
    order = np.argsort(values)
    index = np.searchsorted(values[order], np.where(ignore, values[order][0], labels))
    encoded = order[np.clip(index, 0, len(values) - 1)].astype(np.int16)
    encoded[ignore] = IGNORE_INDEX
    return encoded


def resize_yx(volume: np.ndarray, shape: tuple[int, int], *, labels: bool = False) -> np.ndarray:
    """Resize every ``(Y, X[, C])`` plane of a ``(Z, Y, X[, C])`` volume to ``shape``."""
    if tuple(volume.shape[1:3]) == tuple(shape):
        return volume
    return np.stack([resize_plane(plane, shape, labels=labels) for plane in volume])


def resize_plane(plane: np.ndarray, shape: tuple[int, int], *, labels: bool = False) -> np.ndarray:
    """Resize a ``(Y, X[, C])`` plane to ``shape`` (linear; nearest for labels)."""
    from skimage.transform import resize

    if tuple(plane.shape[:2]) == tuple(shape):
        return plane
    out_shape = tuple(shape) + tuple(plane.shape[2:])
    if labels:
        return resize(plane, out_shape, order=0, preserve_range=True, anti_aliasing=False).astype(plane.dtype)
    downscaling = shape[0] < plane.shape[0] or shape[1] < plane.shape[1]
    return resize(plane, out_shape, order=1, preserve_range=True, anti_aliasing=downscaling, mode="reflect").astype(
        np.float32
    )


def scaled_shape(spatial: tuple[int, int], scale: float) -> tuple[int, int]:
    """Spatial shape after scaling by ``scale`` (at least one pixel)."""
    return (max(1, round(spatial[0] * scale)), max(1, round(spatial[1] * scale)))


def smallest_int_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``max_value`` (labels are written with it)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)
