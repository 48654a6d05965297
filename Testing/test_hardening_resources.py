"""Memory bounded by the real data (issue 16, items 9, 10, 12): a deflate bomb, a SEG whose frames span an
absurd grid, a very large SR and a validator that would eat the machine are refused or bounded, in one line.

Peak memory is measured on the command's own process (``hostile.measured``); time is never asserted.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pydicom
import pytest
from hostile import assertOneError, deflatedBomb, filesUnder, measured, quantreport, tinyCase
from pydicom.uid import generate_uid

MiB = 1 << 20
# What a command needs besides the data: Python, numpy, pydicom, highdicom (about 100 MiB here).
_BASELINE = 250 * MiB


# -- item 9: bounded inflation ---------------------------------------------------------------------------


def test_deflate_bomb_is_refused_in_one_line_with_bounded_memory(tmp_path):
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    bomb = deflatedBomb(bombs / "bomb.dcm", 600 * MiB)
    assert bomb.stat().st_size < 3 * MiB

    result, peak = measured("import", bombs, "--db", tmp_path / "db", "--json")
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert imported["indexed"] == 0, imported
    (skipped,) = imported["skipped"]
    assert skipped["path"] == str(bomb) and "inflate" in skipped["reason"], skipped
    assert peak < _BASELINE + 200 * MiB, f"import of a deflate bomb peaked at {peak / MiB:.0f} MiB"

    result, peak = measured("load", bomb)
    assertOneError(result, bomb, "inflate")
    assert peak < _BASELINE + 200 * MiB, f"load of a deflate bomb peaked at {peak / MiB:.0f} MiB"

    # An image series whose pixel data is the bomb (its header is sound).
    series = tmp_path / "series"
    series.mkdir()
    pixel_bomb = deflatedBomb(series / "slice.dcm", 600 * MiB, in_pixel_data=True)
    result, peak = measured("segment", "--series-dir", series, "--seed", 0, 0, 0, "--lower", 0, "--upper", 1,
                            "--out", tmp_path / "x.seg.nrrd")
    assertOneError(result, series, "inflate", pixel_bomb.name)
    assert peak < _BASELINE + 200 * MiB, f"a series load of a deflate bomb peaked at {peak / MiB:.0f} MiB"


def test_loading_an_sr_does_not_inflate_a_bomb_beside_it(tmp_path):
    ct, labelmap = tinyCase(tmp_path)
    out = tmp_path / "out"
    result = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", out)
    assert result.returncode == 0, result.stderr
    sr = Path(result.stdout.split()[1])
    seg = Path(result.stdout.split()[0])
    seg.rename(tmp_path / seg.name)  # the SR's SEG is not beside it: every neighbour is looked at
    deflatedBomb(out / "0-bomb.dcm", 600 * MiB)
    result, peak = measured("load", sr, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "SR"
    assert peak < _BASELINE + 200 * MiB, f"loading an SR beside a deflate bomb peaked at {peak / MiB:.0f} MiB"


# -- item 10: grids sized from data -----------------------------------------------------------------------


def _spreadSeg(source: Path, path: Path, distance_mm: float, spacing_mm: float) -> Path:
    """``source`` with its last frame moved ``distance_mm`` along the slice normal, Spacing Between Slices set."""
    dataset = pydicom.dcmread(source)
    shared = dataset.SharedFunctionalGroupsSequence[0]
    shared.PixelMeasuresSequence[0].SpacingBetweenSlices = spacing_mm
    frames = dataset.PerFrameFunctionalGroupsSequence
    first = [float(v) for v in frames[0].PlanePositionSequence[0].ImagePositionPatient]
    for index, item in enumerate(frames):
        position = list(first)
        position[2] += 0 if index < len(frames) - 1 else distance_mm  # the normal of an axial SEG is +z
        item.PlanePositionSequence[0].ImagePositionPatient = position
    dataset.SOPInstanceUID = generate_uid()
    dataset.save_as(path)
    return path


def test_seg_frames_far_apart_are_refused_before_allocating(tmp_path):
    from conftest import sharedData

    source = sharedData("seg", "lidc-idri-0001-nodule1-annotation0.dcm")  # 512 x 512 frames
    out = tmp_path / "labelmaps"
    for distance in (2000.0, 1e6):
        spread = _spreadSeg(source, tmp_path / f"spread-{distance:g}.dcm", distance, 0.25)
        result, peak = measured("load", spread, "--labelmap-out", out / f"{distance:g}.nrrd")
        assertOneError(result, spread, "slices")
        assert peak < _BASELINE + 200 * MiB, f"a SEG spanning {distance} mm peaked at {peak / MiB:.0f} MiB"
    assert not out.exists() or filesUnder(out) == []
    # The same SEG with its frames where they belong still loads on its own grid.
    result = quantreport("load", source, "--labelmap-out", out / "nodule.nrrd")
    assert result.returncode == 0, result.stderr


# -- item 12: check of a very large SR, and dciodvfy's own bounds --------------------------------------------


def _largeSr(folder: Path, groups: int) -> Path:
    """An SR of ``groups`` measurement groups (copies of one exported group, each with its own tracking UID)
    beside its SEG and CT, written by encoding the group once and repeating its bytes."""
    from pydicom.dataelem import RawDataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ct, labelmap = tinyCase(folder)
    result = quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", ct)
    assert result.returncode == 0, result.stderr
    sr_path = Path(result.stdout.split()[1])
    dataset = pydicom.dcmread(sr_path)
    container = next(item for item in dataset.ContentSequence if item.ValueType == "CONTAINER")
    (group,) = container.ContentSequence
    uid_item = next(item for item in group.ContentSequence if item.ValueType == "UIDREF")
    placeholder = "9" * 60
    uid_item.UID = placeholder
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, group)
    encoded = buffer.getvalue()
    item = b"\xfe\xff\x00\xe0" + len(encoded).to_bytes(4, "little") + encoded
    items = b"".join(item.replace(placeholder.encode(), f"{generate_uid()[:60]:<60}".replace(" ", "1").encode())
                     for _ in range(groups))
    container["ContentSequence"] = RawDataElement(0x0040A730, "SQ", len(items), items, 0, False, True)
    sr_path.unlink()
    large = ct / "large-sr.dcm"
    dataset.save_as(large)
    return large


def _withTool(folder: Path, name: str, body: str, python: bool = False) -> dict[str, str]:
    """The environment with a stand-in ``name`` first on PATH (a shell script, or Python with ``python``)."""
    tools = folder / "tools"
    tools.mkdir(exist_ok=True)
    tool = tools / name
    tool.write_text(f"#!{sys.executable if python else '/bin/sh'}\n{body}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.slow
def test_check_of_a_5000_group_sr_is_lean(tmp_path):
    large = _largeSr(tmp_path, 5000)
    # QuantReport's own reading is measured: dciodvfy (bounded apart, below) is a stand-in that finds nothing.
    result, peak = measured("check", large.parent, "--json", env=_withTool(tmp_path, "dciodvfy", "exit 0"))
    assert result.returncode in (0, 2), result.stderr
    checked = {Path(entry["file"]).name: entry for entry in json.loads(result.stdout)}
    assert checked["large-sr.dcm"]["kind"] == "SR"
    assert peak < _BASELINE + 400 * MiB, f"check of a 5,000-group SR peaked at {peak / MiB:.0f} MiB"


def test_dciodvfy_runs_within_a_memory_bound(tmp_path):
    """A validator that tries to take 8 GiB is stopped by the bound and the file is reported, in the results."""
    ct, labelmap = tinyCase(tmp_path)
    out = tmp_path / "out"
    assert quantreport("export", "--series-dir", ct, "--labelmap", labelmap, "--out", out).returncode == 0
    # calloc'd, so it costs no real memory even where nothing bounds it.
    env = _withTool(tmp_path, "dciodvfy", "block = bytearray(8 << 30)\nprint('Error - still here')", python=True)
    result = quantreport("check", out, "--json", env=env)
    assert result.returncode == 2, result.stderr
    problems = [problem["message"] for entry in json.loads(result.stdout) for problem in entry["problems"]
                if problem["check"] == "dciodvfy"]
    assert problems and all("memory" in message for message in problems), problems
