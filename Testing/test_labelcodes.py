"""Codes for AI label names: the bundled TotalSegmentator table, its checks, user tables.

The checks run over SlicerTotalSegmentator's table as shipped (an unmodified
copy) must find the rows that contradict their names, and nothing may remain
of them in the bundled table once QuantReport's documented changes apply.
Coverage is measured against the labels of every TotalSegmentator task.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import PROJECT_ROOT
from QuantReportLib import labelcodes
from QuantReportLib.errors import InvalidInputError, NotFoundError
from QuantReportLib.labelcodes import LabelOptions, checkRows, loadLabelCodes, namedSegments, readRows

UPSTREAM = labelcodes.DATA_FOLDER / "totalsegmentator_snomed_mapping.csv"
#: TotalSegmentator labels no table row maps, each for the reason the data README gives.
UNMAPPED = {"vertebrae_L6", "aorta_true_lumen", "aorta_false_lumen", "pul_sinotubular_junction", "pul_bifurcation",
            "pul_left_start", "pul_right_start"}
#: Rows of the bundled table whose findings are flagged (warnings shown when used), not changed.
FLAGGED = {"teeth_lower", "psoas_major_left", "psoas_major_right"}


def _header() -> str:
    return UPSTREAM.read_text(encoding="utf-8").splitlines()[0]


def test_checks_find_the_rows_of_the_upstream_table_that_contradict_their_names():
    found = checkRows(readRows(UPSTREAM))
    errors = {(p.name, p.problem.check) for p in found if p.problem.severity == "error"}
    assert errors == {
        ("subclavian_artery_left", "laterality"),  # its type is 'Right Subclavian Artery' in PS3.16
        ("quadriceps_femoris_left", "laterality"), ("quadriceps_femoris_right", "laterality"),
        ("parotid_gland_left", "laterality"), ("parotid_gland_right", "laterality"),
        ("upper_left_canine_fdi23", "laterality"), ("lower_left_canine_fdi33", "laterality"),
        ("upper_left_canine_pulp_fdi123", "laterality"), ("lower_left_canine_pulp_fdi133", "laterality"),
        ("hyoid", "row"),  # its color is in the unnamed columns
    }
    messages = {p.name: p.problem.message for p in found if p.problem.check == "laterality"}
    assert messages["quadriceps_femoris_left"].startswith("the name says left, no code says so")
    assert messages["subclavian_artery_left"] == "the name says left, the Type says right"
    warned = {p.name for p in found if p.problem.severity == "warning"}
    assert FLAGGED | {"body_extremities", "liver_segment_1", "upper_right_canine_fdi13"} <= warned
    # SCT, not SRT: the table uses SNOMED CT throughout (and NeuroNames for one structure).
    schemes = {scheme for row in readRows(UPSTREAM) for scheme, _, _ in row.codes.values() if scheme}
    assert schemes == {"SCT", "NEU"}


def test_bundled_table_has_no_errors_left_and_flags_the_rest():
    table = loadLabelCodes("totalsegmentator")
    assert all(p.problem.severity == "warning" for found in table.problems.values() for p in found)
    assert set(table.problems) == FLAGGED
    subclavian = table.codes["subclavian_artery_left"].terminology
    assert (subclavian.type.value, subclavian.type_modifier.meaning) == ("36765005", "Left")
    assert table.codes["quadriceps_femoris_right"].terminology.type_modifier.meaning == "Right"
    assert table.codes["hyoid"].color == (250, 210, 139)
    assert table.codes["upper_left_canine_fdi23"].terminology.type.value == "860780009"
    # The upstream copy is byte for byte SlicerTotalSegmentator's (PROVENANCE), so a newer copy can replace it.
    shared = PROJECT_ROOT.parent / "shared" / "terminology" / "totalsegmentator_snomed_mapping.csv"
    if shared.exists():
        assert shared.read_bytes() == UPSTREAM.read_bytes()
    # Every change states its reason.
    assert all(reason for _, reason, _ in labelcodes.readChanges(
        labelcodes.DATA_FOLDER / "totalsegmentator_quantreport_changes.csv"))


def test_every_totalsegmentator_label_maps_but_the_documented_ones():
    tasks = json.loads((labelcodes.DATA_FOLDER / "totalsegmentator_tasks.json").read_text())["tasks"]
    labels = {name for task in tasks.values() for name in task.values()}
    table = loadLabelCodes("totalsegmentator")
    unmapped = labels - set(table.codes)
    assert unmapped == UNMAPPED
    # The coverage the README states is the measured one.
    readme = (labelcodes.DATA_FOLDER / "README.md").read_text()
    assert f"{len(labels) - len(unmapped)} of {len(labels)} map" in readme
    assert f"{len(labels)} distinct label names over its {len(tasks)} tasks" in readme
    for name in UNMAPPED:
        assert f"`{name}`" in readme
    with pytest.raises(InvalidInputError, match="2 label name.*vertebrae_L6, pul_bifurcation"):
        table.lookup(["liver", "vertebrae_L6", "pul_bifurcation"])


def test_a_user_table_is_checked_and_used(tmp_path):
    rows = [
        "liver_tumor_core,SCT,49755003,Morphologically Abnormal Structure,SCT,108369006,Neoplasm,,,,SCT,10200004,"
        "Liver,,,,255,0,0",
        "lung_right,SCT,123037004,Anatomical Structure,SCT,39607008,Lung,SCT,7771000,Left,,,,,,,,,",
        "old_codes,SRT,T-D0050,Tissue,SRT,T-62000,Liver,,,,,,,,,,,,",
        "half,SCT,123037004,Anatomical Structure,SCT,,Lung,,,,,,,,,,,,",
        "bad_color,SCT,123037004,Anatomical Structure,SCT,10200004,Liver,,,,,,,,,,300,0,0",
        "bad_color,SCT,123037004,Anatomical Structure,SCT,10200004,Liver,,,,,,,,,,,,",
    ]
    path = tmp_path / "codes.csv"
    path.write_text("\n".join([_header().rstrip(","), *rows]) + "\n")
    table = loadLabelCodes(path)
    problems = {name: [p.problem.message for p in found] for name, found in table.problems.items()}
    assert problems["lung_right"] == ["the name says right, the TypeModifier says left"]
    assert any("retired" in message and "use SCT" in message for message in problems["old_codes"])
    assert problems["half"] == ["Type lacks CodeValue (a code is a complete triplet, PS3.3 8.8)"]
    assert "not three integers 0-255" in problems["bad_color"][0]
    assert problems["bad_color"][1] == "the name is also on line 6"
    with pytest.raises(InvalidInputError, match=rf"^{re.escape(str(path))}: 2 mapping row\(s\) fail the checks: "
                       r"line 3 \(lung_right\): the name says right"):
        table.lookup(["lung_right", "half"])
    segments = namedSegments({4: "liver_tumor_core"}, LabelOptions(terminology=str(path), algorithm="nnU-Net 2"),
                             path)
    tumor = segments[4]
    assert (tumor.number, tumor.label, tumor.algorithm_name, tumor.color) == (4, "liver_tumor_core", "nnU-Net 2",
                                                                               (255, 0, 0))
    assert (tumor.terminology.anatomic_region.meaning, tumor.terminology.type.value) == ("Liver", "108369006")
    with pytest.raises(InvalidInputError, match="needs the columns"):
        (tmp_path / "short.csv").write_text("Name,Type_CodeValue\nx,1\n")
        loadLabelCodes(tmp_path / "short.csv")
    with pytest.raises(NotFoundError, match="neither a bundled terminology"):
        loadLabelCodes(tmp_path / "none.csv")


def test_label_names_that_cannot_be_segment_labels_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot be a Segment Label"):
        namedSegments({1: "a" * 65}, LabelOptions(terminology="totalsegmentator"), tmp_path)
    with pytest.raises(InvalidInputError, match="cannot be a Segment Label"):
        namedSegments({1: "liver\\spleen"}, LabelOptions(terminology="totalsegmentator"), tmp_path)
    with pytest.raises(InvalidInputError, match="PROBABILITY or OCCUPANCY"):
        LabelOptions(fractional="MAYBE")
