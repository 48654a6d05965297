"""QuantReport: segment lesions, measure them and store the results as DICOM SEG + TID 1500 SR.

Thin glue between 3D Slicer and the core in ``QuantReportLib`` (which imports
no slicer, qt or vtk outside ``QuantReportLib.inslicer``, where nodes are converted): the module
description, the parameter node, the panel, the logic (the Python-console
API) and the self-test.  The DICOM browser plugins are registered by the
hidden ``QuantReportDICOMPlugins`` module.
"""

import os

import qt
import slicer
import vtk
from QuantReportLib.dependencies import PACS_REQUIREMENTS_PATH, READOUT_REQUIREMENTS_PATH
from QuantReportLib.errors import QuantReportError
from QuantReportLib.inslicer.host import SlicerReportLogic, ensureDependencies
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

SEGMENT_EDITOR_NODE_TAG = "QuantReport"
"""Singleton tag of the embedded editor's vtkMRMLSegmentEditorNode (the Segment Editor module uses "SegmentEditor")."""
MEASUREMENT_DELAY_MS = 500
SETTINGS_READER = "QuantReport/ReaderName"
SETTINGS_TIME_POINT = "QuantReport/TimePoint"
SETTINGS_PACS_URL = "QuantReport/PACS/URL"
SETTINGS_PACS_USER = "QuantReport/PACS/User"
SETTINGS_PUSH_ON_SAVE = "QuantReport/PACS/PushOnSave"


class QuantReport(ScriptedLoadableModule):
    """Module description."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("QuantReport")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["DICOM", "Segmentations", "SubjectHierarchy", "Terminologies"]
        self.parent.contributors = ["QuantReport contributors"]
        self.parent.helpText = _("""
Segment lesions on a DICOM image series, measure them (coded quantities) and store the results as standard
DICOM Segmentation (SEG) and TID 1500 measurement report (SR) in the DICOM database, then load them back exactly.
See <a href="https://github.com/QuantReport/QuantReport">the documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on highdicom and pydicom, following the design of QIICR's QuantitativeReporting extension and dcmqi.
""")


@parameterNodeWrapper
class QuantReportParameterNode:
    """What the panel works on.

    inputVolume - the image series being reported.
    segmentation - the segments of the report.
    tableNode - the live measurement table.
    readerName - the person observer written to the SR (remembered between sessions).
    timePoint - the clinical trial time point of the report (remembered between sessions).
    autoUpdate - recompute measurements shortly after every segment change.
    storeKeyImages - the readout also stores its key images in the DICOM database (Secondary Capture + Key Object).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    tableNode: vtkMRMLTableNode
    readerName: str = ""
    timePoint: str = ""
    autoUpdate: bool = True
    storeKeyImages: bool = False


class QuantReportWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: series, segment editor, live measurements, report buttons."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._segmentEditorNode = None
        self._observedSegmentation = None
        self._dependenciesChecked = False
        self._pacsPassword = ""  # when no keyring keeps it: for this session only

    # -- lifecycle -----------------------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/QuantReport.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = QuantReportLogic()

        # The editor node is set before the scene so that the selections made when the scene is set are kept
        # in our node, not in the Segment Editor module's (as SegmentEditorWidget.setup does).
        self.ui.segmentEditorWidget.setMaximumNumberOfUndoStates(10)
        self._selectSegmentEditorNode()
        self.ui.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self._effectFactory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self._effectFactory.connect("effectRegistered(QString)", self._onEffectRegistered)

        self._measureTimer = qt.QTimer()
        self._measureTimer.setSingleShot(True)
        self._measureTimer.setInterval(MEASUREMENT_DELAY_MS)
        self._measureTimer.connect("timeout()", self.updateMeasurements)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.refreshSeriesButton.connect("clicked(bool)", self.onRefreshSeries)
        self.ui.loadSeriesButton.connect("clicked(bool)", self.onLoadSeries)
        self.ui.newReportButton.connect("clicked(bool)", self.onNewReport)
        self.ui.computeButton.connect("clicked(bool)", self.updateMeasurements)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)
        self.ui.completeReportButton.connect("clicked(bool)", self.onCompleteReport)
        self.ui.amendReportButton.connect("clicked(bool)", self.onAmendReport)
        self.ui.exportCsvButton.connect("clicked(bool)", self.onExportCsv)
        self.ui.readoutButton.connect("clicked(bool)", self.onReadout)
        self.ui.readerLineEdit.connect("editingFinished()", self._rememberMetadata)
        self.ui.timePointLineEdit.connect("editingFinished()", self._rememberMetadata)
        self.ui.pacsUrlLineEdit.connect("editingFinished()", self._rememberPacsServer)
        self.ui.pacsUserLineEdit.connect("editingFinished()", self._rememberPacsServer)
        self.ui.pacsPasswordLineEdit.connect("editingFinished()", self._rememberPacsPassword)
        self.ui.pushOnSaveCheckBox.connect("toggled(bool)", self._rememberPacsServer)
        self.ui.pushReportButton.connect("clicked(bool)", self.onPushReport)
        self._restorePacsServer()

        self.initializeParameterNode()
        self.onRefreshSeries()

    def cleanup(self) -> None:
        self._measureTimer.stop()
        self._effectFactory.disconnect("effectRegistered(QString)", self._onEffectRegistered)
        self.removeObservers()

    def enter(self) -> None:
        # As the Segment Editor module: shortcuts and view observations only while this panel is shown.
        self.ui.segmentEditorWidget.installKeyboardShortcuts()
        self._selectSegmentEditorNode()
        self.ui.segmentEditorWidget.updateWidgetFromMRML()
        self.initializeParameterNode()

    def exit(self) -> None:
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._measureTimer.stop()
        self._observeSegmentation(None)
        self.ui.segmentEditorWidget.setSegmentationNode(None)
        self.ui.segmentEditorWidget.removeViewObservations()
        self._segmentEditorNode = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self._selectSegmentEditorNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()
            self.initializeParameterNode()

    def _onEffectRegistered(self, effectName: str) -> None:
        """Effects registered after this panel was built (by extensions loaded later) must show up too."""
        self.ui.segmentEditorWidget.updateEffectList()

    def _selectSegmentEditorNode(self) -> None:
        """Our own editor node (singleton tag "QuantReport"), so that the Segment Editor module's state is untouched."""
        node = slicer.mrmlScene.GetSingletonNode(SEGMENT_EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(SEGMENT_EDITOR_NODE_TAG)
            node = slicer.mrmlScene.AddNode(node)
        if node != self._segmentEditorNode:
            self._segmentEditorNode = node
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(node)

    # -- parameter node ------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.readerName:
            self._parameterNode.readerName = slicer.util.settingsValue(SETTINGS_READER, "")
        if not self._parameterNode.timePoint:
            self._parameterNode.timePoint = slicer.util.settingsValue(SETTINGS_TIME_POINT, "")

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Drive the embedded editor and the table view from the parameter node; refresh button states."""
        parameters = self._parameterNode
        editor = self.ui.segmentEditorWidget
        if editor.segmentationNode() != parameters.segmentation:
            editor.setSegmentationNode(parameters.segmentation)
        if editor.sourceVolumeNode() != parameters.inputVolume:
            editor.setSourceVolumeNode(parameters.inputVolume)
        if self._observedSegmentation != parameters.segmentation:
            self._observeSegmentation(parameters.segmentation)
            self._scheduleMeasurements()
        self.ui.measurementsTableView.setMRMLTableNode(parameters.tableNode)
        self._updateReportState()

    def _rememberMetadata(self) -> None:
        settings = qt.QSettings()
        settings.setValue(SETTINGS_READER, self._parameterNode.readerName)
        settings.setValue(SETTINGS_TIME_POINT, self._parameterNode.timePoint)

    # -- PACS server: URL and user in Slicer's settings, the password in the system keyring -----------

    def _restorePacsServer(self) -> None:
        from QuantReportLib.pacs.urls import storedPassword

        self.ui.pacsUrlLineEdit.text = slicer.util.settingsValue(SETTINGS_PACS_URL, "")
        self.ui.pacsUserLineEdit.text = slicer.util.settingsValue(SETTINGS_PACS_USER, "")
        self.ui.pushOnSaveCheckBox.checked = slicer.util.settingsValue(SETTINGS_PUSH_ON_SAVE, False,
                                                                       converter=slicer.util.toBool)
        url, user = self.ui.pacsUrlLineEdit.text.strip(), self.ui.pacsUserLineEdit.text.strip()
        self.ui.pacsPasswordLineEdit.text = (storedPassword(url, user) or "") if url and user else ""

    def _rememberPacsServer(self) -> None:
        settings = qt.QSettings()
        settings.setValue(SETTINGS_PACS_URL, self.ui.pacsUrlLineEdit.text.strip())
        settings.setValue(SETTINGS_PACS_USER, self.ui.pacsUserLineEdit.text.strip())
        settings.setValue(SETTINGS_PUSH_ON_SAVE, self.ui.pushOnSaveCheckBox.checked)

    def _rememberPacsPassword(self) -> None:
        from QuantReportLib.pacs.urls import storePassword

        url, user = self.ui.pacsUrlLineEdit.text.strip(), self.ui.pacsUserLineEdit.text.strip()
        password = self.ui.pacsPasswordLineEdit.text
        if not (url and user and storePassword(url, user, password)):
            self._pacsPassword = password  # never written to Slicer's settings (a plain-text file)

    # -- segment changes: provenance and live measurements ------------------------------------------

    def _observeSegmentation(self, segmentationNode) -> None:
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentAdded,
                  slicer.vtkSegmentation.SegmentRemoved, slicer.vtkSegmentation.SegmentModified)
        if self._observedSegmentation is not None:
            old = self._observedSegmentation.GetSegmentation()
            self.removeObserver(old, events[0], self._onSourceRepresentationModified)
            self.removeObserver(old, events[1], self._onSegmentAdded)
            for event in events[2:]:
                self.removeObserver(old, event, self._onSegmentsChanged)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            segmentation = segmentationNode.GetSegmentation()
            self.addObserver(segmentation, events[0], self._onSourceRepresentationModified)
            self.addObserver(segmentation, events[1], self._onSegmentAdded)
            for event in events[2:]:
                self.addObserver(segmentation, event, self._onSegmentsChanged)

    def _onSourceRepresentationModified(self, caller, event) -> None:
        """Voxels changed: effects modify the selected segment, so record the active effect on it."""
        self._recordActiveEffect(self._segmentEditorNode.GetSelectedSegmentID() if self._segmentEditorNode else "")
        self._scheduleMeasurements()

    @vtk.calldata_type(vtk.VTK_STRING)
    def _onSegmentAdded(self, caller, event, segmentId) -> None:
        """Effects such as Islands create segments: they carry the effect that made them."""
        self._recordActiveEffect(segmentId)
        self._scheduleMeasurements()

    def _onSegmentsChanged(self, caller, event) -> None:
        self._scheduleMeasurements()

    def _recordActiveEffect(self, segmentId: str) -> None:
        effect = self.ui.segmentEditorWidget.activeEffect()
        if effect is not None and segmentId and self._observedSegmentation is not None:
            self.logic.recordEffect(self._observedSegmentation, segmentId, effect.name)

    def _scheduleMeasurements(self) -> None:
        """Mark the table stale at once and recompute when the user pauses (a stroke fires many events)."""
        self.ui.measurementsTableView.enabled = False
        self.ui.measurementsStatusLabel.text = _("Out of date: segments changed since the last measurement.")
        if self._parameterNode and self._parameterNode.autoUpdate:
            self._measureTimer.start()

    def updateMeasurements(self) -> None:
        """Recompute the table; errors go to the panel, not to a dialog, because this runs while the user edits."""
        parameters = self._parameterNode
        if not parameters or not parameters.segmentation or not parameters.inputVolume:
            self.ui.measurementsStatusLabel.text = _("Select an image series and a segmentation to measure.")
            return
        if not self._ensureDependencies():
            return
        try:
            parameters.tableNode = self.logic.computeMeasurements(parameters.segmentation, parameters.inputVolume,
                                                                  parameters.tableNode)
        except QuantReportError as error:
            self.ui.measurementsStatusLabel.text = _("Measurements not updated: {error}").format(error=error)
            return
        self.ui.measurementsTableView.setMRMLTableNode(parameters.tableNode)
        self.ui.measurementsTableView.enabled = True
        self.ui.measurementsStatusLabel.text = _("Up to date.")

    # -- buttons -------------------------------------------------------------------------------------

    def onRefreshSeries(self) -> None:
        self.ui.seriesComboBox.clear()
        # Refreshed on every visit to the panel, so no dialog: the reason (no database open, an unreadable
        # one) goes to the status line. tryWithErrorDisplay(show=False) would re-raise it out of the Qt slot.
        try:
            seriesList = self.logic.listImageSeries()
        except QuantReportError as error:
            self.ui.statusLabel.text = _("No series listed: {error}").format(error=error)
            return
        for series in seriesList:
            label = f"{series.patient_id} {series.modality} {series.series_description} ({series.instances})"
            self.ui.seriesComboBox.addItem(label, series.series_instance_uid)

    def onLoadSeries(self) -> None:
        seriesUid = self.ui.seriesComboBox.itemData(self.ui.seriesComboBox.currentIndex)
        if not seriesUid or not self._ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to load the image series."), waitCursor=True):
            self._parameterNode.inputVolume = self.logic.loadSeries(seriesUid)
            slicer.util.setSliceViewerLayers(background=self._parameterNode.inputVolume, fit=True)

    def onNewReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to create a report."), waitCursor=True):
            segmentationNode, tableNode = self.logic.createReport(self._parameterNode.inputVolume)
            self._parameterNode.tableNode = tableNode
            self._parameterNode.segmentation = segmentationNode

    def onSaveReport(self) -> None:
        self._saveReport(complete=False)

    def onCompleteReport(self) -> None:
        self._saveReport(complete=True)

    def _saveReport(self, complete: bool) -> None:
        parameters = self._parameterNode
        if not self._ensureDependencies():
            return
        self._rememberMetadata()
        self.ui.statusLabel.text = _("Saving the report...")
        slicer.app.processEvents()
        saved = False
        with slicer.util.tryWithErrorDisplay(_("Failed to save the report."), waitCursor=True):
            segUid, srUid = self.logic.saveReport(parameters.inputVolume, parameters.segmentation,
                                                  readerName=parameters.readerName or None,
                                                  timePoint=parameters.timePoint or None, complete=complete)
            self.ui.statusLabel.text = _("Saved: SEG {seg}, SR {sr}").format(seg=segUid, sr=srUid)
            saved = True
        self._updateReportState()
        if saved and self.ui.pushOnSaveCheckBox.checked and self.ui.pacsUrlLineEdit.text.strip():
            self.onPushReport()

    def onPushReport(self) -> None:
        """Store the report's saved SEG and SR on the configured server; the outcome goes to the status line."""
        parameters = self._parameterNode
        url = self.ui.pacsUrlLineEdit.text.strip()
        if not url or not parameters or not parameters.segmentation:
            self.ui.statusLabel.text = _("Set a server under PACS server, and save the report first.")
            return
        try:
            ensureDependencies("QuantReport PACS", PACS_REQUIREMENTS_PATH)
        except QuantReportError as error:
            self.ui.statusLabel.text = _("Python packages missing: {error}").format(error=error)
            return
        user = self.ui.pacsUserLineEdit.text.strip()
        password = self.ui.pacsPasswordLineEdit.text or self._pacsPassword
        self.ui.statusLabel.text = _("Pushing the report to {server}...").format(server=url)
        slicer.app.processEvents()
        with slicer.util.tryWithErrorDisplay(_("Failed to push the report."), waitCursor=True):
            result = self.logic.pushReport(parameters.segmentation, url, user=user or None,
                                           password=password if user else None)
            text = _("Pushed to {server}: {stored} stored, {present} already there, {failed} failed.").format(
                server=url, stored=result.stored, present=result.already_present, failed=len(result.failed))
            for failure in result.failed:
                text += "\n" + _("{file}: {reason}").format(file=os.path.basename(failure.path), reason=failure.reason)
            self.ui.statusLabel.text = text

    def onAmendReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to amend the report.")):
            self.logic.amendReport(self._parameterNode.segmentation)
        self._updateReportState()

    def onExportCsv(self) -> None:
        parameters = self._parameterNode
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export measurements"),
                                              self.logic.defaultCsvPath(parameters.segmentation),
                                              _("Comma-separated values (*.csv)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to export the measurements."), waitCursor=True):
            self.logic.exportCsv(parameters.segmentation, parameters.inputVolume, path)
            self.ui.statusLabel.text = _("Measurements exported to {path}").format(path=path)

    def onReadout(self) -> None:
        parameters = self._parameterNode
        if not self._ensureDependencies() or not self._ensureReadoutDependencies():
            return
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the report as"),
                                              self.logic.defaultReadoutPath(parameters.segmentation),
                                              _("Web page (*.html);;PDF document (*.pdf)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to write the report."), waitCursor=True):
            written = self.logic.writeReadout(parameters.segmentation, path, storeKeyImages=parameters.storeKeyImages)
            self.ui.statusLabel.text = _("Report written to {path}").format(path=written[0])
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(written[0]))

    def _ensureReadoutDependencies(self) -> bool:
        """The readout's own packages (Jinja2, matplotlib), installed on its first use with the user's consent."""
        try:
            ensureDependencies("QuantReport report", READOUT_REQUIREMENTS_PATH)
        except QuantReportError as error:
            self.ui.statusLabel.text = _("Python packages missing: {error}").format(error=error)
            return False
        return True

    def _ensureDependencies(self) -> bool:
        """Install missing Python packages on first use (with the user's consent); False when unavailable."""
        if self._dependenciesChecked:
            return True
        try:
            ensureDependencies("QuantReport")
        except QuantReportError as error:
            self.ui.statusLabel.text = _("Python packages missing: {error}").format(error=error)
            return False
        self._dependenciesChecked = True
        return True

    def _updateReportState(self) -> None:
        """Enable what the report's state allows and show the state; a completed report is read-only."""
        parameters = self._parameterNode
        ready = bool(parameters and parameters.inputVolume and parameters.segmentation)
        state = self.logic.reportStatus(parameters.segmentation) if ready else "draft"
        completed = state == "completed"
        self.ui.newReportButton.enabled = bool(parameters and parameters.inputVolume)
        self.ui.saveReportButton.enabled = ready and not completed
        self.ui.completeReportButton.enabled = ready and not completed
        self.ui.amendReportButton.enabled = ready and completed
        self.ui.exportCsvButton.enabled = bool(ready and parameters.tableNode)
        self.ui.pushReportButton.enabled = ready and state in ("saved", "completed")
        self.ui.readoutButton.enabled = ready and state in ("saved", "completed")
        self.ui.segmentEditorWidget.setReadOnly(completed)
        self.ui.reportStatusLabel.text = {
            "draft": _("Draft (not saved)"),
            "saved": _("Saved, not completed"),
            "completed": _("Completed (read-only): amend to change it"),
            "amending": _("Amending a completed report"),
        }[state]


