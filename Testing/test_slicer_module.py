"""Static checks of the Slicer-facing files, which cannot run here (no Slicer application).

The module file and the DICOM plugins are parsed with ``ast`` and the panel
with ``xml.etree``: every ``self.ui.<name>`` the code uses exists in the .ui
with a class that has the signals, methods and properties the code uses;
parameter-node bindings match the parameter node's types; MRML widgets get
the scene; user-visible strings are translatable; every file is packaged by
CMake; the core package imports no Slicer library; the requirement ranges
accept the versions Slicer bundles.
"""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PROJECT = Path(__file__).resolve().parents[1]
MODULE_DIR = PROJECT / "QuantReport"
MODULE_FILE = MODULE_DIR / "QuantReport.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "QuantReport.ui"
CORE_DIR = MODULE_DIR / "QuantReportLib"
SLICER_PACKAGE = CORE_DIR / "inslicer"  # the only part of the core that may import Slicer libraries

# Qt/CTK/MRML classes used in the panel: their signals, methods (called from Python) and properties.
# Written from the Qt 5 documentation and Slicer's headers (qMRMLNodeComboBox.h, qMRMLTableView.h,
# qMRMLSegmentEditorWidget.h); a class inherits the entries of its base.
WIDGETS: dict[str, dict] = {
    "QWidget": {"base": None, "signals": set(),
                "methods": {"setEnabled", "setVisible", "setToolTip", "connect", "disconnect"},
                "properties": {"enabled", "visible", "toolTip"}},
    "QAbstractButton": {"base": "QWidget", "signals": {"clicked(bool)", "clicked()", "toggled(bool)", "pressed()",
                                                       "released()"},
                        "methods": {"setText", "setChecked", "click"}, "properties": {"text", "checked", "checkable"}},
    "QPushButton": {"base": "QAbstractButton", "signals": set(), "methods": set(), "properties": set()},
    "QCheckBox": {"base": "QAbstractButton", "signals": {"stateChanged(int)"}, "methods": set(), "properties": set()},
    "QLabel": {"base": "QWidget", "signals": {"linkActivated(QString)"}, "methods": {"setText", "clear"},
               "properties": {"text", "wordWrap"}},
    "QLineEdit": {"base": "QWidget", "signals": {"textChanged(QString)", "editingFinished()", "returnPressed()"},
                  "methods": {"setText", "clear"}, "properties": {"text", "placeholderText", "readOnly"}},
    "QComboBox": {"base": "QWidget", "signals": {"currentIndexChanged(int)", "currentTextChanged(QString)",
                                                 "activated(int)"},
                  "methods": {"clear", "addItem", "itemData", "itemText", "findData", "setCurrentIndex"},
                  "properties": {"currentIndex", "currentText", "count"}},
    "ctkCollapsibleButton": {"base": "QAbstractButton", "signals": {"contentsCollapsed(bool)"}, "methods": set(),
                             "properties": {"collapsed"}},
    "qMRMLWidget": {"base": "QWidget", "signals": {"mrmlSceneChanged(vtkMRMLScene*)"},
                    "methods": {"setMRMLScene", "mrmlScene"}, "properties": set()},
    "qMRMLNodeComboBox": {"base": "QWidget", "signals": {"currentNodeChanged(vtkMRMLNode*)",
                                                         "currentNodeChanged(bool)", "currentNodeIDChanged(QString)",
                                                         "nodeAdded(vtkMRMLNode*)"},
                          "methods": {"setMRMLScene", "currentNode", "setCurrentNode", "setCurrentNodeID"},
                          "properties": {"nodeTypes", "noneEnabled", "addEnabled", "removeEnabled"}},
    "qMRMLTableView": {"base": "QWidget", "signals": {"selectionChanged()"},
                       "methods": {"setMRMLScene", "setMRMLTableNode", "mrmlTableNode"}, "properties": set()},
    "qMRMLSegmentEditorWidget": {
        "base": "qMRMLWidget",
        "signals": {"currentSegmentIDChanged(QString)", "sourceVolumeNodeChanged(vtkMRMLVolumeNode*)",
                    "segmentationNodeChanged(vtkMRMLSegmentationNode*)"},
        "methods": {"setMRMLSegmentEditorNode", "setSegmentationNode", "setSourceVolumeNode", "segmentationNode",
                    "sourceVolumeNode", "activeEffect", "setActiveEffect", "installKeyboardShortcuts",
                    "uninstallKeyboardShortcuts", "removeViewObservations", "updateWidgetFromMRML",
                    "updateEffectList", "setMaximumNumberOfUndoStates", "setReadOnly"},
        "properties": {"readOnly", "segmentationNodeSelectorVisible", "sourceVolumeNodeSelectorVisible",
                       "switchToSegmentationsButtonVisible"}},
}
# Where a value must be translatable: assigned to these properties, or passed to these calls (argument positions).
TEXT_PROPERTIES = {"text", "toolTip", "title", "helpText", "acknowledgementText", "placeholderText", "windowTitle",
                   "loadType", "name", "tooltip"}
