"""Proofreading edits on real arrays: merge, split, delete, delete small, relabel; 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_cat.errors import InputError
from napari_unet_cat.proofreading import delete, delete_smaller_than, label_at, merge, relabel_sequentially, split


def _two_touching_discs(shape=(40, 60)):
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 12**2] = 5
    labels[(yy - 20) ** 2 + (xx - 40) ** 2 < 12**2] = 5  # two discs wrongly one object
    labels[2:5, 2:5] = 9  # a speck
    return labels


def test_split_cuts_an_object_at_its_waist_and_merge_joins_it_again():
    labels = _two_touching_discs()
    edit = split(labels, [(20, 18), (20, 40)])
    parts = edit.apply(labels)
    assert label_at(parts, (20, 18)) == 5 and label_at(parts, (20, 40)) == 10  # a new label past the largest
    assert set(np.unique(parts)) == {0, 5, 9, 10}
    left = np.nonzero(parts == 5)[1]
    assert left.max() <= 30 and np.nonzero(parts == 10)[1].min() >= 28  # cut near the waist (x = 29)
    merged = merge(parts, 5, 10).apply(parts)
    np.testing.assert_array_equal(merged, labels)
    with pytest.raises(InputError, match="two different objects"):
        merge(parts, 5, 5)
    with pytest.raises(InputError, match="one object"):
        split(parts, [(20, 18), (20, 40)])


def test_delete_small_and_relabel():
    labels = _two_touching_discs()
    assert set(np.unique(delete(labels, 9).apply(labels))) == {0, 5}
    assert set(np.unique(delete_smaller_than(labels, 10).apply(labels))) == {0, 5}  # the 9-pixel speck goes
    assert set(np.unique(relabel_sequentially(labels).apply(labels))) == {0, 1, 2}
    with pytest.raises(InputError, match="no object 3"):
        delete(labels, 3)


def test_edits_work_in_3d():
    volume = np.zeros((6, 20, 30), np.uint32)
    volume[1:5, 5:15, 2:28] = 1
    edit = split(volume, [(3, 10, 5), (3, 10, 24)])
    parts = edit.apply(volume)
    assert set(np.unique(parts)) == {0, 1, 2} and label_at(parts, (3, 10, 24)) == 2
