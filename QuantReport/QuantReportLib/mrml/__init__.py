"""The adapter between Slicer's MRML scene and QuantReport's core.

The only part of ``QuantReportLib`` that imports slicer and VTK: importable
inside 3D Slicer, and headless where the ``slicer-core`` wheels are installed
(as trame-slicer uses them).  :mod:`.nodes` converts nodes to and from the
core's data types; :mod:`.logic` is the report workflow on a scene, which the
module's ``QuantReportLogic`` exposes in Slicer and the tests drive headless.
"""

from .logic import ReportLogic
from .nodes import (
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    DESCRIPTION_TAG,
    SEGMENT_NUMBER_TAG,
    TRACKING_ID_TAG,
    TRACKING_UID_TAG,
    addSphereSegment,
    measurementTableFromTableNode,
    segmentationFromSegmentationNode,
    segmentationNodeFromSegmentation,
    seriesUidOfVolumeNode,
    tableNodeFromMeasurementTable,
    tagValue,
    updateSegmentDescriptions,
    volumeFromVolumeNode,
    volumeNodeFromVolume,
)

__all__ = [
    "ALGORITHM_NAME_TAG",
    "ALGORITHM_TYPE_TAG",
    "DESCRIPTION_TAG",
    "SEGMENT_NUMBER_TAG",
    "TRACKING_ID_TAG",
    "TRACKING_UID_TAG",
    "ReportLogic",
    "addSphereSegment",
    "measurementTableFromTableNode",
    "segmentationFromSegmentationNode",
    "segmentationNodeFromSegmentation",
    "seriesUidOfVolumeNode",
    "tableNodeFromMeasurementTable",
    "tagValue",
    "updateSegmentDescriptions",
    "volumeFromVolumeNode",
    "volumeNodeFromVolume",
]
