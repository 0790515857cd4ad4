"""bioimage.io model packages: a trained model as a zip that other tools run.

:func:`export_bioimageio` writes a package in the current bioimage.io model format (0.5),
with ``bioimageio.spec``'s own classes (the optional extra ``[bioimageio]``):

- the input ``image`` with axes batch, channel, y, x (z, y, x for a 3D model); the
  spatial size ``min + n*step`` on the network's grid, ``min`` leaving room for the halo;
- preprocessing ``scale_range`` with the model's percentiles, per sample (per channel if
  the model normalizes so), the same ``(x - low) / (high - low)`` our prediction applies;
- the output ``probabilities``: one channel per class (softmax inside the network), with
  a halo of the receptive margin our tiling keeps around each tile;
- weights as ``keras_v3`` (a plain Keras 3 ``.keras`` file, standard layers only) and,
  where TensorFlow is installed, ``tensorflow_saved_model_bundle``;
- test input and output made by our own prediction on a real sample, a cover (the sample
  beside its prediction), a README, the U-Net paper in ``cite``, and the plugin's own
  model file as an attachment, so that :func:`napari_unet_cat.load_model` opens the package
  again as the same model (and training can go on from it).

Instance models: the package gives the class probabilities; the objects (seeds from the
interior class, watershed over the foreground) are made by this plugin, and the README
says so. Class weights of training, undone at prediction, are folded into the bias of the
final convolution (``softmax(z - log w)`` is the corrected probability).
"""

from __future__ import annotations

import datetime
import getpass
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, ModelFileError

if TYPE_CHECKING:
    from .segmenter import UNetModel

#: Our model file inside a package (an attachment): what :func:`load_model` opens.
PACKAGED_MODEL = "napari_unet_cat_model.keras"
#: The description's file names a package may hold (bioimage.io accepts both).
DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: Largest side of the test tensors cut from the sample.
TEST_SIDE = 256
UNET_PAPER = (
    "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
)
#: Weight formats written when asked for ``all``, in order of preference.
WEIGHT_FORMATS = ("keras_v3", "tensorflow_saved_model_bundle", "onnx")
EXTRA_HINT = "bioimage.io export needs the optional extra: pip install 'napari-unet-cat[bioimageio]'"


def is_bioimageio_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package: a zip with a description inside, a
    folder with one, or the description file itself."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in DESCRIPTION_NAMES)
    if path.name in DESCRIPTION_NAMES or path.name.endswith(".bioimageio.yaml"):
        return path.is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in DESCRIPTION_NAMES for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def is_our_package(path: str | os.PathLike) -> bool:
    """Whether the bioimage.io package at ``path`` carries this plugin's model file."""
    path = Path(path)
    if path.is_dir():
        return (path / PACKAGED_MODEL).is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return PACKAGED_MODEL in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def packaged_model_bytes(path: str | os.PathLike) -> bytes:
    """Our model file inside a bioimage.io package (a zip or a folder).

    Raises:
        ModelFileError: The package was not exported by this plugin (no model file of ours
            inside), naming the file.
    """
    path = Path(path)
    if path.is_dir() and (path / PACKAGED_MODEL).is_file():
        return (path / PACKAGED_MODEL).read_bytes()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if PACKAGED_MODEL in archive.namelist():
                return archive.read(PACKAGED_MODEL)
    raise ModelFileError(f"{path} is a bioimage.io package, but not one exported by napari-unet-cat")


#: Largest Z side of a 3D model's test tensors.
TEST_DEPTH = 64


