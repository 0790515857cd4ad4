"""The uncertainty map and the ranking of objects by it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_cat.errors import InputError
from napari_unet_cat.uncertainty import entropy_map, least_sure, object_uncertainty


def test_the_map_is_zero_where_sure_and_one_where_undecided():
    p = np.zeros((2, 3, 3), np.float32)
    p[0, :, 0] = 1.0  # sure of class 0
    p[1, :, :] = 1 / 3  # every class equally likely
    u = entropy_map(p)
    assert u.shape == (2, 3) and np.allclose(u[0], 0, atol=1e-5) and np.allclose(u[1], 1, atol=1e-5)
    with pytest.raises(InputError, match="two or more classes"):
        entropy_map(np.ones((4, 4, 1)))


def test_objects_are_ranked_by_their_mean_uncertainty_edges_included():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 2:8] = 1
    labels[10:16, 10:16] = 2
    labels[2:8, 20:26] = 3
    u = np.zeros(labels.shape, np.float32)
    u[9, 9:17] = 1.0  # just outside object 2: a doubtful edge
    u[4, 21] = 0.5  # one pixel inside object 3
    table = object_uncertainty(labels, u)
    assert list(table["label"]) == [2, 3, 1]
    assert table["uncertainty"][0] == pytest.approx(8 / 64)  # 8 doubtful pixels in its 8x8 grown square
    assert list(table["area"]) == [36, 36, 36]
    assert least_sure(labels, u, k=2) == [2, 3]
