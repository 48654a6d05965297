"""QuantReport's plugins for Slicer's DICOM module: load DICOM SEG and TID 1500 SR, export SEG + SR.

Thin by design: which files are loadable, under what name and with which
confidence is decided by :mod:`QuantReportLib.examine` (pure, tested
headless); loading and exporting are handed to one
:class:`~.host.SlicerReportLogic` per plugin, which
converts through :mod:`QuantReportLib.report` and :mod:`.nodes`.
The classes are registered in ``slicer.modules.dicomPlugins`` by the hidden
hook module ``QuantReportDICOMPlugins`` under :data:`SEG_PLUGIN_KEY` and
:data:`SR_PLUGIN_KEY`, keys distinct from Slicer's own ``DICOMSegmentationPlugin``
and ``DICOMTID1500Plugin``.

This module needs Slicer (``DICOMLib``); heavy packages (pydicom, highdicom)
are imported only when a method runs, so registering the plugins at startup
costs nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin
from slicer.i18n import tr as _

from ..errors import QuantReportError

SEG_PLUGIN_KEY = "QuantReportSEGPlugin"
SR_PLUGIN_KEY = "QuantReportSRPlugin"
EXPORT_CONFIDENCE = 0.9
"""Below the 1.0 of Slicer's own SEG exporter, so that the export dialog's default does not change when
QuantReport is installed; users pick "QuantReport" in the dialog to write SEG + measurement SR."""


class _QuantReportPlugin(DICOMPlugin):
    """Examine and load one kind of object (``kind`` is ``"SEG"`` or ``"SR"``)."""

    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self._logic: Any = None

    def logic(self) -> Any:
        """The plugin's report logic on Slicer's scene and DICOM database, made on first use."""
        if self._logic is None:
            from .host import SlicerReportLogic

            self._logic = SlicerReportLogic()
        return self._logic

    def examineForImport(self, fileLists: list[list[str]]) -> list[DICOMLoadable]:
        """One loadable per SEG or TID 1500 SR file (``DICOMPlugin.examineForImport``), cached per file list.

        Overridden whole (not ``examineFiles``) because Slicer 5.10's base class
        has no ``examineFiles`` hook.
        """
        from ..examine import examineFiles

        loadables = []
        for files in fileLists:
            cached = self.getCachedLoadables(files)
            if cached is None:
                cached = [self._loadable(d) for d in examineFiles([files]) if d.kind == self.kind]
                self.cacheLoadables(files, cached)
            loadables += cached
        return loadables

    @staticmethod
    def _loadable(description: Any) -> DICOMLoadable:
        loadable = DICOMLoadable()
        loadable.files = [description.path]
        loadable.name = description.name
        loadable.tooltip = description.tooltip
        loadable.confidence = description.confidence
        loadable.selected = description.selected
        loadable.uid = description.sop_instance_uid
        # Read by the DICOM browser to offer loading the referenced series, and by addSeriesInSubjectHierarchy.
        loadable.referencedInstanceUIDs = list(description.referenced_instance_uids)
        if description.referenced_series_uids:
            loadable.referencedSeriesUID = description.referenced_series_uids[0]
        return loadable

    def load(self, loadable: DICOMLoadable) -> bool:
        """Load through ``ReportLogic.loadReport``; log the reason and return False on failure."""
        from .host import ensureDependencies

        try:
            ensureDependencies(self.loadType)
            segmentationNode, tableNode = self.logic().loadReport(loadable.files[0])
        except QuantReportError as error:
            logging.error(f"QuantReport could not load {loadable.name}: {error}")
            return False
        # The node that stands for this series in the subject hierarchy: the table of an SR, the segments of a SEG.
        seriesNode = tableNode if self.kind == "SR" else segmentationNode
        if seriesNode is not None:
            self.addSeriesInSubjectHierarchy(loadable, seriesNode)
        return True


class QuantReportSEGPlugin(_QuantReportPlugin):
    """DICOM SEG (PS3.3 A.51): load with highdicom; export a segmentation as SEG + TID 1500 SR."""

    kind = "SEG"

    def __init__(self) -> None:
        super().__init__()
        self.loadType = _("QuantReport segmentation")

    def examineForExport(self, subjectHierarchyItemID: int) -> list[Any]:
        """A segmentation whose reference volume is a DICOM series can be exported as SEG + SR."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        node = shNode.GetItemDataNode(subjectHierarchyItemID)
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            return []
        if self.logic().sourceSeriesUid(node) is None:
            return []
        exportable = slicer.qSlicerDICOMExportable()
        exportable.name = _("QuantReport SEG + measurements SR")
        exportable.tooltip = _("DICOM segmentation and TID 1500 measurement report, written with highdicom")
        exportable.subjectHierarchyItemID = subjectHierarchyItemID
        # The export dialog looks the plugin up by this key: core uses self.__module__, which here is
        # "QuantReportLib.inslicer.plugins", not a registry key.
        exportable.pluginClass = SEG_PLUGIN_KEY
        exportable.confidence = EXPORT_CONFIDENCE
        exportable.setTag("SeriesDescription", node.GetName())
        exportable.setTag("ContentCreatorName", "")
        return [exportable]

    def export(self, exportables: list[Any]) -> str:
        """Write SEG + SR for each exportable into its directory; return an error message or ``""``."""
        from .host import ensureDependencies

        try:
            ensureDependencies(self.loadType)
        except QuantReportError as error:
            return str(error)
        logic = self.logic()
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        for exportable in exportables:
            segmentationNode = shNode.GetItemDataNode(exportable.subjectHierarchyItemID)
            try:
                logic.saveReport(None, segmentationNode,
                                 readerName=exportable.tag("ContentCreatorName") or None,
                                 seriesDescription=exportable.tag("SeriesDescription") or None,
                                 outputFolder=exportable.directory)
            except QuantReportError as error:
                return str(error)
        return ""


class QuantReportSRPlugin(_QuantReportPlugin):
    """TID 1500 Imaging Measurement Report (PS3.16): the measurement table and the segments it refers to."""

    kind = "SR"

    def __init__(self) -> None:
        super().__init__()
        self.loadType = _("QuantReport measurement report")


def registerPlugins(registry: dict[str, type]) -> None:
    """Add the plugin classes to a DICOM plugin registry (``slicer.modules.dicomPlugins``)."""
    registry[SEG_PLUGIN_KEY] = QuantReportSEGPlugin
    registry[SR_PLUGIN_KEY] = QuantReportSRPlugin
