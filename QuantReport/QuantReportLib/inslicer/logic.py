"""The report workflow on an MRML scene: what ``QuantReportLogic`` does in Slicer, testable headless.

:class:`ReportLogic` takes the scene, the DICOM database (the
:class:`~QuantReportLib.database.DicomDatabase` protocol: ``slicer.dicomDatabase``
in Slicer, :class:`~QuantReportLib.database.EmbeddedDicomDatabase` headless)
and Slicer's terminologies logic as arguments, converts nodes with
:mod:`.nodes` and calls :mod:`QuantReportLib.report` for the DICOM work.  It
raises :class:`~QuantReportLib.errors.QuantReportError` subclasses and never
shows a dialog: the panel decides how to show errors.

Report state lives on the segmentation node (attributes), so it follows the
report and is saved with the scene: ``draft`` -> ``saved`` -> ``completed``
(verified, locked) -> ``amending`` -> ``saved``/``completed`` again, the
amended SR naming the SR it replaces as predecessor.

:mod:`QuantReportLib.report` and :mod:`QuantReportLib.measurements` (which
need highdicom and pynrrd) are imported by the methods that use them, so that
the Slicer module and its DICOM plugins import, and can ask to install those
packages, on a Slicer that lacks them (Slicer 5.10 bundles no highdicom).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import provenance
from ..database import DicomDatabase
from ..errors import GeometryError, InvalidInputError, NotFoundError
from ..model import Volume
from . import nodes, tables

SEG_UID_ATTRIBUTE = "QuantReport.SEGInstanceUID"
SR_UID_ATTRIBUTE = "QuantReport.SRInstanceUID"
STATUS_ATTRIBUTE = "QuantReport.ReportStatus"
REPORT_STATES = ("draft", "saved", "completed", "amending")
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO", "REG", "DOC"})


class ReportLogic:
    """Create, measure, save, complete, amend and load reports of segmentation nodes.

    Parameters
    ----------
    scene:
        The ``vtkMRMLScene``.
    database:
        The DICOM database the series come from and the reports go to.
    terminologiesLogic:
        ``vtkSlicerTerminologiesModuleLogic`` (optional): colors loaded segments by terminology.
    """

    def __init__(self, scene: Any, database: DicomDatabase | None = None, terminologiesLogic: Any = None) -> None:
        self.scene = scene
        self._database = database
        self.terminologiesLogic = terminologiesLogic
        self._volumes: dict[str, Volume] = {}  # Series Instance UID -> Volume, loaded once

    @property
    def database(self) -> DicomDatabase:
        if self._database is None:
            raise NotFoundError("no DICOM database is open", "DICOM database")
        return self._database

    # -- series ---------------------------------------------------------------------------------------

    def listImageSeries(self) -> list:
        """Summaries of the image series in the database (SEG, SR and other non-image series left out)."""
        return [series for series in self.database.listSeries() if series.modality not in NON_IMAGE_MODALITIES]

    def loadSeries(self, seriesInstanceUid: str) -> Any:
        """A series of the database as a scalar volume node (reusing one already in the scene)."""
        return self._volumeNodeFor(self._volume(seriesInstanceUid))

    def sourceSeriesUid(self, node: Any) -> str | None:
        """Series Instance UID of a volume node, or of a segmentation node's reference volume; None if not DICOM."""
        if node is not None and node.IsA("vtkMRMLSegmentationNode"):
            node = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
        if node is None:
            return None
        return nodes.seriesUidOfVolumeNode(node, self.scene.GetSubjectHierarchyNode())

    # -- reports --------------------------------------------------------------------------------------

    def createReport(self, volumeNode: Any) -> tuple[Any, Any]:
        """A new, empty report on ``volumeNode``: ``(segmentationNode, tableNode)``."""
        if volumeNode is None:
            raise InvalidInputError("select the image series to report on first", "createReport")
        segmentationNode = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                        f"{volumeNode.GetName()} segmentation")
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentationNode.SetAttribute(STATUS_ATTRIBUTE, "draft")
        tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{volumeNode.GetName()} measurements")
        return segmentationNode, tableNode

    def computeMeasurements(self, segmentationNode: Any, volumeNode: Any, tableNode: Any = None) -> Any:
        """Measure every segment on the volume's DICOM series; returns the (new or given) table node."""
        from .. import measurements

        volume, segmentation = self.reportInputs(volumeNode, segmentationNode)
        table = measurements.computeMeasurements(volume, segmentation)
        return tables.tableNodeFromMeasurementTable(self.scene, table, tableNode)

    def saveReport(self, volumeNode: Any, segmentationNode: Any, readerName: str | None = None,
                   timePoint: str | None = None, complete: bool = False, seriesDescription: str | None = None,
                   outputFolder: str | None = None) -> tuple[str, str]:
        """Write DICOM SEG + TID 1500 SR and return their SOP Instance UIDs ``(segUid, srUid)``.

        ``volumeNode`` defaults to the segmentation's reference volume.  Files go
        into the database (and are indexed) unless ``outputFolder`` is given.
        ``complete`` marks the SR COMPLETE and VERIFIED (by ``readerName``) and
        locks the report; otherwise the SR is a PARTIAL (draft) document.  A
        report saved again after :meth:`amendReport` names the SR it replaces
        as predecessor and keeps segment numbers and tracking UIDs.
        """
        from .. import report

        if volumeNode is None and segmentationNode is not None:
            volumeNode = segmentationNode.GetNodeReference(
                segmentationNode.GetReferenceImageGeometryReferenceRole())
        volume, segmentation = self.reportInputs(volumeNode, segmentationNode)
        if self.reportStatus(segmentationNode) == "completed":
            raise InvalidInputError("the report is completed: amend it before saving changes",
                                    segmentationNode.GetName())
        options = report.ReportOptions(
            observer_name=readerName or None,
            time_point=timePoint or None,
            complete=complete,
            verified=complete,
            predecessor=segmentationNode.GetAttribute(SR_UID_ATTRIBUTE) or None,
            **({"seg_series_description": seriesDescription} if seriesDescription else {}),
        )
        # Tracking is assigned here, so that the node keeps it for every segment, empty ones included
        # (saveReport leaves those out of the files, and renumbers the rest).
        segmentation = report.assignTracking(segmentation)
        saved = report.saveReport(volume, segmentation, out_dir=outputFolder,
                                  database=None if outputFolder else self.database, options=options)
        nodes.updateSegmentDescriptions(segmentationNode, segmentation)
        for warning in saved.warnings:
            logging.warning(f"QuantReport: {warning}")
        segmentationNode.SetAttribute(SEG_UID_ATTRIBUTE, saved.seg_sop_instance_uid)
        segmentationNode.SetAttribute(SR_UID_ATTRIBUTE, saved.sr_sop_instance_uid)
        segmentationNode.SetAttribute(STATUS_ATTRIBUTE, "completed" if complete else "saved")
        return saved.seg_sop_instance_uid, saved.sr_sop_instance_uid

    def amendReport(self, segmentationNode: Any) -> None:
        """Allow changes to a completed report; the next save writes a new SR that supersedes it."""
        if self.reportStatus(segmentationNode) != "completed":
            raise InvalidInputError("only a completed report can be amended", segmentationNode.GetName())
        segmentationNode.SetAttribute(STATUS_ATTRIBUTE, "amending")

    def reportStatus(self, segmentationNode: Any) -> str:
        """One of ``draft``, ``saved``, ``completed``, ``amending``."""
        status = segmentationNode.GetAttribute(STATUS_ATTRIBUTE) if segmentationNode is not None else None
        return status if status in REPORT_STATES else "draft"

    def loadReport(self, source: str) -> tuple[Any, Any]:
        """Load a SEG or SR (SOP Instance UID in the database, or a file path): ``(segmentationNode, tableNode)``.

        The source series is loaded too (or reused when in the scene); an SR
        brings the segments of the SEG it references (the scene's node of that
        SEG when there is one, so that loading an SR and its SEG together
        makes one segmentation).  Either node may be None
        (a SEG has no table; an SR whose SEG is not found has no segments).
        A completed SR loads as a completed (locked) report.
        """
        from .. import report

        loaded = report.loadReport(source, self.database)
        volumeNode = self._volumeNodeFor(loaded.volume) if loaded.volume is not None else None
        segmentationNode = None
        if loaded.segmentation is not None:
            # The DICOM browser may load an SR and its SEG in one go (the SEG checked too, or offered as a
            # reference): the SEG's segments are loaded once.
            segmentationNode = self._segmentationNodeOfSeg(loaded.seg.sop_instance_uid)
            if segmentationNode is None:
                segmentationNode = nodes.segmentationNodeFromSegmentation(
                    self.scene, loaded.segmentation, volumeNode, self.terminologiesLogic,
                    name=str(loaded.seg.dataset.get("SeriesDescription", "")) or "Segmentation")
            segmentationNode.SetAttribute(SEG_UID_ATTRIBUTE, loaded.seg.sop_instance_uid)
            status = "saved"
            if loaded.kind == "SR":
                segmentationNode.SetAttribute(SR_UID_ATTRIBUTE, loaded.sop_instance_uid)
                if loaded.sr.completed:
                    status = "completed"
            segmentationNode.SetAttribute(STATUS_ATTRIBUTE, status)
        tableNode = None
        if loaded.table is not None:
            tableNode = tables.tableNodeFromMeasurementTable(self.scene, loaded.table)
        return segmentationNode, tableNode

    def pushReport(self, segmentationNode: Any, url: str, user: str | None = None, password: str | None = None,
                   token: str | None = None, aeTitle: str | None = None) -> Any:
        """Store the saved SEG and SR of a report on a server (DICOMweb or ``dimse://``); a ``PushResult``.

        What the server already has is not sent again, so pushing after every
        save sends only new files.

        Raises
        ------
        InvalidInputError
            The report has not been saved, or the URL is malformed.
        ServerError
            The server cannot be reached or refuses the credentials.
        """
        from ..pacs import connect
        from ..pacs.transfer import push
        from ..pacs.urls import Credentials

        uids = [segmentationNode.GetAttribute(name) if segmentationNode is not None else None
                for name in (SEG_UID_ATTRIBUTE, SR_UID_ATTRIBUTE)]
        paths = [self.database.fileForInstance(uid) for uid in uids if uid]
        if not paths or not all(paths):
            raise InvalidInputError("save the report before pushing it", "QuantReport")
        connection = connect(url, Credentials(user=user or None, password=password or None, token=token or None),
                             aeTitle=aeTitle)
        try:
            return push(connection, paths)
        finally:
            connection.close()

    def writeReadout(self, segmentationNode: Any, path: str, storeKeyImages: bool = False) -> list[str]:
        """Write the readout of the report saved from ``segmentationNode`` to ``path`` (``.html`` or ``.pdf``).

        The readout is made from the SR as stored in the database (save the
        report first), together with the patient's other SRs there that follow
        the same lesions (same Tracking UIDs), so that the change over time is
        shown.  With ``storeKeyImages`` the key images of this report are also
        stored in the database as DICOM Secondary Capture with a Key Object
        Selection (for archives and viewers that cannot show a SEG).  Returns
        the paths written: the page, then the DICOM files in the database.
        """
        import os
        import tempfile

        import pydicom

        from ..readout.gather import relatedReports
        from ..readout.write import FORMATS
        from ..readout.write import writeReadout as writeReadoutFiles

        srUid = segmentationNode.GetAttribute(SR_UID_ATTRIBUTE) if segmentationNode is not None else None
        if not srUid:
            raise InvalidInputError("save the report first: the readout shows the report as stored",
                                    segmentationNode.GetName() if segmentationNode is not None else "writeReadout")
        folder, name = os.path.split(os.path.abspath(path))
        stem, suffix = os.path.splitext(name)
        if suffix.lower().lstrip(".") not in FORMATS:
            raise InvalidInputError(f"the readout is written as {' or '.join('.' + f for f in FORMATS)}", path)
        sources = relatedReports(self.database, srUid)
        with tempfile.TemporaryDirectory(prefix="quantreport-key-images-") as scratch:
            files = writeReadoutFiles(sources, folder, database=self.database, fmt=suffix.lower().lstrip("."),
                                      name=stem, dicom=storeKeyImages, dicom_dir=scratch, dicom_for={srUid})
            written = [str(files.page)]
            for file in files.dicom:  # copied into the database's own storage; the scratch copies go
                self.database.insert(str(file), True, False)
                uid = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
                written.append(self.database.fileForInstance(str(uid)))
        return written

    def exportCsv(self, segmentationNode: Any, volumeNode: Any, path: str) -> None:
        """Write the measurements as CSV (the ``quantreport measure`` format), recomputed so they are current."""
        from .. import measurements

        volume, segmentation = self.reportInputs(volumeNode, segmentationNode)
        measurements.writeTable(measurements.computeMeasurements(volume, segmentation), path)

    def recordEffect(self, segmentationNode: Any, segmentId: str, effectName: str) -> None:
        """Record that a Segment Editor effect modified a segment; updates its DICOM algorithm type and name tags."""
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if segment is None:
            return
        names = (provenance.EFFECTS_TAG, provenance.PRIOR_TYPE_TAG, provenance.PRIOR_NAME_TAG,
                 provenance.ALGORITHM_TYPE_TAG, provenance.ALGORITHM_NAME_TAG)
        tags = {name: nodes.tagValue(segment, name) for name in names if segment.HasTag(name)}
        for name, value in provenance.updatedTags(tags, effectName).items():
            if tags.get(name) != value:
                segment.SetTag(name, value)

    def reportInputs(self, volumeNode: Any, segmentationNode: Any):
        """The DICOM series behind ``volumeNode`` (a ``model.Volume``) and the segments on its grid."""
        if volumeNode is None or segmentationNode is None:
            raise InvalidInputError("select an image series and a segmentation", "QuantReport")
        seriesUid = self.sourceSeriesUid(volumeNode)
        if seriesUid is None:
            raise InvalidInputError("the volume was not loaded from the DICOM database", volumeNode.GetName())
        volume = self._volume(seriesUid)
        if not nodes.volumeFromVolumeNode(volumeNode, copy=False)[1].matches(volume.geometry):
            raise GeometryError("the volume node's grid differs from its DICOM series (was it resampled?)",
                                volumeNode.GetName())
        return volume, nodes.segmentationFromSegmentationNode(segmentationNode, volumeNode)

    # -- helpers -----------------------------------------------------------------------------------------

    def _volume(self, seriesInstanceUid: str) -> Volume:
        from .. import report

        if seriesInstanceUid not in self._volumes:
            self._volumes[seriesInstanceUid] = report.loadSeriesFromDatabase(self.database, seriesInstanceUid)
        return self._volumes[seriesInstanceUid]

    def _segmentationNodeOfSeg(self, segSopInstanceUid: str) -> Any:
        """The scene's segmentation node of this SEG (loaded from it, or last saved as it), or None."""
        segmentationNodes = self.scene.GetNodesByClass("vtkMRMLSegmentationNode")
        for index in range(segmentationNodes.GetNumberOfItems()):
            node = segmentationNodes.GetItemAsObject(index)
            if node.GetAttribute(SEG_UID_ATTRIBUTE) == segSopInstanceUid:
                return node
        return None

    def _volumeNodeFor(self, volume: Volume) -> Any:
        """The scene's node of this series on the same grid, or a new one."""
        shNode = self.scene.GetSubjectHierarchyNode()
        volumeNodes = self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        for index in range(volumeNodes.GetNumberOfItems()):
            node = volumeNodes.GetItemAsObject(index)
            if nodes.seriesUidOfVolumeNode(node, shNode) == volume.series_instance_uid and \
                    nodes.volumeFromVolumeNode(node, copy=False)[1].matches(volume.geometry):
                return node
        self._volumes[volume.series_instance_uid] = volume
        return nodes.volumeNodeFromVolume(self.scene, volume)
