"""The pure helpers behind the Slicer module: DICOM plugin examination, dependency checks, segment provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import sharedData as _data
from packaging.requirements import Requirement
from QuantReportLib import dependencies, examine, provenance
from QuantReportLib.dicomio import identity
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.model import Code, Segment, Terminology

# -- examine: which files the DICOM browser may load, and how confidently ------------------------------


def _uids(paths, keyword="SOPInstanceUID") -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).get(keyword)) for p in paths}


def test_seg_loadable_names_its_source_series_and_instances():
    ct = sorted(_data("ct", "dcmqi-ct-3slice").iterdir())
    (loadable,) = examine.examineFiles([[_data("seg", "dcmqi-liver.dcm")]])
    assert loadable.kind == "SEG"
    assert loadable.name == "1: Liver Segmentation"
    assert loadable.confidence == examine.FOREIGN_CONFIDENCE and not loadable.selected
    assert set(loadable.referenced_series_uids) == _uids(ct, "SeriesInstanceUID")
    assert set(loadable.referenced_instance_uids) == _uids(ct)
    assert loadable.sop_instance_uid == _uids([_data("seg", "dcmqi-liver.dcm")]).pop()


def test_label_map_seg_is_recognized():
    (loadable,) = examine.examineFiles([[_data("seg", "dcmqi-sparse-labelmap-noppv.dcm")]])
    assert loadable.kind == "SEG" and "label map" in loadable.tooltip
    assert set(loadable.referenced_instance_uids) <= _uids(sorted(_data("ct", "dcmqi-24x38x3").iterdir()))


def test_sr_loadable_references_its_image_series_not_its_seg():
    """The SR plugin loads the SEG itself: were the SEG a reference too, the DICOM browser would load it again
    (DICOMBrowser.loadCheckedLoadables loads the selected loadables of every referenced series)."""
    seg_path = _data("seg", "dcmqi-liver.dcm")
    images = sorted(_data("ct", "dcmqi-ct-3slice").iterdir())
    (loadable,) = examine.examineFiles([[_data("sr", "dcmqi-liver-tid1500.dcm")]])
    assert loadable.kind == "SR" and loadable.name == "1001: Measurements"
    assert _uids(images, "SeriesInstanceUID") == set(loadable.referenced_series_uids)
    assert _uids(images) <= set(loadable.referenced_instance_uids)
    assert not _uids([seg_path]) & set(loadable.referenced_instance_uids)


def test_sr_without_evidence_sequence_takes_references_from_the_content_tree():
    (loadable,) = examine.examineFiles([[_data("sr", "highdicom-sr-document.dcm")]])
    assert loadable.referenced_series_uids == ()
    assert set(loadable.referenced_instance_uids) == _uids([_data("ct", "highdicom-ct-small", "ct_image.dcm")])


def test_images_and_non_dicom_files_give_no_loadables(tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "empty.dcm").write_bytes(b"")
    ct = sorted(_data("ct", "dcmqi-ct-3slice").iterdir())
    assert examine.examineFiles([ct, [tmp_path / "notes.txt", tmp_path / "empty.dcm"]]) == []


def test_sr_that_is_not_tid1500_is_not_offered(tmp_path):
    dataset = pydicom.dcmread(_data("sr", "highdicom-sr-document.dcm"))
    del dataset.ContentTemplateSequence
    dataset.ConceptNameCodeSequence[0].CodeValue = "18748-4"  # a diagnostic imaging report, not TID 1500
    dataset.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    dataset.save_as(tmp_path / "other.dcm")
    assert examine.describeFile(tmp_path / "other.dcm") is None
    basic = pydicom.dcmread(_data("sr", "highdicom-sr-document.dcm"))
    basic.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR cannot hold TID 1500
    basic.save_as(tmp_path / "basic.dcm")
    assert examine.describeFile(tmp_path / "basic.dcm") is None


def test_objects_written_by_quantreport_are_preselected_over_slicers_plugins(tmp_path):
    dataset = pydicom.dcmread(_data("seg", "dcmqi-liver.dcm"))
    dataset.Manufacturer = identity.MANUFACTURER
    dataset.save_as(tmp_path / "ours.dcm")
    foreign, ours = examine.examineFiles([[_data("seg", "dcmqi-liver.dcm"), tmp_path / "ours.dcm"]])
    assert ours.written_by_quantreport and ours.selected and ours.confidence == examine.OWN_CONFIDENCE
    assert not foreign.written_by_quantreport and not foreign.selected
    # Never tie with Slicer's plugins: a tie preselects both and loads the object twice.
    assert examine.FOREIGN_CONFIDENCE < examine.SLICER_CORE_CONFIDENCE < examine.OWN_CONFIDENCE


def test_every_shared_seg_and_sr_is_examined():
    segs = sorted(_data("seg").glob("*.dcm"))
    srs = sorted(_data("sr").glob("*.dcm"))
    loadables = examine.examineFiles([segs, srs])
    assert [d.kind for d in loadables] == ["SEG"] * len(segs) + ["SR"] * len(srs)
    assert [d.sop_instance_uid for d in loadables] == [_uids([p]).pop() for p in segs + srs]


# -- dependencies: version ranges against what each Slicer bundles -------------------------------------

BUNDLED = json.loads((Path(__file__).resolve().parent / "slicer_bundled_packages.json").read_text(encoding="utf-8"))
"""What each supported Slicer bundles: the pins of its SuperBuild/External_python-*.cmake (tag and commit recorded)."""
SLICER_5_10 = BUNDLED["versions"]["5.10"]["packages"]
SLICER_5_12 = BUNDLED["versions"]["5.12"]["packages"]
SLICER_MAIN = BUNDLED["versions"]["main"]["packages"]
FIRST_USE = {"pynrrd": "1.1.3", "tqdm": "4.67.1", "pylibjpeg": "2.1.0", "pylibjpeg-openjpeg": "2.6.0",
             "pylibjpeg-rle": "2.2.0", "python-gdcm": "3.2.6"}
GDCM = ("python-gdcm>=3.0.24; platform_machine == 'x86_64' or platform_machine == 'AMD64' or "
        "platform_machine == 'aarch64' or platform_machine == 'arm64'")
READY = {**SLICER_5_12, **FIRST_USE}  # Slicer 5.12 once QuantReport's first use installed what it misses
ON_5_12 = ["pynrrd>=1.0", "tqdm>=4.60", "pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.2", "pylibjpeg-rle>=2.0", GDCM]


def test_slicer_5_12_and_main_bundle_highdicom_pydicom_pyjpegls_and_pillow_not_pynrrd_tqdm_or_the_decoders():
    for bundled in (SLICER_5_12, SLICER_MAIN):
        assert dependencies.missingRequirements(installed=bundled.get) == ON_5_12
    assert dependencies.missingRequirements(installed=READY.get) == []


def test_slicer_5_10_misses_highdicom_pydicom_3_and_pyjpegls_too():
    assert SLICER_5_10["pydicom"].startswith("2.")
    assert dependencies.missingRequirements(installed=SLICER_5_10.get) == [
        "highdicom>=0.27,<0.29", "pydicom>=3.0.1,<4", "pynrrd>=1.0", "tqdm>=4.60", "pylibjpeg>=2.0",
        "pylibjpeg-openjpeg>=2.2", "pylibjpeg-rle>=2.0", "pyjpegls>=1.3", GDCM]


def test_the_readme_names_what_first_use_installs_on_slicer_5_12():
    """The install paragraph of the README names every package Slicer 5.12+ misses, and what it bundles."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("### Install"):readme.index("- **From source**")]
    for line in ON_5_12:
        assert f"`{Requirement(line).name}`" in paragraph.split("so only")[1], Requirement(line).name
    for name in ("highdicom", "pydicom", "pyjpegls", "pillow"):
        assert name in SLICER_5_12 and name in SLICER_MAIN


