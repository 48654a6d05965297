"""The Python packages QuantReport needs inside 3D Slicer, checked and installed on demand.

``Resources/requirements.txt`` lists version *ranges* (Slicer's guide asks for
ranges, not pins) so that what Slicer already bundles is used as it is:
Slicer 5.12 bundles highdicom 0.27.0 and pydicom 3.0.2, which meet the ranges,
so nothing is installed there.

Oldest supported Slicer: 5.10.  The core needs Python >= 3.11 (Slicer 5.10
is the first with Python 3.12; 5.8 has 3.9), and the module uses
``slicer.i18n``, ``@parameterNodeWrapper`` with ``QLineEdit``/``Choice``
support, ``qMRMLSegmentEditorWidget.setSourceVolumeNode`` and
``DICOMUtils.TemporaryDICOMDatabase``, all present in 5.10.  Slicer 5.10
bundles pydicom 2.4 and no highdicom: there the first use installs pydicom 3
and highdicom and asks for a restart, because the DICOM module has already
imported pydicom 2.  ``slicer.packaging.pip_ensure`` appeared in 5.12; on
older versions :func:`ensureRequirements` asks and installs itself, as
SlicerTotalSegmentator does.  The application is reached through the small
:class:`PackageHost` interface, so this module imports no slicer.

Nothing here runs at import time, and checking never imports the packages
it checks (``importlib.metadata`` reads their installed metadata only).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Protocol

from .errors import QuantReportError

MINIMUM_SLICER_VERSION = (5, 10)
REQUIREMENTS_PATH = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
"""``QuantReport/Resources/requirements.txt`` beside this package, in the source tree and in the installed module."""
PACS_REQUIREMENTS_PATH = REQUIREMENTS_PATH.with_name("pacs-requirements.txt")
"""The clients the panel's push to a PACS needs, checked only when a report is pushed."""
READOUT_REQUIREMENTS_PATH = REQUIREMENTS_PATH.with_name("readout-requirements.txt")
"""What the readout (the Report button) needs besides: installed when it is first used, not before."""


class MissingDependencyError(QuantReportError):
    """Required Python packages are missing and could not be (or were not allowed to be) installed."""


#: Optional features: the extra of ``pyproject.toml`` that installs each module they import.
OPTIONAL_EXTRAS = {"nibabel": "nifti", "dask": "dask", "distributed": "dask", "pyarrow": "parquet"}


