"""MRML adapter tests on the real Slicer libraries (trame-slicer's headless ``SlicerApp``).

Each conversion is checked against values that do not come from the adapter
itself: DICOM headers for geometry, Slicer's own export
(``ExportSegmentsToLabelmapNode``, the path of ``slicer.util.arrayFromSegmentBinaryLabelmap``)
for voxels, Slicer's own terminology serializer, and numpy/scipy for the
Segment Editor's Threshold and Islands effects.
"""

from __future__ import annotations

import dataclasses
import math
from glob import glob

import numpy as np
import pytest
from conftest import require
from conftest import sharedData as _data

try:
    import slicer
    from trame_slicer.core import SlicerApp
    from trame_slicer.segmentation import SegmentationEffectIslands, SegmentationEffectThreshold
except ImportError:  # the skip (or CI failure) is raised by the slicer_app fixture
    SlicerApp = None

pytestmark = pytest.mark.slicer

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Nodule 1 of LIDC-IDRI-0001: centre of the reference annotation (seg/lidc-idri-0001-nodule1-annotation0.dcm,
# frames z = -125 .. -105 mm) at column 316, row 367, slice 25 of the 50-slice CT (z = -115 mm, LPS x 56.2, y 86.3).
NODULE_IJK = (316, 367, 25)
# Soft-tissue window that separates the nodule (about 100 HU) from the lung around it.
NODULE_HU_RANGE = (50.0, 1000.0)


@pytest.fixture(scope="module")
def slicer_app():
    require(SlicerApp is not None, "trame-slicer / slicer-core are not installed")
    return SlicerApp()


@pytest.fixture
def scene(slicer_app):
    """The application's scene, emptied after each test (as File / Close Scene does)."""
    yield slicer_app.scene
    slicer_app.scene.Clear(False)


@pytest.fixture(scope="module")
def lidc_volume():
    from QuantReportLib.series import loadSeries

    return loadSeries(sorted(glob(str(_data("ct", "lidc-idri-0001") / "*.dcm"))))


@pytest.fixture(scope="module")
def adc_volume():
    from QuantReportLib.series import loadSeries

    return loadSeries(sorted(glob(str(_data("mr", "qin-prostate-adc") / "*.dcm"))))


def _mrml():
    from QuantReportLib.inslicer import nodes

    return nodes


def _tables():
    from QuantReportLib.inslicer import tables

    return tables


def _matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _ijkToRas(node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _matrix(matrix)


def _cropped(volume, low, high):
    """A sub-volume ``[low, high)`` in (k, j, i), with its origin moved: a volume whose grid is not the file's."""
    from QuantReportLib.model import Geometry

    matrix = volume.geometry.ijk_to_lps.copy()
    matrix[:3, 3] = volume.geometry.ijkToLps(np.array(low[::-1], dtype=float))
    array = volume.array[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    return dataclasses.replace(volume, array=array, geometry=Geometry(array.shape, matrix),
                               source_images=volume.source_images[low[0]:high[0]],
                               headers=volume.headers[low[0]:high[0]])


def _slicerExport(slicer_app, segmentation_node, segment_id, reference_node) -> np.ndarray:
    """One segment as Slicer exports it on a reference grid (``slicer.util.arrayFromSegmentBinaryLabelmap``)."""
    from vtkmodules.vtkCommonCore import vtkStringArray

    ids = vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap = slicer_app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer_app.segmentations_logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node)
    array = slicer.util.arrayFromVolume(labelmap).copy()
    slicer_app.scene.RemoveNode(labelmap)
    return array != 0


# -- segment editor driven headless (shared with the Slicer self-test scenario) --------------------


def segmentWithThresholdAndIslands(slicer_app, volume_node, hu_range, seed_ras=None):
    """Segment ``volume_node`` with the Segment Editor's Threshold then Islands effect, headless.

    Threshold fills the segment with ``hu_range[0] <= value <= hu_range[1]``;
    Islands then keeps the island (6-connected) under ``seed_ras``, or the
    largest island when no seed is given.  Returns the new segmentation node.
    """
    editor = slicer_app.segmentation_editor
    segmentation_node = editor.create_empty_segmentation_node()
    editor.set_active_segmentation(segmentation_node, volume_node)
    editor.add_empty_segment(segment_name="Nodule")
    threshold = editor.set_active_effect_type(SegmentationEffectThreshold)
    threshold.set_threshold_min_max_values(hu_range)
    threshold.apply()
    islands = editor.set_active_effect_type(SegmentationEffectIslands)
    if seed_ras is None:
        islands.keep_largest_island()
    else:
        islands.keep_island_at_position(tuple(seed_ras))
    editor.deactivate_effect()
    return segmentation_node


# -- volumes ---------------------------------------------------------------------------------------


def test_volume_node_round_trip_lidc(slicer_app, scene, lidc_volume):
    mrml = _mrml()
    node = mrml.volumeNodeFromVolume(scene, lidc_volume)

    # IJK -> RAS is exactly the LPS matrix with the first two rows negated (axis-aligned: no rounding at all).
    assert np.array_equal(_ijkToRas(node), LPS_TO_RAS @ lidc_volume.geometry.ijk_to_lps)
    # ... and puts voxel (0, 0, k) at each file's Image Position (Patient), in RAS.
    for k, header in enumerate(lidc_volume.headers):
        ipp = np.array(header.ImagePositionPatient, dtype=float)
        assert np.allclose(_ijkToRas(node) @ [0, 0, k, 1], [-ipp[0], -ipp[1], ipp[2], 1], atol=1e-4)
    # Voxels in slicer.util.arrayFromVolume order.
    assert np.array_equal(slicer.util.arrayFromVolume(node), lidc_volume.array)
    assert node.GetVoxelValueUnits().GetCodeValue() == "[hnsf'U]"
    assert node.GetVoxelValueQuantity().GetCodeValue() == "112031"

    # DICOM links as Slicer's DICOMScalarVolumePlugin makes them.
    uids = [header.SOPInstanceUID for header in lidc_volume.headers]
    assert node.GetAttribute("DICOM.instanceUIDs") == " ".join(uids)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    assert sh.GetItemUID(item, "DICOM") == lidc_volume.series_instance_uid
    assert sh.GetItemUID(item, "DICOMInstanceUID") == " ".join(uids)
    assert sh.GetItemAttribute(item, "DICOM.Modality") == "CT"
    study = sh.GetItemParent(item)
    patient = sh.GetItemParent(study)
    assert sh.GetItemLevel(study) == "Study" and sh.GetItemLevel(patient) == "Patient"
    assert sh.GetItemUID(study, "DICOM") == lidc_volume.study_instance_uid
    assert sh.GetItemUID(patient, "DICOM") == "LIDC-IDRI-0001"
    assert mrml.seriesUidOfVolumeNode(node, sh) == lidc_volume.series_instance_uid

    array, geometry = mrml.volumeFromVolumeNode(node)
    assert np.array_equal(array, lidc_volume.array) and array.dtype == lidc_volume.array.dtype
    assert np.array_equal(geometry.ijk_to_lps, lidc_volume.geometry.ijk_to_lps)
    assert geometry.shape == lidc_volume.geometry.shape


def test_volume_node_round_trip_oblique(slicer_app, scene, adc_volume):
    mrml = _mrml()
    node = mrml.volumeNodeFromVolume(scene, adc_volume)
    ras = _ijkToRas(node)
    # MRML stores spacing and unit directions apart and multiplies them back: equal to the last bit here,
    # and never further off than rounding.
    assert np.allclose(ras, LPS_TO_RAS @ adc_volume.geometry.ijk_to_lps, rtol=0, atol=1e-12)
    header = adc_volume.headers[0]
    iop = np.array(header.ImageOrientationPatient, dtype=float)
    assert np.allclose(ras[:3, 0] / np.linalg.norm(ras[:3, 0]), iop[:3] * [-1, -1, 1], atol=1e-9)
    assert np.allclose(ras[:3, 1] / np.linalg.norm(ras[:3, 1]), iop[3:] * [-1, -1, 1], atol=1e-9)
    assert np.allclose(node.GetSpacing()[:2], [float(header.PixelSpacing[1]), float(header.PixelSpacing[0])])
    for k, slice_header in enumerate(adc_volume.headers):
        ipp = np.array(slice_header.ImagePositionPatient, dtype=float)
        assert np.allclose(ras @ [0, 0, k, 1], [-ipp[0], -ipp[1], ipp[2], 1], atol=1e-3)

    array, geometry = mrml.volumeFromVolumeNode(node)
    assert np.array_equal(array, adc_volume.array)
    assert np.allclose(geometry.ijk_to_lps, adc_volume.geometry.ijk_to_lps, rtol=0, atol=1e-12)


def test_transformed_volume_is_refused(slicer_app, scene, adc_volume):
    from QuantReportLib.errors import UnsupportedError

    node = _mrml().volumeNodeFromVolume(scene, adc_volume)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(UnsupportedError, match="transform"):
        _mrml().volumeFromVolumeNode(node)


# -- segmentations ---------------------------------------------------------------------------------


def _threeSegments(geometry):
    """Two overlapping ellipsoids around the nodule and an empty segment, fully described."""
    from QuantReportLib.model import Code, Segment, Segmentation, Terminology

    lesion = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass"),
                         None, Code("39607008", "SCT", "Lung"), Code("7771000", "SCT", "Left"))
    tissue = Terminology(Code("85756007", "SCT", "Tissue"), Code("85756007", "SCT", "Tissue"))
    segments = [
        Segment(1, "Nodule", lesion, (255, 0, 0), "SEMIAUTOMATIC", "Threshold", "nodule 1",
                "Nodule 1", "1.2.826.0.1.3680043.8.498.1"),
        Segment(2, "Margin", lesion, (0, 128, 255), tracking_uid="1.2.826.0.1.3680043.8.498.2"),
        Segment(4, "Nothing", tissue, (10, 20, 30), "AUTOMATIC", "Model v1"),
    ]
    k, j, i = np.ogrid[: geometry.shape[0], : geometry.shape[1], : geometry.shape[2]]
    nodule = (k - 25) ** 2 / 4 + (j - 367) ** 2 / 100 + (i - 316) ** 2 / 100 <= 1
    margin = (k - 26) ** 2 / 4 + (j - 372) ** 2 / 100 + (i - 320) ** 2 / 100 <= 1
    empty = np.zeros(geometry.shape, dtype=bool)
    return Segmentation.fromMasks([nodule, margin, empty], geometry, segments)


def test_segmentation_node_round_trip(slicer_app, scene, lidc_volume):
    from QuantReportLib.terminology import terminologyToSlicerString

    mrml = _mrml()
    volume_node = mrml.volumeNodeFromVolume(scene, lidc_volume)
    segmentation = _threeSegments(lidc_volume.geometry)
    assert segmentation.overlapping and segmentation.placement == ((0, 1), (1, 2), (0, 4))

    node = mrml.segmentationNodeFromSegmentation(scene, segmentation, volume_node, slicer_app.terminologies_logic)
    vtk_segmentation = node.GetSegmentation()
    assert vtk_segmentation.GetNumberOfSegments() == 3
    assert vtk_segmentation.GetNumberOfLayers() == 2  # overlap needs a second shared labelmap layer
    nodule = vtk_segmentation.GetSegment("Segment_1")
    assert nodule.GetName() == "Nodule"
    assert nodule.GetColor() == (1.0, 0.0, 0.0)
    assert _tag(nodule, "DICOM.SegmentAlgorithmType") == "SEMIAUTOMATIC"
    assert _tag(nodule, "DICOM.SegmentAlgorithmName") == "Threshold"
    assert _tag(nodule, "QuantReport.SegmentNumber") == "1"
    assert _tag(nodule, "QuantReport.TrackingUID") == "1.2.826.0.1.3680043.8.498.1"
    # The terminology tag is what Slicer's own serializer writes for the same codes.
    expected = slicer_app.terminologies_logic.SerializeTerminologyEntry(
        "Segmentation category and type - DICOM master list",
        "49755003", "SCT", "Morphologically Altered Structure", "4147007", "SCT", "Mass", "", "", "",
        "Anatomic codes - DICOM master list", "39607008", "SCT", "Lung", "7771000", "SCT", "Left")
    assert nodule.GetTerminology() == expected == terminologyToSlicerString(segmentation.segments[0].terminology)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer_app.terminologies_logic.DeserializeTerminologyEntry(nodule.GetTerminology(), entry)
    assert entry.GetRegionModifierObject().GetCodeValue() == "7771000"

    # Slicer's own export to the reference grid sees the same voxels.
    for segment, segment_id in zip(segmentation.segments, ("Segment_1", "Segment_2", "Segment_4"), strict=True):
        exported = _slicerExport(slicer_app, node, segment_id, volume_node)
        assert np.array_equal(exported, segmentation.mask(segment.number)), segment.label

    back = mrml.segmentationFromSegmentationNode(node, volume_node)
    assert back.geometry == segmentation.geometry
    assert back.segments == segmentation.segments
    assert back.placement == segmentation.placement
    assert len(back.layers) == 2
    for layer, original in zip(back.layers, segmentation.layers, strict=True):
        assert np.array_equal(layer, original)
    assert back.voxelCounts() == segmentation.voxelCounts()
    assert back.voxelCounts()[4] == 0 and back.voxelCounts()[1] > 0


def test_segmentation_round_trip_on_oblique_grid(slicer_app, scene, adc_volume):
    from QuantReportLib.model import Code, Segment, Segmentation, Terminology

    mrml = _mrml()
    volume_node = mrml.volumeNodeFromVolume(scene, adc_volume)
    terminology = Terminology(Code("85756007", "SCT", "Tissue"), Code("41216001", "SCT", "Prostate"))
    mask = adc_volume.array > np.percentile(adc_volume.array, 90)
    segmentation = Segmentation.fromMasks([mask], adc_volume.geometry, [Segment(3, "Bright", terminology)])
    node = mrml.segmentationNodeFromSegmentation(scene, segmentation, volume_node)
    assert np.array_equal(_slicerExport(slicer_app, node, "Segment_3", volume_node), mask)
    back = mrml.segmentationFromSegmentationNode(node, volume_node)
    assert np.array_equal(back.mask(3), mask)
    assert back.segments[0].number == 3 and back.segments[0].terminology == terminology
    # No color given and no terminologies logic: Slicer chose one, and it is read back.
    assert back.segments[0].color is not None


def test_segment_numbers_from_tags_then_order(slicer_app, scene, lidc_volume):
    mrml = _mrml()
    volume_node = mrml.volumeNodeFromVolume(scene, lidc_volume)
    node = mrml.segmentationNodeFromSegmentation(scene, _threeSegments(lidc_volume.geometry), volume_node)
    vtk_segmentation = node.GetSegmentation()
    vtk_segmentation.GetSegment("Segment_1").RemoveTag("QuantReport.SegmentNumber")
    vtk_segmentation.GetSegment("Segment_4").SetTag("QuantReport.SegmentNumber", "2")  # duplicate of Segment_2
    vtk_segmentation.AddEmptySegment("added", "Added")
    numbers = [segment.number for segment in mrml.segmentationFromSegmentationNode(node, volume_node).segments]
    # Segment_2 keeps its tag 2; the untagged, the duplicate and the new segment get 1, 3, 4 in order.
    assert numbers == [1, 2, 3, 4]


# -- segment editor --------------------------------------------------------------------------------


def test_segment_editor_threshold_and_islands_match_numpy(slicer_app, scene, lidc_volume):
    from scipy import ndimage

    mrml = _mrml()
    # A 30 x 130 x 160 block around the nodule: trame-slicer's Islands effect runs one full-image threshold
    # per removed island, about a minute on all 50 x 512 x 512 voxels, half a second on this block.
    low, high = (10, 300, 240), (40, 430, 400)
    volume = _cropped(lidc_volume, low, high)
    volume_node = mrml.volumeNodeFromVolume(scene, volume)
    seed = tuple(n - o for n, o in zip(NODULE_IJK[::-1], low, strict=True))  # (k, j, i) in the block
    seed_lps = volume.geometry.ijkToLps(np.array(seed[::-1], dtype=float))
    seed_ras = LPS_TO_RAS[:3, :3] @ seed_lps

    inside = (volume.array >= NODULE_HU_RANGE[0]) & (volume.array <= NODULE_HU_RANGE[1])
    islands, count = ndimage.label(inside)  # default structure: 6-connected, as vtkITKIslandMath FullyConnected off
    expected_nodule = islands == islands[seed]
    sizes = np.bincount(islands.ravel())[1:]
    assert count > 100 and np.sort(sizes)[-1] > np.sort(sizes)[-2]  # a unique largest island
    expected_largest = islands == 1 + int(np.argmax(sizes))

    node = segmentWithThresholdAndIslands(slicer_app, volume_node, NODULE_HU_RANGE, seed_ras)
    nodule = mrml.segmentationFromSegmentationNode(node, volume_node)
    assert [segment.number for segment in nodule.segments] == [1]  # untagged: numbered by order
    assert np.array_equal(nodule.mask(1), expected_nodule)
    assert expected_nodule.sum() == 2419

    node = segmentWithThresholdAndIslands(slicer_app, volume_node, NODULE_HU_RANGE)
    assert np.array_equal(mrml.segmentationFromSegmentationNode(node, volume_node).mask(1), expected_largest)


def test_segment_editor_nodule_lies_in_reference_annotation(slicer_app, scene, lidc_volume):
    """The thresholded island at the seed is the annotated nodule, not chest wall (checks the seed and range)."""
    import pydicom

    low, high = (10, 300, 240), (40, 430, 400)
    volume = _cropped(lidc_volume, low, high)
    volume_node = _mrml().volumeNodeFromVolume(scene, volume)
    seed_lps = lidc_volume.geometry.ijkToLps(np.array(NODULE_IJK, dtype=float))
    node = segmentWithThresholdAndIslands(slicer_app, volume_node, NODULE_HU_RANGE, LPS_TO_RAS[:3, :3] @ seed_lps)
    mask = _mrml().segmentationFromSegmentationNode(node, volume_node).mask(1)

    seg = pydicom.dcmread(_data("seg", "lidc-idri-0001-nodule1-annotation0.dcm"))
    frame_z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in seg.PerFrameFunctionalGroupsSequence]
    annotation = np.zeros(lidc_volume.geometry.shape, dtype=bool)
    for z, frame in zip(frame_z, seg.pixel_array, strict=True):
        annotation[int(round((z - lidc_volume.geometry.origin[2]) / 2.5))] = frame != 0
    annotation = annotation[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    assert mask.sum() > 1000
    assert np.all(annotation[mask])


# -- measurement tables ----------------------------------------------------------------------------


def _measurementTable():
    from QuantReportLib.model import Code, Measurement, MeasurementTable, Quantity, SegmentMeasurements

    segmentation = _threeSegments(_gridForTable())
    volume = Quantity(Code("118565006", "SCT", "Volume"), Code("mm3", "UCUM", "cubic millimeter"),
                      method=Code("126030", "DCM", "Sum of segmented voxel volumes"), key="volume_mm3",
                      label="Volume [mm3]")
    mean = Quantity(Code("112031", "DCM", "Attenuation Coefficient"), Code("[hnsf'U]", "UCUM", "Hounsfield unit"),
                    derivation=Code("373098007", "SCT", "Mean"), key="mean_hu")
    nodule, margin, empty = segmentation.segments
    rows = (
        SegmentMeasurements(nodule, (Measurement(volume, 1 / 3), Measurement(mean, -12.345678901234567))),
        SegmentMeasurements(margin, (Measurement(volume, 1e-300), Measurement(mean, 123456789.123456789))),
        SegmentMeasurements(empty, (Measurement(volume, 0.0),)),  # no mean of an empty segment
    )
    return MeasurementTable(rows), segmentation.segments


def _gridForTable():
    from QuantReportLib.model import Geometry

    return Geometry((50, 512, 512), np.eye(4))


def test_table_node_round_trip(slicer_app, scene):
    tables = _tables()
    table, segments = _measurementTable()
    node = tables.tableNodeFromMeasurementTable(scene, table)

    assert node.GetNumberOfColumns() == 3 and node.GetNumberOfRows() == 3
    assert node.GetColumnName(0) == "Segment"
    assert [node.GetCellText(row, 0) for row in range(3)] == ["Nodule", "Margin", "Nothing"]
    assert node.GetColumnTitle("volume_mm3") == "Volume [mm3]"
    assert node.GetColumnUnitLabel("volume_mm3") == "mm3"
    assert node.GetColumnProperty("volume_mm3", "DICOM.QuantityCode") == (
        "CodeValue:118565006|CodingSchemeDesignator:SCT|CodeMeaning:Volume")
    assert node.GetColumnProperty("volume_mm3", "DICOM.UnitsCode") == (
        "CodeValue:mm3|CodingSchemeDesignator:UCUM|CodeMeaning:cubic millimeter")
    assert node.GetColumnProperty("volume_mm3", "DICOM.MeasurementMethodCode") == (
        "CodeValue:126030|CodingSchemeDesignator:DCM|CodeMeaning:Sum of segmented voxel volumes")
    assert node.GetColumnProperty("mean_hu", "DICOM.DerivationCode") == (
        "CodeValue:373098007|CodingSchemeDesignator:SCT|CodeMeaning:Mean")
    assert node.GetColumnProperty("volume_mm3", "DICOM.DerivationCode") == ""
    assert node.GetColumnTitle("mean_hu") == "Mean Attenuation Coefficient [[hnsf'U]]"
    assert math.isnan(node.GetTable().GetColumnByName("mean_hu").GetValue(2))

    back = tables.measurementTableFromTableNode(node, segments)
    assert back.quantities == table.quantities
    assert [row.segment for row in back.rows] == list(segments)
    for original, read in zip(table.rows, back.rows, strict=True):
        assert read.measurements == original.measurements  # float64, bit for bit
    assert back.row(4).measurements == (table.row(4).measurements[0],)

    # Writing again into the same node replaces the columns.
    assert tables.tableNodeFromMeasurementTable(scene, back, node) is node
    assert node.GetNumberOfColumns() == 3


def test_table_rows_must_match_segments(slicer_app, scene):
    from QuantReportLib.errors import InvalidInputError

    tables = _tables()
    table, segments = _measurementTable()
    node = tables.tableNodeFromMeasurementTable(scene, table)
    with pytest.raises(InvalidInputError, match="Margin"):
        tables.measurementTableFromTableNode(node, [segments[0], segments[2]])


def _tag(vtk_segment, name):
    from vtkmodules.vtkCommonCore import reference

    value = reference("")
    assert vtk_segment.GetTag(name, value), name
    return str(value)


def test_segment_voxels_are_the_image_scalars_slicer_export_reads(slicer_app, scene, lidc_volume):
    """Slicer's "Export to DICOM" (DICOMSegmentationExporter.isSegmentEmpty) reads a segment's voxels from the
    point data array named ImageScalars and calls a segment without one empty ("No non empty segments found")."""
    mrml = _mrml()
    volume_node = mrml.volumeNodeFromVolume(scene, lidc_volume)
    assert volume_node.GetImageData().GetPointData().GetArray("ImageScalars") is not None
    segmentation = _threeSegments(lidc_volume.geometry)
    node = mrml.segmentationNodeFromSegmentation(scene, segmentation, volume_node, slicer_app.terminologies_logic)
    labelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    counts = segmentation.voxelCounts()
    for segment, segment_id in zip(segmentation.segments, ("Segment_1", "Segment_2", "Segment_4"), strict=True):
        scalars = node.GetSegmentation().GetSegment(segment_id).GetRepresentation(labelmap).GetPointData() \
            .GetArray("ImageScalars")
        assert scalars is not None, segment.label
        # isSegmentEmpty: empty when the value range of the (shared) layer is (0, 0).
        assert (scalars.GetValueRange() == (0, 0)) == (counts[segment.number] == 0 and len(segmentation.layers) == 1)


def test_an_sr_and_its_seg_loaded_together_make_one_segmentation(slicer_app, scene, lidc_dir, tmp_path):
    """The DICOM browser may load an SR and its SEG in one go (both checked): the SEG's segments load once."""
    from QuantReportLib import report
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.inslicer.logic import ReportLogic
    from QuantReportLib.model import Code, Segment, Segmentation, Terminology

    database = EmbeddedDicomDatabase(tmp_path / "db")
    database.importPaths([lidc_dir])
    volume = report.loadSeriesFromDatabase(database, database.listSeries()[0].series_instance_uid)
    mask = np.zeros(volume.geometry.shape, dtype=bool)
    mask[20:30, 300:330, 330:370] = True
    tissue = Code("85756007", "SCT", "Tissue")
    segments = [Segment(1, "Nodule", Terminology(tissue, tissue))]
    saved = report.saveReport(volume, Segmentation.fromMasks([mask], volume.geometry, segments), database=database)
    logic = ReportLogic(scene, database, slicer_app.terminologies_logic)
    fromSr, _ = logic.loadReport(saved.sr_sop_instance_uid)
    fromSeg, _ = logic.loadReport(saved.seg_sop_instance_uid)
    assert fromSeg is fromSr
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1