class QuantReportLogic(ScriptedLoadableModuleLogic, SlicerReportLogic):
    """The Python-console API of QuantReport: ``QuantReportLib.inslicer.logic.ReportLogic`` on Slicer's scene.

    Example::

        logic = slicer.util.getModuleLogic("QuantReport")  # or QuantReportLogic()
        volume = logic.loadSeries(seriesInstanceUid)
        segmentation, table = logic.createReport(volume)
        # ... segment in the Segment Editor ...
        table = logic.computeMeasurements(segmentation, volume)
        segUid, srUid = logic.saveReport(volume, segmentation, readerName="Doe^Jane")
        segmentation, table = logic.loadReport(srUid)

    Every method raises ``QuantReportLib.errors.QuantReportError`` subclasses
    and never shows a dialog; see ``ReportLogic`` for each method.

    Parameters
    ----------
    database:
        A ``ctkDICOMDatabase`` (used through ``QuantReportLib.inslicer.database.SlicerDicomDatabase``);
        ``slicer.dicomDatabase`` when omitted.
    """

    def __init__(self, database=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SlicerReportLogic.__init__(self, database)

    def getParameterNode(self):
        return QuantReportParameterNode(super().getParameterNode())

    def defaultCsvPath(self, segmentationNode) -> str:
        return self._defaultPath(segmentationNode, "measurements", "csv")

    def defaultReadoutPath(self, segmentationNode) -> str:
        return self._defaultPath(segmentationNode, "report", "html")

    def _defaultPath(self, segmentationNode, fallback: str, extension: str) -> str:
        name = segmentationNode.GetName() if segmentationNode is not None else fallback
        fileName = slicer.app.ioManager().forceFileNameValidCharacters(name)
        return os.path.join(slicer.app.defaultScenePath, f"{fileName}.{extension}")


class SlicerSegmentEditorDriver:
    """``QuantReportLib.inslicer.scenarios.SegmentEditorDriver`` on a Segment Editor widget: the real effects,
    scripted."""

    def __init__(self) -> None:
        self.widget = slicer.qMRMLSegmentEditorWidget()
        self.widget.setMRMLScene(slicer.mrmlScene)
        self.editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "QuantReportTestEditor")
        self.widget.setMRMLSegmentEditorNode(self.editorNode)

    def _activate(self, segmentationNode, volumeNode, segmentId: str) -> None:
        self.widget.setSegmentationNode(segmentationNode)
        self.widget.setSourceVolumeNode(volumeNode)
        self.widget.setCurrentSegmentID(segmentId)

    def _apply(self, effectName: str, parameters: dict) -> None:
        self.widget.setActiveEffectByName(effectName)
        effect = self.widget.activeEffect()
        for name, value in parameters.items():
            effect.setParameter(name, str(value))
        effect.self().onApply()
        self.widget.setActiveEffect(None)

    def thresholdInsideSegment(self, segmentationNode, volumeNode, segmentId, maskSegmentId, lower, upper) -> None:
        self._activate(segmentationNode, volumeNode, segmentId)
        self.editorNode.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
        self.editorNode.SetMaskSegmentID(maskSegmentId)
        try:
            self._apply("Threshold", {"MinimumThreshold": lower, "MaximumThreshold": upper})
        finally:
            self.editorNode.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)

    def keepLargestIsland(self, segmentationNode, volumeNode, segmentId) -> None:
        self._activate(segmentationNode, volumeNode, segmentId)
        self._apply("Islands", {"Operation": "KEEP_LARGEST_ISLAND", "MinimumSize": 0})


class QuantReportTest(ScriptedLoadableModuleTest):
    """Runs the workflow scenario shared with the pytest suite (``QuantReportLib.inslicer.scenarios``) inside Slicer,
    on a temporary DICOM database."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_FullScenario()

    def test_FullScenario(self):
        from DICOMLib import DICOMUtils
        from QuantReportLib.inslicer import scenarios

        ensureDependencies("QuantReport self-test")  # a missing package is named, not an ImportError
        self.delayDisplay("Starting the QuantReport scenario")
        with DICOMUtils.TemporaryDICOMDatabase() as database:
            context = scenarios.ScenarioContext(
                logic=QuantReportLogic(database),
                importFolder=lambda folder: DICOMUtils.importDicom(str(folder), database),
                segmentEditor=SlicerSegmentEditorDriver(),
                clearScene=lambda: slicer.mrmlScene.Clear(0),
                log=self.delayDisplay,
            )
            scenarios.runFullScenario(context)
        self.delayDisplay("Test passed")
