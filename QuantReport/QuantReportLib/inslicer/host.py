"""The 3D Slicer application as QuantReport sees it: its package installer, and a report logic on its scene.

:class:`SlicerPackageHost` is :class:`~QuantReportLib.dependencies.PackageHost`
on ``slicer.app``, ``slicer.packaging`` and ``slicer.util``;
:class:`SlicerReportLogic` is :class:`~.logic.ReportLogic` on
``slicer.mrmlScene``, Slicer's terminologies and ``slicer.dicomDatabase``
(the module's ``QuantReportLogic`` and the DICOM plugins both use it).
"""

from __future__ import annotations

import os
from typing import Any

import slicer

from ..database import DicomDatabase
from ..dependencies import REQUIREMENTS_PATH, ensureRequirements
from ..errors import NotFoundError
from .database import SlicerDicomDatabase
from .logic import ReportLogic


class SlicerPackageHost:
    """``QuantReportLib.dependencies.PackageHost`` on 3D Slicer: where and how packages are installed."""

    def applicationVersion(self) -> str:
        return slicer.app.applicationVersion

    def hasPipEnsure(self) -> bool:
        try:
            import slicer.packaging
        except ImportError:  # Slicer before 5.12
            return False
        return hasattr(slicer.packaging, "pip_ensure")

    def pipEnsure(self, requirementsPath: str, requester: str) -> None:
        import slicer.packaging

        slicer.packaging.pip_ensure(slicer.packaging.load_requirements(requirementsPath), requester=requester)

    def testingEnabled(self) -> bool:
        return slicer.app.testingEnabled()

    def confirm(self, text: str, title: str) -> bool:
        return slicer.util.confirmOkCancelDisplay(text, windowTitle=title)

    def pipInstall(self, requirements: list) -> None:
        slicer.util.pip_install(requirements)


def ensureDependencies(requester: str = "QuantReport", requirementsPath: str | os.PathLike = REQUIREMENTS_PATH) -> None:
    """Install missing Python packages after asking the user; raises ``MissingDependencyError`` otherwise.

    ``requirementsPath``: ``Resources/requirements.txt`` (what every use needs),
    ``Resources/pacs-requirements.txt`` (what pushing to a server needs) or
    ``Resources/readout-requirements.txt`` (what the Report button needs).
    """
    ensureRequirements(SlicerPackageHost(), requester, requirementsPath)


class SlicerReportLogic(ReportLogic):
    """:class:`~.logic.ReportLogic` on Slicer's scene, terminologies and DICOM database.

    Parameters
    ----------
    database:
        A ``ctkDICOMDatabase`` (such as a temporary one of a self-test);
        ``slicer.dicomDatabase`` when omitted, looked up at each use (the user
        may open another one).  Either is used through :class:`~.database.SlicerDicomDatabase`.
    """

    def __init__(self, database: Any = None) -> None:
        super().__init__(slicer.mrmlScene, None if database is None else SlicerDicomDatabase(database),
                         slicer.modules.terminologies.logic())

    @property
    def database(self) -> DicomDatabase:
        if self._database is not None:
            return self._database
        if slicer.dicomDatabase is None or not slicer.dicomDatabase.isOpen:
            raise NotFoundError("no DICOM database is open: open one in the DICOM module", "DICOM database")
        return SlicerDicomDatabase(slicer.dicomDatabase)
