"""Any bioimage.io model package, run with bioimageio.core (the extra ``[bioimageio]``).

A package this plugin exported opens as our own model (:func:`~napari_unet_cat.loading.load_model`
reads the model file it carries). Any other package, of any weight format, opens as a
:class:`PackageModel`: bioimageio.core runs its own pre- and postprocessing and tiles the
image by the package's declared sizes and halo; the outputs come back per output tensor,
as label images (integer outputs) or images (probabilities, distances...).

A package is data from a stranger. Weight formats that run Python code from the package
(``pytorch_state_dict``: its architecture is a Python file and its weights a pickle;
``keras_hdf5``: legacy Keras files may hold Python code in their layers) run only when the
user says so (``trust_code=True``, the command line's ``--trust-package-code``, the
widgets' checkbox). ONNX, TorchScript, Keras 3 (loaded in Keras's safe mode) and SavedModel
weights run no code of the package's.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import infer_layout, plane_indices, read_window, to_canonical
from .errors import InputError, ModelFileError

#: Weight formats in the order they are tried, and the package each needs installed.
WEIGHT_FORMATS: dict[str, str] = {
    "keras_v3": "keras",
    "onnx": "onnxruntime",
    "torchscript": "torch",
    "tensorflow_saved_model_bundle": "tensorflow",
    "pytorch_state_dict": "torch",
    "keras_hdf5": "tensorflow",
}
#: Formats whose loading runs Python code that came with the package.
RUNS_PACKAGE_CODE = frozenset({"pytorch_state_dict", "keras_hdf5"})
#: How to install what a weight format needs.
INSTALL_HINTS = {
    "torch": "PyTorch (pip install torch)",
    "onnxruntime": "ONNX Runtime (pip install onnxruntime)",
    "tensorflow": "TensorFlow (pip install tensorflow)",
    "keras": "Keras (pip install keras)",
}
#: Side of the blocks a package's parameterized input is tiled into, about.
BLOCK_SIDE = 512
TRUST_HINT = (
    "it runs only when you trust the package: pass --trust-package-code (Python: trust_code=True; napari: "
    "tick 'trust the package's code')"
)


def is_package_model(model) -> bool:
    """Whether ``model`` is a bioimage.io package of another tool (a :class:`PackageModel`)."""
    return isinstance(model, PackageModel)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class TensorAxes:
    """A tensor's axes as the package describes them: ids in order, their types, channels."""

    ids: tuple[str, ...]
    types: tuple[str, ...]
    channels: int

    @classmethod
    def of(cls, tensor) -> TensorAxes:
        ids, types, channels = [], [], 1
        for axis in tensor.axes:
            ids.append(str(axis.id))
            types.append(str(axis.type))
            if axis.type == "channel":
                channels = len(axis.channel_names)
        return cls(tuple(ids), tuple(types), channels)

    @property
    def spatial(self) -> tuple[str, ...]:
        return tuple(i for i, t in zip(self.ids, self.types) if t == "space")


