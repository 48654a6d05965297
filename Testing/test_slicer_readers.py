"""What 3D Slicer's own DICOM readers need from what QuantReport writes by default (issue 11).

Slicer 5.12 and later load SEG and TID 1500 SR with their own scripted plugins
(``DICOMSegmentationPlugin``, ``DICOMTID1500Plugin``, which run dcmqi's
``segimage2itkimage --mergeSegments`` and ``tid1500reader``).  Their sources
are not part of this repository; these tests pin the properties of our files
that those plugins depend on, each with the plugin function that needs it
(read in Slicer 5.12.3 and Slicer main, run headless on slicer-core with
Slicer 5.12's dcmqi 0.4.0 wheel; see ``QuantReportLib.slicerreaders``).  The
segment order is checked against the dcmqi ``segimage2itkimage`` installed here.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pydicom
import pytest
from conftest import require_tool
from conftest import sharedData as dataPath
from QuantReportLib import report, series, slicerreaders, sr
from QuantReportLib.model import Code, Segment, Segmentation, Terminology
from QuantReportLib.report import ReportOptions

TISSUE = Terminology(Code("85756007", "SCT", "Tissue"), Code("85756007", "SCT", "Tissue"))
NODULE = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("27925004", "SCT", "Nodule"),
                     anatomic_region=Code("39607008", "SCT", "Lung"))


@pytest.fixture(scope="module")
def volume():
    return series.loadSeries(sorted(dataPath("ct", "lidc-idri-0001").glob("*.dcm")))


def _box(shape, k, j, i) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[k[0]:k[1], j[0]:j[1], i[0]:i[1]] = True
    return mask


def _segmentation(volume, masks: dict[str, np.ndarray], terminology: Terminology = TISSUE) -> Segmentation:
    segments = [Segment(number, label, terminology) for number, label in enumerate(masks, 1)]
    return Segmentation.fromMasks(list(masks.values()), volume.geometry, segments)


def _referencedSegmentNumbers(sr_dataset: pydicom.Dataset) -> list[int]:
    """The Referenced Segment Number of each TID 1411 group, in document order."""
    numbers = []
    for group in sr_dataset.ContentSequence[-1].ContentSequence:
        for item in group.ContentSequence:
            for reference in item.get("ReferencedSOPSequence", []):
                if "ReferencedSegmentNumber" in reference:
                    numbers.append(int(reference.ReferencedSegmentNumber))
    return numbers


def test_empty_segments_are_left_out_and_the_others_renumbered(volume, tmp_path):
    shape = volume.geometry.shape
    segmentation = _segmentation(volume, {"Nodule": _box(shape, (20, 30), (300, 330), (330, 370)),
                                          "Empty": np.zeros(shape, dtype=bool),
                                          "Far": _box(shape, (5, 9), (100, 120), (100, 130))})
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path)
    seg_dataset = pydicom.dcmread(saved.seg_path)
    numbers = [int(item.SegmentNumber) for item in seg_dataset.SegmentSequence]
    framed = {int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
              for frame in seg_dataset.PerFrameFunctionalGroupsSequence}
    # DICOMSegmentationPlugin.load pairs the i-th segment description with the i-th segment that
    # ImportLabelmapToSegmentationNode creates, which makes none for a label without voxels: segment numbers
    # are contiguous from 1 and every described segment has at least one frame.
    assert numbers == list(range(1, len(numbers) + 1))
    assert framed == set(numbers)
    assert [item.SegmentLabel for item in seg_dataset.SegmentSequence] == ["Nodule", "Far"]
    assert [s.label for s in saved.omitted] == ["Empty"]
    assert any("'Empty' not written" in warning for warning in saved.warnings)
    # DICOMTID1500Plugin.assignTrackingUniqueIdentifier gives the i-th group's UID to the i-th segment:
    # one group per segment of the SEG.
    sr_dataset = pydicom.dcmread(saved.sr_path)
    assert _referencedSegmentNumbers(sr_dataset) == [1, 2]
    reloaded = report.loadReport(saved.sr_path)
    assert [s.label for s in reloaded.segmentation.segments] == ["Nodule", "Far"]
    assert reloaded.segmentation.voxelCounts() == {1: int(segmentation.mask(1).sum()),
                                                   2: int(segmentation.mask(3).sum())}

    kept = report.saveReport(volume, segmentation, out_dir=tmp_path / "kept",
                             options=ReportOptions(keep_empty_segments=True))
    assert [int(item.SegmentNumber) for item in pydicom.dcmread(kept.seg_path).SegmentSequence] == [1, 2, 3]
    # The option says what Slicer's readers make of it (as the other options a known reader misreads do).
    assert not kept.omitted
    (warning,) = kept.warnings
    assert "'Empty' kept" in warning and slicerreaders.EMPTY_SEGMENTS_NOTE in warning


def test_a_report_of_empty_segments_only_is_refused(volume, tmp_path):
    from QuantReportLib.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="every segment is empty"):
        report.saveReport(volume, _segmentation(volume, {"Empty": np.zeros(volume.geometry.shape, dtype=bool)}),
                          out_dir=tmp_path)


def test_sr_groups_follow_the_segment_order_slicer_loads(volume, tmp_path):
    """Overlapping segments: the SR's groups are in the order dcmqi's --mergeSegments output gives the segments."""
    tool = require_tool("segimage2itkimage")
    shape = volume.geometry.shape
    nodule = _box(shape, (20, 30), (300, 330), (330, 370))
    masks = {"Nodule": nodule,
             "Box": _box(shape, (25, 28), (310, 340), (360, 400)),   # overlaps the nodule
             "Far": _box(shape, (5, 9), (100, 120), (100, 130)),
             "Inner": _box(shape, (26, 27), (320, 335), (365, 380)),  # overlaps the nodule and the box
             "Corner": _box(shape, (20, 22), (300, 305), (330, 335))}  # overlaps the nodule only
    saved = report.saveReport(volume, _segmentation(volume, masks), out_dir=tmp_path)
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(saved.seg_path), "--outputDirectory", str(out), "--mergeSegments"],
                   check=True, capture_output=True, timeout=300)
    meta = json.loads((out / "meta.json").read_text())
    # DICOMSegmentationPlugin imports 1.nrrd, 2.nrrd, ... in turn, each in label order (the label is the segment
    # number); assignTrackingUniqueIdentifier then pairs groups and segments by position.
    loaded_order = [attributes["labelID"] for group in meta["segmentAttributes"] for attributes in group]
    assert loaded_order == slicerreaders.slicerSegmentOrder(saved.segmentation) == [1, 3, 2, 4, 5]
    assert _referencedSegmentNumbers(pydicom.dcmread(saved.sr_path)) == loaded_order
    # QuantReport's own reader takes each group's segment from its reference, whatever the order.
    reloaded = report.loadReport(saved.sr_path)
    assert [row.segment.label for row in reloaded.table.rows] == ["Nodule", "Far", "Box", "Inner", "Corner"]


def test_a_labelmap_with_values_1_and_3_loads_in_slicers_reader_with_its_names(volume, tmp_path):
    """A plain labelmap {1, 3} (the command line's path): segments 1 and 2, each value recorded in a private
    element of its Segment Sequence item; dcmqi's --mergeSegments output (what DICOMSegmentationPlugin imports)
    puts each name on its voxels, and the SR's groups follow, one per segment."""
    import nrrd
    from QuantReportLib.labelmaps import writeLabelmapNrrd

    tool = require_tool("segimage2itkimage")
    labelmap = np.zeros(volume.geometry.shape, dtype=np.uint8)
    labelmap[20:30, 300:330, 330:370] = 1
    labelmap[5:9, 100:120, 100:130] = 3
    path = writeLabelmapNrrd(labelmap, volume.geometry, tmp_path / "label.nrrd")
    _, segmentation = report.loadCase(path, series_dir=dataPath("ct", "lidc-idri-0001"))
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path / "out")
    items = pydicom.dcmread(saved.seg_path, stop_before_pixels=True).SegmentSequence
    assert [(int(item.SegmentNumber), item.SegmentLabel) for item in items] == [(1, "Segment 1"), (2, "Segment 3")]
    assert [item.private_block(0x0071, "QuantReport")[0x01].value for item in items] == [1, 3]
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(saved.seg_path), "--outputDirectory", str(out), "--mergeSegments"],
                   check=True, capture_output=True, timeout=300)
    (group,) = json.loads((out / "meta.json").read_text())["segmentAttributes"]
    assert [(a["labelID"], a["SegmentLabel"]) for a in group] == [(1, "Segment 1"), (2, "Segment 3")]
    (merged,) = sorted(out.glob("*.nrrd"))
    data, _ = nrrd.read(str(merged))
    assert [int(np.count_nonzero(data == n)) for n in (1, 2)] == [int(np.count_nonzero(labelmap == v)) for v in (1, 3)]
    assert _referencedSegmentNumbers(pydicom.dcmread(saved.sr_path)) == [1, 2]


