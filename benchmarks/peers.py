"""The peers QuantReport is measured against, on the same inputs.

* **highdicom**, used the documented default way: ``hd.seg.Segmentation`` from
  the source datasets and a one-hot ``(frames, rows, columns, segments)`` array,
  ``hd.seg.segread(...).get_volume(combine_segments=True)`` to read it back;
  ``hd.sr.Comprehensive3DSR`` with TID 1411 groups and ``hd.sr.srread`` for SR.
* **numpy floor**: the least work any SEG writer/reader must do - pack the
  bits of every non-empty (segment, slice) frame and write those bytes; read
  them, unpack and paint a labelmap.  No DICOM encoding at all.  For a series:
  read each file's stored values into one preallocated array.
* **dcmqi** (whole process only, it is a command-line tool): ``itkimage2segimage``,
  ``segimage2itkimage`` (with and without ``--mergeSegments``), ``tid1500writer``
  and ``tid1500reader``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cases
import numpy as np
import ours

#: The one-hot array of the default highdicom path is built when it fits in this many bytes; beyond, the
#: documented alternative (a label array of segment numbers, one frame per slice) is used and noted.
ONE_HOT_LIMIT_BYTES = 3 * 1024 ** 3


def _readLabelmap(case: cases.LabelmapCase) -> np.ndarray:
    from QuantReportLib.labelmaps import readLabelmapNrrd

    labelmap, _ = readLabelmapNrrd(case.nrrd)
    return labelmap


def _segmentDescriptions(case: cases.LabelmapCase) -> list:
    import highdicom as hd
    from pydicom.sr.coding import Code

    descriptions = []
    for attributes in json.loads(case.meta.read_text())["segmentAttributes"][0]:
        category = attributes["SegmentedPropertyCategoryCodeSequence"]
        kind = attributes["SegmentedPropertyTypeCodeSequence"]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=attributes["labelID"], segment_label=attributes["SegmentLabel"],
            segmented_property_category=Code(category["CodeValue"], category["CodingSchemeDesignator"],
                                             category["CodeMeaning"]),
            segmented_property_type=Code(kind["CodeValue"], kind["CodingSchemeDesignator"], kind["CodeMeaning"]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    return descriptions


def oneHotFits(case: cases.LabelmapCase) -> bool:
    return len(case.ct.files) * cases.ROWS * cases.COLUMNS * case.segments <= ONE_HOT_LIMIT_BYTES


# -- highdicom ---------------------------------------------------------------------------------------


def highdicomSegExport(case: cases.LabelmapCase):
    import highdicom as hd
    import pydicom

    sources = [pydicom.dcmread(path) for path in case.ct.files]  # slice order = labelmap order (k)
    labelmap = _readLabelmap(case)
    descriptions = _segmentDescriptions(case)
    numbers = np.array([d.SegmentNumber for d in descriptions], dtype=labelmap.dtype)
    one_hot = oneHotFits(case)
    out = cases.workFolder(case) / "highdicom-seg.dcm"

    def run() -> Path:
        pixels = labelmap[..., None] == numbers if one_hot else labelmap
        segmentation = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="highdicom benchmark",
            manufacturer_model_name="benchmark", software_versions=hd.__version__, device_serial_number="0")
        segmentation.save_as(out)
        return out

    return run


def highdicomSegLoad(case: cases.LabelmapCase, subset: bool = False):
    import highdicom as hd

    path = ours.referenceSeg(case)
    numbers = ours.subsetNumbers(case.segments) if subset else None

    def run() -> None:
        hd.seg.segread(path).get_volume(combine_segments=True, segment_numbers=numbers)

    return run


def _hdCode(code) -> object:
    from pydicom.sr.coding import Code

    return Code(code.value, code.scheme, code.meaning)


def highdicomSrExport(case: cases.LabelmapCase, library: bool):
    import highdicom as hd
    import pydicom

    volume = ours._volume(case)
    table = ours.measurementTable(case, volume)
    seg = pydicom.dcmread(ours.referenceSeg(case, volume), stop_before_pixels=True)
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in case.ct.files]
    out = cases.workFolder(case) / f"highdicom-sr{'-library' if library else ''}.dcm"

    def run() -> Path:
        groups = []
        for row in table.rows:
            segment = row.segment
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=segment.label),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                    segment_number=segment.number,
                    source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid)),
                finding_type=_hdCode(segment.terminology.type),
                measurements=[hd.sr.Measurement(
                    name=_hdCode(m.quantity.name), value=m.value, unit=_hdCode(m.quantity.unit),
                    derivation=_hdCode(m.quantity.derivation) if m.quantity.derivation else None)
                    for m in row.measurements]))
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(),
            procedure_reported=_hdCode(_procedureReported()), imaging_measurements=groups,
            referenced_images=headers if library else None)
        document = hd.sr.Comprehensive3DSR(
            evidence=[seg, *headers], content=report, series_instance_uid=hd.UID(), series_number=1001,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="highdicom benchmark", is_complete=True)
        document.save_as(out)
        return out

    return run


def _procedureReported():
    from QuantReportLib.sr import IMAGING_PROCEDURE

    return IMAGING_PROCEDURE


def highdicomSrLoad(case: cases.LabelmapCase, library: bool):
    import highdicom as hd

    path = ours.referenceSr(case, library)

    def run() -> None:
        document = hd.sr.srread(path)
        # Read every value, as a reader of the table would.
        values = [(m.name, m.value, m.unit, m.derivation)
                  for group in document.content.get_volumetric_roi_measurement_groups()
                  for m in group.get_measurements()]
        if not values:
            raise RuntimeError(f"{path}: highdicom read no measurements")

    return run


# -- numpy floor -----------------------------------------------------------------------------------------


def _floorPaths(case: cases.LabelmapCase) -> tuple[Path, Path]:
    folder = cases.workFolder(case)
    return folder / "floor-frames.bin", folder / "floor-index.npy"


def floorSegExport(case: cases.LabelmapCase):
    """Bit-pack each non-empty (segment, slice) frame in segment order, write the bytes and a frame index."""
    labelmap = _readLabelmap(case)
    frames_path, index_path = _floorPaths(case)

    def run() -> Path:
        slices = labelmap.shape[0]
        presence = np.zeros((case.segments + 1, slices), dtype=bool)
        for k in range(slices):
            presence[:, k] = np.bincount(labelmap[k].ravel(), minlength=case.segments + 1)[:case.segments + 1] > 0
        index = np.argwhere(presence[1:]) + [1, 0]  # (segment, slice), segment-major as in a SEG
        with open(frames_path, "wb") as stream:
            for number, k in index:
                stream.write(np.packbits(labelmap[k] == number).tobytes())
        np.save(index_path, index)
        return frames_path

    return run


def floorSegLoad(case: cases.LabelmapCase, subset: bool = False):
    """Read the frames (all, or those of 3 segments), unpack them and paint one labelmap."""
    frames_path, index_path = _floorPaths(case)
    if not frames_path.exists():
        floorSegExport(case)()
    shape = (len(case.ct.files), cases.ROWS, cases.COLUMNS)
    frame_bytes = cases.ROWS * cases.COLUMNS // 8
    wanted = set(ours.subsetNumbers(case.segments)) if subset else None

    def run() -> None:
        index = np.load(index_path)
        labelmap = np.zeros(shape, dtype=np.uint8 if case.segments < 256 else np.uint16)
        with open(frames_path, "rb") as stream:
            if wanted is None:
                data = np.frombuffer(stream.read(), dtype=np.uint8)
                positions = range(len(index))
            else:
                positions = [i for i, (number, _) in enumerate(index) if number in wanted]
            for position in positions:
                number, k = index[position]
                if wanted is None:
                    packed = data[position * frame_bytes:(position + 1) * frame_bytes]
                else:
                    stream.seek(position * frame_bytes)
                    packed = np.frombuffer(stream.read(frame_bytes), dtype=np.uint8)
                mask = np.unpackbits(packed, count=shape[1] * shape[2]).reshape(shape[1:]).view(bool)
                labelmap[k][mask] = number

    return run


def floorSeriesLoad(case: cases.LabelmapCase):
    """Read each slice's stored values (the 512 KiB at the end of each synthetic CT file) straight into
    one preallocated array of the stored type: no header parsing, no rescale."""
    files = [str(path) for path in case.ct.files]
    shape = (len(files), cases.ROWS, cases.COLUMNS)

    def run() -> int:
        volume = np.empty(shape, dtype="<i2")
        for k, path in enumerate(files):
            with open(path, "rb") as stream:
                stream.seek(-volume[k].nbytes, os.SEEK_END)
                stream.readinto(memoryview(volume[k]).cast("B"))
        return volume.nbytes

    return run


OPERATIONS = {
    ("highdicom", "seg-export"): highdicomSegExport,
    ("highdicom", "seg-load"): highdicomSegLoad,
    ("highdicom", "seg-load-3"): lambda case: highdicomSegLoad(case, subset=True),
    ("highdicom", "sr-export"): lambda case: highdicomSrExport(case, library=False),
    ("highdicom", "sr-export-library"): lambda case: highdicomSrExport(case, library=True),
    ("highdicom", "sr-load"): lambda case: highdicomSrLoad(case, library=False),
    ("highdicom", "sr-load-library"): lambda case: highdicomSrLoad(case, library=True),
    ("numpy floor", "seg-export"): floorSegExport,
    ("numpy floor", "seg-load"): floorSegLoad,
    ("numpy floor", "seg-load-3"): lambda case: floorSegLoad(case, subset=True),
    ("numpy floor", "series-load"): floorSeriesLoad,
}


# -- dcmqi (whole process) ---------------------------------------------------------------------------------


def dcmqiTool(name: str) -> str | None:
    """The dcmqi executable itself (the pip package's binary, not a pyenv shim), else one on PATH."""
    try:
        import dcmqi

        binary = Path(dcmqi.__file__).parent / "bin" / name
        if binary.exists():
            return str(binary)
    except ImportError:
        pass
    return shutil.which(name)


def dcmqiSegExportCommand(case: cases.LabelmapCase, out: Path) -> list[str]:
    return dcmqiSegCommand([case.nrrd], case.ct.folder, case.meta, out)


def dcmqiSegCommand(images: list[Path], dicom_folder: Path, meta: Path, out: Path) -> list[str]:
    """itkimage2segimage: label images (one segmentAttributes list each in ``meta``) on the series -> a SEG."""
    return [dcmqiTool("itkimage2segimage"), "--inputImageList", ",".join(str(image) for image in images),
            "--inputDICOMDirectory", str(dicom_folder), "--inputMetadata", str(meta), "--outputDICOM", str(out)]


def dcmqiSegLoadCommand(seg_path: Path, out_dir: Path, merge: bool) -> list[str]:
    command = [dcmqiTool("segimage2itkimage"), "--inputDICOM", str(seg_path), "--outputDirectory", str(out_dir)]
    return command + ["--mergeSegments"] if merge else command


def dcmqiSrJson(case: cases.LabelmapCase, table, seg_path: Path, series_uid: str, library: bool) -> dict:
    """tid1500writer input with the same groups and measurements as QuantReport's SR (dcmqi's JSON schema)."""
    import pydicom

    seg = pydicom.dcmread(seg_path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])

    def code(c) -> dict:
        return {"CodeValue": c.value, "CodingSchemeDesignator": c.scheme, "CodeMeaning": c.meaning}

    groups = []
    for row in table.rows:
        items = []
        for m in row.measurements:
            item = {"value": f"{m.value:.6g}", "quantity": code(m.quantity.name), "units": code(m.quantity.unit)}
            if m.quantity.derivation is not None:
                item["derivationModifier"] = code(m.quantity.derivation)
            items.append(item)
        groups.append({"TrackingIdentifier": row.segment.label, "ReferencedSegment": row.segment.number,
                       "SourceSeriesForImageSegmentation": series_uid,
                       "segmentationSOPInstanceUID": str(seg.SOPInstanceUID),
                       "Finding": code(row.segment.terminology.type), "measurementItems": items})
    return {"SeriesDescription": "Measurements", "SeriesNumber": "1001", "InstanceNumber": "1",
            "compositeContext": [seg_path.name],
            "imageLibrary": [path.name for path in case.ct.files] if library else [],
            "observerContext": {"ObserverType": "PERSON", "PersonObserverName": "Benchmark^Reader"},
            "VerificationFlag": "VERIFIED", "CompletionFlag": "COMPLETE", "activitySession": "1",
            "timePoint": "1", "Measurements": groups}


def dcmqiSrExportCommand(case: cases.LabelmapCase, metadata: Path, seg_path: Path, out: Path) -> list[str]:
    return [dcmqiTool("tid1500writer"), "--inputMetadata", str(metadata), "--inputImageLibraryDirectory",
            str(case.ct.folder), "--inputCompositeContextDirectory", str(seg_path.parent), "--outputDICOM", str(out)]


def dcmqiSrLoadCommand(sr_path: Path, out: Path) -> list[str]:
    return [dcmqiTool("tid1500reader"), "--inputDICOM", str(sr_path), "--outputMetadata", str(out)]


def freshFolder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path
