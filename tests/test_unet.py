import numpy as np
import pytest

from napari_unet_cat.unet import build_unet


def test_classic_network_is_the_tutorials():
    model = build_unet(2, 3)
    # 64 -> 1024 filters over four poolings: about 31 M parameters.
    assert 30_000_000 < model.count_params() < 32_000_000
    names = [layer.name for layer in model.layers]
    assert names.count("down1_conv1") == 1
    assert "bottom_conv2" in names and "up1_upconv" in names and names[-1] == "logits"
    assert model.get_layer("bottom_conv1").filters == 1024
    assert model.get_layer("down1_pool").pool_size == (2, 2)
    assert model.get_layer("up4_upconv").strides == (2, 2)
    assert model.get_layer("logits").kernel_size == (1, 1)


@pytest.mark.parametrize("channels, classes, side", [(1, 2, 48), (3, 4, 64), (5, 3, 32)])
def test_output_has_one_logit_per_class_and_pixel(channels, classes, side):
    model = build_unet(classes, channels, base_filters=4, depth=2)
    out = model.predict_on_batch(np.zeros((2, side, side, channels), np.float32))
    assert out.shape == (2, side, side, classes)
    assert out.dtype == np.float32


def test_width_and_depth_change_the_network():
    small = build_unet(2, 1, base_filters=4, depth=2)
    large = build_unet(2, 1, base_filters=8, depth=3)
    assert small.count_params() < large.count_params()
    assert large.get_layer("bottom_conv1").filters == 64


def test_l2_adds_kernel_penalties():
    model = build_unet(2, 1, base_filters=4, depth=1, kernel_l2=1e-3)
    assert model.get_layer("down1_conv1").kernel_regularizer is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"n_channels": 0}, "n_channels"),
        ({"depth": 0}, "depth"),
        ({"base_filters": 0}, "base_filters"),
        ({"kernel_l2": -1.0}, "kernel_l2"),
        ({"input_size": 100, "depth": 4}, "multiple"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=f"{message}.*Received|Received.*{message}"):
        build_unet(**kwargs)


def test_seed_fixes_the_initial_weights():
    def kernels(seed):
        return [w for w in build_unet(2, 1, base_filters=4, depth=2, seed=seed).get_weights() if w.ndim == 4]

    first, again, other = kernels(3), kernels(3), kernels(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other))
    # Each layer gets its own draw: the two kernels of one level differ.
    model = build_unet(2, 1, base_filters=4, depth=2, seed=3)
    a = np.asarray(model.get_layer("up1_conv2").get_weights()[0])
    b = np.asarray(model.get_layer("down1_conv2").get_weights()[0])
    assert a.shape == b.shape
    assert not np.allclose(a, b)
