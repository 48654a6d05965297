"""The Slicer module on every supported Slicer (5.10 to 5.13) with none of its optional packages installed.

Slicer 5.10 bundles no highdicom (and pydicom 2.4), no Slicer bundles pynrrd, tqdm or the pylibjpeg
decoders (``Testing/slicer_bundled_packages.json``, from each version's SuperBuild).  The module file,
the hidden DICOM plugin module and the plugins must still import, register and examine there, and
loading must ask to install (``dependencies.MissingDependencyError`` from the package host) instead of
failing with ImportError.  Each check runs in a fresh interpreter whose import system refuses the
packages a Slicer lacks (a ``sys.meta_path`` blocker), on the real slicer-core libraries, with only
Slicer's GUI and application modules stubbed (qt, ctk, ScriptedLoadableModule, DICOMLib's base classes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require
from conftest import sharedData as dataPath
from packaging.requirements import Requirement

PROJECT = Path(__file__).resolve().parents[1]
MODULE_DIR = PROJECT / "QuantReport"
BUNDLED = json.loads((Path(__file__).resolve().parent / "slicer_bundled_packages.json").read_text(encoding="utf-8"))
# Import names of the distributions in requirements.txt (and the optional heavy packages of the core).
IMPORT_NAMES = {"highdicom": ["highdicom"], "pydicom": [], "pynrrd": ["nrrd"], "tqdm": ["tqdm"],
                "pylibjpeg": ["pylibjpeg"], "pylibjpeg-openjpeg": ["openjpeg"], "pylibjpeg-rle": ["rle"],
                "pyjpegls": ["jpeg_ls"], "pillow": [], "python-gdcm": ["gdcm", "_gdcm"]}
OPTIONAL_CORE = ["dask", "distributed", "nibabel", "dicomweb_client", "pynetdicom", "jinja2", "matplotlib"]

PRELUDE = r'''
import importlib.abc, sys, types

BLOCKED = set(sys.argv[1].split(",")) - {""}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this Slicer)", name=name)
        return None

sys.meta_path.insert(0, Blocker())

class Anything:
    def __init__(self, *args, **kwargs): pass
    def __getattr__(self, name):
        if name.startswith("__"): raise AttributeError(name)
        return Anything()
    def __call__(self, *args, **kwargs): return Anything()

def stub(name, **attributes):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: Anything
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module

import slicer, slicer.util  # the real slicer-core package
stub("qt"); stub("ctk")
stub("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
stub("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls)
class ScriptedLoadableModule:
    def __init__(self, parent): self.parent = parent
stub("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
     ScriptedLoadableModuleLogic=type("ScriptedLoadableModuleLogic", (), {}),
     ScriptedLoadableModuleTest=type("ScriptedLoadableModuleTest", (), {}),
     ScriptedLoadableModuleWidget=type("ScriptedLoadableModuleWidget", (), {}))
class DICOMLoadable:
    def __init__(self): self.files, self.name, self.selected, self.confidence = [], "", False, 0.0
class DICOMPlugin:
    def __init__(self): self.loadType, self.cache = "", {}
    def getCachedLoadables(self, files): return None
    def cacheLoadables(self, files, loadables): pass
    def addSeriesInSubjectHierarchy(self, loadable, node): pass
stub("DICOMLib", DICOMLoadable=DICOMLoadable, DICOMPlugin=DICOMPlugin)
parent = types.SimpleNamespace()
slicer.modules = types.SimpleNamespace()
class App:
    applicationVersion = sys.argv[2]
    def testingEnabled(self): return False
slicer.app = App()
'''


def _runInSlicer(version: str, body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``body`` after the prelude, with the packages ``version`` does not bundle refused at import."""
    require(__import__("importlib").util.find_spec("slicer_core") is not None, "slicer-core is not installed")
    bundled = BUNDLED["versions"][version]["packages"]
    requirements = [Requirement(line) for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text()
                    .splitlines() if line.strip() and not line.startswith("#")]
    blocked = [name for r in requirements if r.name not in bundled for name in IMPORT_NAMES[r.name]]
    script = tmp_path / "in_slicer.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    applicationVersion = {"5.10": "5.10.0", "5.12": "5.12.3", "main": "5.13.0"}[version]
    return subprocess.run([sys.executable, str(script), ",".join(blocked + OPTIONAL_CORE), applicationVersion],
                          capture_output=True, text=True, timeout=300, cwd=MODULE_DIR,
                          env={"PYTHONPATH": str(MODULE_DIR), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("version", ["5.10", "5.12", "main"])
def test_module_plugins_and_self_test_import_without_optional_packages(version, tmp_path):
    result = _runInSlicer(version, f'''
        import QuantReport, QuantReportDICOMPlugins
        module = QuantReport.QuantReport(types.SimpleNamespace())
        assert module.parent.title == "QuantReport"
        QuantReportDICOMPlugins.QuantReportDICOMPlugins(types.SimpleNamespace())
        registry = slicer.modules.dicomPlugins
        assert set(registry) == {{"QuantReportSEGPlugin", "QuantReportSRPlugin"}}, registry
        assert QuantReport.QuantReportTest and QuantReport.QuantReportWidget
        # Examining needs pydicom only (every Slicer bundles it): the browser offers the loadables.
        plugin = registry["QuantReportSEGPlugin"]()
        (loadable,) = plugin.examineForImport([[{str(dataPath("seg", "dcmqi-liver.dcm"))!r}]])
        assert loadable.confidence > 0
        for name in ("highdicom", "nrrd", "tqdm"):
            if name in BLOCKED:
                assert name not in sys.modules, name + " was imported"
        print("imported", sorted(n for n in BLOCKED if n in sys.modules))
    ''', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported []" in result.stdout


@pytest.mark.parametrize("version", ["5.10", "5.12"])
def test_loading_without_the_packages_asks_to_install_instead_of_failing(version, tmp_path):
    """The plugin's load goes through ensureDependencies first: declined here, so it logs and returns False."""
    bundled = BUNDLED["versions"][version]["packages"]
    result = _runInSlicer(version, f'''
        import functools, logging
        from QuantReportLib import dependencies
        from QuantReportLib.inslicer import host, plugins
        # What this Slicer has installed (importlib.metadata would read this test's environment).
        host.ensureRequirements = functools.partial(dependencies.ensureRequirements, installed={bundled!r}.get)
        asked = []
        class Host(host.SlicerPackageHost):
            def hasPipEnsure(self): return False
            def confirm(self, text, title):
                asked.append(text)
                return False  # the user declines
        host.SlicerPackageHost = Host
        messages = []
        logging.error = lambda message, *args: messages.append(message)
        plugin = plugins.QuantReportSRPlugin()
        loadable = DICOMLoadable()
        loadable.files, loadable.name = [{str(dataPath("sr", "dcmqi-liver-tid1500.dcm"))!r}], "SR"
        assert plugin.load(loadable) is False
        assert len(asked) == 1 and "pynrrd" in asked[0], asked
        assert "installation declined" in messages[0], messages
        print("asked")
    ''', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "asked" in result.stdout


def test_no_error_is_swallowed_or_re_raised_silently_by_try_with_error_display():
    """slicer.util.tryWithErrorDisplay(show=False) shows nothing and re-raises (Slicer 5.10 to main): out of a Qt
    slot that is a traceback in the console and an empty panel. The panel catches QuantReportError instead."""
    import ast

    tree = ast.parse((MODULE_DIR / "QuantReport.py").read_text(encoding="utf-8"))
    silent = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, "attr", "") == "tryWithErrorDisplay"
              and any(k.arg == "show" for k in node.keywords)]
    assert silent == []
