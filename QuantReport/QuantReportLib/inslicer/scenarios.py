"""Workflow scenarios shared by the Slicer self-test (``QuantReportTest``) and the pytest suite.

One scenario, two runners: inside Slicer the context holds ``QuantReportLogic``,
a temporary ``slicer.dicomDatabase`` and a driver of the real Segment Editor
widget's effects; under pytest it holds :class:`QuantReportLib.inslicer.logic.ReportLogic`
on trame-slicer's headless ``SlicerApp`` scene, the embedded database and a
driver of the same effects through trame-slicer.  The scenario itself only
talks to the logic, the driver and MRML node methods, and asserts plain values.

The full scenario is the tutorial: import the sample CT by link -> load the
series -> segment the nodule with the Segment Editor (a region drawn around
the seed, Threshold inside it, Islands keep largest) plus an empty segment ->
measure -> save SEG + SR into the database -> clear the scene -> load the SR
from the database -> compare voxels, terminology, tracking UIDs and the
table -> complete the report -> amend it -> the new SR names its predecessor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..demo import SAMPLE_LESIONS, SAMPLE_SERIES


class SegmentEditorDriver(Protocol):
    """The two Segment Editor operations the scenario needs, each applied by the real effect."""

    def thresholdInsideSegment(self, segmentationNode: Any, volumeNode: Any, segmentId: str, maskSegmentId: str,
                               lower: float, upper: float) -> None:
        """Threshold effect on ``segmentId`` with the editable area limited to ``maskSegmentId``."""

    def keepLargestIsland(self, segmentationNode: Any, volumeNode: Any, segmentId: str) -> None:
        """Islands effect, "Keep largest island", on ``segmentId``."""


@dataclass
class ScenarioContext:
    """What a runner provides.

    ``logic`` has the :class:`QuantReportLib.inslicer.logic.ReportLogic` API;
    ``importFolder`` indexes a folder into the logic's database by link;
    ``clearScene`` empties the MRML scene.
    """

    logic: Any
    importFolder: Callable[[Path], None]
    segmentEditor: SegmentEditorDriver
    clearScene: Callable[[], None]
    log: Callable[[str], None] = print
    results: dict = field(default_factory=dict)


def segmentSampleNodule(context: ScenarioContext, volumeNode: Any, segmentationNode: Any) -> str:
    """Segment the sample nodule as a user would; returns its segment ID.

    A sphere region around the seed, Threshold inside it, keep the largest
    island; the region is removed afterwards.  An empty "Lesion 2" segment is
    added too: it stays in the scene but is not written (3D Slicer's own SEG
    reader misplaces names when a SEG holds an empty segment), and saving says so.
    """
    from .nodes import addSphereSegment

    lesion = SAMPLE_LESIONS[0]
    segmentation = segmentationNode.GetSegmentation()
    regionId = addSphereSegment(segmentationNode, "Region", "Region", lesion.seed_lps, lesion.roi_radius_mm)
    noduleId = segmentation.AddEmptySegment("Nodule_1", lesion.label)
    context.segmentEditor.thresholdInsideSegment(segmentationNode, volumeNode, noduleId, regionId,
                                                 lesion.lower, lesion.upper)
    context.segmentEditor.keepLargestIsland(segmentationNode, volumeNode, noduleId)
    segmentation.RemoveSegment(regionId)
    segmentation.AddEmptySegment("Lesion_2", "Lesion 2")
    return noduleId


def _assertSameSegmentation(original, reloaded) -> None:
    assert [s.number for s in reloaded.segments] == [s.number for s in original.segments], "segment numbers differ"
    assert reloaded.geometry.matches(original.geometry), "the reloaded segmentation is on another grid"
    for before, after in zip(original.segments, reloaded.segments, strict=True):
        assert after.label == before.label, (before.label, after.label)
        assert after.terminology == before.terminology, (before.terminology, after.terminology)
        assert after.tracking_uid == before.tracking_uid, "tracking UIDs must survive the round trip"
        assert after.algorithm_type == before.algorithm_type
        assert np.array_equal(original.mask(before.number), reloaded.mask(after.number)), \
            f"segment {before.number} is not voxel-exact after reload"


def _tableValues(table) -> dict:
    return {(row.segment.number, m.quantity): m.value for row in table.rows for m in row.measurements}


def runFullScenario(context: ScenarioContext) -> dict:
    """The tutorial end to end on the real Slicer libraries; returns figures for the log."""
    from .. import autoseg, measurements, report, slicerreaders, sr
    from .tables import measurementTableFromTableNode

    logic = context.logic
    context.log("Import the sample CT by link")
    context.importFolder(SAMPLE_SERIES)
    (series,) = logic.listImageSeries()
    assert series.instances == len(list(SAMPLE_SERIES.glob("*.dcm")))

    context.log("Load the series and create a report")
    volumeNode = logic.loadSeries(series.series_instance_uid)
    assert logic.sourceSeriesUid(volumeNode) == series.series_instance_uid
    segmentationNode, tableNode = logic.createReport(volumeNode)
    assert logic.reportStatus(segmentationNode) == "draft"

    context.log("Segment the nodule with Threshold and Islands")
    segmentSampleNodule(context, volumeNode, segmentationNode)
    volume, segmentation = logic.reportInputs(volumeNode, segmentationNode)
    counts = segmentation.voxelCounts()
    assert [s.label for s in segmentation.segments] == [SAMPLE_LESIONS[0].label, "Lesion 2"]
    assert counts[2] == 0, "the second segment is empty on purpose"
    lesion = SAMPLE_LESIONS[0]
    expected = autoseg.thresholdIsland(volume, lesion.seed_lps, lower=lesion.lower, upper=lesion.upper,
                                       roi_radius_mm=lesion.roi_radius_mm)
    nodule = segmentation.mask(1)
    dice = 2.0 * np.count_nonzero(nodule & expected) / (np.count_nonzero(nodule) + np.count_nonzero(expected))
    assert dice > 0.9, f"Segment Editor and QuantReport's threshold + island disagree (Dice {dice:.3f})"
    context.results.update(nodule_voxels=counts[1], dice_vs_core=dice)

    context.log("Measure")
    tableNode = logic.computeMeasurements(segmentationNode, volumeNode, tableNode)
    table = measurementTableFromTableNode(tableNode, segmentation.segments)
    assert _tableValues(table) == _tableValues(measurements.computeMeasurements(volume, segmentation))
    assert table.row(1).value("volume_mm3") == counts[1] * volume.geometry.voxel_volume_mm3

    context.log("Save SEG + SR into the DICOM database")
    segUid, srUid = logic.saveReport(volumeNode, segmentationNode, readerName="Reader^Scenario",
                                     timePoint="Baseline")
    assert logic.reportStatus(segmentationNode) == "saved"
    inScene = logic.reportInputs(volumeNode, segmentationNode)[1]
    assert all(s.tracking_uid for s in inScene.segments), "saving assigns tracking UIDs to every segment"
    assert [s.label for s in inScene.segments] == [lesion.label, "Lesion 2"], "the empty segment stays in the scene"
    saved, omitted = slicerreaders.withoutEmptySegments(inScene)
    assert [s.label for s in omitted] == ["Lesion 2"]

    context.log("Clear the scene and load the report from the database")
    context.clearScene()
    reloadedNode, reloadedTableNode = logic.loadReport(srUid)
    assert reloadedNode is not None and reloadedTableNode is not None
    reloadedVolumeNode = reloadedNode.GetNodeReference(reloadedNode.GetReferenceImageGeometryReferenceRole())
    assert logic.sourceSeriesUid(reloadedVolumeNode) == series.series_instance_uid
    reloaded = logic.reportInputs(reloadedVolumeNode, reloadedNode)[1]
    _assertSameSegmentation(saved, reloaded)
    reloadedTable = measurementTableFromTableNode(reloadedTableNode, reloaded.segments)
    written = {segment.number for segment in saved.segments}  # the empty segment was last: numbers unchanged
    assert _tableValues(reloadedTable) == {key: value for key, value in _tableValues(table).items()
                                           if key[0] in written}, "the reloaded table differs"

    context.log("Complete, then amend the report")
    _, completedSrUid = logic.saveReport(reloadedVolumeNode, reloadedNode, readerName="Reader^Scenario",
                                         complete=True)
    assert logic.reportStatus(reloadedNode) == "completed"
    try:
        logic.saveReport(reloadedVolumeNode, reloadedNode)
    except Exception as error:  # the logic refuses: a completed report is locked
        assert "amend" in str(error)
    else:
        raise AssertionError("a completed report must not be saved over")
    logic.amendReport(reloadedNode)
    _, amendedSrUid = logic.saveReport(reloadedVolumeNode, reloadedNode, readerName="Reader^Scenario")
    amended = report.loadReport(amendedSrUid, logic.database)
    assert amended.sr.predecessor_uids == (completedSrUid,), amended.sr.predecessor_uids
    assert [g.tracking_uid for g in amended.sr.groups] == [s.tracking_uid for s in saved.segments]
    completed = sr.readSr(logic.database.fileForInstance(completedSrUid))
    assert completed.completed and completed.verified
    draft = sr.readSr(logic.database.fileForInstance(srUid))
    assert not draft.completed and not draft.verified, "a saved draft is a PARTIAL, unverified document"

    context.results.update(seg_uid=segUid, sr_uid=srUid, amended_sr_uid=amendedSrUid)
    context.log("Scenario passed")
    return context.results
