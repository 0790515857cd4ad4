"""Properties that must hold for any input: shapes, values, finiteness, coverage, round trips."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unet_cat.arrays import apply_normalization, percentile_range
from napari_unet_cat.config import ClassInfo, ModelConfig, Normalization, architecture_from_preset
from napari_unet_cat.tiling import axis_tiles, plan_plane

FEW = settings(max_examples=25, deadline=None)
MODEL = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

pixel_dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64])


@st.composite
def images(draw, max_side=70, stack=False):
    dtype = draw(pixel_dtypes)
    shape = (draw(st.integers(1, 3)),) if stack else ()
    shape += (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FEW
@given(image=images(max_side=40), per_channel=st.booleans())
def test_normalization_never_produces_nan_or_inf(image, per_channel):
    plane = image[..., None].astype(np.float32)
    lo, hi = percentile_range(plane, Normalization(per_channel=per_channel))
    out = apply_normalization(plane, lo, hi)
    assert out.dtype == np.float32 and out.shape == plane.shape
    assert np.isfinite(out).all()


@MODEL
@given(image=images())
def test_prediction_keeps_the_shape_and_writes_only_trained_values(tiny_model, image):
    labels = tiny_model.predict(image)
    assert labels.shape == image.shape
    assert set(np.unique(labels)) <= set(tiny_model.class_values)


@MODEL
@given(stack=images(max_side=40, stack=True), tile=st.sampled_from([None, 16, 32, 48]))
def test_stacks_keep_their_shape_at_any_tile_size(tiny_model, stack, tile):
    # rgb=False, as napari passes for a grayscale layer: a (Z, Y, 1) stack would
    # otherwise read as one plane with one channel.
    labels = tiny_model.predict(stack, tile_size=tile, margin=4 if tile else None, rgb=False)
    assert labels.shape == stack.shape


@FEW
@given(
    multiple=st.sampled_from([4, 8, 16]),
    units=st.integers(1, 200),
    window_units=st.integers(2, 40),
    margin_units=st.integers(0, 8),
)
def test_tiles_cover_every_pixel_exactly(multiple, units, window_units, margin_units):
    length, window, margin = units * multiple, window_units * multiple, margin_units * multiple
    if length > window and window - 2 * margin < multiple:
        return  # refused with a ValueError, tested elsewhere
    tiles = axis_tiles(length, window, margin, multiple)
    total = np.zeros(length, np.float64)
    for i, start in enumerate(tiles.starts):
        assert start % multiple == 0 and 0 <= start <= length - tiles.window
        total[start : start + tiles.window] += tiles.weights(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    bounds = [b for core in tiles.cores for b in core]
    assert bounds[0] == 0 and bounds[-1] == length and bounds == sorted(bounds)


@FEW
@given(h=st.integers(1, 300), w=st.integers(1, 300), border=st.integers(0, 16), depth=st.integers(1, 4))
def test_padded_plane_is_a_whole_number_of_pooling_blocks(h, w, border, depth):
    k = 2**depth
    plan = plan_plane((h, w), tile_size=8 * k, margin=k, multiple=k, border=border)
    for n, (before, after), axis in zip((h, w), plan.pad, (plan.rows, plan.cols)):
        assert before == border and after >= border and (n + before + after) % k == 0 == axis.length % k


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@FEW
@given(
    values=st.lists(st.integers(0, 65535), min_size=2, max_size=5, unique=True),
    names=st.lists(names, min_size=5, max_size=5),
    scale=st.floats(0.05, 4.0),
    ignored=st.integers(256, 1000),
)
def test_model_config_round_trips_through_json(values, names, scale, ignored):
    import json

    values = sorted(values)
    config = ModelConfig(
        architecture=architecture_from_preset("light", n_channels=3, n_classes=len(values)),
        classes=[ClassInfo(v, n) for v, n in zip(values, names)],
        scale=scale,
        value_map={ignored: "ignore", ignored + 1: values[0]},
    )
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
