"""TID 1500 Measurement Report export and import (QuantReportLib.sr).

Our SR is checked by dciodvfy and dsrdump, read back into identical groups and
table, and cross-read by dcmqi's ``tid1500reader``; reports written by dcmqi
(Enhanced SR, SRT codes) and by highdicom (planar and image-level groups) are
read and compared with what dcmqi and the files themselves say.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import subprocess
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import assert_valid_dicom, require_tool
from conftest import sharedData as dataFile
from pydicom.sr.codedict import codes
from QuantReportLib import series, sr
from QuantReportLib.dicomio import identity
from QuantReportLib.errors import InvalidInputError, NotFoundError, OutputError, UnsupportedError
from QuantReportLib.model import (
    Code,
    ImageLine,
    Measurement,
    MeasurementTable,
    Quantity,
    Segment,
    Segmentation,
    SegmentMeasurements,
    Terminology,
    Volume,
)
from QuantReportLib.sr import read as sr_read
from QuantReportLib.sr.write import imageSeriesFirst

HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
VOLUME = Quantity(Code("118565006", "SCT", "Volume"), Code("mm3", "UCUM", "cubic millimeter"),
                  method=Code("126030", "DCM", "Sum of segmented voxel volumes"))
VOXELS = Quantity(Code("nvoxels", "99QIICR", "Number of voxels"), Code("{voxels}", "UCUM", "voxels"))
MEAN = Quantity(ATTENUATION, HU, derivation=Code("373098007", "SCT", "Mean"))
STDDEV = Quantity(ATTENUATION, HU, derivation=Code("386136009", "SCT", "Standard Deviation"))
MINIMUM = Quantity(ATTENUATION, HU, derivation=Code("255605001", "SCT", "Minimum"))
MAXIMUM = Quantity(ATTENUATION, HU, derivation=Code("56851009", "SCT", "Maximum"))
THIRD = Quantity(Code("1/3", "99TEST", "A third"), Code("1", "UCUM", "no units"))

LUNG = Code("39607008", "SCT", "Lung")
LEFT = Code("7771000", "SCT", "Left")
ENTIRE = Code("255503000", "SCT", "Entire")
TISSUE = Code("85756007", "SCT", "Tissue")
NODULE_TERMINOLOGY = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"),
                                 Code("27925004", "SCT", "Nodule"), anatomic_region=LUNG,
                                 anatomic_region_modifier=LEFT)
BOX_TERMINOLOGY = Terminology(TISSUE, TISSUE, anatomic_region=LUNG, anatomic_region_modifier=ENTIRE)
EMPTY_TERMINOLOGY = Terminology(TISSUE, TISSUE)

NODULE_TRACKING_UID = "1.2.826.0.1.3680043.8.498.1001"
BOX_TRACKING_UID = "1.2.826.0.1.3680043.8.498.1002"


# -- fixtures: a real CT volume, a highdicom SEG of it and a measurement table ------------------------


@pytest.fixture(scope="module")
def volume() -> Volume:
    return series.loadSeries(sorted(dataFile("ct", "lidc-idri-0001").glob("*.dcm")))


@pytest.fixture(scope="module")
def masks(volume: Volume) -> dict[int, np.ndarray]:
    """Segment 1 around nodule 1 of LIDC-IDRI-0001, segment 2 a box, segment 3 empty."""
    shape = volume.array.shape
    nodule = np.zeros(shape, dtype=bool)
    nodule[20:30, 300:330, 330:370] = True
    box = np.zeros(shape, dtype=bool)
    box[5:8, 100:140, 100:160] = True
    return {1: nodule, 2: box, 3: np.zeros(shape, dtype=bool)}


@pytest.fixture(scope="module")
def seg_dataset(volume: Volume, masks: dict[int, np.ndarray]) -> pydicom.Dataset:
    """A BINARY SEG written by highdicom itself (independent of QuantReport's SEG code).

    Segment 1 carries tracking in the SEG only, segment 2 has none in the SEG
    (the table's Segment carries it), segment 3 has none anywhere.
    """
    descriptions = []
    for number, label, category, kind, tracking in (
        (1, "Nodule", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule, ("Nodule 1", NODULE_TRACKING_UID)),
        (2, "Box", codes.SCT.Tissue, codes.SCT.Tissue, None),
        (3, "Empty", codes.SCT.Tissue, codes.SCT.Tissue, None),
    ):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_id=tracking[0] if tracking else None, tracking_uid=tracking[1] if tracking else None))
    return hd.seg.Segmentation(
        source_images=list(volume.headers),
        pixel_array=np.stack([masks[1], masks[2], masks[3]], axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=300, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="highdicom test", manufacturer_model_name="test", software_versions="0",
        device_serial_number="1",
    )


def _statistics(volume: Volume, mask: np.ndarray) -> dict[Quantity, float]:
    values = volume.array[mask].astype(np.float64)
    count = int(mask.sum())
    nan = math.nan
    return {
        VOLUME: count * volume.geometry.voxel_volume_mm3,
        VOXELS: float(count),
        MEAN: float(values.mean()) if count else nan,
        STDDEV: float(values.std()) if count else nan,
        MINIMUM: float(values.min()) if count else nan,
        MAXIMUM: float(values.max()) if count else nan,
    }


@pytest.fixture(scope="module")
def segments() -> tuple[Segment, ...]:
    return (
        Segment(1, "Nodule", NODULE_TERMINOLOGY),
        Segment(2, "Box", BOX_TERMINOLOGY, tracking_id="Box of tissue", tracking_uid=BOX_TRACKING_UID),
        Segment(3, "Empty", EMPTY_TERMINOLOGY),
    )


@pytest.fixture(scope="module")
def table(volume: Volume, masks: dict[int, np.ndarray], segments: tuple[Segment, ...]) -> MeasurementTable:
    rows = []
    for segment in segments:
        values = _statistics(volume, masks[segment.number])
        measurements = [Measurement(quantity, value) for quantity, value in values.items()]
        measurements.append(Measurement(THIRD, segment.number / 3))  # not representable in 16 DS characters
        rows.append(SegmentMeasurements(segment, tuple(measurements)))
    return MeasurementTable(tuple(rows))


@pytest.fixture(scope="module")
def sr_path(tmp_path_factory, volume, seg_dataset, table) -> Path:
    dataset = sr.createSr(volume, seg_dataset, table, observer_name="Doe^Jane", time_point="baseline")
    return sr.writeSr(dataset, tmp_path_factory.mktemp("sr") / "sr.dcm")


def _finite(table: MeasurementTable) -> MeasurementTable:
    """The table an SR can hold: non-finite values are left out (as dcmqi leaves them out)."""
    return MeasurementTable(tuple(
        SegmentMeasurements(row.segment, tuple(m for m in row.measurements if math.isfinite(m.value)))
        for row in table.rows))


# -- our SR: valid, readable by DCMTK, and read back identically ------------------------------------


def test_sr_is_valid_and_dumps(sr_path: Path, volume: Volume, seg_dataset: pydicom.Dataset) -> None:
    assert_valid_dicom(sr_path)
    result = subprocess.run([require_tool("dsrdump"), "-Ec", str(sr_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    # DCMTK's value checker cannot check UTF-8 text (the SR's character set, sr.write.UTF8): it says so.
    unchecked = "W: The VR checker does not support this Specific Character Set: ISO_IR 192"
    messages = [line for line in result.stderr.splitlines() if line.strip() and line != unchecked]
    assert not any("E:" in line or "W:" in line for line in messages), result.stderr
    dump = result.stdout
    assert dump.startswith("Comprehensive 3D SR Document")
    assert 'PNAME:(,,"Person Observer Name")="Doe^Jane"' in dump
    assert f'UIDREF:(,,"Device Observer UID")="{identity.DEVICE_OBSERVER_UID}"' in dump
    assert 'CODE:(,,"Procedure reported")=(363679005,SCT,"Imaging procedure")' in dump
    assert dump.count('CONTAINER:(,,"Measurement Group")') == 3
    assert 'IMAGE:(,,"Referenced Segment")=(SG image,,3)' in dump
    assert 'CODE:(,,"Laterality")=(7771000,SCT,"Left")' in dump
    assert 'CODE:(,,"Topographical modifier")=(255503000,SCT,"Entire")' in dump
    assert "Image Library" not in dump  # off by default

    header = pydicom.dcmread(sr_path)
    assert header.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert header.Modality == "SR" and header.CompletionFlag == "COMPLETE"
    assert header.StudyInstanceUID == volume.study_instance_uid
    assert header.PatientID == seg_dataset.PatientID
    evidence = {(referenced.SeriesInstanceUID, item.ReferencedSOPInstanceUID)
                for study in header.CurrentRequestedProcedureEvidenceSequence
                for referenced in study.ReferencedSeriesSequence for item in referenced.ReferencedSOPSequence}
    expected = {(seg_dataset.SeriesInstanceUID, seg_dataset.SOPInstanceUID)}
    expected |= {(volume.series_instance_uid, image.sop_instance_uid) for image in volume.source_images}
    assert evidence == expected
    assert "PertinentOtherEvidenceSequence" not in header


def _expectedGroups(table: MeasurementTable, seg_dataset: pydicom.Dataset, volume: Volume,
                    empty_group_uid: str) -> tuple[sr.MeasurementGroup, ...]:
    """What the three groups must read back as, written out by hand."""
    seg_uid = seg_dataset.SOPInstanceUID
    finite = _finite(table).rows
    return (
        sr.MeasurementGroup("Nodule 1", NODULE_TRACKING_UID, NODULE_TERMINOLOGY.type, NODULE_TERMINOLOGY.category,
                            LUNG, LEFT, sr.SegmentReference(seg_uid, 1), volume.series_instance_uid,
                            finite[0].measurements),
        sr.MeasurementGroup("Box of tissue", BOX_TRACKING_UID, TISSUE, TISSUE, LUNG, ENTIRE,
                            sr.SegmentReference(seg_uid, 2), volume.series_instance_uid, finite[1].measurements),
        sr.MeasurementGroup("Empty", empty_group_uid, TISSUE, TISSUE, None, None, sr.SegmentReference(seg_uid, 3),
                            volume.series_instance_uid, finite[2].measurements),
    )


def test_round_trip_groups(sr_path: Path, table: MeasurementTable, seg_dataset: pydicom.Dataset,
                           volume: Volume) -> None:
    loaded = sr.readSr(sr_path)
    assert loaded.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.34"
    assert loaded.study_instance_uid == volume.study_instance_uid
    assert loaded.series_description == "QuantReport measurements"
    assert loaded.referenced_seg_uids == (seg_dataset.SOPInstanceUID,)
    assert set(loaded.referenced_series_uids) == {seg_dataset.SeriesInstanceUID, volume.series_instance_uid}

    empty_uid = loaded.groups[2].tracking_uid  # generated: neither the segment nor the SEG had one
    assert hd.UID(empty_uid) and empty_uid not in (NODULE_TRACKING_UID, BOX_TRACKING_UID)
    expected = _expectedGroups(table, seg_dataset, volume, empty_uid)
    assert loaded.groups == expected
    # Codes compare by value and scheme; the meanings must survive too.
    for group, want in zip(loaded.groups, expected, strict=True):
        assert group.finding.meaning == want.finding.meaning
        assert [m.quantity.name.meaning for m in group.measurements] == \
               [m.quantity.name.meaning for m in want.measurements]
    # Bit-exact floats (Floating Point Value), the empty segment keeps its zero volume and count,
    # and its NaN statistics are left out.
    for group, row in zip(loaded.groups, table.rows, strict=True):
        written = [(m.quantity, m.value) for m in row.measurements if math.isfinite(m.value)]
        read = [(m.quantity, m.value) for m in group.measurements]
        assert read == written
        assert all(type(value) is float for _, value in read)
    empty_group = [(m.quantity, m.value) for m in loaded.groups[2].measurements]
    assert empty_group == [(VOLUME, 0.0), (VOXELS, 0.0), (THIRD, 1.0)]

    assert sr.readSr(pydicom.dcmread(sr_path)) == loaded


def test_round_trip_table(sr_path: Path, table: MeasurementTable, segments: tuple[Segment, ...]) -> None:
    loaded = sr.readSr(sr_path)
    assert sr.tableFromSr(loaded, segments) == _finite(table)

    minimal = sr.tableFromSr(loaded, None)
    assert [row.measurements for row in minimal.rows] == [row.measurements for row in _finite(table).rows]
    nodule, box, empty = (row.segment for row in minimal.rows)
    assert (nodule.number, nodule.label, nodule.tracking_uid) == (1, "Nodule 1", NODULE_TRACKING_UID)
    assert nodule.terminology == NODULE_TERMINOLOGY
    assert (box.number, box.label, box.terminology) == (2, "Box of tissue", BOX_TERMINOLOGY)
    assert (empty.number, empty.terminology) == (3, EMPTY_TERMINOLOGY)

    with pytest.raises(NotFoundError, match="segment 3"):
        sr.tableFromSr(loaded, segments[:2])


def test_numeric_value_encoding(sr_path: Path, table: MeasurementTable) -> None:
    """DS (16 characters) carries the value for DS-only readers within 1e-12 relative; FD carries it exactly."""
    dataset = pydicom.dcmread(sr_path)
    written = [m.value for row in table.rows for m in row.measurements if math.isfinite(m.value)]
    items = [item for group in dataset.ContentSequence[-1].ContentSequence for item in group.ContentSequence
             if item.ValueType == "NUM"]
    assert len(items) == len(written) == 7 + 7 + 3
    for item, value in zip(items, written, strict=True):
        measured = item.MeasuredValueSequence[0]
        assert measured.FloatingPointValue == value
        text = str(measured.NumericValue.original_string or measured.NumericValue)
        assert len(text) <= 16
        assert abs(float(text) - value) <= 1e-12 * abs(value)
    # The 1/3 value really needs FD: its 16-character DS differs from the float.
    third = next(item for item in items if item.ConceptNameCodeSequence[0].CodeValue == "1/3")
    assert float(third.MeasuredValueSequence[0].NumericValue) != 1 / 3


def test_dcmqi_reads_our_sr(sr_path: Path, tmp_path: Path, table: MeasurementTable,
                            seg_dataset: pydicom.Dataset, volume: Volume) -> None:
    output = tmp_path / "ours.json"
    result = subprocess.run([require_tool("tid1500reader"), "--inputDICOM", str(sr_path),
                             "--outputMetadata", str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads(output.read_text())
    assert metadata["observerContext"]["ObserverType"] == "PERSON"
    assert metadata["observerContext"]["PersonObserverName"] == "Doe^Jane"
    assert metadata["procedureReported"]["CodeValue"] == "363679005"
    loaded = sr.readSr(sr_path)
    assert len(metadata["Measurements"]) == len(loaded.groups) == 3
    for group, theirs in zip(loaded.groups, metadata["Measurements"], strict=True):
        assert theirs["TrackingIdentifier"] == group.tracking_identifier
        assert theirs["TrackingUniqueIdentifier"] == group.tracking_uid
        assert theirs["segmentationSOPInstanceUID"] == seg_dataset.SOPInstanceUID
        assert theirs["ReferencedSegment"] == group.segment.number
        assert theirs["SourceSeriesForImageSegmentation"] == volume.series_instance_uid
        assert theirs["timePoint"] == "baseline"
        assert Code.fromJson(_dcmqiCode(theirs["Finding"])) == group.finding
        if group.finding_site is not None:
            assert Code.fromJson(_dcmqiCode(theirs["FindingSite"])) == group.finding_site
        assert ("Laterality" in theirs) == (group.finding_site_modifier == LEFT)
        items = theirs["measurementItems"]
        assert len(items) == len(group.measurements)
        for item, measurement in zip(items, group.measurements, strict=True):
            quantity = measurement.quantity
            assert Code.fromJson(_dcmqiCode(item["quantity"])) == quantity.name
            assert Code.fromJson(_dcmqiCode(item["units"])) == quantity.unit
            derivation = item.get("derivationModifier")
            assert (None if derivation is None else Code.fromJson(_dcmqiCode(derivation))) == quantity.derivation
            assert math.isclose(float(item["value"]), measurement.value, rel_tol=1e-12, abs_tol=0.0)


def _dcmqiCode(obj: dict) -> dict:
    return {"value": obj["CodeValue"], "scheme": obj["CodingSchemeDesignator"], "meaning": obj["CodeMeaning"]}


def test_image_library(tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset, table: MeasurementTable) -> None:
    path = sr.writeSr(sr.createSr(volume, seg_dataset, table, image_library=True), tmp_path / "library.dcm")
    assert_valid_dicom(path)
    dataset = pydicom.dcmread(path)
    library = next(item for item in dataset.ContentSequence
                   if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "111028")
    entries = [entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for group in library.ContentSequence for entry in group.ContentSequence if entry.ValueType == "IMAGE"]
    assert sorted(entries) == sorted(image.sop_instance_uid for image in volume.source_images)
    assert sr.readSr(path).groups == sr.readSr(dataset).groups


def test_write_is_atomic(tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset, table: MeasurementTable) -> None:
    dataset = sr.createSr(volume, seg_dataset, table)
    target = tmp_path / "out" / "sr.dcm"
    sr.writeSr(dataset, target)
    sr.writeSr(dataset, target)  # replaces
    assert [p.name for p in target.parent.iterdir()] == ["sr.dcm"]
    with pytest.raises(OutputError, match="a folder of that name is in the way"):
        sr.writeSr(dataset, tmp_path / "out")  # a folder cannot be replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.parent.iterdir()] == ["sr.dcm"]


# -- the faster routes build and read the same content ----------------------------------------------------


def _elementLines(dataset: pydicom.Dataset, prefix: str = "") -> list[str]:
    """Every element of a dataset tree as text (tag, VR, value; dates and times left out)."""
    lines = []
    for element in dataset:
        if element.VR == "SQ":
            lines.append(f"{prefix}{element.tag} SQ {len(element.value)}")
            for index, item in enumerate(element.value):
                lines += _elementLines(item, f"{prefix}{element.tag}[{index}].")
        elif element.VR not in ("DA", "DT", "TM"):
            lines.append(f"{prefix}{element.tag} {element.VR} {element.value!r}")
    return lines


def _written(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_export_is_the_sr_highdicom_makes_of_the_content(tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset,
                                                         table: MeasurementTable) -> None:
    """createSr gives highdicom a stem of the content and adds the content afterwards (sr._fast.srDocument); highdicom's
    Comprehensive3DSR of the whole content (copied, walked for evidence) must be the same document, with the image
    series listed first in the evidence (sr.write.imageSeriesFirst, for 3D Slicer's DICOMTID1500Plugin)."""
    dataset = sr.createSr(volume, seg_dataset, table, observer_name="Doe^Jane", image_library=True,
                          verifier_name="Doe^Jane", predecessors=[seg_dataset])
    root = pydicom.Dataset()
    for keyword in ("ConceptNameCodeSequence", "ContentTemplateSequence", "ContinuityOfContent", "ValueType",
                    "ContentSequence"):
        root.add(dataset[keyword])
    evidence = [seg_dataset]
    for image in volume.source_images:
        item = pydicom.Dataset()
        item.SOPClassUID, item.SOPInstanceUID = image.sop_class_uid, image.sop_instance_uid
        item.StudyInstanceUID, item.SeriesInstanceUID = volume.study_instance_uid, volume.series_instance_uid
        evidence.append(item)
    reference = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=root, series_instance_uid=dataset.SeriesInstanceUID, series_number=1001,
        sop_instance_uid=dataset.SOPInstanceUID, instance_number=1, manufacturer="QuantReport",
        manufacturer_model_name="QuantReport", software_versions=dataset.SoftwareVersions,
        series_description="QuantReport measurements", is_complete=True, is_verified=True,
        verifying_observer_name="Doe^Jane", verifying_organization="QuantReport", previous_versions=[seg_dataset])
    assert reference.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID == \
        seg_dataset.SeriesInstanceUID, "highdicom lists the evidence in the order given, the SEG first"
    imageSeriesFirst(reference, volume.series_instance_uid)
    assert dataset.SpecificCharacterSet == "ISO_IR 192"  # whatever the SEG declares (sr.write.UTF8)
    reference.SpecificCharacterSet = "ISO_IR 192"
    assert _elementLines(dataset.file_meta) == _elementLines(reference.file_meta)
    assert _elementLines(dataset) == _elementLines(reference)
    assert len(_written(dataset)) == len(_written(reference))
    assert_valid_dicom(sr.writeSr(dataset, tmp_path / "sr.dcm"))


def test_export_groups_are_highdicoms_measurement_groups(volume: Volume, seg_dataset: pydicom.Dataset,
                                                         table: MeasurementTable) -> None:
    """Shared concepts and NUM rows added after the group (sr.content.Concepts) encode as highdicom's templates do."""
    both = Quantity(ATTENUATION, HU, derivation=MEAN.derivation,
                    method=VOLUME.method)  # a NUM with a Measurement Method and a Derivation row
    table = MeasurementTable(tuple(dataclasses.replace(row, measurements=(*row.measurements, Measurement(both, 1.5)))
                                   for row in table.rows))
    dataset = sr.createSr(volume, seg_dataset, table, time_point="baseline")
    groups = dataset.ContentSequence[-1].ContentSequence
    for group, row in zip(groups, table.rows, strict=True):
        items = {item.ConceptNameCodeSequence[0].CodeValue: item for item in group.ContentSequence}
        terminology = row.segment.terminology
        site = terminology.anatomic_region
        modifier = terminology.anatomic_region_modifier
        sites = None
        if site is not None:
            sites = [hd.sr.FindingSite(site.toPydicom(), **(
                {} if modifier is None else {"laterality": modifier.toPydicom()} if modifier == LEFT
                else {"topographical_modifier": modifier.toPydicom()}))]
        expected = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=items["112040"].UID, identifier=items["112039"].TextValue),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg_dataset.SOPClassUID, sop_instance_uid=seg_dataset.SOPInstanceUID,
                segment_number=row.segment.number,
                source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid)),
            time_point_context=hd.sr.TimePointContext("baseline"),
            finding_category=terminology.category.toPydicom(), finding_type=terminology.type.toPydicom(),
            finding_sites=sites,
            measurements=[hd.sr.Measurement(
                name=m.quantity.name.toPydicom(), value=m.value, unit=m.quantity.unit.toPydicom(),
                derivation=None if m.quantity.derivation is None else m.quantity.derivation.toPydicom(),
                method=None if m.quantity.method is None else m.quantity.method.toPydicom())
                for m in row.measurements if math.isfinite(m.value)])
        assert _elementLines(group) == _elementLines(expected[0])


