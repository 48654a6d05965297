"""Differential tests of the accelerated ("fast") readers and writers against the plain library calls.

Each fast path (issue 15) must give what the plain pydicom, highdicom or pynrrd call gives, or leave the
input to it.  Here both run over the shared test data and systematic, seeded mutations of it (transfer
syntaxes, character sets, odd and padded values, undefined lengths, unused high bits, trailing bytes):
the results must be equal (or the fast path must have declined).  One test per kind of input, each a few
seconds; ``python Testing/test_fast_paths_differential.py SEED COUNT`` runs a longer sweep of the header
scanner by hand.
"""

from __future__ import annotations

import copy
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TESTDATA
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from QuantReportLib.seg import _fast as seg_fast

_SEGS = sorted((TESTDATA / "seg").glob("*.dcm"))


# -- SEG frames: nativeFrames against pydicom's decoder ------------------------------------------------------


def _frames(dataset: pydicom.Dataset, indices: list[int]) -> np.ndarray | None:
    """The frames at ``indices`` as ``nativeFrames`` gives them, put back into whole frames; ``None`` when it
    declines."""
    sliced = seg_fast.nativeFrames(dataset, "seg", indices)
    if sliced is None:
        return None
    frames = []
    for box, pixels in sliced:
        frame = np.zeros((int(dataset.Rows), int(dataset.Columns)), dtype=pixels.dtype)
        frame[box] = pixels
        frames.append(frame)
    return np.array(frames)


def _pydicomFrames(dataset: pydicom.Dataset) -> np.ndarray | Exception:
    """All frames as pydicom decodes them (stored values), or what it raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = pydicom.pixels.pixel_array(dataset, raw=True)
    except Exception as error:  # noqa: BLE001 (whatever pydicom refuses, the fast path must decline)
        return error
    return frames.reshape(int(dataset.get("NumberOfFrames", 1)), int(dataset.Rows), int(dataset.Columns))


def _withBitsStored(dataset: pydicom.Dataset, bits_stored: int | None, garbage: bool) -> pydicom.Dataset:
    """A copy whose Bits Stored is ``bits_stored`` (``None``: absent), with the unused high bits of every
    non-zero sample set when ``garbage`` (as writers that keep overlays or flags there do)."""
    changed = copy.deepcopy(dataset)
    allocated = int(changed.BitsAllocated)
    if bits_stored is None:
        del changed.BitsStored
    else:
        changed.BitsStored, changed.HighBit = bits_stored, bits_stored - 1
    if garbage and allocated in (8, 16) and bits_stored is not None and bits_stored < allocated:
        samples = np.frombuffer(changed.PixelData, dtype=f"<u{allocated // 8}").copy()
        samples[samples != 0] |= np.array(1 << (allocated - 1), samples.dtype)
        changed.PixelData = samples.tobytes()
    return changed


@pytest.mark.parametrize("path", _SEGS, ids=[path.stem for path in _SEGS])
def test_native_seg_frames_are_pydicoms_or_declined(path, tmp_path):
    """Every SEG of the test data, in both native syntaxes, with its Bits Stored as it is, narrower (high
    bits clear and set), wider and absent, and with a byte of trailing padding: the frames nativeFrames
    slices are pydicom's, or it leaves them to pydicom (which may refuse them)."""
    original = pydicom.dcmread(path)
    allocated = int(original.BitsAllocated)
    variants = {"as-is": original, "absent": _withBitsStored(original, None, False),
                "wider": _withBitsStored(original, allocated + 1, False)}
    if allocated > 1:
        variants |= {"narrower": _withBitsStored(original, allocated - 4, False),
                     "narrower-high-bits-set": _withBitsStored(original, allocated - 4, True)}
    padded = copy.deepcopy(original)
    padded.PixelData = original.PixelData + b"\x00\x01"
    variants["trailing-bytes"] = padded
    sliced = 0
    for name, variant in variants.items():
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            variant.file_meta.TransferSyntaxUID = syntax
            written = tmp_path / f"{name}-{syntax.name}.dcm"
            variant.save_as(written, implicit_vr=syntax.is_implicit_VR, little_endian=True)
            for deferred in (False, True):  # all in memory, and every other frame read from the file
                dataset = pydicom.dcmread(written, defer_size=64 if deferred else None)
                count = int(dataset.get("NumberOfFrames", 1))
                indices = list(range(0, count, 2 if deferred and count > 1 else 1))
                fast, plain = _frames(dataset, indices), _pydicomFrames(dataset)
                if fast is None:
                    continue
                assert not isinstance(plain, Exception), (name, syntax.name, plain)
                assert fast.dtype == plain.dtype and np.array_equal(fast, plain[indices]), (name, syntax.name)
                sliced += 1
    assert sliced >= 8, "the SEG as it is, padded, is sliced by the fast path in both syntaxes"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