def test_segments_in_several_layers_that_do_not_overlap_load_in_number_order(volume, tmp_path):
    """No voxel in two segments, though in several layers (touching boxes, listed out of number order):
    dcmqi's --mergeSegments puts them all in its first group, in number order, as slicerSegmentOrder says."""
    tool = require_tool("segimage2itkimage")
    shape = volume.geometry.shape
    layers = (np.zeros(shape, dtype=np.uint8), np.zeros(shape, dtype=np.uint8))
    layers[0][_box(shape, (20, 30), (300, 330), (330, 370))] = 3
    layers[1][_box(shape, (20, 30), (300, 330), (370, 400))] = 1  # touches segment 3, shares no voxel
    layers[1][_box(shape, (5, 9), (100, 120), (100, 130))] = 2
    segments = tuple(Segment(number, f"Box {number}", TISSUE) for number in (3, 1, 2))
    segmentation = Segmentation(volume.geometry, segments, layers, ((0, 3), (1, 1), (1, 2)))
    assert not segmentation.overlapping
    assert slicerreaders.slicerSegmentOrder(segmentation) == [1, 2, 3]
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path)
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(saved.seg_path), "--outputDirectory", str(out), "--mergeSegments"],
                   check=True, capture_output=True, timeout=300)
    meta = json.loads((out / "meta.json").read_text())
    assert [[attributes["labelID"] for attributes in group] for group in meta["segmentAttributes"]] == [[1, 2, 3]]
    assert _referencedSegmentNumbers(pydicom.dcmread(saved.sr_path)) == [1, 2, 3]


