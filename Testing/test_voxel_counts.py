"""Segmentation.voxelCounts counts a block of voxels at a time (issue 15): the counts np.count_nonzero gives."""

from __future__ import annotations

import numpy as np
import pytest
from QuantReportLib import model
from QuantReportLib.model import Geometry, Segment, Segmentation
from QuantReportLib.terminology import DEFAULT_TERMINOLOGY


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_voxel_counts_across_blocks_equal_independent_counts(dtype):
    shape = (7, 512, 300)  # 1.07 M voxels: more than one block, the last one partial
    assert np.prod(shape) > model._HISTOGRAM_BLOCK
    labelmap = np.zeros(shape, dtype=dtype)
    labelmap[2:5] = np.random.default_rng(15).integers(0, 4, size=labelmap[2:5].shape, dtype=dtype)
    labelmap[0, :10, :10] = 4  # only in the first block
    largest = 300 if dtype == np.uint16 else 250
    labelmap[6, -5:, -5:] = largest  # only in the last block, so the counts must grow there
    numbers = [1, 2, 3, 4, largest, largest - 1]  # the last one has no voxel
    segmentation = Segmentation.fromLabelmap(labelmap, Geometry(shape, np.eye(4)),
                                             [Segment(number, f"S{number}", DEFAULT_TERMINOLOGY) for number in numbers])
    assert segmentation.voxelCounts() == {number: int(np.count_nonzero(labelmap == number)) for number in numbers}
    assert segmentation.voxelCounts()[largest] == 25 and segmentation.voxelCounts()[4] == 100


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_histogram_of_sparse_layers_is_bincount(dtype):
    """Only the bands of rows holding labels are counted: the histogram is np.bincount's whatever the layout."""
    generator = np.random.default_rng(151)
    layers = [np.zeros((5, 40, 30), dtype=dtype), np.ones((3, 4, 5), dtype=dtype), np.zeros((0, 4, 4), dtype=dtype),
              np.zeros((2, 3), dtype=dtype)]
    for _ in range(20):
        layer = np.zeros((6, 50, 40), dtype=dtype)
        for _ in range(generator.integers(0, 6)):
            k, j, i = (int(generator.integers(0, size)) for size in layer.shape)
            layer[k, j:j + int(generator.integers(1, 12)), i:i + int(generator.integers(1, 9))] = \
                generator.integers(1, 300 if dtype != np.uint8 else 256)
        layers.append(layer)
    layers[-1][:, 0, 0] = 7  # the first row of every slice
    layers[-2][:, -1, -1] = 9  # the last row of every slice
    for layer in layers:
        expected = np.bincount(layer.reshape(-1), minlength=1)
        assert np.array_equal(model._histogram(layer), expected), layer.shape
