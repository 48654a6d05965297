"""The panel's push to a PACS: statically checked wiring (Slicer cannot run here) and the logic it calls, for real.

``ReportLogic.pushReport`` (what *Save report* and *Push report now* call) is
run headless against the test Orthanc with a database holding a saved report.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from packaging.requirements import Requirement

MODULE = PROJECT_ROOT / "QuantReport" / "QuantReport.py"
CORE = PROJECT_ROOT / "QuantReport" / "QuantReportLib"
OPTIONAL_CLIENTS = {"dicomweb_client", "pynetdicom", "requests", "keyring"}


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name)


def _topLevelImports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", [MODULE, *sorted((CORE / "pacs").glob("*.py")), CORE / "inslicer" / "logic.py",
                                  CORE / "inslicer" / "host.py", CORE / "cli.py"], ids=lambda p: p.name)
def test_network_clients_are_imported_only_where_used(path):
    assert _topLevelImports(path) & OPTIONAL_CLIENTS == set()


def test_save_pushes_when_the_panel_says_so_and_the_password_stays_out_of_the_settings():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    save = ast.unparse(_function(tree, "_saveReport"))
    assert "saved = True" in save and "if saved and self.ui.pushOnSaveCheckBox.checked" in save
    assert save.index("self.logic.saveReport(") < save.index("self.onPushReport()")
    push = ast.unparse(_function(tree, "onPushReport"))
    assert "PACS_REQUIREMENTS_PATH" in push and "self.logic.pushReport(" in push
    assert "tryWithErrorDisplay" in push and "self.ui.statusLabel.text = text" in push
    # Settings hold the URL, the user and the choice; the password goes to the keyring or stays in memory.
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setValue":
            assert "password" not in ast.unparse(node).lower(), ast.unparse(node)
    remember = ast.unparse(_function(tree, "_rememberPacsPassword"))
    assert "storePassword(" in remember


def test_pacs_requirements_agree_with_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {Requirement(d).name: Requirement(d).specifier for d in project["dependencies"]}
    from QuantReportLib.dependencies import PACS_REQUIREMENTS_PATH, readRequirements

    listed = [Requirement(line) for line in readRequirements(PACS_REQUIREMENTS_PATH)]
    assert {r.name for r in listed} == {"dicomweb-client", "pynetdicom", "requests"}
    for requirement in listed:
        assert requirement.specifier == declared[requirement.name], requirement.name


def test_without_a_keyring_nothing_is_stored(monkeypatch):
    import builtins

    from QuantReportLib.pacs import urls

    real = builtins.__import__

    def noKeyring(name, *args, **kwargs):
        if name.split(".")[0] == "keyring":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", noKeyring)
    monkeypatch.setattr(urls.importlib, "import_module", lambda name: noKeyring(name))
    assert urls.storePassword("https://pacs/dicom-web", "alice", "pw") is False
    assert urls.storedPassword("https://pacs/dicom-web", "alice") is None


class _SavedReportNode:
    """What ``pushReport`` reads of a segmentation node: the attributes a save sets."""

    def __init__(self, attributes: dict[str, str]):
        self.attributes = attributes

    def GetAttribute(self, name: str) -> str | None:  # noqa: N802 -- the MRML method name
        return self.attributes.get(name)


def test_logic_pushes_a_saved_report_once(tmp_path, orthanc):
    from QuantReportLib import autoseg, report
    from QuantReportLib.database import EmbeddedDicomDatabase
    from QuantReportLib.demo import SAMPLE_LESIONS
    from QuantReportLib.errors import InvalidInputError
    from QuantReportLib.inslicer.logic import SEG_UID_ATTRIBUTE, SR_UID_ATTRIBUTE, ReportLogic

    lesion = SAMPLE_LESIONS[0]
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths([CORE / "data" / "lidc-idri-0001-nodule1"], progress=False)
        volume = report.loadSeriesFromDatabase(database, database.listSeries()[0].series_instance_uid)
        segmentation = autoseg.segmentLesion(volume, seed_lps=lesion.seed_lps, lower=lesion.lower,
                                             upper=lesion.upper, roi_radius_mm=lesion.roi_radius_mm)
        saved = report.saveReport(volume, segmentation, database=database)
        logic = ReportLogic(scene=None, database=database)
        node = _SavedReportNode({SEG_UID_ATTRIBUTE: saved.seg_sop_instance_uid,
                                 SR_UID_ATTRIBUTE: saved.sr_sop_instance_uid})
        first = logic.pushReport(node, orthanc.dicomweb)
        assert (first.stored, first.already_present, first.failed) == (2, 0, [])
        again = logic.pushReport(node, orthanc.dimse)
        assert (again.stored, again.already_present, again.failed) == (0, 2, [])
        assert orthanc.instanceUids() == {saved.seg_sop_instance_uid, saved.sr_sop_instance_uid}
        with pytest.raises(InvalidInputError, match="save the report"):
            logic.pushReport(_SavedReportNode({}), orthanc.dicomweb)


def test_password_is_kept_in_the_keyring_when_there_is_one(monkeypatch):
    import types

    from QuantReportLib.pacs import urls

    kept: dict[tuple[str, str], str] = {}

    class KeyringError(Exception):
        pass

    fake = types.SimpleNamespace(
        get_password=lambda service, name: kept.get((service, name)),
        set_password=lambda service, name, value: kept.__setitem__((service, name), value),
        delete_password=lambda service, name: kept.pop((service, name)),
        errors=types.SimpleNamespace(KeyringError=KeyringError))
    monkeypatch.setattr(urls.importlib, "import_module", lambda name: fake)
    assert urls.storePassword("https://pacs/dicom-web", "alice", "pw") is True
    assert kept == {(urls.KEYRING_SERVICE, "alice@https://pacs/dicom-web"): "pw"}
    assert urls.storedPassword("https://pacs/dicom-web", "alice") == "pw"
    assert urls.storePassword("https://pacs/dicom-web", "alice", "") is True  # an emptied field forgets it
    assert kept == {} and urls.storedPassword("https://pacs/dicom-web", "alice") is None