@pytest.mark.parametrize(("version", "met"), [("0.26.1", False), ("0.27.0", True), ("0.28.2", True),
                                              ("0.29.0", False), ("not-a-version", False)])
def test_highdicom_range(version, met):
    installed = {**READY, "highdicom": version}
    assert (dependencies.missingRequirements(installed=installed.get) == []) is met


def test_markers_that_do_not_apply_are_met_and_bad_lines_are_reported(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n--index-url https://example.invalid\nnothere>=1 ; sys_platform == 'no-such-os'\n"
                    "tqdm>=4.60  # trailing comment\n")
    assert dependencies.missingRequirements(path, installed={"tqdm": "4.67.1"}.get) == []
    path.write_text("highdicom>>0.27\n")
    with pytest.raises(InvalidInputError, match="requirements.txt"):
        dependencies.missingRequirements(path)


def test_this_environment_meets_the_requirements():
    assert dependencies.missingRequirements() == []


@pytest.mark.parametrize(("version", "supported"), [("5.10.0", True), ("5.12.3-2026-07-22", True), ("6.0", True),
                                                    ("5.9.0", False), ("5.8.1", False), ("4.13.0", False), ("", False)])
def test_oldest_supported_slicer(version, supported):
    assert dependencies.isSlicerVersionSupported(version) is supported