def _sample_plane(model: UNetModel, sample, name: str) -> np.ndarray:
    """``sample`` as one ``(Y, X, C)`` plane (a 3D model's: one ``(Z, Y, X, C)`` volume)
    with the model's channels (alpha dropped)."""
    plane = np.asarray(sample)
    n_channels = model.n_channels
    spatial = model.config.ndim
    if plane.ndim == spatial:
        plane = plane[..., None]
    if plane.ndim != spatial + 1:
        what = "one 2D image (Y, X) or (Y, X, C)" if spatial == 2 else "one volume (Z, Y, X) or (Z, Y, X, C)"
        raise InputError(f"the sample {name} must be {what}; received shape {plane.shape}")
    if plane.shape[-1] == 4 and n_channels == 3:
        plane = plane[..., :3]
    if model.config.gray_input and n_channels == 1 and plane.shape[-1] in (3, 4):
        from .arrays import channels_last, infer_layout

        # Colour read as prediction reads it: the same gray layout.
        plane = channels_last(plane, infer_layout(plane.shape, n_channels=1, gray=True, name=name))
    if spatial == 2 and plane.shape[-1] != n_channels and plane.shape[0] == n_channels:
        plane = np.moveaxis(plane, 0, -1)
    if plane.shape[-1] != n_channels:
        raise InputError(
            f"the sample {name} has {plane.shape[-1]} channels (shape {np.asarray(sample).shape}); "
            f"the model was trained on {n_channels}"
        )
    return plane