TEXT_CALLS = {"setText": (0,), "setToolTip": (0,), "setWindowTitle": (0,), "tryWithErrorDisplay": (0,),
              "getSaveFileName": (1, 3), "errorDisplay": (0,), "infoDisplay": (0,), "warningDisplay": (0,)}


def _members(cls: str, kind: str) -> set[str]:
    found: set[str] = set()
    while cls is not None:
        found |= WIDGETS[cls][kind]
        cls = WIDGETS[cls]["base"]
    return found


@pytest.fixture(scope="module")
def ui() -> dict:
    """name -> (class, properties) of every widget in the .ui, plus its connections and root name."""
    root = ElementTree.parse(UI_FILE).getroot()
    widgets = {}
    for widget in root.iter("widget"):
        properties = {}
        for prop in widget.findall("property"):
            value = prop.find("string")
            strings = [s.text for s in prop.iter("string")]
            properties[prop.get("name")] = strings if prop.find("stringlist") is not None else (
                value.text if value is not None else None)
        widgets[widget.get("name")] = (widget.get("class"), properties)
    connections = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")]
    return {"widgets": widgets, "connections": connections, "root": root.find("widget").get("name")}


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


def _uiUses(tree: ast.Module) -> list[tuple[str, str, str, ast.AST]]:
    """(widget, member, how, node) for every ``self.ui.<widget>.<member>``; how is "call", "connect" or "property"."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui"
                and isinstance(node.value.value.value, ast.Name) and node.value.value.value.id == "self"):
            parent = parents.get(node)
            how = "call" if isinstance(parent, ast.Call) and parent.func is node else "property"
            if how == "call" and node.attr in ("connect", "disconnect"):
                how = "connect"
            uses.append((node.value.attr, node.attr, how, parent))
    return uses


def test_ui_widget_classes_are_known(ui):
    unknown = {cls for cls, _ in ui["widgets"].values()} - set(WIDGETS)
    assert unknown == set(), f"add these classes to the WIDGETS table: {unknown}"


def test_every_ui_member_used_by_the_code_exists_with_a_consistent_class(module_tree, ui):
    uses = _uiUses(module_tree)
    assert len(uses) > 40, "the parser found too few self.ui uses: the test would pass vacuously"
    problems = []
    for widget, member, how, parent in uses:
        if widget not in ui["widgets"]:
            problems.append(f"self.ui.{widget} is not in {UI_FILE.name}")
            continue
        cls = ui["widgets"][widget][0]
        if how == "connect":
            signal = parent.args[0].value if parent.args and isinstance(parent.args[0], ast.Constant) else None
            if signal not in _members(cls, "signals"):
                problems.append(f"{widget} ({cls}) has no signal {signal!r}")
        elif how == "call" and member not in _members(cls, "methods"):
            problems.append(f"{widget} ({cls}) has no method {member}()")
        elif how == "property" and member not in _members(cls, "properties") | _members(cls, "methods"):
            problems.append(f"{widget} ({cls}) has no property {member}")
    assert problems == []


def test_every_button_is_connected_and_every_connected_widget_is_a_button_or_input(module_tree, ui):
    connected = {widget for widget, _, how, _ in _uiUses(module_tree) if how == "connect"}
    buttons = {name for name, (cls, _) in ui["widgets"].items() if cls == "QPushButton"}
    assert buttons - connected == set(), "buttons without a handler"


def test_parameter_bindings_match_the_parameter_node(module_tree, ui):
    (node_class,) = [n for n in module_tree.body
                     if isinstance(n, ast.ClassDef) and n.name == "QuantReportParameterNode"]
    fields = {item.target.id: ast.unparse(item.annotation) for item in node_class.body
              if isinstance(item, ast.AnnAssign)}
    bound = {props["SlicerParameterName"]: (name, cls, props) for name, (cls, props) in ui["widgets"].items()
             if props.get("SlicerParameterName")}
    assert set(bound) <= set(fields), f"bound to unknown parameters: {set(bound) - set(fields)}"
    assert {"inputVolume", "segmentation", "readerName", "timePoint", "autoUpdate"} <= set(bound)
    for parameter, (name, cls, props) in bound.items():
        annotation = fields[parameter]
        if cls == "qMRMLNodeComboBox":
            assert props["nodeTypes"] == [annotation], f"{name}: nodeTypes {props['nodeTypes']} for {annotation}"
        else:
            assert annotation == {"QLineEdit": "str", "QCheckBox": "bool"}[cls], f"{name} ({cls}) bound to {annotation}"


def test_mrml_widgets_receive_the_scene(ui, module_tree):
    scene_connections = {receiver for sender, signal, receiver, slot in ui["connections"]
                         if sender == ui["root"] and signal == "mrmlSceneChanged(vtkMRMLScene*)"
                         and slot == "setMRMLScene(vtkMRMLScene*)"}
    mrml_widgets = {name for name, (cls, _) in ui["widgets"].items() if cls in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert mrml_widgets and mrml_widgets <= scene_connections
    # The segment editor gets the scene in code, after its own editor node (as Slicer's Segment Editor module does).
    assert "segmentEditorWidget" not in scene_connections
    setup = next(f for f in ast.walk(module_tree) if isinstance(f, ast.FunctionDef) and f.name == "setup")
    source = ast.unparse(setup)
    assert source.index("self._selectSegmentEditorNode()") < source.index("self.ui.segmentEditorWidget.setMRMLScene(")


def test_segment_editor_node_is_not_the_segment_editor_modules(module_tree):
    constants = {t.id: n.value.value for n in module_tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert constants["SEGMENT_EDITOR_NODE_TAG"] not in ("", "SegmentEditor")
    source = MODULE_FILE.read_text(encoding="utf-8")
    for call in ("installKeyboardShortcuts()", "uninstallKeyboardShortcuts()", "removeViewObservations()",
                 "setActiveEffect(None)"):
        assert call in source, f"enter/exit handling misses {call}"


def _untranslated(tree: ast.Module) -> list[str]:
    def literal(node: ast.AST) -> bool:
        return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)
                                                   and node.value.strip() != "")

    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_":
            if not (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)):
                problems.append(f"line {node.lineno}: _() needs one plain string (use .format after it)")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in TEXT_PROPERTIES and literal(node.value):
                    problems.append(f"line {node.lineno}: .{target.attr} = untranslated text")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for position in TEXT_CALLS.get(name, ()):
                if position < len(node.args) and literal(node.args[position]):
                    problems.append(f"line {node.lineno}: {name}() argument {position} is untranslated text")
    return problems


@pytest.mark.parametrize("path", [MODULE_FILE, MODULE_DIR / "QuantReportDICOMPlugins.py",
                                  SLICER_PACKAGE / "plugins.py"],
                         ids=lambda p: p.name)
def test_user_visible_strings_are_translatable(path):
    assert _untranslated(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_translation_check_catches_untranslated_text():
    bad = ast.parse('self.ui.a.text = "Hello"\nb.setToolTip(f"x{y}")\nc.toolTip = _(f"z{w}")\n')
    assert len(_untranslated(bad)) == 3


def _cmakeList(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set"
    return [item.replace("${MODULE_NAME}", "QuantReport") for item in match.group(1).split()]


def test_cmake_lists_every_python_file_and_resource():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts, resources = _cmakeList(text, "MODULE_PYTHON_SCRIPTS"), _cmakeList(text, "MODULE_PYTHON_RESOURCES")
    # Build artifacts (.gitignore: __pycache__, *.egg-info from "pip install -e", *.part) are not sources.
    on_disk = [p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*") if p.is_file()
               and not any(part == "__pycache__" or part.endswith(".egg-info") for part in p.parts)
               and p.name != "CMakeLists.txt" and not p.name.startswith(".") and not p.name.endswith(".part")]
    assert sorted(scripts) == sorted(p for p in on_disk if p.endswith(".py"))
    assert sorted(resources) == sorted(p for p in on_disk if not p.endswith(".py"))
    assert "Resources/UI/QuantReport.ui" in resources and "Resources/requirements.txt" in resources
    assert any(r.startswith("QuantReportLib/data/") and r.endswith(".dcm") for r in resources)
    assert "slicerMacroBuildScriptedModule(" in text
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text, re.S)


def test_top_level_cmake_and_catalog_entry():
    text = (PROJECT / "CMakeLists.txt").read_text(encoding="utf-8")
    for needed in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(QuantReport)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needed in text
    metadata = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    assert {"EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
            "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"} <= set(metadata)
    entry = json.loads((PROJECT / "QuantReport.json").read_text(encoding="utf-8"))
    # Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: required keys, no others allowed.
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["category"] == metadata["EXTENSION_CATEGORY"]
    assert entry["scm_url"] == metadata["EXTENSION_HOMEPAGE"]


@pytest.mark.parametrize("path", sorted(MODULE_DIR.rglob("*.py")), ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_python_files_compile(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


SLICER_LIBRARIES = ("slicer", "qt", "vtk", "ctk", "vtkmodules", "DICOMLib", "PythonQt", "QuantReport", "mrml")


@pytest.mark.parametrize("path", sorted(p for p in CORE_DIR.rglob("*.py") if SLICER_PACKAGE not in p.parents),
                         ids=lambda p: p.relative_to(CORE_DIR).as_posix())
def test_core_imports_no_slicer_library(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: QuantReportLib's own modules; only the inslicer subpackage is Slicer's
                imported |= {f".{alias.name}" for alias in node.names if alias.name == "inslicer"}
                if (node.module or "").split(".")[0] == "inslicer":
                    imported.add(f".{node.module}")
            else:
                imported.add(node.module)
    bad = {name for name in imported
           if name.split(".")[0] in SLICER_LIBRARIES or name.startswith((".", "qSlicer", "qMRML", "vtkSlicer"))}
    assert bad == set()


def test_requirement_ranges_accept_the_versions_slicer_bundles():
    lines = [line for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    requirements = {Requirement(line).name: Requirement(line).specifier for line in lines}
    assert set(requirements) == {"highdicom", "pydicom", "pynrrd", "tqdm", "pylibjpeg", "pylibjpeg-openjpeg",
                                 "pylibjpeg-rle", "pyjpegls", "pillow", "python-gdcm"}
    assert all(str(spec) for spec in requirements.values()), "every requirement needs a range"
    assert not any("==" in str(spec) for spec in requirements.values()), "ranges, not pins"
    highdicom, pydicom = requirements["highdicom"], requirements["pydicom"]
    assert {v for v in ("0.26.1", "0.27.0", "0.28.2", "0.29.0") if highdicom.contains(v)} == {"0.27.0", "0.28.2"}
    assert {v for v in ("2.4.4", "3.0.1", "3.0.2", "4.0.0") if pydicom.contains(v)} == {"3.0.1", "3.0.2"}


@pytest.mark.parametrize("name", ["requirements.txt", "readout-requirements.txt"])
def test_requirement_ranges_agree_with_pyproject(name):
    import tomllib

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {Requirement(d).name: Requirement(d).specifier for d in project["dependencies"]}
    lines = [line for line in (MODULE_DIR / "Resources" / name).read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines
    for requirement in map(Requirement, lines):
        assert requirement.name in declared
        assert requirement.specifier == declared[requirement.name], requirement.name


def test_readout_packages_are_installed_only_for_the_readout():
    """Jinja2 and matplotlib are asked for by the Report button, not by the module's first use."""
    main = {Requirement(line).name for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert not main & {"jinja2", "matplotlib"}
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert 'ensureDependencies("QuantReport report", READOUT_REQUIREMENTS_PATH)' in source


def test_plugins_register_distinct_keys_and_set_plugin_class():
    tree = ast.parse((SLICER_PACKAGE / "plugins.py").read_text(encoding="utf-8"))
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert constants["SEG_PLUGIN_KEY"] == "QuantReportSEGPlugin"
    assert constants["SR_PLUGIN_KEY"] == "QuantReportSRPlugin"
    # The export dialog looks plugins up by exportable.pluginClass: it must be the registry key, not __module__.
    assignments = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and any(isinstance(t, ast.Attribute) and t.attr == "pluginClass" for t in n.targets)]
    assert [ast.unparse(n.value) for n in assignments] == ["SEG_PLUGIN_KEY"]
    hook = (MODULE_DIR / "QuantReportDICOMPlugins.py").read_text(encoding="utf-8")
    assert "registerPlugins(registry)" in hook and "parent.hidden = True" in hook