class FakeHost:
    """A Slicer that records what ensureRequirements asked of it."""

    def __init__(self, version="5.12.0", pipEnsure=True, testing=False, confirm=True, installs=None, fails=None):
        self.version, self.pipEnsureAvailable, self.testing, self.answer = version, pipEnsure, testing, confirm
        self.installs, self.fails, self.calls = installs, fails, []
        self.installed = dict(SLICER_5_10)

    def applicationVersion(self):
        return self.version

    def hasPipEnsure(self):
        return self.pipEnsureAvailable

    def pipEnsure(self, requirementsPath, requester):
        self.calls.append(("pipEnsure", Path(requirementsPath).name, requester))
        self._install()

    def testingEnabled(self):
        return self.testing

    def confirm(self, text, title):
        self.calls.append(("confirm", title))
        return self.answer

    def pipInstall(self, requirements):
        self.calls.append(("pipInstall", tuple(requirements)))
        self._install()

    def _install(self):
        if self.fails is not None:
            raise self.fails
        self.installed.update(self.installs or {})


def test_nothing_missing_asks_nothing():
    host = FakeHost()
    dependencies.ensureRequirements(host, installed=READY.get)
    assert host.calls == []


def test_pip_ensure_is_used_where_it_exists():
    host = FakeHost(installs=READY)
    dependencies.ensureRequirements(host, "QuantReport", installed=lambda name: host.installed.get(name))
    assert host.calls == [("pipEnsure", "requirements.txt", "QuantReport")]


def test_pip_ensure_declined_or_skipped_in_testing_mode_is_an_error():
    host = FakeHost(fails=RuntimeError("user declined"))
    with pytest.raises(dependencies.MissingDependencyError, match="declined"):
        dependencies.ensureRequirements(host, installed=lambda name: host.installed.get(name))
    skipped = FakeHost(installs={})  # pip_ensure returns without installing in testing mode
    with pytest.raises(dependencies.MissingDependencyError, match="still missing.*highdicom"):
        dependencies.ensureRequirements(skipped, installed=lambda name: skipped.installed.get(name))


def test_older_slicer_confirms_then_installs_and_asks_for_a_restart_when_pydicom_was_loaded():
    assert "pydicom" in sys.modules
    host = FakeHost(version="5.10.1", pipEnsure=False, installs=READY)
    with pytest.raises(dependencies.MissingDependencyError, match="restart 3D Slicer"):
        dependencies.ensureRequirements(host, installed=lambda name: host.installed.get(name))
    assert host.calls == [("confirm", "QuantReport"),
                          ("pipInstall", ("highdicom>=0.27,<0.29", "pydicom>=3.0.1,<4", "pynrrd>=1.0", "tqdm>=4.60",
                                          "pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.2", "pylibjpeg-rle>=2.0",
                                          "pyjpegls>=1.3", GDCM))]