def test_read_paths_agree(tmp_path: Path, sr_path: Path, volume: Volume, seg_dataset: pydicom.Dataset,
                          table: MeasurementTable) -> None:
    """Encoded items (explicit and implicit VR, read from a file) and items in memory read alike, meanings too."""
    from_file = sr.readSr(sr_path)
    dataset = pydicom.dcmread(sr_path)
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    implicit = sr.writeSr(dataset, tmp_path / "implicit.dcm")
    assert pydicom.dcmread(implicit).original_encoding == (True, True)
    in_memory = sr.createSr(volume, seg_dataset, table, observer_name="Doe^Jane", time_point="baseline")
    for other in (sr.readSr(implicit), sr.readSr(in_memory)):
        assert other.groups == from_file.groups[:2] + (other.groups[2],)  # the empty group's tracking UID is new
        assert repr(other.groups[:2]) == repr(from_file.groups[:2])


def test_library_must_be_evidence(volume: Volume, seg_dataset: pydicom.Dataset, table: MeasurementTable) -> None:
    stranger = copy.deepcopy(volume.headers[0])
    stranger.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.999"
    other = dataclasses.replace(volume, headers=(*volume.headers[1:], stranger))
    with pytest.raises(InvalidInputError, match="1.2.826.0.1.3680043.8.498.999 is not one of the source images"):
        sr.createSr(other, seg_dataset, table, image_library=True)