class PackageModel:
    """A bioimage.io model package run by bioimageio.core.

    Attributes:
        path: The package (``.zip`` or folder with its ``rdf.yaml``/``bioimageio.yaml``).
        description: bioimage.io's description of it.
        weight_format: The weights it runs with.
    """

    is_instance_model = False

    def __init__(self, path: Path, description, weight_format: str):
        self.path = Path(path)
        self.description = description
        self.weight_format = weight_format
        if len(description.inputs) != 1:
            raise ModelFileError(
                f"{path}: the package has {len(description.inputs)} inputs; only packages of one input image run here"
            )
        self.input = description.inputs[0]
        self.input_axes = TensorAxes.of(self.input)
        unknown = [
            i for i, t in zip(self.input_axes.ids, self.input_axes.types) if t not in ("batch", "channel", "space")
        ]
        if unknown or not set(self.input_axes.spatial) <= {"z", "y", "x"}:
            raise ModelFileError(
                f"{path}: its input has axes {', '.join(self.input_axes.ids)}; only batch, channel, z, y and x run here"
            )
        self._pipeline = None

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, trust_code: bool = False) -> PackageModel:
        """Read the package's description (no code of it runs) and choose its weights.

        Raises:
            InputError: bioimageio.core is not installed.
            ModelFileError: The description is invalid, no weight format it has can run
                here (naming what to install), or the only ones run the package's own
                code and ``trust_code`` is False (naming the file and why).
        """
        try:
            from bioimageio.spec import InvalidDescr, load_model_description
        except ImportError:
            raise InputError(
                f"{path} is a bioimage.io package; running it needs the optional extra: "
                "pip install 'napari-unet-cat[bioimageio]'"
            ) from None
        path = Path(path)
        try:
            description = load_model_description(path, perform_io_checks=False)
        except Exception as err:  # bioimageio.spec raises many kinds for a broken package
            raise ModelFileError(f"{path} is not a readable bioimage.io model package: {err}") from None
        if isinstance(description, InvalidDescr):
            raise ModelFileError(
                f"{path} is not a valid bioimage.io model description: {description.validation_summary}"
            )
        return cls(path, description, choose_weights(path, description, trust_code=trust_code))

    # -- what it is ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.description.name)

    @property
    def ndim(self) -> int:
        """2 or 3: the spatial axes of its input."""
        return len(self.input_axes.spatial)

    @property
    def n_channels(self) -> int:
        return self.input_axes.channels

    @property
    def output_ids(self) -> list[str]:
        return [str(t.id) for t in self.description.outputs]

    def output_is_labels(self, output_id: str) -> bool:
        """Whether an output holds labels (integers) rather than an image of values."""
        tensor = next(t for t in self.description.outputs if str(t.id) == output_id)
        data = tensor.data if not isinstance(tensor.data, (list, tuple)) else tensor.data[0]
        return str(getattr(data, "type", "float32")).startswith(("int", "uint", "bool"))

    def fingerprint(self) -> str:
        """The package file's SHA-256 (short): what a folder's log records."""
        from .builtin import file_sha256

        if self.path.is_file():
            return "sha256:" + file_sha256(self.path)[:16]
        return "package:" + str(self.path.resolve())

    def __repr__(self) -> str:
        return f"PackageModel({self.name!r}, {self.path.name}, weights={self.weight_format}, {self.ndim}D)"

    # -- prediction ----------------------------------------------------------------------
    def predict(self, image, *, axes: str | None = None, rgb: bool | None = None, name: str = "image", progress=None):
        """Run the package on ``image`` (any size; tiled by bioimageio.core with the
        package's halo): ``{output_id: array}``, each of the image's stack axes, then
        (Z,) Y, X, then a last axis of channels when an output has more than one.

        A 3D package reads the image's ``Z`` axis (given in ``axes``, or the last stack
        axis of a stack); other stack axes (time...) are run one volume or plane at a time.
        """
        image, axes = to_canonical(image, axes, name=name)
        layout = infer_layout(np.shape(image), n_channels=self.n_channels, rgb=rgb, axes=axes, name=name)
        if layout.used_channels != self.n_channels:
            raise InputError(
                f"{name} has {layout.used_channels} channel(s); the package {self.path.name} takes {self.n_channels}"
            )
        volume_axes = self._volume_axes(layout, axes, name)
        outer = tuple(s for i, s in enumerate(layout.plane_shape) if i not in volume_axes)
        outer_layout = layout.__class__(outer, layout.spatial, layout.channels, layout.channel_axis, layout.alpha)
        results: dict[str, np.ndarray] = {}
        indices = list(plane_indices(outer_layout))
        for done, index in enumerate(indices, start=1):
            block = self._read(image, layout, index, volume_axes)
            for output_id, values in self._run(block).items():
                if output_id not in results:
                    results[output_id] = np.zeros(outer + values.shape, values.dtype)
                results[output_id][index] = values
            if progress is not None:
                progress(done, len(indices))
        return results

    def _volume_axes(self, layout, axes: str | None, name: str) -> tuple[int, ...]:
        """The stack axis read as Z by a 3D package (none for a 2D one)."""
        if self.ndim == 2:
            return ()
        if not layout.plane_shape:
            raise InputError(f"the package {self.path.name} segments volumes; {name} is one plane")
        stack_letters = (axes or "")[: len(layout.plane_shape)]
        z = stack_letters.find("Z") if "Z" in stack_letters else len(layout.plane_shape) - 1
        return (z,)

    def _read(self, image, layout, index: tuple[int, ...], volume_axes: tuple[int, ...]) -> np.ndarray:
        """One plane ``(Y, X, C)`` or volume ``(Z, Y, X, C)`` of ``image``, as float32."""
        rows, cols = np.arange(layout.spatial[0]), np.arange(layout.spatial[1])
        if not volume_axes:
            return read_window(image, layout, index, rows, cols)
        (z_axis,) = volume_axes
        planes = []
        for z in range(layout.plane_shape[z_axis]):
            full = (*index[:z_axis], z, *index[z_axis:])
            planes.append(read_window(image, layout, full, rows, cols))
        return np.stack(planes)

    def _run(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs of one ``([Z,] Y, X, C)`` block, in the same spatial layout."""
        from bioimageio.core import predict

        spatial_ids = ("z", "y", "x") if block.ndim == 4 else ("y", "x")
        source = dict(zip(spatial_ids, range(block.ndim - 1)))
        order, shape = [], []
        for axis_id, axis_type in zip(self.input_axes.ids, self.input_axes.types):
            if axis_type == "batch":
                shape.append(None)
            elif axis_type == "channel":
                order.append(block.ndim - 1)
                shape.append(0)
            else:
                order.append(source[axis_id])
                shape.append(0)
        values = np.transpose(block, order).astype(np.float32, copy=False)
        values, pads = self._pad_to_minimum(values)
        if "batch" in self.input_axes.types:
            values = np.expand_dims(values, self.input_axes.types.index("batch"))
        sample = predict(
            model=self._pipeline_or_new(),
            inputs={self.input.id: values},
            blocksize_parameter=self._block_parameter(values.shape),
        )
        spatial = tuple(block.shape[:-1])
        return {str(k): self._to_layout(v, spatial, pads) for k, v in sample.members.items()}

    def _sizes(self) -> dict[str, tuple[int, int]]:
        """``(min, step)`` of each spatial input axis (step 0: a fixed size)."""
        sizes = {}
        for axis in self.input.axes:
            if str(axis.type) != "space":
                continue
            size = axis.size
            if isinstance(size, int):
                sizes[str(axis.id)] = (size, 0)
            elif hasattr(size, "step"):
                sizes[str(axis.id)] = (int(size.min), int(size.step))
            else:  # a size taken from another tensor: whatever the image has
                sizes[str(axis.id)] = (1, 1)
        return sizes

    def _pad_to_minimum(self, values: np.ndarray):
        """``values`` (the input's axes but batch) mirror-padded at the end of each spatial
        axis to a size the package takes (at least its smallest, on its ``min + n * step``
        grid); the padding, which the outputs lose again."""
        sizes = self._sizes()
        unbatched = [(i, t) for i, t in zip(self.input_axes.ids, self.input_axes.types) if t != "batch"]
        width = [(0, 0)] * values.ndim
        pads = []
        for at, (axis_id, axis_type) in enumerate(unbatched):
            if axis_type != "space":
                continue
            smallest, step = sizes[axis_id]
            length = values.shape[at]
            # Up to the smallest size, and then onto its grid (min + n * step).
            need = max(0, smallest - length) or ((smallest - length) % step if step else 0)
            width[at] = (0, need)
            pads.append(need)
        if any(pads):
            values = np.pad(values, width, mode="symmetric")
        return values, pads

    def _block_parameter(self, shape: tuple[int, ...]) -> int:
        """The ``n`` of the parameterized input sizes (``min + n * step``): blocks of about
        ``BLOCK_SIDE`` pixels, never larger than the image (``shape``: the input's axes)."""
        sizes = self._sizes()
        parameters = []
        for axis_id, axis_type, length in zip(self.input_axes.ids, self.input_axes.types, shape):
            smallest, step = sizes.get(axis_id, (0, 0)) if axis_type == "space" else (0, 0)
            if step:
                parameters.append(max(0, (min(length, BLOCK_SIDE) - smallest) // step))
        return min(parameters) if parameters else 0

    def _to_layout(self, tensor, spatial: tuple[int, ...], pads: list[int]) -> np.ndarray:
        """An output tensor as ``([Z,] Y, X[, C])``, cropped back to the image where the
        input was padded."""
        data = tensor.data
        dims = [str(d) for d in data.dims]
        axes = [d for d in ("z", "y", "x") if d in dims]
        channel = [d for d in dims if d not in axes and d != "batch" and data.sizes[d] > 1]
        dropped = [d for d in dims if d not in axes and d not in channel]
        values = np.asarray(data.isel({d: 0 for d in dropped}).transpose(*axes, *channel).values)
        padded = tuple(n + p for n, p in zip(spatial, pads))
        if any(pads) and values.shape[: len(spatial)] == padded:
            values = values[tuple(slice(0, n) for n in spatial)]
        return values

    def _pipeline_or_new(self):
        if self._pipeline is None:
            from bioimageio.core import create_prediction_pipeline

            try:
                self._pipeline = create_prediction_pipeline(self.description, weight_format=self.weight_format)
            except Exception as err:  # the runtimes raise many kinds for weights they cannot load
                raise ModelFileError(
                    f"{self.path}: its {self.weight_format} weights do not load: {type(err).__name__}: {err}"
                ) from None
        return self._pipeline


def choose_weights(path: Path, description, *, trust_code: bool = False) -> str:
    """The first weight format of ``description`` that can run here (see
    :data:`WEIGHT_FORMATS`), refusing those that run package code unless ``trust_code``."""
    present = [f for f in WEIGHT_FORMATS if getattr(description.weights, f, None) is not None]
    if not present:
        raise ModelFileError(f"{path}: the package has no weights in a format that runs here")
    safe = [f for f in present if f not in RUNS_PACKAGE_CODE and _installed(WEIGHT_FORMATS[f])]
    if safe:
        return safe[0]
    code = [f for f in present if f in RUNS_PACKAGE_CODE]
    if code and not trust_code:
        weights = getattr(description.weights, code[0])
        source = getattr(getattr(weights, "architecture", None), "source", None)
        what = f"its architecture is Python code ({source})" if source else "loading them runs Python code"
        raise ModelFileError(f"{path}: its {code[0]} weights run the package's own code ({what}); {TRUST_HINT}")
    trusted = [f for f in code if _installed(WEIGHT_FORMATS[f])]
    if trusted:
        return trusted[0]
    missing = sorted({INSTALL_HINTS[WEIGHT_FORMATS[f]] for f in present})
    raise ModelFileError(
        f"{path}: its weights ({', '.join(present)}) need {' or '.join(missing)}, which is not installed"
    )
