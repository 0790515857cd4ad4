"""The U-Net of Ronneberger et al. (2015), as a Keras 3 functional model."""

from __future__ import annotations

import itertools

from ._backend import keras

layers = keras.layers


def _check_unet_arguments(n_classes, n_channels, base_filters, depth, kernel_l2, input_size, ndim, z_pools) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`build_unet` out of range."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2. Received: n_classes={n_classes}")
    if n_channels < 1:
        raise ValueError(f"n_channels must be at least 1. Received: n_channels={n_channels}")
    if base_filters < 1:
        raise ValueError(f"base_filters must be at least 1. Received: base_filters={base_filters}")
    if not 1 <= depth <= 6:
        raise ValueError(f"depth must be between 1 and 6. Received: depth={depth}")
    if kernel_l2 < 0:
        raise ValueError(f"kernel_l2 must not be negative. Received: kernel_l2={kernel_l2}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 (planes) or 3 (volumes). Received: ndim={ndim}")
    if z_pools is not None and not 0 <= z_pools <= depth:
        raise ValueError(f"z_pools must be between 0 and depth={depth}. Received: z_pools={z_pools}")
    if input_size is not None and input_size % 2**depth:
        raise ValueError(f"input_size must be a multiple of 2**depth={2**depth}. Received: input_size={input_size}")


#: Convolution, pooling and up-convolution layers of planes and of volumes.
_LAYERS = {
    2: (layers.Conv2D, layers.MaxPooling2D, layers.Conv2DTranspose),
    3: (layers.Conv3D, layers.MaxPooling3D, layers.Conv3DTranspose),
}


def _halvings(ndim: int, depth: int, z_pools: int | None) -> list:
    """Each level's pooling size: 2, or (1, 2, 2) for a volume's levels above the
    deepest ``z_pools`` (those keep Z)."""
    z_pools = depth if z_pools is None else z_pools
    return [2 if ndim == 2 or level >= depth - z_pools else (1, 2, 2) for level in range(depth)]


