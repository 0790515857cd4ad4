"""napari layers as the model sees them: the choices, pairs, inputs and planes on screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import UNetCatError

if TYPE_CHECKING:
    import napari


#: Suffix of the Labels layers that hold a prediction (``<image> U-Net``).
PREDICTION_SUFFIX = " U-Net"


def background_value(class_values) -> int:
    """The class shown as background: value 0 when the model has it, else the lowest."""
    values = list(class_values)
    return 0 if 0 in values else min(values)


def layers_of(viewer: napari.Viewer | None, kind: str) -> list:
    if viewer is None:
        return []
    import napari.layers

    cls = {"image": napari.layers.Image, "labels": napari.layers.Labels}[kind]
    return [layer for layer in viewer.layers if isinstance(layer, cls)]


def pair_layers_by_name(viewer: napari.Viewer) -> list[tuple]:
    """Every (Image, Labels) pair whose Labels layer name starts with the Image layer name
    (predictions this plugin added, ``<image> U-Net``, are not annotations and are left out)."""
    images = sorted(layers_of(viewer, "image"), key=lambda layer: -len(layer.name))
    pairs = []
    for labels in layers_of(viewer, "labels"):
        if labels.name.endswith(PREDICTION_SUFFIX):
            continue
        match = next((im for im in images if labels.name.startswith(im.name) and labels.name != im.name), None)
        if match is not None:
            pairs.append((match, labels))
    return pairs


def layer_input(image, extra_channels=(), axes: str = ""):
    """What a model sees of an Image layer: ``(data, axes, channel_names)``.

    ``extra_channels`` are more Image layers, one channel each, that join ``image`` as
    the channels of one input, in that order (napari opens a multichannel file as one
    layer per channel). ``axes`` (``CYX``, ``ZCYX``...) says where the channels of one
    layer are; without it an RGB layer's last axis is its colour and any other layer has
    no channel axis. ``data`` comes in the package's axis order, read lazily;
    ``channel_names`` are the layer names when each layer is one channel.
    """
    from ..arrays import StackedChannels, stack_axes, to_canonical

    extra = [layer for layer in extra_channels if layer is not image]
    if extra:
        layers = [image, *extra]
        if axes:
            raise UNetCatError("give axes for one layer with channels, or several single-channel layers, not both")
        rgb = [layer.name for layer in layers if layer.rgb]
        if rgb:
            raise UNetCatError(f"layer '{rgb[0]}' is RGB: channel layers must each hold one channel")
        data = StackedChannels([layer.data for layer in layers], [layer.name for layer in layers])
        return data, stack_axes(image.ndim - 2) + "YXC", [layer.name for layer in layers]
    if axes:
        data, canonical = to_canonical(image.data, axes, name=f"layer '{image.name}'")
        return data, canonical, [] if canonical[-1] in "CS" else [image.name]
    if image.rgb:
        return image.data, stack_axes(image.data.ndim - 3) + "YXS", []
    return image.data, stack_axes(image.data.ndim - 2) + "YX", [image.name]


def output_axes_of(layer, data, axes: str) -> list[int]:
    """For each axis of a prediction of ``data`` (stack axes, Y, X), the axis of
    ``layer`` it lies along (to place the prediction over the layer and to follow the
    plane on screen)."""
    from ..arrays import AxesView

    n_out = len(labels_shape_for(data, axes))
    if isinstance(data, AxesView):
        return list(data.order[:n_out])
    return list(range(n_out))


def viewer_calls_z(viewer: napari.Viewer, layer, z_axis: int | None = None) -> bool:
    """Whether the viewer labels ``layer``'s axis ``z_axis`` (default: its last stack
    axis) ``z``, as readers of z-stacks do: only then is a stack one volume, not a series
    of planes (time points, unrelated images)."""
    z_axis = layer.ndim - 3 if z_axis is None else z_axis
    labels = list(viewer.dims.axis_labels)[-layer.ndim :]
    return 0 <= z_axis < len(labels) == layer.ndim and str(labels[z_axis]).lower() == "z"


#: napari's (pint's) names of the usual lengths, as the model file writes them.
_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}


def layer_voxel_size(layer, layer_axes: list[int]) -> dict:
    """``{"voxel_size": [Z, Y, X], "voxel_unit": ...}`` of a z-stack layer, from its
    scale along ``layer_axes[-3:]`` (its Z, Y and X axes), or ``{}`` where napari's
    default scale of 1 says nothing."""
    size = [float(layer.scale[a]) for a in layer_axes[-3:]]
    if len(size) != 3 or size == [1.0, 1.0, 1.0] or min(size) <= 0:
        return {}
    unit = str(getattr(layer, "units", [""] * layer.ndim)[layer_axes[-1]])
    return {"voxel_size": size, "voxel_unit": "" if unit == "pixel" else _UNITS.get(unit, unit)}


def plane_on_screen(viewer: napari.Viewer, layer, layer_axes: list[int]) -> tuple[int, ...]:
    """Index of the plane shown now along the stack axes ``layer_axes[:-2]`` of ``layer``."""
    return plane_at_step(tuple(viewer.dims.current_step), layer, layer_axes)


def plane_at_step(step: tuple[int, ...], layer, layer_axes: list[int]) -> tuple[int, ...]:
    """Index of the plane of ``layer`` at the viewer's dims ``step`` (one entry per
    viewer axis; a layer with fewer axes takes the last ones), along ``layer_axes[:-2]``."""
    offset = len(step) - layer.ndim
    shape = layer.data.shape
    return tuple(int(min(max(step[offset + a], 0), shape[a] - 1)) for a in layer_axes[:-2])


def labels_shape_for(data, axes: str) -> tuple[int, ...]:
    """The shape a Labels layer painted over ``data`` (of ``axes``) must have."""
    shape = tuple(np.shape(data))
    return shape[:-1] if axes and axes[-1] in "CS" else shape


def model_input(layer, model, extra_channels=(), axes: str = ""):
    """``(data, axes)`` that ``model`` segments for ``layer`` (and its channel layers),
    or an error that says which layers the model needs."""
    data, data_axes, _ = layer_input(layer, extra_channels, axes)
    from ..arrays import infer_layout

    wanted = model.n_channels
    gray = model.config.gray_input and not extra_channels
    layout = infer_layout(
        np.shape(data), n_channels=wanted if gray else None, axes=data_axes, name=f"layer '{layer.name}'", gray=gray
    )
    if layout.used_channels != wanted:
        names = model.config.channel_names
        listed = f" ({', '.join(names)})" if any(names) else ""
        hint = (
            f"choose {wanted} single-channel Image layers (the image and 'more channels', in that order), or give "
            "the axes of one layer that holds the channels (for example CYX)"
            if wanted > 1
            else "choose one single-channel Image layer" + (" or an RGB one" if model.config.gray_input else "")
        )
        raise UNetCatError(
            f"'{layer.name}' has {layout.used_channels} channel{'s' if layout.used_channels != 1 else ''} "
            f"(shape {layer.data.shape}, axes {data_axes}) but the model was trained on {wanted} "
            f"channel{'s' if wanted > 1 else ''}{listed}: {hint}"
        )
    return data, data_axes