def test_older_slicer_declined_offline_or_testing_installs_nothing():
    declined = FakeHost(version="5.10.1", pipEnsure=False, confirm=False)
    with pytest.raises(dependencies.MissingDependencyError, match="declined"):
        dependencies.ensureRequirements(declined, installed=lambda name: declined.installed.get(name))
    assert [call[0] for call in declined.calls] == ["confirm"]
    offline = FakeHost(version="5.10.1", pipEnsure=False,
                       fails=subprocess.CalledProcessError(1, ["pip", "install"]))
    with pytest.raises(dependencies.MissingDependencyError, match="internet connection"):
        dependencies.ensureRequirements(offline, installed=lambda name: offline.installed.get(name))
    testing = FakeHost(version="5.10.1", pipEnsure=False, testing=True)
    with pytest.raises(dependencies.MissingDependencyError, match="testing mode"):
        dependencies.ensureRequirements(testing, installed=lambda name: testing.installed.get(name))
    assert testing.calls == []


def test_too_old_slicer_is_refused_before_anything_is_installed():
    host = FakeHost(version="5.8.1")
    with pytest.raises(dependencies.MissingDependencyError, match="5.10 or later"):
        dependencies.ensureRequirements(host, installed=SLICER_5_10.get)
    assert host.calls == []


# -- provenance: Segment Editor effects -> DICOM Segment Algorithm Type and Name ------------------------

TISSUE = Terminology(Code("85756007", "SCT", "Tissue"), Code("85756007", "SCT", "Tissue"))


def _history(effects, tags=None):
    for effect in effects:
        tags = provenance.updatedTags(tags or {}, effect)
    return tags


def test_hand_drawn_segments_stay_manual():
    tags = _history(["Paint", "Erase", "Paint", "Scissors"])
    assert tags[provenance.EFFECTS_TAG] == "Paint;Erase;Scissors"
    assert (tags[provenance.ALGORITHM_TYPE_TAG], tags[provenance.ALGORITHM_NAME_TAG]) == ("MANUAL", "")


def test_any_algorithmic_effect_makes_a_segment_semiautomatic_with_a_valid_name():
    tags = _history(["Paint", "Threshold", "Islands"])
    assert tags[provenance.ALGORITHM_TYPE_TAG] == "SEMIAUTOMATIC"
    assert tags[provenance.ALGORITHM_NAME_TAG] == "3D Slicer Segment Editor: Paint, Threshold, Islands"
    # What the tags say is what a SEG segment may carry (the model enforces PS3.3 C.8.20.2).
    Segment(1, "Nodule", TISSUE, algorithm_type=tags[provenance.ALGORITHM_TYPE_TAG],
            algorithm_name=tags[provenance.ALGORITHM_NAME_TAG])


def test_editing_an_automatic_segment_makes_it_semiautomatic_and_keeps_its_origin():
    loaded = {provenance.ALGORITHM_TYPE_TAG: "AUTOMATIC", provenance.ALGORITHM_NAME_TAG: "TotalSegmentator"}
    tags = _history(["Paint", "Smoothing"], dict(loaded))
    assert tags[provenance.ALGORITHM_TYPE_TAG] == "SEMIAUTOMATIC"
    assert tags[provenance.ALGORITHM_NAME_TAG] == "TotalSegmentator; Paint, Smoothing"
    assert tags[provenance.PRIOR_TYPE_TAG] == "AUTOMATIC"
    assert provenance.deriveAlgorithm([], "AUTOMATIC", "TotalSegmentator") == ("AUTOMATIC", "TotalSegmentator")


def test_algorithm_names_fit_the_long_string_limit():
    effects = ["Grow from seeds", "Fill between slices", "Level tracing", "Margin", "Hollow", "Logical operators"]
    algorithm_type, name = provenance.deriveAlgorithm(effects)
    assert algorithm_type == "SEMIAUTOMATIC" and len(name) == 64 and name.endswith("...")