def build_unet(
    n_classes: int = 2,
    n_channels: int = 1,
    *,
    base_filters: int = 64,
    depth: int = 4,
    batch_norm: bool = True,
    kernel_l2: float = 0.0,
    bn_momentum: float = 0.9,
    input_size: int | None = None,
    seed: int | None = None,
    ndim: int = 2,
    z_pools: int | None = None,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net that outputs one logit per class and pixel (or voxel).

    Each level has two 3x3 convolutions, each followed by batch normalization and ReLU;
    ``depth`` 2x2 max-poolings go down, doubling the filters at each level; 2x2
    stride-2 transposed convolutions go up, their output concatenated with the skip
    connection of the same level; a 1x1 convolution gives the logits. The defaults
    are the original network (64 to 1024 filters, about 31 M parameters). With
    ``ndim=3`` it is the 3D U-Net of Çiçek et al. (2016): 3x3x3 convolutions, and 2x2x2
    poolings on the deepest ``z_pools`` levels, 1x2x2 (Y and X only) above them, so that
    a volume whose Z is coarser than Y and X is first pooled towards isotropic voxels.

    Args:
        n_classes: Number of classes (logits per pixel), at least 2.
        n_channels: Channels of the input images, at least 1.
        base_filters: Filters of the first level; level ``i`` has ``base_filters * 2**i``.
        depth: Number of poolings. Input sides must be multiples of ``2**depth``.
        batch_norm: Batch normalization after each convolution.
        kernel_l2: L2 penalty on the convolution kernels (0 for none).
        bn_momentum: Momentum of the batch-norm moving statistics. 0.9 (rather than
            Keras's 0.99) lets them settle within the few hundred steps of a short
            training run, so inference matches training.
        input_size: Fixed square input side, or ``None`` for any size (the default).
        ndim: 2 for planes ``(Y, X)``, 3 for volumes ``(Z, Y, X)``.
        z_pools: Volumes: how many levels (the deepest) also pool Z (``None``: all).
        seed: Seed of the initial weights, so that the same seed builds the same
            network; ``None`` draws them from Keras's global random state.
        name: Name of the model.

    Returns:
        A ``keras.Model`` mapping ``(batch, Y, X, n_channels)`` images to
        ``(batch, Y, X, n_classes)`` logits (float32 even under mixed precision); with
        ``ndim=3``, ``(batch, Z, Y, X, ...)``.
    """
    _check_unet_arguments(n_classes, n_channels, base_filters, depth, kernel_l2, input_size, ndim, z_pools)
    conv, pool, up = _LAYERS[ndim]
    halving = _halvings(ndim, depth, z_pools)

    regularizer = keras.regularizers.L2(kernel_l2) if kernel_l2 > 0 else None
    layer_count = itertools.count()

    def initializer(kind: type[keras.initializers.Initializer]) -> keras.initializers.Initializer:
        # One seed per layer: a Keras initializer with an integer seed repeats its values,
        # so layers sharing one would start with correlated kernels.
        return kind(seed=None if seed is None else seed * 1000 + next(layer_count))

    def conv_block(x, filters: int, prefix: str):
        for i in (1, 2):
            x = conv(
                filters,
                3,
                padding="same",
                use_bias=not batch_norm,
                kernel_initializer=initializer(keras.initializers.HeNormal),
                kernel_regularizer=regularizer,
                name=f"{prefix}_conv{i}",
            )(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
        return x

    inputs = keras.Input(shape=(None,) * (ndim - 2) + (input_size, input_size, n_channels), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, f"down{level + 1}")
        skips.append(x)
        x = pool(halving[level], name=f"down{level + 1}_pool")(x)
    x = conv_block(x, base_filters * 2**depth, "bottom")
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = up(
            filters,
            halving[level],
            strides=halving[level],
            kernel_initializer=initializer(keras.initializers.GlorotUniform),
            kernel_regularizer=regularizer,
            name=f"up{level + 1}_upconv",
        )(x)
        x = layers.Concatenate(name=f"up{level + 1}_concat")([skips[level], x])
        x = conv_block(x, filters, f"up{level + 1}")
    logits = conv(
        n_classes, 1, kernel_initializer=initializer(keras.initializers.GlorotUniform), dtype="float32", name="logits"
    )(x)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="napari_unet_cat")
class PriorCorrection(layers.Layer):
    """Undo the class weights of training on softmax probabilities.

    A network trained with class ``k`` weighted ``w_k`` in its loss learns probabilities
    proportional to ``w_k p(k)``: the weights shift every decision towards the weighted
    classes. Dividing by ``w_k`` and renormalizing gives back ``p(k)``. Used on instance
    models, whose rare border class is weighted up so that it is learnt at all.

    Args:
        class_weights: The weight of each class in training (positive numbers).
    """

    def __init__(self, class_weights, **kwargs):
        super().__init__(**kwargs)
        self.class_weights = [float(w) for w in class_weights]
        if not self.class_weights or min(self.class_weights) <= 0:
            raise ValueError(f"class weights must be positive numbers; received class_weights={class_weights}")

    def call(self, probabilities):
        ops = keras.ops
        inverse = ops.convert_to_tensor([1.0 / w for w in self.class_weights], dtype=probabilities.dtype)
        corrected = probabilities * inverse
        return corrected / ops.maximum(ops.sum(corrected, axis=-1, keepdims=True), 1e-12)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


def build_network(config, dtype_policy: str = "float32", seed: int | None = None):
    """The Keras network of ``config``, its layers computing under ``dtype_policy``,
    its initial weights drawn from ``seed`` (``None``: Keras's global random state)."""
    from .resources import dtype_policy as policy_scope

    arch = config.architecture
    with policy_scope(dtype_policy):
        return build_unet(
            arch.n_classes,
            arch.n_channels,
            base_filters=arch.base_filters,
            depth=arch.depth,
            batch_norm=arch.batch_norm,
            kernel_l2=arch.kernel_l2,
            seed=seed,
            ndim=arch.ndim,
            z_pools=arch.z_pools,
        )