def test_every_planar_group_references_an_image_of_the_first_evidence_series(volume, tmp_path):
    shape = volume.geometry.shape
    segmentation = _segmentation(volume, {"Nodule": _box(shape, (20, 30), (300, 330), (330, 370))}, NODULE)
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path, options=ReportOptions(ohif_companions=True))
    dataset = pydicom.dcmread(saved.sr_path)
    # extractLineMetadataToVtkTableNode / getIPPFromSOP read Image Position (Patient) of the referenced image
    # from the files of CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].
    first = dataset.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert first.SeriesInstanceUID == volume.series_instance_uid
    images = {str(item.ReferencedSOPInstanceUID) for item in first.ReferencedSOPSequence}
    planar = [group for group in dataset.ContentSequence[-1].ContentSequence
              if group.ContentTemplateSequence[0].TemplateIdentifier == "1410"]
    assert planar
    for group in planar:
        region = next(item for item in group.ContentSequence if item.ValueType == "SCOORD")
        assert str(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID) in images
        # createPolylineTable reads the first Finding Site of every planar group.
        assert any(item.ConceptNameCodeSequence[0].CodeValue == "363698007" for item in group.ContentSequence)
    assert slicerreaders.OHIF_COMPANIONS_WARNING in saved.warnings
    assert sr.readSr(saved.sr_path).referenced_series_uids[0] == volume.series_instance_uid


def test_options_slicer_cannot_fully_read_say_so(volume, tmp_path):
    shape = volume.geometry.shape
    segmentation = _segmentation(volume, {"Nodule": _box(shape, (20, 30), (300, 330), (330, 370))})
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path, options=ReportOptions(labelmap_seg=True))
    # DICOMTID1500Plugin.createLoadableAndAddReferences follows evidence of Segmentation Storage only.
    assert saved.warnings == (slicerreaders.LABELMAP_SEG_WARNING,)
    assert not report.saveReport(volume, segmentation, out_dir=tmp_path / "default").warnings
    # Keeping empty segments when there is none is harmless, and silent.
    assert not report.saveReport(volume, segmentation, out_dir=tmp_path / "kept",
                                 options=ReportOptions(keep_empty_segments=True)).warnings


def test_an_empty_probability_map_is_left_out_of_a_fractional_seg_too(volume, tmp_path):
    shape = volume.geometry.shape
    probability = np.zeros(shape, dtype=np.uint8)
    probability[20:30, 300:330, 330:370] = 200
    probability[20:30, 300:305, 330:335] = 60  # below half: not in the mask, but frames are written for it
    segments = [Segment(1, "Nothing", TISSUE), Segment(2, "Nodule", NODULE)]
    segmentation = Segmentation.fromFractions([np.zeros(shape, dtype=np.uint8), probability], volume.geometry,
                                              segments, "PROBABILITY")
    saved = report.saveReport(volume, segmentation, out_dir=tmp_path)
    seg_dataset = pydicom.dcmread(saved.seg_path)
    assert seg_dataset.SegmentationType == "FRACTIONAL"
    assert [(int(item.SegmentNumber), item.SegmentLabel) for item in seg_dataset.SegmentSequence] == [(1, "Nodule")]
    assert np.array_equal(saved.segmentation.fractions.values[1], probability)
    assert [s.label for s in saved.omitted] == ["Nothing"]