def optionalModule(name: str, feature: str) -> ModuleType:
    """Import an optional package, or say which extra installs it.

    The core imports its optional packages (:data:`OPTIONAL_EXTRAS`) inside the
    functions that need them, through this, so that ``quantreport --help`` and
    the Slicer module work without them.

    Raises
    ------
    MissingDependencyError
        When the package is not installed: the message names ``feature`` and
        the ``pip install 'quantreport[<extra>]'`` command.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        extra = OPTIONAL_EXTRAS.get(name.split(".")[0], name)
        raise MissingDependencyError(f"{feature} needs the Python package {name.split('.')[0]} ({error}); install it "
                                     f"with: pip install 'quantreport[{extra}]'", feature) from error


def installedVersion(distribution: str) -> str | None:
    """The installed version of a distribution, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def readRequirements(path: str | os.PathLike) -> list[str]:
    """The requirement lines of a requirements file (comments, blank lines and pip options skipped).

    The same lines ``slicer.packaging.load_requirements`` reads.
    """
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def missingRequirements(
    requirementsPath: str | os.PathLike = REQUIREMENTS_PATH,
    installed: Callable[[str], str | None] = installedVersion,
) -> list[str]:
    """The requirements of ``requirementsPath`` that the environment does not meet.

    A requirement is unmet when its distribution is not installed or its
    installed version is outside the range.  Requirements whose environment
    marker does not apply (``; sys_platform == "win32"``) are met.

    Parameters
    ----------
    requirementsPath:
        A requirements file of PEP 508 lines.
    installed:
        ``distribution name -> installed version or None``; tests pass a fake.

    Returns
    -------
    list of str
        The unmet requirement lines, as written in the file (ready for pip).

    Raises
    ------
    InvalidInputError
        When a line is not a valid PEP 508 requirement.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    from .errors import InvalidInputError

    missing = []
    for line in readRequirements(requirementsPath):
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise InvalidInputError(f"invalid requirement {line!r} ({error})", requirementsPath) from error
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = installed(requirement.name)
        try:
            satisfied = version is not None and requirement.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            satisfied = False
        if not satisfied:
            missing.append(line)
    return missing


def isSlicerVersionSupported(version: str) -> bool:
    """True for Slicer ``major.minor[.patch][-suffix]`` at or after :data:`MINIMUM_SLICER_VERSION`."""
    parts = version.split("-", 1)[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= MINIMUM_SLICER_VERSION


class PackageHost(Protocol):
    """What :func:`ensureRequirements` needs from the application (3D Slicer), injected so that tests pass a fake.

    ``QuantReport.py`` adapts ``slicer.app``, ``slicer.packaging`` and ``slicer.util``.
    """

    def applicationVersion(self) -> str: ...

    def hasPipEnsure(self) -> bool:
        """True where ``slicer.packaging.pip_ensure`` exists (Slicer 5.12 and later)."""

    def pipEnsure(self, requirementsPath: str, requester: str) -> None:
        """``pip_ensure(load_requirements(path), requester=...)``: RuntimeError when declined."""

    def testingEnabled(self) -> bool: ...

    def confirm(self, text: str, title: str) -> bool: ...

    def pipInstall(self, requirements: list[str]) -> None: ...


def ensureRequirements(
    host: PackageHost,
    requester: str = "QuantReport",
    requirementsPath: str | os.PathLike = REQUIREMENTS_PATH,
    installed: Callable[[str], str | None] = installedVersion,
) -> None:
    """Make sure the requirements are met, asking the user before installing anything.

    With ``pip_ensure`` (Slicer 5.12 and later: checks, confirms, installs,
    asks for a restart, skips installing in testing mode) the host does it
    all.  On older Slicer this confirms and installs itself, as
    SlicerTotalSegmentator does.  Call it where the packages are first needed
    (a button handler, a DICOM plugin's ``load``), never at import time.

    Raises
    ------
    MissingDependencyError
        When the user declines, installation fails (offline, or no compatible
        version for this Python), the application is in testing mode, or a
        restart is needed before the new versions can be used.
    """
    missing = missingRequirements(requirementsPath, installed)
    if not missing:
        return
    listed = ", ".join(missing)
    version = host.applicationVersion()
    if not isSlicerVersionSupported(version):
        raise MissingDependencyError(
            f"QuantReport needs 3D Slicer {'.'.join(map(str, MINIMUM_SLICER_VERSION))} or later (this is {version}); "
            f"missing Python packages: {listed}", requester)
    if host.hasPipEnsure():
        try:
            host.pipEnsure(os.fspath(requirementsPath), requester)
        except RuntimeError as error:  # pip_ensure's way of saying the user declined
            raise MissingDependencyError(f"installation declined ({error}); missing: {listed}", requester) from error
        except Exception as error:  # CalledProcessError from pip and friends
            raise MissingDependencyError(_installFailedMessage(listed, error), requester) from error
    else:
        if host.testingEnabled():
            raise MissingDependencyError(f"testing mode installs nothing; missing Python packages: {listed}",
                                         requester)
        if not host.confirm(f"{requester} needs these Python packages: {listed}.\n\nInstall them now? They are "
                            "downloaded from the Python Package Index; this may take a few minutes.", requester):
            raise MissingDependencyError(f"installation declined; missing Python packages: {listed}", requester)
        already_loaded = [name for name in ("pydicom", "highdicom") if name in sys.modules]
        try:
            host.pipInstall(missing)
        except Exception as error:  # CalledProcessError from pip: offline, or no wheel for this Python/platform
            raise MissingDependencyError(_installFailedMessage(listed, error), requester) from error
        if already_loaded:
            raise MissingDependencyError(
                f"installed {listed}; restart 3D Slicer to use them ({', '.join(already_loaded)} was already "
                "loaded in its old version)", requester)
    _raiseIfStillMissing(requirementsPath, installed, requester)


def _raiseIfStillMissing(requirementsPath: str | os.PathLike, installed: Callable[[str], str | None],
                         requester: str) -> None:
    """pip_ensure returns without installing in testing mode, and an install may need a restart."""
    importlib.invalidate_caches()
    still = missingRequirements(requirementsPath, installed)
    if still:
        raise MissingDependencyError(
            f"still missing after installation: {', '.join(still)} (restart 3D Slicer, or install them from "
            "the Python console with slicer.util.pip_install)", requester)


def _installFailedMessage(listed: str, error: Exception) -> str:
    return (f"could not install {listed}: {error}. Check the internet connection; if it works, no compatible "
            f"version exists for Python {sys.version_info.major}.{sys.version_info.minor} on this platform")
