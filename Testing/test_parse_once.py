"""Each file of a series is parsed once: the header pass finds where native pixel data lies and the pixel pass
reads those bytes (QuantReportLib.dicomio.pixels.readNativeFrame).

The frames read that way are compared with pydicom decoding the whole file, for every native transfer syntax,
signed and unsigned samples with garbage in the unused high bits, 8-bit samples, a raw dataset without File Meta
Information and a file with elements after its pixel data; compressed files keep the whole-file path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from QuantReportLib.dicomio import pixels
from QuantReportLib.dicomio.pixels import iterFrames, readNativeFrame
from QuantReportLib.dicomio.reading import nativePixelDataSpan, readDataset, readDicomHeader
from QuantReportLib.series import findSeries, loadSeries


def _wholeFileFrame(path: Path) -> np.ndarray:
    return next(iterFrames(readDataset(path, raw_datasets=True), path))


def _variant(source: Path, target: Path, syntax: str, *, bits: tuple[int, int, int] | None = None,
             trailing: bool = False) -> Path:
    """``source`` rewritten in ``syntax``; ``bits`` = (allocated, stored, representation) with random
    values that set the unused high bits, so that a reader must correct them as pydicom does."""
    dataset = pydicom.dcmread(source)
    if bits is not None:
        allocated, stored, representation = bits
        dtype = np.dtype(f"{'i' if representation else 'u'}{allocated // 8}")
        values = np.random.default_rng(allocated + stored).integers(
            np.iinfo(dtype).min, np.iinfo(dtype).max, size=(dataset.Rows, dataset.Columns), endpoint=True,
            dtype=dtype)
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = allocated, stored, stored - 1
        dataset.PixelRepresentation = representation
        dataset.PixelData = values.tobytes()
        dataset["PixelData"].VR = "OW" if allocated > 8 else "OB"
    if syntax == ExplicitVRBigEndian:
        array = np.frombuffer(dataset.PixelData, dtype=f"<{'i' if dataset.PixelRepresentation else 'u'}"
                                                          f"{dataset.BitsAllocated // 8}")
        dataset.PixelData = array.astype(array.dtype.newbyteorder(">")).tobytes()
        dataset["PixelData"].VR = "OW" if dataset.BitsAllocated > 8 else "OB"
    dataset.file_meta.TransferSyntaxUID = syntax
    if trailing:
        dataset.add_new(0xFFFCFFFC, "OB", b"\0" * 64)  # Data Set Trailing Padding after the pixel data
    pydicom.dcmwrite(target, dataset, enforce_file_format=True)  # dcmwrite: may change the byte order
    return target


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("bits", [None, (16, 12, 1), (16, 12, 0), (16, 16, 1), (8, 8, 0), (8, 6, 1), (32, 32, 0),
                                  (32, 20, 1)],
                         ids=["as-is", "s12of16", "u12of16", "s16", "u8", "s6of8", "u32", "s20of32"])
def test_native_frame_read_from_the_header_pass_equals_pydicom_on_the_whole_file(lidc_dir, tmp_path, syntax,
                                                                                   bits):
    source = sorted(lidc_dir.glob("*.dcm"))[0]
    path = _variant(source, tmp_path / "slice.dcm", syntax, bits=bits, trailing=bits == (16, 12, 1))
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    header = readDicomHeader(path)
    span = nativePixelDataSpan(header)
    assert span is not None
    frame = readNativeFrame(header, path)
    expected = _wholeFileFrame(path)
    assert frame is not None and frame.dtype == expected.dtype
    assert np.array_equal(frame, expected)
    # Little-endian frames are read straight into their array, big-endian ones by pydicom's decoder.
    assert (pixels._plainNativeFrame(header, path, *span) is None) == (syntax == ExplicitVRBigEndian)
    if bits is None:
        assert np.array_equal(frame, pydicom.dcmread(source).pixel_array)
    if bits is not None and bits[1] < bits[0]:
        assert np.array_equal(expected, pydicom.dcmread(path).pixel_array)  # the unused bits were corrected


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2", "RGB"])
@pytest.mark.parametrize("shape", [(3, 5), (4, 4)], ids=["odd", "even"])
def test_small_native_frames_equal_pydicom(tmp_path, photometric, shape):
    """Odd lengths (8-bit values padded to even), MONOCHROME1, and colour (left to pydicom's decoder)."""
    from pydicom.dataset import Dataset, FileMetaDataset

    samples = 3 if photometric == "RGB" else 1
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = samples, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    if samples > 1:
        dataset.PlanarConfiguration = 0
    values = np.arange(shape[0] * shape[1] * samples, dtype=np.uint8).tobytes()
    dataset.PixelData = values + b"\0" * (len(values) % 2)
    path = tmp_path / "small.dcm"
    dataset.save_as(path, enforce_file_format=True)
    header = readDicomHeader(path)
    frame = readNativeFrame(header, path)
    expected = _wholeFileFrame(path)
    assert frame is not None and frame.dtype == expected.dtype and np.array_equal(frame, expected)
    assert (pixels._plainNativeFrame(header, path, *nativePixelDataSpan(header)) is None) == (samples > 1)


def test_raw_dataset_without_file_meta(lidc_dir, tmp_path):
    from pydicom.dataset import FileMetaDataset

    dataset = pydicom.dcmread(sorted(lidc_dir.glob("*.dcm"))[0])
    expected = dataset.pixel_array
    dataset.preamble, dataset.file_meta = None, FileMetaDataset()
    raw = tmp_path / "raw.dcm"
    pydicom.dcmwrite(raw, dataset, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert raw.read_bytes()[:2] == b"\x08\x00"  # no preamble, no File Meta Information
    header = readDicomHeader(raw)
    frame = readNativeFrame(header, raw)
    assert frame is not None and np.array_equal(frame, expected)


def test_compressed_pixel_data_keeps_the_whole_file_path(lidc_dir, tmp_path):
    path = tmp_path / "rle.dcm"
    dataset = pydicom.dcmread(sorted(lidc_dir.glob("*.dcm"))[0])
    dataset.compress(RLELossless)
    dataset.save_as(path)
    header = readDicomHeader(path)
    assert nativePixelDataSpan(header) is None and readNativeFrame(header, path) is None


def test_a_file_cut_short_after_its_header_was_read_is_refused(lidc_dir, tmp_path):
    path = Path(shutil.copy(sorted(lidc_dir.glob("*.dcm"))[0], tmp_path / "slice.dcm"))
    header = readDicomHeader(path)
    path.write_bytes(path.read_bytes()[:-100])
    from QuantReportLib.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="truncated") as error:
        readNativeFrame(header, path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("walked", [True, False])
def test_loading_a_folder_parses_each_file_once(lidc_dir, monkeypatch, walked):
    """Each header is read once, by walking its element headers (plain files) or by pydicom."""
    from QuantReportLib.dicomio import _fast

    expected = loadSeries(sorted(lidc_dir.glob("*.dcm")))
    parses: list[object] = []
    original, walk = pydicom.dcmread, _fast.readPlainHeader
    monkeypatch.setattr(pydicom, "dcmread", lambda *args, **kwargs: parses.append(args[0]) or original(*args,
                                                                                                        **kwargs))
    monkeypatch.setattr(_fast, "readPlainHeader",
                        lambda path, size: parses.append(path) or walk(path, size) if walked else None)
    found = findSeries(lidc_dir)
    (files,) = found.values()
    volume = loadSeries(files, headers=found.headers)
    assert len(parses) == len(set(map(str, parses))) == len(files) == 50
    assert np.array_equal(volume.array, expected.array) and volume.array.dtype == expected.array.dtype
