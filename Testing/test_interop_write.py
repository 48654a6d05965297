"""What QuantReport writes, read by the other readers: dcmjs / OHIF and dcmqi (issue 5, part 2).

One multi-segment report on the LIDC-IDRI CT (a nodule, a box overlapping it,
an empty segment) is written as SEG + SR, with and without the OHIF companion
groups.  Then:

- dcmjs (``Testing/js/read-seg.mjs``) and OHIF v3's SEG loader
  (@cornerstonejs/adapters) read the SEG: the same segment metadata as
  ``quantreport load --json`` and pydicom, and voxel for voxel the same segments
  (counts per source image and index sums);
- dcmjs (``Testing/js/read-sr.mjs``) reads the SR: the same groups, codes and
  values (the Floating Point Value exactly; the DS Numeric Value as its text
  says, within 1e-12 of the exact value);
- dcmqi's ``segimage2itkimage`` and ``tid1500reader`` read the same metadata and values;
- the companion groups: dciodvfy finds no error, dsrdump and tid1500reader read
  them, our reader's volumetric groups are unchanged, and OHIF's SR logic puts
  the centroid point and the long axis line at the positions an independent
  numpy computation gives.

``npm ci`` in ``Testing/js`` installs the pinned JavaScript packages (.ci/run does it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import assert_valid_dicom, require, require_tool
from conftest import sharedData as dataPath
from QuantReportLib import measurements, report, seg, series, sr
from QuantReportLib.dicomio import writing
from QuantReportLib.errors import GeometryError, InvalidInputError
from QuantReportLib.measurements.geometry import centroidIjk, longAxis
from QuantReportLib.model import Code, Geometry, Segment, Segmentation, Terminology

JS_DIR = Path(__file__).resolve().parent / "js"
TISSUE = Code("85756007", "SCT", "Tissue")
NODULE = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("27925004", "SCT", "Nodule"),
                     anatomic_region=Code("39607008", "SCT", "Lung"),
                     anatomic_region_modifier=Code("7771000", "SCT", "Left"))
MASS = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"), Code("4147007", "SCT", "Mass"))


# -- the report ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lidc_folder() -> Path:
    return dataPath("ct", "lidc-idri-0001")


@pytest.fixture(scope="module")
def written(lidc_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """SEG, SR with companions and SR without, in one folder (so that ``load`` finds the SEG beside each SR)."""
    volume = series.loadSeries(sorted(lidc_folder.glob("*.dcm")))
    shape = volume.geometry.shape
    nodule = np.zeros(shape, dtype=bool)
    nodule[20:30, 300:330, 330:370] = True
    nodule[22:26, 290:300, 335:345] = True  # a bump on slices 22-25: the long axis runs into it
    box = np.zeros(shape, dtype=bool)
    box[25:28, 310:340, 360:400] = True  # overlaps the nodule
    segments = [
        Segment(1, "Nodule", NODULE, color=(200, 50, 50)),
        Segment(2, "Box", MASS, color=(10, 200, 30), algorithm_type="SEMIAUTOMATIC", algorithm_name="threshold"),
        Segment(3, "Empty", Terminology(TISSUE, TISSUE), color=(90, 90, 240)),
    ]
    segmentation = report.assignTracking(Segmentation.fromMasks(
        {1: nodule, 2: box, 3: np.zeros(shape, dtype=bool)}, volume.geometry, segments))
    table = measurements.computeMeasurements(volume, segmentation)
    folder = tmp_path_factory.mktemp("interop")
    seg_dataset = seg.createSeg(volume, segmentation)
    paths = {"seg": writing.writeDataset(seg_dataset, folder / "seg.dcm")}
    for name, companions in (("sr", True), ("plain", False)):
        dataset = sr.createSr(volume, seg_dataset, table, segmentation=segmentation, ohif_companions=companions)
        paths[name] = writing.writeDataset(dataset, folder / f"{name}.dcm")
    return {"volume": volume, "segmentation": segmentation, "table": table, "paths": paths}


def _loadJson(path: Path) -> dict:
    return report.loadReport(path).toJson()


def _node(script: str, *arguments: os.PathLike | str) -> dict:
    tool = require_tool("node")
    require((JS_DIR / "node_modules" / "dcmjs").is_dir() and (JS_DIR / "node_modules" / "@cornerstonejs").is_dir(),
            "JavaScript packages missing: run `npm ci` in Testing/js")
    result = subprocess.run([tool, str(JS_DIR / script), *map(str, arguments)], capture_output=True, text=True,
                            timeout=300, cwd=JS_DIR)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _dsValues(path: Path) -> list[list[str]]:
    """The DS Numeric Value text of every NUM, per measurement group, as written."""
    dataset = pydicom.dcmread(path)
    groups = sr.read._groupItems(dataset)
    return [[str(item.MeasuredValueSequence[0]["NumericValue"].value) for item in group.ContentSequence
             if item.ValueType == "NUM"] for group in groups]


# -- SEG --------------------------------------------------------------------------------------------------


def test_dcmjs_and_ohif_seg_loader_read_our_seg(written: dict, lidc_folder: Path):
    paths, segmentation, volume = written["paths"], written["segmentation"], written["volume"]
    ours = _loadJson(paths["seg"])
    js = _node("read-seg.mjs", paths["seg"], lidc_folder)
    header = pydicom.dcmread(paths["seg"], stop_before_pixels=True)

    # Segment metadata: dcmjs and the OHIF loader agree with `load --json` and with the file.
    assert [s["number"] for s in js["dcmjs"]["segments"]] == [1, 2, 3]
    assert js["ohif"]["segments"] == [{"number": s["number"], "label": s["label"]} for s in ours["segments"]]
    for theirs, mine, item, segment in zip(js["dcmjs"]["segments"], ours["segments"], header.SegmentSequence,
                                           segmentation.segments, strict=True):
        assert theirs["number"] == mine["number"] and theirs["label"] == mine["label"]
        assert theirs["algorithm_type"] == mine["algorithm_type"] == segment.algorithm_type
        assert theirs["algorithm_name"] == segment.algorithm_name
        assert theirs["category"] == mine["category"] and theirs["type"] == mine["type"]
        assert theirs["anatomic_region"] == mine["anatomic_region"]
        assert theirs["cielab"] == [int(v) for v in item.RecommendedDisplayCIELabValue]
        assert (theirs["tracking_id"], theirs["tracking_uid"]) == (segment.tracking_id, segment.tracking_uid)

    # Voxels, as OHIF decodes them onto the source images: identical masks (counts per image and index sums).
    assert js["ohif"]["overlapping"] is True
    assert "3" not in js["ohif"]["voxels"]  # the empty segment is described but has no voxel
    for segment in segmentation.segments[:2]:
        mask = segmentation.mask(segment.number)
        decoded = js["ohif"]["voxels"][str(segment.number)]
        k, j, i = np.nonzero(mask)
        assert decoded["count"] == ours["segments"][segment.number - 1]["voxel_count"] == k.size
        assert decoded["sum_column"] == int(i.sum()) and decoded["sum_row"] == int(j.sum())
        per_image = {volume.source_images[index].sop_instance_uid: int(n)
                     for index, n in enumerate(mask.sum(axis=(1, 2))) if n}
        assert decoded["per_image"] == per_image


def test_dcmqi_reads_our_seg_metadata_and_voxels(written: dict, tmp_path: Path):
    tool = require_tool("segimage2itkimage")
    import nrrd

    paths, segmentation = written["paths"], written["segmentation"]
    result = subprocess.run([tool, "--inputDICOM", str(paths["seg"]), "--outputDirectory", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads((tmp_path / "meta.json").read_text())
    attributes = {item["labelID"]: item for group in meta["segmentAttributes"] for item in group}
    ours = {s["number"]: s for s in _loadJson(paths["seg"])["segments"]}
    assert sorted(attributes) == sorted(ours) == [1, 2, 3]

    def code(item: dict | None) -> dict | None:
        return None if item is None else {"value": item["CodeValue"], "scheme": item["CodingSchemeDesignator"],
                                          "meaning": item["CodeMeaning"]}

    for segment in segmentation.segments:
        item, mine = attributes[segment.number], ours[segment.number]
        assert item["SegmentLabel"] == mine["label"]
        assert item["SegmentAlgorithmType"] == mine["algorithm_type"]
        assert code(item["SegmentedPropertyCategoryCodeSequence"]) == mine["category"]
        assert code(item["SegmentedPropertyTypeCodeSequence"]) == mine["type"]
        assert code(item.get("AnatomicRegionSequence")) == mine["anatomic_region"]
        assert item["TrackingUniqueIdentifier"] == segment.tracking_uid
        # sRGB -> CIELab -> sRGB loses at most one step per channel
        assert max(abs(a - b) for a, b in zip(item["recommendedDisplayRGBValue"], segment.color, strict=True)) <= 1
        data, _ = nrrd.read(str(tmp_path / f"{segment.number}.nrrd"))
        assert int(np.count_nonzero(data)) == mine["voxel_count"]


# -- SR ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "sr"])
def test_dcmjs_reads_our_sr_values_and_codes(written: dict, name: str):
    path = written["paths"][name]
    ours = _loadJson(path)
    js = _node("read-sr.mjs", path)
    volumetric = [group for group in js["groups"] if group["template"] == "1411"]
    assert len(volumetric) == len(ours["groups"]) == 3
    texts = _dsValues(path)
    for theirs, mine, ds_texts in zip(volumetric, ours["groups"], texts, strict=False):
        for key in ("tracking_identifier", "tracking_uid", "finding", "finding_site", "segment", "source_series_uid"):
            assert theirs[key] == mine[key], key
        assert len(theirs["measurements"]) == len(mine["measurements"]) == len(ds_texts)
        for value, measurement, text in zip(theirs["measurements"], mine["measurements"], ds_texts, strict=True):
            for key in ("name", "unit", "derivation"):
                assert value[key] == measurement[key], key
            # FD carries the exact binary64 value; dcmjs parses the DS text exactly as written.
            assert value["floating_point_value"] == measurement["value"]
            assert value["numeric_value"] == float(text)
            assert math.isclose(value["numeric_value"], measurement["value"], rel_tol=1e-12, abs_tol=1e-300)
    # The empty segment: counts and volumes only (statistics of no voxels are left out).
    assert [m["numeric_value"] for m in volumetric[2]["measurements"]] == [0, 0, 0]


def test_dcmqi_tid1500reader_reads_the_same_values(written: dict, tmp_path: Path):
    tool = require_tool("tid1500reader")
    for name in ("plain", "sr"):
        path = written["paths"][name]
        out = tmp_path / f"{name}.json"
        result = subprocess.run([tool, "--inputDICOM", str(path), "--outputMetadata", str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        theirs = json.loads(out.read_text())["Measurements"]
        ours = _loadJson(path)["groups"]
        assert len(theirs) == (3 if name == "plain" else 7)
        for group, mine in zip(theirs, ours, strict=False):
            assert group["TrackingIdentifier"] == mine["tracking_identifier"]
            assert group["TrackingUniqueIdentifier"] == mine["tracking_uid"]
            assert int(group["ReferencedSegment"]) == mine["segment"]["number"]
            assert group["SourceSeriesForImageSegmentation"] == mine["source_series_uid"]
            assert group["Finding"]["CodeValue"] == mine["finding"]["value"]
            items = group["measurementItems"]
            assert len(items) == len(mine["measurements"])
            for item, measurement in zip(items, mine["measurements"], strict=True):
                assert item["quantity"]["CodeValue"] == measurement["name"]["value"]
                assert item["units"]["CodeValue"] == measurement["unit"]["value"]
                derivation = item.get("derivationModifier", {}).get("CodeValue")
                assert derivation == (measurement["derivation"] or {}).get("value")
                assert math.isclose(float(item["value"]), measurement["value"], rel_tol=1e-12, abs_tol=1e-300)
        # Companion groups reference no segment: dcmqi lists them without one, after the volumetric groups.
        assert all("ReferencedSegment" not in group for group in theirs[3:])


# -- OHIF companion groups --------------------------------------------------------------------------------


def _bruteForceLongAxis(mask: np.ndarray, geometry: Geometry) -> tuple[int, float]:
    """Slice of largest area (ties: nearest the centroid, then lowest) and its largest voxel-centre distance."""
    areas = mask.sum(axis=(1, 2))
    k_centre = np.nonzero(mask)[0].mean()
    candidates = [k for k in range(mask.shape[0]) if areas[k] == areas.max()]
    k = min(candidates, key=lambda index: (abs(index - k_centre), index))
    j, i = np.nonzero(mask[k])
    points = geometry.ijkToLps(np.column_stack([i, j, np.full(i.size, k)]))
    differences = points[:, None, :] - points[None, :, :]
    return k, float(np.sqrt((differences ** 2).sum(-1)).max())


def test_companions_are_valid_and_read_by_dsrdump(written: dict):
    path = written["paths"]["sr"]
    assert_valid_dicom(path)
    tool = require_tool("dsrdump")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"Geometric purpose of region")=(128138,DCM,"Center of Mass")') == 2
    assert result.stdout.count('"Geometric purpose of region")=(103339001,SCT,"Long axis")') == 2
    assert result.stdout.count("(POINT,") == 2
    assert result.stdout.count('"Image Region")=(POLYLINE,') == 2  # the long axis companions
    # and each segment's long and short axis NUM, INFERRED FROM the line it was measured along
    assert result.stdout.count('inferred from SCOORD:(,,"Source")=(POLYLINE,') == 4


def test_companions_leave_our_reading_unchanged(written: dict):
    paths = written["paths"]
    plain, with_companions = sr.readSr(paths["plain"]), sr.readSr(paths["sr"])
    assert [g for g in with_companions.groups if g.template_id == "1411"] == list(plain.groups)
    items = sr.read._groupItems(pydicom.dcmread(paths["sr"]))
    assert [sr.isCompanionGroup(item) for item in items] == [False] * 3 + [True] * 4
    # `load --json` (readSr + tableFromSr with the SEG's segments) counts each segment once.
    assert _loadJson(paths["sr"])["groups"] == _loadJson(paths["plain"])["groups"]


def test_ohif_shows_centroid_and_long_axis_where_numpy_puts_them(written: dict, lidc_folder: Path):
    volume, segmentation = written["volume"], written["segmentation"]
    js = _node("read-sr.mjs", written["paths"]["sr"], lidc_folder)
    annotations = {a["tracking_identifier"]: a for a in js["ohif"]}
    # One OHIF annotation per group: companions have their own tracking UIDs, so none is merged away.
    assert len(js["ohif"]) == 7
    geometry = volume.geometry
    library = set()
    for segment in segmentation.segments:
        mask = segmentation.mask(segment.number)
        if not mask.any():
            assert f"{segment.label} centroid" not in annotations
            continue
        k, j, i = np.nonzero(mask)
        centre = np.array([i.mean(), j.mean(), k.mean()])
        nearest = int(np.floor(centre[2] + 0.5))
        point = annotations[f"{segment.tracking_id} centroid"]
        assert point["graphic"]["graphic_type"] == "POINT" and point["graphic"]["value_type"] == "SCOORD"
        assert point["graphic"]["referenced_sop_instance_uid"] == volume.source_images[nearest].sop_instance_uid
        expected = geometry.ijkToLps([centre[0], centre[1], nearest])
        np.testing.assert_allclose(point["world"][0], expected, atol=1e-3)  # Cornerstone computes in float32
        library.add(point["graphic"]["referenced_sop_instance_uid"])

        line = annotations[f"{segment.tracking_id} long axis"]
        slice_index, length = _bruteForceLongAxis(mask, geometry)
        assert line["graphic"]["graphic_type"] == "POLYLINE" and len(line["graphic"]["graphic_data"]) == 4
        assert line["graphic"]["referenced_sop_instance_uid"] == volume.source_images[slice_index].sop_instance_uid
        ends = np.array(line["world"])
        assert math.isclose(float(np.linalg.norm(ends[0] - ends[1])), length, rel_tol=1e-5)
        for end in ends:  # both ends are voxel centres of the segment on that slice
            index = np.rint(geometry.lpsToIjk(end)).astype(int)
            assert index[2] == slice_index and mask[index[2], index[1], index[0]]
        assert line["labels"] == [{"label": "Long axis", "value": f"{length:.2f} mm"}]
        value = next(m for g in js["groups"] if g["tracking_identifier"] == line["tracking_identifier"]
                     for m in g["measurements"])
        assert math.isclose(value["floating_point_value"], length, rel_tol=1e-12)
        assert value["unit"]["value"] == "mm"
        library.add(line["graphic"]["referenced_sop_instance_uid"])
    # OHIF needs a TID 1600 Image Library; it lists the images the companions are drawn on.
    assert js["image_library"] is not None and set(js["image_library"]) == library


def test_long_axis_matches_brute_force_on_an_anisotropic_sheared_grid():
    rng = np.random.default_rng(7)
    matrix = np.array([[0.8, 0.1, 0.0, -20.0], [0.0, 1.3, 0.2, 5.0], [0.0, 0.0, 3.0, 40.0], [0, 0, 0, 1]])
    geometry = Geometry((6, 40, 50), matrix)
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[1:5, 8:30, 10:40] = rng.random((4, 22, 30)) > 0.55
    axis = longAxis(mask, geometry)
    slice_index, length = _bruteForceLongAxis(mask, geometry)
    assert axis.slice_index == slice_index
    assert math.isclose(axis.length_mm, length, rel_tol=1e-12)
    for i, j in (axis.first, axis.second):
        assert mask[axis.slice_index, j, i]
    single = np.zeros(geometry.shape, dtype=bool)
    single[2, 3, 4] = True
    assert longAxis(single, geometry) is None
    assert centroidIjk(np.zeros(geometry.shape, dtype=bool)) is None


def test_companion_options_are_checked_and_uids_are_stable(written: dict):
    volume, segmentation, table = written["volume"], written["segmentation"], written["table"]
    seg_dataset = pydicom.dcmread(written["paths"]["seg"], stop_before_pixels=True)
    with pytest.raises(InvalidInputError, match="need the segmentation"):
        sr.createSr(volume, seg_dataset, table, ohif_companions=True)
    matrix = segmentation.geometry.ijk_to_lps.copy()
    matrix[:3, 3] += 5.0
    shifted = Segmentation(Geometry(segmentation.geometry.shape, matrix), segmentation.segments,
                           segmentation.layers, segmentation.placement)
    with pytest.raises(GeometryError):
        sr.createSr(volume, seg_dataset, table, segmentation=shifted, ohif_companions=True)
    def companionUids(dataset: pydicom.Dataset) -> list[str]:
        return [str(item.UID) for group in sr.read._groupItems(dataset) if sr.isCompanionGroup(group)
                for item in group.ContentSequence if item.ValueType == "UIDREF"]

    companions = companionUids(pydicom.dcmread(written["paths"]["sr"]))
    again = sr.createSr(volume, seg_dataset, table, segmentation=segmentation, ohif_companions=True)
    assert companionUids(again) == companions  # derived from the segments' tracking UIDs, not random
    assert not set(companions) & {s.tracking_uid for s in segmentation.segments}
    assert len(set(companions)) == 4

