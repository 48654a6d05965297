"""The Slicer self-test scenario, run headless on the real Slicer libraries (trame-slicer's SlicerApp).

``QuantReportTest`` in ``QuantReport.py`` runs the same ``scenarios.runFullScenario``
inside Slicer with ``QuantReportLogic``, ``slicer.dicomDatabase`` and the Segment
Editor widget's effects; here the scene is SlicerApp's, the database is the
embedded one and the effects are driven through trame-slicer.
"""

from __future__ import annotations

import pytest
from conftest import assert_valid_dicom, require

pytestmark = pytest.mark.slicer


@pytest.fixture(scope="module")
def slicer_app():
    try:
        from trame_slicer.core import SlicerApp
    except ImportError:
        require(False, "trame-slicer (the headless Slicer libraries) is not installed")
    return SlicerApp()


class TrameSegmentEditor:
    """``scenarios.SegmentEditorDriver`` on trame-slicer's segmentation editor (Slicer's editor logic and effects)."""

    def __init__(self, app):
        self.editor = app.segmentation_editor

    def _activate(self, segmentationNode, volumeNode, segmentId):
        if self.editor.active_segmentation_node is not segmentationNode:
            self.editor.set_active_segmentation(segmentationNode, volumeNode)
        self.editor.set_active_segment_id(segmentId)

    def thresholdInsideSegment(self, segmentationNode, volumeNode, segmentId, maskSegmentId, lower, upper):
        from trame_slicer.segmentation import SegmentationEditableAreaMode, SegmentationEffectThreshold

        self._activate(segmentationNode, volumeNode, segmentId)
        self.editor.set_editable_area(SegmentationEditableAreaMode.INSIDE_SINGLE_SEGMENT)
        self.editor.set_mask_segment_id(maskSegmentId)
        threshold = self.editor.set_active_effect_type(SegmentationEffectThreshold)
        threshold.set_threshold_min_max_values((lower, upper))
        threshold.apply()
        self.editor.deactivate_effect()
        self.editor.set_editable_area(SegmentationEditableAreaMode.EVERYWHERE)

    def keepLargestIsland(self, segmentationNode, volumeNode, segmentId):
        from trame_slicer.segmentation import SegmentationEffectIslands

        self._activate(segmentationNode, volumeNode, segmentId)
        islands = self.editor.set_active_effect_type(SegmentationEffectIslands)
        islands.keep_largest_island()
        self.editor.deactivate_effect()


def test_full_scenario_on_the_real_slicer_libraries(slicer_app, tmp_path):
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.inslicer import scenarios
    from QuantReportLib.inslicer.logic import ReportLogic

    scene = slicer_app.scene
    with EmbeddedDicomDatabase(tmp_path / "database") as database:
        context = scenarios.ScenarioContext(
            logic=ReportLogic(scene, database, slicer_app.terminologies_logic),
            importFolder=lambda folder: database.importPaths([folder], progress=False),
            segmentEditor=TrameSegmentEditor(slicer_app),
            clearScene=lambda: scene.Clear(False),
            log=lambda message: None,
        )
        try:
            results = scenarios.runFullScenario(context)
        finally:
            scene.Clear(False)
        written = [database.fileForInstance(results[key]) for key in ("seg_uid", "sr_uid", "amended_sr_uid")]
    assert results["nodule_voxels"] > 1000
    assert results["dice_vs_core"] > 0.9
    for path in written:  # the draft, and the amended SR with its predecessor reference
        assert_valid_dicom(path)


def test_logic_loads_another_tools_report_into_nodes(slicer_app, tmp_path, testdata_dir):
    """dcmqi's liver SEG + TID 1500 SR, imported by link, load into a segmentation node and a table node."""
    import numpy as np
    import pydicom
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.inslicer.logic import ReportLogic
    from QuantReportLib.inslicer.nodes import segmentationFromSegmentationNode
    from QuantReportLib.inslicer.tables import measurementTableFromTableNode

    scene = slicer_app.scene
    sr_file = testdata_dir / "sr" / "dcmqi-liver-tid1500.dcm"
    with EmbeddedDicomDatabase(tmp_path / "database") as database:
        database.importPaths([testdata_dir / "ct" / "dcmqi-ct-3slice", testdata_dir / "seg" / "dcmqi-liver.dcm",
                              sr_file], progress=False)
        logic = ReportLogic(scene, database, slicer_app.terminologies_logic)
        try:
            segmentation_node, table_node = logic.loadReport(pydicom.dcmread(sr_file).SOPInstanceUID)
            volume_node = segmentation_node.GetNodeReference(
                segmentation_node.GetReferenceImageGeometryReferenceRole())
            segmentation = segmentationFromSegmentationNode(segmentation_node, volume_node)
            (segment,) = segmentation.segments
            raw = pydicom.dcmread(testdata_dir / "seg" / "dcmqi-liver.dcm").pixel_array
            assert "liver" in segment.label.lower()
            assert int(segmentation.mask(1).sum()) == int(np.count_nonzero(raw))
            assert segment.terminology.type.meaning.lower() == "liver"
            assert logic.sourceSeriesUid(volume_node) == pydicom.dcmread(
                sorted((testdata_dir / "ct" / "dcmqi-ct-3slice").glob("*.dcm"))[0]).SeriesInstanceUID
            table = measurementTableFromTableNode(table_node, segmentation.segments)
            assert len(table.rows) == 1 and len(table.rows[0].measurements) >= 3
            assert logic.reportStatus(segmentation_node) in ("saved", "completed")
        finally:
            scene.Clear(False)


def test_dicom_browser_examine_prefers_our_own_files(capsys, tmp_path, lidc_dir, lidc_nodule_labelmap):
    """Our SEG/SR get a confidence above Slicer core's plugins (0.95); others' files below it."""
    import pydicom
    from QuantReportLib.cli import main
    from QuantReportLib.examine import SLICER_CORE_CONFIDENCE, examineFiles

    assert main(["export", "--series-dir", str(lidc_dir), "--labelmap", str(lidc_nodule_labelmap),
                 "--out", str(tmp_path / "out")]) == 0
    seg_path, sr_path = capsys.readouterr().out.split()
    ours = {d.kind: d for d in examineFiles([[seg_path, sr_path]])}
    assert set(ours) == {"SEG", "SR"}
    assert all(d.written_by_quantreport and d.confidence > SLICER_CORE_CONFIDENCE and d.selected
               for d in ours.values())
    first_image = sorted(lidc_dir.glob("*.dcm"))[0]
    assert pydicom.dcmread(first_image, stop_before_pixels=True).SeriesInstanceUID in ours["SEG"].referenced_series_uids