@pytest.mark.parametrize("path", sorted(SLICER_PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_slicer_package_does_not_import_the_module_file(path):
    """The module file imports the package; the package importing it back would be a cycle."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
    assert not {name for name in imported if name.split(".")[0] in ("QuantReport", "QuantReportDICOMPlugins")}


def test_every_installed_package_the_code_and_tests_import_is_declared():
    """A fresh virtual environment gets what the module, the CLI, the tests and the benchmarks import
    (issue 11: scipy was imported by tests but declared nowhere, and CI passed on the machine's Python).

    A top-level import that some installed distribution provides must be a declared requirement (the
    dependencies or an extra); what no distribution here provides is Slicer's (slicer, qt, ctk and its
    bundled modules) or the project's own.
    """
    import importlib.metadata
    import sys
    import tomllib

    from packaging.utils import canonicalize_name

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {canonicalize_name(Requirement(line).name)
                for line in [*project["dependencies"], *(d for extra in project["optional-dependencies"].values()
                                                          for d in extra)]}
    sources = [*(PROJECT / "QuantReport").rglob("*.py"), *(PROJECT / "Testing").glob("*.py"),
               *(PROJECT / "benchmarks").glob("*.py")]
    own = {path.stem for path in sources} | {"QuantReportLib", "QuantReport"}
    imported: dict[str, Path] = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.partition(".")[0], path)
    providers = importlib.metadata.packages_distributions()
    undeclared = {module: (providers[module], str(path.relative_to(PROJECT))) for module, path in imported.items()
                  if module not in sys.stdlib_module_names and module not in own and module in providers
                  and not declared & {canonicalize_name(name) for name in providers[module]}}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert {"scipy", "numpy", "highdicom", "nrrd"} <= set(imported), "the scan finds the imports"