def _geometry(model: UNetModel) -> list[tuple[str, int, int, int]]:
    """``(axis, grid step, halo, smallest side)`` of each spatial axis of the package.

    A plane model's halo is its receptive margin. A 3D model's would ask for blocks over
    200 voxels a side at depth 4, so it declares two grid steps (our own blocks keep about
    a quarter of their side): tiles then agree to well under a percent of probability."""
    arch = model.config.architecture
    k, halo = arch.size_multiple, model.halo
    if arch.ndim == 2:
        return [(a, k, halo, (2 * halo) // k * k + k) for a in ("y", "x")]
    kz = arch.z_multiple
    return [("z", kz, 2 * kz, 5 * kz)] + [(a, k, min(halo, 2 * k), 5 * k) for a in ("y", "x")]


def _test_crop(plane: np.ndarray, geometry, name: str) -> np.ndarray:
    """The sample's central square (a 3D model's: its central square prism), on the
    network's grid, at most ``TEST_SIDE`` pixels a side (``TEST_DEPTH`` in Z)."""
    sides = []
    for n, (axis, step, _, minimum) in zip(plane.shape, geometry):
        largest = TEST_DEPTH if axis == "z" else TEST_SIDE
        sides.append(min(n, max(largest, minimum)) // step * step)
    square = min(sides[-2:])
    sides[-2:] = [square, square]
    if any(side < g[3] for side, g in zip(sides, geometry)):
        needed = "x".join(str(g[3]) for g in geometry)
        raise InputError(
            f"the sample {name} is {'x'.join(map(str, plane.shape[:-1]))} pixels; the package's test image needs "
            f"at least {needed} (the network's halo on each side, and one block of its grid)"
        )
    box = tuple(slice((n - side) // 2, (n - side) // 2 + side) for n, side in zip(plane.shape, sides))
    return np.ascontiguousarray(plane[box])


def export_network(model: UNetModel):
    """The network as a plain Keras model from ``(batch, channel, y, x)`` images to
    ``(batch, class, y, x)`` probabilities, float32, standard layers only (the class-weight
    correction folded into the logits' bias; the axes permuted inside, as our network
    computes channels-last)."""
    from ._backend import keras
    from .unet import build_network

    network = build_network(model.config, "float32")
    network.set_weights(model.keras_model.get_weights())
    weights = model.config.class_prior_weights
    if weights:
        kernel, bias = network.get_layer("logits").get_weights()
        network.get_layer("logits").set_weights([kernel, bias - np.log(np.asarray(weights, np.float32))])
    n = model.config.ndim
    image = keras.Input(shape=(model.n_channels,) + (None,) * n, name="image")
    logits = network(keras.layers.Permute((*range(2, n + 2), 1), name="channels_last")(image))
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="softmax")(logits)
    channels_first = keras.layers.Permute((n + 1, *range(1, n + 1)), name="probabilities")(probabilities)
    return keras.Model(image, channels_first, name="unet_probabilities")


def _cover(plane: np.ndarray, classes: np.ndarray, path: Path) -> None:
    """The sample (normalized to its 1-99.8 percentiles) beside its predicted classes."""
    from PIL import Image

    view = plane[..., :3] if plane.shape[-1] >= 3 else plane[..., :1]
    lo, hi = np.percentile(view, [1, 99.8])
    gray = np.clip((view - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    if gray.shape[-1] == 1:
        gray = np.repeat(gray, 3, axis=-1)
    palette = np.array([[0, 0, 0], [255, 0, 255], [0, 255, 0], [255, 255, 0], [0, 255, 255], [255, 128, 0]], np.uint8)
    colored = palette[classes % len(palette)]
    Image.fromarray(np.concatenate([gray, colored], axis=1)).save(path)


def _readme(model: UNetModel, name: str, description: str, formats: list[str]) -> str:
    config = model.config
    classes = ", ".join(f"{c.value} ({c.name})" if c.name else str(c.value) for c in config.classes)
    last = config.history[-1] if config.history else {}
    scores = {k: v for k, v in last.items() if k.startswith(("val_iou", "val_mean", "val_ap", "iou_"))}
    arch = config.architecture
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "## What it segments",
        "",
        f"A U-Net (Ronneberger et al., 2015) with {arch.base_filters} to {arch.base_filters * 2**arch.depth} "
        f"filters over {arch.depth} poolings, trained with napari-unet-cat {config.package_version or ''} on "
        f"images of {arch.n_channels} channel(s). Output: one probability per class and pixel, "
        f"channels in the order of the classes {classes}.",
        "",
        "## Input",
        "",
        f"Images with axes (batch, channel, {'z, ' if arch.ndim == 3 else ''}y, x), {arch.n_channels} channel(s), "
        f"sides a multiple of {arch.size_multiple}{f' (Z: {arch.z_multiple})' if arch.ndim == 3 else ''}. "
        f"Each image is normalized by its own percentiles ({config.normalization.low} "
        f"to 0, {config.normalization.high} to 1, "
        f"{'per channel' if config.normalization.per_channel else 'over all channels'}): the preprocessing "
        "in this package. Large images are segmented tile by tile; the output halo is the context each "
        "tile needs.",
    ]
    if config.scale != 1.0:
        lines += ["", f"The model works at {config.scale:g} of the resolution it was given in training."]
    if config.is_instance_model:
        lines += [
            "",
            "## Objects",
            "",
            "This is an instance model: its classes are background, nucleus/cell interior and the borders "
            "between touching objects. napari-unet-cat makes objects from them (seeds from the interior "
            "class, grown by a watershed over the foreground); other tools get the probabilities and can "
            "do the same.",
        ]
    lines += ["", "## Training", ""]
    training = config.training
    lines.append(
        f"{len(config.history)} epochs, batch {training.batch_size}, {'x'.join(map(str, training.patch_shape))} "
        f"patches, Adam at {training.learning_rate:g}, label mode `{training.label_mode}`."
    )
    lines += ["", "## Validation", ""]
    if scores:
        lines.append(
            "Scores of the last training epoch (held-out patches where `val_` is written): "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items()))
            + "."
        )
    else:
        lines.append("No validation scores were recorded in training.")
    lines += [
        "The package's test output was computed by napari-unet-cat's own prediction on a crop of a sample "
        "image; bioimage.io's model test reproduces it.",
        "",
        "## Weights",
        "",
        "Formats: " + ", ".join(f"`{f}`" for f in formats) + ". The attachment "
        f"`{PACKAGED_MODEL}` is napari-unet-cat's own model file: open the package with "
        "`napari_unet_cat.load_model` (or in napari) to predict objects or train on.",
        "",
    ]
    return "\n".join(lines)


def export_bioimageio(
    model: UNetModel,
    path: str | os.PathLike,
    sample,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] | None = None,
    license: str = "CC-BY-4.0",
    tags: Sequence[str] = (),
    weight_formats: Sequence[str] = ("keras_v3",),
    sample_name: str = "sample",
) -> Path:
    """Write ``model`` as a bioimage.io model package (a zip), atomically.

    Args:
        model: A trained :class:`~napari_unet_cat.segmenter.UNetModel`.
        path: The ``.zip`` to write (replaced whole, or left as it was on error).
        sample: A real image of what the model segments, ``(Y, X)`` or ``(Y, X, C)``: its
            central square (at most 256 pixels) becomes the test input; the test output
            is our prediction of it.
        name: The model's name (default: ``U-Net (napari-unet-cat)``).
        description: One or two sentences (default: the classes and channels).
        authors: Names of the people who made the model (default: this login's name).
        license: SPDX identifier of the weights' license.
        tags: Extra keywords.
        weight_formats: ``keras_v3``, ``tensorflow_saved_model_bundle``, ``onnx`` (needs
            ``onnx`` and ``tf2onnx``), or ``all``.
        sample_name: How to call the sample in error messages.

    Returns:
        The package's path.

    Raises:
        InputError: The extra is missing, the sample does not fit the model, the model
            resizes its input (``scale`` other than 1, which a package cannot express), or
            the description does not validate (the message says what is wrong).
    """
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise InputError(EXTRA_HINT) from None
    from .model_file import save_model

    config = model.config
    arch = config.architecture
    formats = _check_export(model, Path(path), weight_formats)
    path = Path(path)
    geometry = _geometry(model)
    crop = _test_crop(_sample_plane(model, sample, sample_name), geometry, sample_name)
    probabilities = _whole_probabilities(model, crop)
    classes = np.asarray(model.class_values)[np.argmax(probabilities, axis=-1)]
    class_names = [c.name or f"class_{c.value}" for c in config.classes]
    channel_names = list(config.channel_names) or [f"channel{i}" for i in range(arch.n_channels)]
    if len(channel_names) != arch.n_channels:
        channel_names = [f"channel{i}" for i in range(arch.n_channels)]
    name, description, authors = _package_text(name, description, authors, class_names, arch.n_channels)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "test_input.npy", np.moveaxis(crop.astype(np.float32), -1, 0)[None])
        np.save(tmp / "test_output.npy", np.moveaxis(probabilities.astype(np.float32), -1, 0)[None])
        middle = crop.shape[0] // 2 if arch.ndim == 3 else ...  # a volume's cover: its middle plane
        _cover(crop[middle], classes[middle], tmp / "cover.png")
        (tmp / "README.md").write_text(_readme(model, name, description, formats), encoding="utf-8")
        save_model(model, tmp / PACKAGED_MODEL)
        network = export_network(model)
        weights = _weights(network, tmp, formats, (arch.n_channels,) + (None,) * arch.ndim, v0_5)
        inputs, outputs = _tensors(model, tmp, geometry, channel_names, class_names, v0_5)
        descr = v0_5.ModelDescr(
            name=name,
            description=description,
            authors=[v0_5.Author(name=a) for a in authors],
            cite=[v0_5.CiteEntry(text=UNET_PAPER[0], doi=v0_5.Doi(UNET_PAPER[1]))],
            license=license,
            documentation=v0_5.FileDescr(source=tmp / "README.md"),
            covers=[v0_5.FileDescr(source=tmp / "cover.png")],
            tags=sorted({"unet", "segmentation", "napari-unet-cat", f"{arch.ndim}d", *tags}),
            inputs=[inputs],
            outputs=[outputs],
            weights=v0_5.WeightsDescr(**weights),
            attachments=[v0_5.FileDescr(source=tmp / PACKAGED_MODEL)],
            timestamp=v0_5.Datetime(datetime.datetime.now(datetime.UTC)),
            config=v0_5.Config(
                napari_unet_cat={
                    "version": config.package_version,
                    "instance_model": config.is_instance_model,
                    "classes": [c.value for c in config.classes],
                    "model_file": PACKAGED_MODEL,
                }
            ),
        )
        _write_package(descr, path, save_bioimageio_package)
    return path


def _whole_probabilities(model: UNetModel, crop: np.ndarray) -> np.ndarray:
    """Probabilities of the test crop in one pass of the network, normalized as the
    package's preprocessing does (what bioimage.io's model test recomputes)."""
    from .arrays import apply_normalization, percentile_range

    normalized = apply_normalization(crop, *percentile_range(crop, model.config.normalization))
    return model.tile_probabilities(normalized[None])[0]


def _package_text(name, description, authors, class_names: list[str], n_channels: int):
    """The package's name, description and authors, defaults filled in."""
    name = name or "U-Net (napari-unet-cat)"
    description = description or (
        f"U-Net trained with napari-unet-cat: per-pixel probabilities of {len(class_names)} classes "
        f"({', '.join(class_names)}) in {n_channels}-channel images."
    )
    authors = [a for a in (authors or [getpass.getuser()]) if a.strip()]
    if not authors:
        raise InputError("a bioimage.io package needs at least one author's name")
    return name, description, authors


def _check_export(model: UNetModel, path: Path, weight_formats: Sequence[str]) -> list[str]:
    """The weight formats to write, after checking that ``model`` can go to ``path``."""
    from ._backend import keras

    config = model.config
    if config.scale != 1.0:
        raise InputError(
            f"this model works at scale {config.scale:g} of its input; a bioimage.io package cannot resize its "
            "input, so only models trained at scale 1 can be exported"
        )
    formats = list(WEIGHT_FORMATS) if list(weight_formats) == ["all"] else list(weight_formats)
    unknown = [f for f in formats if f not in WEIGHT_FORMATS]
    if unknown or not formats:
        raise InputError(f"weight formats must be among {', '.join(WEIGHT_FORMATS)} or 'all'; received {formats}")
    backend = keras.backend.backend()
    if "tensorflow_saved_model_bundle" in formats and backend != "tensorflow":
        raise InputError(f"tensorflow_saved_model_bundle weights need the TensorFlow backend (this is {backend})")
    if path.suffix.lower() != ".zip":
        raise InputError(f"a bioimage.io package is a .zip file; received {path}")
    if not path.parent.exists():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")

    return formats


def _weights(network, tmp: Path, formats: list[str], input_shape: tuple, v0_5) -> dict:
    """The weight descriptions of ``network`` (input ``(channels, *spatial)``, batch
    left out) in ``formats``, their files written in ``tmp``."""
    from ._backend import keras

    backend = keras.backend.backend()
    weights = {}
    if "keras_v3" in formats:
        network.save(tmp / "weights.keras")
        weights["keras_v3"] = v0_5.KerasV3WeightsDescr(
            source=tmp / "weights.keras",
            backend=(backend, v0_5.Version(_backend_version(backend))),
            keras_version=v0_5.Version(keras.__version__),
        )
    if "tensorflow_saved_model_bundle" in formats:
        import tensorflow as tf

        bundle = tmp / "saved_model"
        # bioimage.io's TensorFlow runner reads the ``serve`` endpoint's outputs by
        # name, so the endpoint returns a dict (Keras's own export returns the tensor).
        archive = keras.export.ExportArchive()
        archive.track(network)
        archive.add_endpoint(
            name="serve",
            fn=lambda image: {"probabilities": network(image, training=False)},
            input_signature=[tf.TensorSpec((None, *input_shape), tf.float32, name="image")],
        )
        archive.write_out(str(bundle), verbose=False)
        zipped = Path(shutil.make_archive(str(tmp / "tf_saved_model"), "zip", bundle))
        weights["tensorflow_saved_model_bundle"] = v0_5.TensorflowSavedModelBundleWeightsDescr(
            source=zipped,
            tensorflow_version=v0_5.Version(tf.__version__),
            parent="keras_v3" if "keras_v3" in weights else None,  # converted from it
        )
    if "onnx" in formats:
        parent = "keras_v3" if "keras_v3" in weights else None  # converted from it
        weights["onnx"] = _onnx_weights(network, tmp / "weights.onnx", input_shape, v0_5, parent)
    return weights


def _tensors(model: UNetModel, tmp: Path, geometry, channel_names, class_names, v0_5):
    """The input and output tensor descriptions: axes, sizes on the network's grid,
    the percentile preprocessing, the halo, and the test tensors in ``tmp``."""
    config = model.config
    spatial = [
        v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=minimum, step=step))
        for a, step, _, minimum in geometry
    ]
    norm = config.normalization
    names = tuple(a for a, *_ in geometry)
    scale_axes = names if norm.per_channel else ("channel", *names)
    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId("image"),
        axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[_identifier(c) for c in channel_names]), *spatial],
        test_tensor=v0_5.FileDescr(source=tmp / "test_input.npy"),
        preprocessing=[
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(
                    axes=[v0_5.AxisId(a) for a in scale_axes],
                    min_percentile=norm.low,
                    max_percentile=norm.high,
                    eps=1e-6,
                )
            )
        ],
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId("probabilities"),
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[_identifier(c) for c in class_names]),
            *(
                v0_5.SpaceOutputAxisWithHalo(
                    id=v0_5.AxisId(a),
                    halo=halo,
                    size=v0_5.SizeReference(tensor_id=v0_5.TensorId("image"), axis_id=v0_5.AxisId(a)),
                )
                for a, _, halo, _ in geometry
            ),
        ],
        test_tensor=v0_5.FileDescr(source=tmp / "test_output.npy"),
    )
    return inputs, outputs