# -- bad input ---------------------------------------------------------------------------------------------


def test_create_rejects_bad_input(volume: Volume, seg_dataset: pydicom.Dataset, table: MeasurementTable,
                                  segments: tuple[Segment, ...]) -> None:
    with pytest.raises(InvalidInputError, match="not a DICOM SEG"):
        sr.createSr(volume, volume.headers[0], table)
    with pytest.raises(InvalidInputError, match="no rows"):
        sr.createSr(volume, seg_dataset, MeasurementTable(()))
    stranger = SegmentMeasurements(Segment(7, "Stranger", EMPTY_TERMINOLOGY), table.rows[0].measurements)
    with pytest.raises(NotFoundError, match="segment 7"):
        sr.createSr(volume, seg_dataset, MeasurementTable((stranger,)))
    twins = MeasurementTable((table.rows[0], SegmentMeasurements(
        segments[1].replace(tracking_uid=NODULE_TRACKING_UID), table.rows[1].measurements)))
    with pytest.raises(InvalidInputError, match="tracking UID"):
        sr.createSr(volume, seg_dataset, twins)
    other_series = copy.deepcopy(seg_dataset)
    other_series.ReferencedSeriesSequence = [pydicom.Dataset()]
    other_series.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"
    with pytest.raises(InvalidInputError, match="made from series 1.2.3.4"):
        sr.createSr(volume, other_series, table)


