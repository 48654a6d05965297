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