def _write_package(descr, path: Path, save_bioimageio_package) -> None:
    """Save the package beside ``path`` and rename it into place (complete or absent)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.zip", dir=path.parent)
    os.close(fd)
    staged = Path(tmp_name)
    staged.unlink()
    try:
        save_bioimageio_package(descr, output_path=staged)
        os.replace(staged, path)
    except Exception as err:
        staged.unlink(missing_ok=True)
        if isinstance(err, (OSError, InputError)):
            raise
        raise InputError(f"the bioimage.io description of {path.name} does not validate: {err}") from err


def _onnx_weights(network, path: Path, input_shape: tuple, v0_5, parent: str | None):
    """The network as ONNX (Keras's own export: tf2onnx on TensorFlow, jax2onnx on JAX)."""
    from ._backend import keras

    try:
        import onnx
    except ImportError:
        raise InputError("ONNX weights need the onnx and tf2onnx packages: pip install onnx tf2onnx") from None
    spec = keras.InputSpec(shape=(None, *input_shape), dtype="float32", name="image")
    try:
        network.export(str(path), format="onnx", verbose=False, input_signature=[spec])
    except ImportError as err:
        raise InputError(f"ONNX weights need a converter Keras can use ({err})") from None
    opset = max(entry.version for entry in onnx.load(str(path), load_external_data=False).opset_import)
    return v0_5.OnnxWeightsDescr(source=path, opset_version=opset, parent=parent)


def _backend_version(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.__version__
    if backend == "jax":
        import jax

        return jax.__version__
    import torch

    return torch.__version__.split("+")[0]


def _identifier(text: str) -> str:
    """A channel name bioimage.io accepts: letters, digits and ``_``, not starting with a digit."""
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text.strip()) or "channel"
    return cleaned if not cleaned[0].isdigit() else f"c{cleaned}"


__all__ = ["export_bioimageio", "export_network", "is_bioimageio_package", "packaged_model_bytes"]