def test_read_rejects_what_is_not_a_report(tmp_path: Path, volume: Volume) -> None:
    with pytest.raises(UnsupportedError, match="not a TID 1500"):
        sr.readSr(volume.source_images[0].path)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not DICOM at all")
    with pytest.raises(InvalidInputError, match="junk.dcm"):
        sr.readSr(junk)


# -- reports written by other tools ---------------------------------------------------------------------


def test_read_dcmqi_liver_sr(tmp_path: Path) -> None:
    """dcmqi's Enhanced SR (SRT codes, DS values only) read as dcmqi's own reader reads it."""
    path = dataFile("sr", "dcmqi-liver-tid1500.dcm")
    output = tmp_path / "liver.json"
    result = subprocess.run([require_tool("tid1500reader"), "--inputDICOM", str(path),
                             "--outputMetadata", str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    metadata = json.loads(output.read_text())

    loaded = sr.readSr(path)
    assert loaded.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    assert loaded.referenced_seg_uids == tuple(metadata["compositeContext"])
    assert len(loaded.groups) == len(metadata["Measurements"]) == 1
    group, theirs = loaded.groups[0], metadata["Measurements"][0]
    assert group.template_id == "1411"
    assert group.tracking_identifier == theirs["TrackingIdentifier"] == "Measurements group 1"
    assert group.tracking_uid == theirs["TrackingUniqueIdentifier"]
    assert group.segment == sr.SegmentReference(theirs["segmentationSOPInstanceUID"], theirs["ReferencedSegment"])
    assert group.source_series_uid == theirs["SourceSeriesForImageSegmentation"]
    assert group.finding == Code.fromJson(_dcmqiCode(theirs["Finding"])) == Code("T-D0060", "SRT", "Organ")
    assert group.finding_site == Code("T-62000", "SRT", "Liver")  # dcmqi 1.5.7 does not report SRT finding sites
    assert group.finding_category is None and group.finding_site_modifier is None
    items = theirs["measurementItems"]
    assert len(group.measurements) == len(items) == 6
    for measurement, item in zip(group.measurements, items, strict=True):
        quantity = measurement.quantity
        assert quantity.name == Code.fromJson(_dcmqiCode(item["quantity"]))
        assert quantity.unit == Code.fromJson(_dcmqiCode(item["units"]))
        derivation = item.get("derivationModifier")
        assert quantity.derivation == (None if derivation is None else Code.fromJson(_dcmqiCode(derivation)))
        assert measurement.value == float(item["value"])  # DS only: the same decimal string, the same float
    assert [m.value for m in group.measurements] == [37.3289, -778.0, 221.0, 59.1691, 70361.9, 70.3619]

    minimal = sr.tableFromSr(loaded, None)
    assert minimal.rows[0].segment.number == 1
    assert minimal.rows[0].segment.terminology == Terminology(sr.read.DEFAULT_CATEGORY, Code("T-D0060", "SRT", "Organ"),
                                                              anatomic_region=Code("T-62000", "SRT", "Liver"))


def test_read_highdicom_planar_sr() -> None:
    loaded = sr.readSr(dataFile("sr", "highdicom-sr-document.dcm"))
    assert loaded.referenced_seg_uids == ()
    (group,) = loaded.groups
    assert group.template_id == "1410"
    assert group.tracking_identifier == "Planar ROI Measurements"
    assert group.tracking_uid == "1.2.826.0.1.3680043.8.498.95005499519195632686309166061552196996"
    assert group.segment is None and group.source_series_uid is None
    assert group.finding == Code("T-A7010", "SRT", "Spinal cord")
    assert group.finding_site == Code("T-D00F7", "SRT", "Cervico-thoracic spine")
    assert group.finding_site_modifier == Code("T-11531", "SRT", "Vertebral foramen")
    assert group.measurements == (
        Measurement(Quantity(Code("G-A16A", "SRT", "Area of defined region"), Code("cm2", "UCUM", "cm2")), 1.7),)


def test_read_highdicom_multiple_groups_sr() -> None:
    """Image-level, planar and volumetric groups, read in document order; none references a SEG."""
    path = dataFile("sr", "highdicom-sr-multiple-groups.dcm")
    loaded = sr.readSr(path)
    summary = [(g.template_id, g.tracking_identifier, g.finding, g.segment,
                [(m.quantity.name, m.quantity.unit, m.value) for m in g.measurements]) for g in loaded.groups]
    mm = Code("mm", "UCUM", "mm")
    diameter = Code("81827009", "SCT", "Diameter")
    assert summary == [
        ("1501", "Image0001", None, None, [(Code("X6K6", "IBSI", "Intensity Histogram Mean"), HU,
                                            _floatingPointValues(path)[0])]),
        ("1410", "LungNodule0001", Code("27925004", "SCT", "Nodule"), None, [(diameter, mm, 10.0)]),
        ("1410", "Aorta0001", Code("15825003", "SCT", "Aorta"), None, [(diameter, mm, 20.0)]),
        ("1411", "Vertebra0001", Code("51282000", "SCT", "Vertebra"), None,
         [(Code("118565006", "SCT", "Volume"), Code("mm3", "UCUM", "mm3"), 200.0)]),
    ]
    assert loaded.groups[1].finding_category == Code("49755003", "SCT", "Morphologically Abnormal Structure")
    assert loaded.groups[1].finding_site == LUNG

    table = sr.tableFromSr(loaded, None)
    assert [(row.segment.number, row.segment.label) for row in table.rows] == [
        (1, "Image0001"), (2, "LungNodule0001"), (3, "Aorta0001"), (4, "Vertebra0001")]
    # with the (empty) SEG's segments, groups without a segment reference are left out, not an error
    assert sr.tableFromSr(loaded, ()).rows == ()


def _floatingPointValues(path: Path) -> list[float]:
    """Every Floating Point Value in the file, read with plain pydicom."""
    values = []

    def walk(items) -> None:
        for item in items:
            for measured in item.get("MeasuredValueSequence", []):
                if "FloatingPointValue" in measured:
                    values.append(float(measured.FloatingPointValue))
            walk(item.get("ContentSequence", []))

    walk(pydicom.dcmread(path).ContentSequence)
    return values


# -- scale -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("group_count", [5, 100])
def test_scale(group_count: int, tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset) -> None:
    """createSr / readSr with many groups of 10 measurements round-trip (times printed with -s; speed: benchmarks/)."""
    header = copy.deepcopy(seg_dataset)
    header.SegmentSequence = [copy.deepcopy(seg_dataset.SegmentSequence[2]) for _ in range(group_count)]
    for number, item in enumerate(header.SegmentSequence, 1):
        item.SegmentNumber = number
    generator = np.random.default_rng(group_count)
    quantities = [Quantity(Code(str(i), "99TEST", f"Quantity {i}"), HU, derivation=MEAN.derivation,
                           method=VOLUME.method) for i in range(10)]
    rows = []
    for number in range(1, group_count + 1):
        values = generator.normal(size=len(quantities))
        measurements = tuple(Measurement(q, float(v)) for q, v in zip(quantities, values, strict=True))
        rows.append(SegmentMeasurements(Segment(number, f"Segment {number}", EMPTY_TERMINOLOGY), measurements))
    table = MeasurementTable(tuple(rows))

    start = time.perf_counter()
    dataset = sr.createSr(volume, header, table)
    created = time.perf_counter()
    path = sr.writeSr(dataset, tmp_path / "scale.dcm")
    written = time.perf_counter()
    loaded = sr.readSr(path)
    read = time.perf_counter()
    print(f"\n{group_count} groups x 10: createSr {created - start:.2f} s, writeSr {written - created:.2f} s, "
          f"readSr {read - written:.2f} s")
    assert sr.tableFromSr(loaded, [row.segment for row in table.rows]) == table



_WRITE_VARIANTS = ["plain", "library", "non-ascii observer", "implicit VR", "big endian", "deflated",
                   "iso-2022-jp observer", "undefined lengths", "group length", "read from file",
                   "item character set", "ambiguous VR"]


@pytest.mark.parametrize("variant", _WRITE_VARIANTS)
def test_write_sr_is_byte_identical_to_plain_pydicom(tmp_path: Path, sr_path: Path, volume: Volume,
                                                     seg_dataset: pydicom.Dataset, table: MeasurementTable,
                                                     variant: str) -> None:
    """writeSr encodes the sequences itself, each distinct item and element once (sr._fast.sequencesEncodedOnce):
    the same bytes as pydicom's save_as in every transfer syntax and character set, with sequences and items
    of undefined length and group lengths; what it leaves to pydicom (raw elements, an item with its own
    character set, an ambiguous VR) is written by pydicom; the dataset written is left as it was."""
    if variant == "read from file":
        dataset = pydicom.dcmread(sr_path)  # raw elements: written as it is
    else:
        observer = {"non-ascii observer": "Müller^Zoë", "iso-2022-jp observer": "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"}
        dataset = sr.createSr(volume, seg_dataset, table, image_library=variant in ("library", "undefined lengths"),
                              observer_name=observer.get(variant), time_point="baseline")
    groups = dataset.ContentSequence[-1].ContentSequence
    syntaxes = {"implicit VR": pydicom.uid.ImplicitVRLittleEndian, "big endian": pydicom.uid.ExplicitVRBigEndian,
                "deflated": pydicom.uid.DeflatedExplicitVRLittleEndian}
    if variant in syntaxes:
        dataset.file_meta.TransferSyntaxUID = syntaxes[variant]
    elif variant == "iso-2022-jp observer":
        dataset.SpecificCharacterSet = ["", "ISO 2022 IR 13", "ISO 2022 IR 87"]
    elif variant == "undefined lengths":
        dataset.ContentSequence[0]["ConceptNameCodeSequence"].is_undefined_length = True  # a shared code
        groups[0].ContentSequence[0].is_undefined_length_sequence_item = True
        dataset["ContentSequence"].is_undefined_length = True
        dataset.ContentSequence[-1].is_undefined_length_sequence_item = True
        groups[1]["ContentSequence"].is_undefined_length = True
    elif variant == "group length":
        groups[0].ContentSequence[0].add_new(0x0040_0000, "UL", 40)  # retired: pydicom leaves it out
    elif variant == "item character set":
        groups[0].ContentSequence[0].SpecificCharacterSet = "ISO_IR 100"
    elif variant == "ambiguous VR":
        groups[0].ContentSequence[0].add_new(0x0028_0106, "US or SS", 0)  # Smallest Image Pixel Value
    taken = variant not in ("read from file", "item character set", "ambiguous VR")
    assert (sr._fast.sequencesEncodedOnce(dataset) is not None) == taken
    expected = _written(dataset)
    before = _elementLines(dataset)  # parses what was read from the file
    path = sr.writeSr(dataset, tmp_path / "sr.dcm")
    assert path.read_bytes() == expected
    assert _elementLines(dataset) == before
    if variant != "ambiguous VR":
        assert sr.readSr(path) == sr.readSr(dataset)


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", ["", "ISO 2022 IR 87"]],
                         ids=["as-read", "latin-1-images", "iso-2022-jp-images"])
def test_memoized_iod_lookups_construct_the_plain_image_library(monkeypatch, volume: Volume,
                                                               seg_dataset: pydicom.Dataset,
                                                               table: MeasurementTable, charset) -> None:
    """Every TID 1602 library entry asks highdicom's IOD lookup; with the memo
    (seg._fast.memoizeIodAttributeLookups) and the entries derived from one another (sr._fast.imageLibrary)
    the SR is element for element, and byte for byte, the plain one."""
    from highdicom import _standard_utils
    from QuantReportLib.sr import write

    if charset is not None:
        volume = dataclasses.replace(volume, headers=tuple(copy.deepcopy(header) for header in volume.headers))
        for header in volume.headers:
            header.SpecificCharacterSet = charset
            header.SeriesDescription = "山田 胸部" if "2022" in str(charset) else "Thorax ärztlich"
    uids = {"series_instance_uid": pydicom.uid.generate_uid(), "sop_instance_uid": pydicom.uid.generate_uid()}
    write.memoizeIodAttributeLookups()
    memoized = _standard_utils.is_attribute_in_iod
    with monkeypatch.context() as plain:
        plain.setattr(write, "memoizeIodAttributeLookups", lambda: None)
        plain.setattr(write, "imageLibrary", lambda headers: list(hd.sr.ImageLibrary(headers)))
        scans = []
        plain.setattr(_standard_utils, "is_attribute_in_iod",
                      lambda *args, **kwargs: scans.append(args) or memoized.__wrapped__(*args, **kwargs))
        expected = sr.createSr(volume, seg_dataset, table, image_library=True, **uids)
        assert len(scans) >= len(volume.headers)  # at least one question per library entry
    dataset = sr.createSr(volume, seg_dataset, table, image_library=True, **uids)
    # Values each construction makes anew (dates and times, tracking UIDs of the groups): the plain one's.
    def fresh(element) -> bool:
        return element.VR in ("DA", "DT", "TM") or element.tag == 0x0040A124
    for element, plainElement in zip(dataset.iterall(), expected.iterall(), strict=True):
        assert element.tag == plainElement.tag
        if fresh(element):
            element.value = plainElement.value
    assert _elementLines(dataset) == _elementLines(expected)
    assert _written(dataset) == _written(expected)


def _varied(headers: tuple[pydicom.Dataset, ...], variant: str) -> list[pydicom.Dataset]:
    """Copies of a series' headers whose per-image attributes differ as ``variant`` says."""
    varied = [copy.deepcopy(header) for header in headers]
    if variant == "pixel spacing":
        for header in varied[10:20]:
            header.PixelSpacing = [0.8, 0.75]
        varied[5].PixelSpacing = [f"{value}0" for value in varied[5].PixelSpacing]  # same number, other text
        varied[6].Rows = 256
    elif variant == "orientation":
        for header in varied[1::7]:
            header.ImageOrientationPatient = [0.9961947, 0.0871557, 0, -0.0871557, 0.9961947, 0]
        varied[8].ImagePositionPatient = [1, 2.5, "-3.250"]
    elif variant == "thickness and spacing":
        for header in varied[::2]:
            header.SpacingBetweenSlices = 2.5
        varied[3].SliceThickness = 2
    elif variant == "a thickness missing":
        del varied[4].SliceThickness  # highdicom's entry needs it: the plain error, from the same image
    elif variant == "frames of reference":
        for header in varied[25:]:
            header.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2002"
        del varied[40].FrameOfReferenceUID
        del varied[0].FrameOfReferenceUID
    elif variant == "MR and projection images":
        varied[3].SOPClassUID, varied[3].Modality = pydicom.uid.MRImageStorage, "MR"
        for header in varied[20:23]:
            header.SOPClassUID, header.Modality = "1.2.840.10008.5.1.4.1.1.1.1", "DX"
            header.PatientOrientation = ["L", "F"]
            header.ImagerPixelSpacing = [0.139, 0.139 + float(header.InstanceNumber) / 1000]
    elif variant == "multi-frame":
        enhanced = pydicom.dcmread(dataFile("multiframe", "eCT_Supplemental.dcm"), stop_before_pixels=True)
        varied[30:30] = [enhanced]
    return varied


@pytest.mark.parametrize("variant", ["as-read", "pixel spacing", "orientation", "thickness and spacing",
                                     "a thickness missing", "frames of reference", "MR and projection images",
                                     "multi-frame"])
def test_derived_image_library_entries_are_highdicoms(monkeypatch, volume: Volume,
                                                       variant: str) -> None:
    """sr._fast.imageLibrary derives each TID 1602 entry from the one highdicom made of the first image of its
    shape: the library is highdicom's ImageLibrary element for element and in the bytes written, for images
    that differ in pixel spacing, rows, orientation, position text, thickness, spacing between slices, frame of
    reference, SOP class; where highdicom raises (an attribute missing, a multi-frame image) it raises the same."""
    headers = _varied(volume.headers, variant)
    built = []
    entry_class = hd.sr.templates.ImageLibraryEntryDescriptors
    monkeypatch.setattr(hd.sr.templates, "ImageLibraryEntryDescriptors",
                        lambda image, *args: built.append(image) or entry_class(image, *args))
    try:
        expected = list(hd.sr.ImageLibrary(headers))
    except (AttributeError, ValueError, TypeError) as error:
        with pytest.raises(type(error)) as raised:
            sr._fast.imageLibrary(headers)
        assert str(raised.value) == str(error)
        assert variant in ("a thickness missing", "multi-frame")
        return
    plain_count = len(built)
    del built[:]
    library = sr._fast.imageLibrary(headers)
    assert plain_count == len(headers) and len(built) < len(headers) / 2  # the derivation was taken

    def document(items: list[pydicom.Dataset]) -> pydicom.Dataset:
        dataset = pydicom.Dataset()
        dataset.SOPClassUID, dataset.SOPInstanceUID = pydicom.uid.Comprehensive3DSRStorage, "1.2.3"
        dataset.ContentSequence = items
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        return dataset

    assert _elementLines(document(library)) == _elementLines(document(expected))
    assert _written(document(library)) == _written(document(expected))
    groups = library[0].ContentSequence
    assert sum(len(group.ContentSequence) for group in groups) >= len(headers)


def test_axes_are_written_with_their_lines_and_both_readers_read_them(tmp_path: Path, monkeypatch, volume: Volume,
                                                                      seg_dataset: pydicom.Dataset, masks,
                                                                      segments: tuple[Segment, ...]) -> None:
    """The long and short axis NUMs are INFERRED FROM the SCOORD POLYLINE they were measured along (TID 320)."""
    from QuantReportLib.measurements import computeMeasurements

    segmentation = Segmentation.fromMasks(masks, volume.geometry, segments)
    table = computeMeasurements(volume, segmentation, ["volume_mm3", "long_axis_mm", "short_axis_mm"])
    path = sr.writeSr(sr.createSr(volume, seg_dataset, table), tmp_path / "axes.dcm")
    assert_valid_dicom(path)
    written = {(row.segment.number, m.quantity.key): m for row in table.rows for m in row.measurements if m.line}
    assert {key for _, key in written} == {"long_axis_mm", "short_axis_mm"}

    # In the file: the NUM's last child is the SCOORD, SELECTED FROM the key slice's source image.
    dataset = pydicom.dcmread(path)
    groups = [item for item in dataset.ContentSequence[-1].ContentSequence]
    for group in groups:
        for number in (item for item in group.ContentSequence if item.ValueType == "NUM"):
            children = number.get("ContentSequence", [])
            if number.ConceptNameCodeSequence[0].CodeValue not in ("103339001", "103340004"):
                assert all(child.ValueType != "SCOORD" for child in children)
                continue
            (scoord,) = [child for child in children if child.ValueType == "SCOORD"]
            assert scoord.RelationshipType == "INFERRED FROM" and scoord.GraphicType == "POLYLINE"
            assert len(scoord.GraphicData) == 4
            image = scoord.ContentSequence[0]
            assert image.RelationshipType == "SELECTED FROM" and image.ValueType == "IMAGE"
            assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in {
                source.sop_instance_uid for source in volume.source_images}

    fast = sr.readSr(path)
    monkeypatch.setattr("QuantReportLib.sr.read.readPlainVolumetricGroup", lambda item, values: None)
    plain_highdicom = sr.readSr(path)
    for loaded in (fast, plain_highdicom):
        read = {(group.segment.number, key): m for group in loaded.groups for m in group.measurements
                for key in ("long_axis_mm", "short_axis_mm") if m.quantity.name.value in ("103339001", "103340004")
                and (key == "long_axis_mm") == (m.quantity.name.value == "103339001")}
        assert set(read) == set(written)
        for key, measurement in read.items():
            line, original = measurement.line, written[key].line
            assert measurement.value == written[key].value
            assert line is not None and original is not None
            assert (line.sop_instance_uid, line.sop_class_uid) == (original.sop_instance_uid, original.sop_class_uid)
            assert np.allclose(line.points, original.points, rtol=0, atol=1e-4)  # SCOORD data is FL (float32)
    assert repr(fast.groups) == repr(plain_highdicom.groups), "the plain reader reads as highdicom does"


# -- groups derived from a template group (sr._fast.volumetricGroups) -------------------------------------------

_TOPOGRAPHICAL = Terminology(TISSUE, Code("4147007", "SCT", "Mass"), anatomic_region=LUNG,
                             anatomic_region_modifier=Code("261183002", "SCT", "Upper"))
_REGION_ONLY = Terminology(NODULE_TERMINOLOGY.category, NODULE_TERMINOLOGY.type,
                           anatomic_region=Code("10200004", "SCT", "Liver"))
_EXTREME_VALUES = (1 / 3, -0.0, 0.0, 1e-300, 1e300, -123456789012.34567, 2.0**53 + 1, 7.0, 5e-324, 0.1 + 0.2)


def _groupTable(volume: Volume, seg: pydicom.Dataset, variant: str) -> tuple[pydicom.Dataset, MeasurementTable]:
    """A SEG header with 24 segments and a table of them as ``variant`` varies the rows."""
    header = copy.deepcopy(seg)
    header.SegmentSequence = [copy.deepcopy(seg.SegmentSequence[2]) for _ in range(24)]
    for number, item in enumerate(header.SegmentSequence, 1):
        item.SegmentNumber = number
    quantities = [VOLUME, VOXELS, MEAN, STDDEV, MINIMUM, MAXIMUM, THIRD]
    generator = np.random.default_rng(15)
    terminologies = [NODULE_TERMINOLOGY, BOX_TERMINOLOGY, EMPTY_TERMINOLOGY, _TOPOGRAPHICAL, _REGION_ONLY]
    image = volume.source_images[3]
    rows = []
    for number in range(1, 25):
        values = [float(value) for value in generator.normal(scale=10.0 ** (number % 7), size=len(quantities))]
        values[number % len(values)] = _EXTREME_VALUES[number % len(_EXTREME_VALUES)]
        terminology = EMPTY_TERMINOLOGY
        label = f"Segment {number}"
        if variant in ("varied terminology", "varied quantities", "non-ascii"):
            terminology = terminologies[number % len(terminologies)]
        if variant == "non-ascii":
            label = f"Läsion {number} Ø"
        measurements = [Measurement(quantity, value) for quantity, value in zip(quantities, values, strict=True)]
        if variant == "varied quantities":
            if number % 3 == 0:
                measurements[2] = Measurement(MEAN, math.nan)  # left out: another shape
            if number % 4 == 0:
                measurements.append(Measurement(Quantity(Code("103339001", "SCT", "Long Axis"),
                                                         Code("mm", "UCUM", "millimeter")), 12.5 + number,
                                                ImageLine(image.sop_class_uid, image.sop_instance_uid,
                                                          ((10.5, 20.5), (30.5 + number, 40.5)))))
            if number % 5 == 0:
                measurements.reverse()
        rows.append(SegmentMeasurements(Segment(number, label, terminology, tracking_id=label,
                                                tracking_uid=f"1.2.826.0.1.3680043.8.498.3{number:03d}"),
                                        tuple(measurements)))
    return header, MeasurementTable(tuple(rows))


def _plainAndDerived(monkeypatch, volume: Volume, seg: pydicom.Dataset, table: MeasurementTable, **options
                     ) -> tuple[pydicom.Dataset, pydicom.Dataset, int]:
    """The SR with every group built by highdicom, the SR createSr makes, and how many groups highdicom built."""
    from QuantReportLib.sr import write

    uids = {"series_instance_uid": pydicom.uid.generate_uid(), "sop_instance_uid": pydicom.uid.generate_uid()}
    derive = write.volumetricGroups
    with monkeypatch.context() as plain:
        plain.setattr(write, "volumetricGroups",
                      lambda rows, first, build: [first, *(build(row) for row in rows[1:])])
        expected = sr.createSr(volume, seg, table, **uids, **options)
    built = []
    monkeypatch.setattr(write, "volumetricGroups",
                        lambda rows, first, build: derive(rows, first, lambda row: built.append(row) or build(row)))
    dataset = sr.createSr(volume, seg, table, **uids, **options)
    for element, plain_element in zip(dataset.iterall(), expected.iterall(), strict=True):
        assert element.tag == plain_element.tag
        if element.VR in ("DA", "DT", "TM"):  # made anew by each construction
            element.value = plain_element.value
    return expected, dataset, len(built) + 1


@pytest.mark.parametrize("variant", ["same terminology", "varied terminology", "varied quantities", "non-ascii"])
def test_derived_groups_are_highdicoms(monkeypatch, tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset,
                                       variant: str) -> None:
    """sr._fast.volumetricGroups makes each TID 1411 group of a shape from the one highdicom made of its first row:
    element for element and byte for byte the SR whose every group highdicom built, for rows that differ in
    terminology (category, finding, site with laterality, topographical modifier or none), in which quantities
    they hold (a value left out, a line measurement, another order), in values at the edges of the DS form, and
    in non-ASCII tracking identifiers and observer names; time point and library included."""
    header, table = _groupTable(volume, seg_dataset, variant)
    options = {"time_point": "baseline", "image_library": variant == "non-ascii",
               "observer_name": "Müller^Zoë" if variant == "non-ascii" else None}
    expected, dataset, built = _plainAndDerived(monkeypatch, volume, header, table, **options)
    shapes = {(row.segment.terminology.anatomic_region is None,
               tuple((m.quantity.name, m.quantity.unit) for m in row.measurements if math.isfinite(m.value)))
              for row in table.rows}
    assert built == len(shapes) < len(table.rows) / 2, "highdicom builds the first group of each shape only"
    assert _elementLines(dataset) == _elementLines(expected)
    assert _written(dataset) == _written(expected)
    path = sr.writeSr(dataset, tmp_path / "sr.dcm")
    assert path.read_bytes() == _written(expected)
    assert_valid_dicom(path)
    assert sr.tableFromSr(sr.readSr(path), [row.segment for row in table.rows]) == _finite(table)


@pytest.mark.parametrize("change", ["numbers formatted otherwise", "a row of another kind"])
def test_groups_are_built_by_highdicom_where_a_template_does_not_make_them(monkeypatch, volume: Volume,
                                                                         seg_dataset: pydicom.Dataset,
                                                                         change: str) -> None:
    """A template whose group made again of its own row is not the plain group (a highdicom that formats values
    otherwise, a group with a row the derivation does not know) is not used: highdicom builds every group."""
    from QuantReportLib.sr import write

    header, table = _groupTable(volume, seg_dataset, "varied terminology")
    if change == "numbers formatted otherwise":
        original = hd.sr.NumContentItem.__init__

        def formatted(self, *args, **kwargs) -> None:
            original(self, *args, **kwargs)
            self.MeasuredValueSequence[0].NumericValue = pydicom.valuerep.DS(f"{self.value:.6e}")

        monkeypatch.setattr(hd.sr.NumContentItem, "__init__", formatted)
    else:
        group = write._measurementGroup

        def withSession(row, time_point):
            built = group(row, time_point)
            built[0].ContentSequence.append(hd.sr.TextContentItem(
                name=hd.sr.CodedConcept("C67447", "NCIt", "Activity Session"), value="session 1",
                relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT))
            return built

        monkeypatch.setattr(write, "_measurementGroup", withSession)
    expected, dataset, built = _plainAndDerived(monkeypatch, volume, header, table)
    assert built == len(table.rows)
    assert _elementLines(dataset) == _elementLines(expected)
    assert _written(dataset) == _written(expected)


@pytest.mark.parametrize("seg_character_set", [None, "ISO_IR 100"])
def test_any_text_is_declared_utf8(tmp_path: Path, volume: Volume, seg_dataset: pydicom.Dataset,
                                   table: MeasurementTable, seg_character_set) -> None:
    """The SR declares UTF-8 whatever the SEG declares (highdicom 0.28 takes the SEG's, 0.27 sets none): labels
    and names of any script are valid (dciodvfy) and read back as written."""
    header = copy.deepcopy(seg_dataset)
    if seg_character_set is None:
        header.pop(0x0008_0005, None)  # highdicom 0.27 sets none
    else:
        header.SpecificCharacterSet = seg_character_set
    rows = tuple(dataclasses.replace(row, segment=dataclasses.replace(row.segment, tracking_id=f"病変 {index} Läsion"))
                 for index, row in enumerate(table.rows, 1))
    dataset = sr.createSr(volume, header, MeasurementTable(rows), observer_name="Müller^Zoë")
    assert dataset.SpecificCharacterSet == "ISO_IR 192"
    path = sr.writeSr(dataset, tmp_path / "sr.dcm")
    assert_valid_dicom(path)
    loaded = sr.readSr(path)
    assert [group.tracking_identifier for group in loaded.groups] == ["病変 1 Läsion", "病変 2 Läsion", "病変 3 Läsion"]
    observer = [item for item in pydicom.dcmread(path).ContentSequence if item.ValueType == "PNAME"]
    assert [str(item.PersonName) for item in observer] == ["Müller^Zoë"]


#: A SNOMED CT extension concept (more than the 16 characters of a Code Value) and a code given as a URN.
EXTENSION_SITE = Code("1234567891000123108", "SCT", "Lung segment of an extension")
URN_QUANTITY = Quantity(Code("urn:oid:1.2.826.0.1.3680043.8.498.7", "99TEST", "A quantity named by a URN"),
                        Code("1", "UCUM", "no units"))


def test_codes_longer_than_a_code_value_are_written_and_read_back(tmp_path: Path, capsys, monkeypatch,
                                                                  volume: Volume, seg_dataset: pydicom.Dataset,
                                                                  table: MeasurementTable) -> None:
    """A terminology or quantity code longer than 16 characters is written as a Long or URN Code Value
    (PS3.3 8.8; dciodvfy finds no error), read back by both readers as written, and shown as written by
    ``load --json`` and ``--table-out`` (JSON)."""
    from QuantReportLib.cli import main

    first = table.rows[0]
    terminology = dataclasses.replace(first.segment.terminology, anatomic_region=EXTENSION_SITE,
                                      anatomic_region_modifier=None)
    rows = (SegmentMeasurements(dataclasses.replace(first.segment, terminology=terminology),
                                (*first.measurements[:2], Measurement(URN_QUANTITY, 0.25))),)
    path = sr.writeSr(sr.createSr(volume, seg_dataset, MeasurementTable(rows)), tmp_path / "sr.dcm")
    assert_valid_dicom(path)
    group_rows = pydicom.dcmread(path).ContentSequence[-1].ContentSequence[0].ContentSequence
    site = next(row for row in group_rows if row.ConceptNameCodeSequence[0].CodeValue == "363698007")
    assert "CodeValue" not in site.ConceptCodeSequence[0]
    assert site.ConceptCodeSequence[0].LongCodeValue == EXTENSION_SITE.value
    number = [row for row in group_rows if row.ValueType == "NUM"][-1]
    assert "CodeValue" not in number.ConceptNameCodeSequence[0]
    assert number.ConceptNameCodeSequence[0].URNCodeValue == URN_QUANTITY.name.value

    loaded = sr.readSr(path)
    assert not loaded.unsupported
    (group,) = loaded.groups
    assert group.finding_site == EXTENSION_SITE and group.finding_site.value == EXTENSION_SITE.value
    assert [(m.quantity, m.value) for m in group.measurements][-1] == (URN_QUANTITY, 0.25)
    assert sr.tableFromSr(loaded).rows[0].segment.terminology.anatomic_region == EXTENSION_SITE
    with monkeypatch.context() as highdicom_only:
        highdicom_only.setattr(sr_read, "readPlainVolumetricGroup", lambda item, values: None)
        assert repr(sr.readSr(path)) == repr(loaded)

    table_out = tmp_path / "table.json"  # a CSV table names quantities by their labels, the JSON by their codes
    assert main(["load", str(path), "--json", "--table-out", str(table_out)]) == 0
    report = json.loads(capsys.readouterr().out)
    (written,) = report["groups"]
    assert written["finding_site"] == EXTENSION_SITE.toJson()
    assert written["measurements"][-1]["name"] == URN_QUANTITY.name.toJson()
    (table_row,) = json.loads(table_out.read_text())
    assert table_row["measurements"][-1]["name"] == URN_QUANTITY.name.toJson()


def test_planar_group_with_a_measurement_named_by_a_urn_is_read(tmp_path: Path, volume: Volume,
                                                                 seg_dataset: pydicom.Dataset) -> None:
    """A TID 1410 group referencing a segmentation frame, its measurement named by a URN Code Value (as
    highdicom writes a code longer than 16 characters): read with its segment and the name as written."""
    frame = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg_dataset.SOPClassUID, sop_instance_uid=seg_dataset.SOPInstanceUID, frame_number=1,
        segment_number=1, source_image=hd.sr.SourceImageForSegmentation.from_source_image(volume.headers[0]))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=NODULE_TRACKING_UID, identifier="Nodule 1"),
        referenced_segment=frame,
        measurements=[hd.sr.Measurement(name=URN_QUANTITY.name.toPydicom(), value=0.25,
                                        unit=URN_QUANTITY.unit.toPydicom())])
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(),
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[group])
    document = hd.sr.Comprehensive3DSR(
        evidence=[seg_dataset, volume.headers[0]], content=report, series_instance_uid=hd.UID(), series_number=1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="highdicom test")
    path = tmp_path / "planar.dcm"
    document.save_as(path)
    loaded = sr.readSr(path)
    assert not loaded.unsupported
    (read,) = loaded.groups
    assert read.template_id == "1410"
    assert read.segment == sr.SegmentReference(seg_dataset.SOPInstanceUID, 1)
    assert [(m.quantity.name.value, m.value) for m in read.measurements] == [(URN_QUANTITY.name.value, 0.25)]
