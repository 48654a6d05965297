"""``quantreport report``: the readout page in a real browser, its PDF, its DICOM key images, and change over time.

The page is opened by headless Chromium with the network cut off
(:mod:`browser`); its DOM is checked against the SR read independently with
pydicom (every value and unit), a screenshot must not be blank, the PDF is
rasterised with pdftoppm and read with pdftotext, the DICOM files pass
dciodvfy.  Three time points are made from the sample CT (three studies, the
nodule grown and shrunk by known voxel counts) and the percent changes on the
page are checked against the masks' voxel counts.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import lxml.html
import numpy as np
import pydicom
import pytest
import scipy.ndimage
from browser import dumpDom, screenshot
from conftest import PROJECT_ROOT, assert_valid_dicom, require_tool
from PIL import Image
from pydicom.uid import generate_uid
from QuantReportLib import report
from QuantReportLib.cli import main
from QuantReportLib.database import EmbeddedDicomDatabase
from QuantReportLib.demo import SAMPLE_LESIONS
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.model import Geometry, Segment, Segmentation, SourceImage, Volume
from QuantReportLib.readout import keyimages
from QuantReportLib.readout.values import formatChange, formatValue
from QuantReportLib.terminology import DEFAULT_TERMINOLOGY

SAMPLE = PROJECT_ROOT / "QuantReport" / "QuantReportLib" / "data" / "lidc-idri-0001-nodule1"
VOLUME = ("118565006", "SCT")
HOSTILE_NAME = "<script>document.body.setAttribute('id','pw')</script>^<b>B</b>"  # no "=": PN groups
HOSTILE_LABEL = "<img src=x onerror=\"document.title='PWNED'\"> $x^{$ 結節"  # mathtext, not Latin-1
FOLLOW_UP_2 = "follow-up $2^{$"  # a label that is not mathtext
HOSTILE_STUDY = "</td></tr></table><h1 id='injected'>x</h1>"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- making reports ----------------------------------------------------------------------------------


def copyStudy(target: Path, seed: str, **attributes) -> Path:
    """The sample CT as a study of its own (new study, series, frame of reference and instance UIDs)."""
    target.mkdir(parents=True)
    uids = {name: generate_uid(entropy_srcs=[seed, name]) for name in ("study", "series", "frame")}
    for path in sorted(SAMPLE.glob("*.dcm")):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = uids["study"], uids["series"]
        dataset.FrameOfReferenceUID = uids["frame"]
        dataset.SOPInstanceUID = generate_uid(entropy_srcs=[seed, path.name])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        dataset.save_as(target / path.name, enforce_file_format=True)
    return target


def noduleMask(volume: Volume) -> np.ndarray:
    segmentation = SAMPLE_LESIONS[0].segment(volume)
    return segmentation.mask(segmentation.segments[0].number)


def sphere(volume: Volume, centre_kji: tuple[int, int, int], radius_voxels: float) -> np.ndarray:
    k, j, i = np.ogrid[tuple(slice(0, n) for n in volume.geometry.shape)]
    spacing = volume.geometry.spacing  # i, j, k
    distance = (((k - centre_kji[0]) * spacing[2]) ** 2 + ((j - centre_kji[1]) * spacing[1]) ** 2
                + ((i - centre_kji[2]) * spacing[0]) ** 2)
    return distance <= (radius_voxels * spacing[0]) ** 2


def saveReport(database, series_uid: str, lesions: list[tuple[str, str, np.ndarray]], **options) -> Path:
    """SEG + SR of ``lesions`` (label, tracking UID, mask) on a series of the database; the SR's path."""
    volume = report.loadSeriesFromDatabase(database, series_uid)
    segments = [Segment(number, label, DEFAULT_TERMINOLOGY, color=(255, 160, 40), tracking_id=label,
                        tracking_uid=uid) for number, (label, uid, _) in enumerate(lesions, 1)]
    segmentation = Segmentation.fromMasks([mask for _, _, mask in lesions], volume.geometry, segments)
    saved = report.saveReport(volume, segmentation, database=database, options=report.ReportOptions(**options))
    return saved.sr_path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo case (sample CT, the nodule segmented), its readout as HTML with DICOM, and as PDF."""
    require_tool("chromium")
    folder = tmp_path_factory.mktemp("readout-demo")
    with EmbeddedDicomDatabase(folder / "db") as database:
        database.importPaths([SAMPLE], progress=False)
        (series,) = database.listSeries()
        volume = report.loadSeriesFromDatabase(database, series.series_instance_uid)
        segmentation = SAMPLE_LESIONS[0].segment(volume)
        saved = report.saveReport(volume, segmentation, database=database, options=report.ReportOptions(
            observer_name="Doe^Jane", verified=True, time_point="baseline"))
    status = main(["report", str(saved.sr_path), "--db", str(folder / "db"), "--out", str(folder / "html"),
                   "--dicom"])
    assert status == 0
    status = main(["report", saved.sr_sop_instance_uid, "--db", str(folder / "db"), "--out", str(folder / "pdf"),
                   "--format", "pdf"])
    assert status == 0
    return SimpleNamespace(folder=folder, sr=saved.sr_path, seg=saved.seg_path, volume=volume,
                           mask=segmentation.mask(1), html=folder / "html" / "report.html",
                           pdf=folder / "pdf" / "report.pdf", dicom=sorted((folder / "html" / "dicom").iterdir()))


# -- reading the SR and the page independently ------------------------------------------------------------


def _concept(item) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def srMeasurements(path: Path) -> dict[str, list[tuple[str, str, str, float]]]:
    """Tracking UID -> (concept, derivation, unit, value) of every NUM, read with pydicom alone (FD, else DS)."""
    dataset = pydicom.dcmread(path)
    groups: dict[str, list[tuple[str, str, str, float]]] = {}
    (container,) = [item for item in dataset.ContentSequence if _concept(item) == ("126010", "DCM")]
    for group in container.ContentSequence:
        uid = next(str(item.UID) for item in group.ContentSequence if _concept(item) == ("112040", "DCM"))
        rows = groups.setdefault(uid, [])
        for item in group.ContentSequence:
            if item.ValueType != "NUM":
                continue
            measured = item.MeasuredValueSequence[0]
            value = float(measured.FloatingPointValue) if "FloatingPointValue" in measured else float(
                measured.NumericValue)
            derivation = next((f"{c.ConceptCodeSequence[0].CodeValue}^{c.ConceptCodeSequence[0].CodingSchemeDesignator}"
                               for c in item.get("ContentSequence", []) if _concept(c) == ("121401", "DCM")), "")
            name = _concept(item)
            rows.append((f"{name[0]}^{name[1]}", derivation, str(measured.MeasurementUnitsCodeSequence[0].CodeValue),
                         value))
    return groups


def pageMeasurements(root) -> dict[str, list[tuple[str, str, str, float, str]]]:
    """Tracking UID -> (concept, derivation, unit, exact value, shown text) of every measurement row of the page."""
    found: dict[str, list[tuple[str, str, str, float, str]]] = {}
    for article in root.xpath('//article[contains(@class, "lesion")]'):
        rows = found.setdefault(article.get("data-tracking-uid"), [])
        for row in article.xpath('.//tr[contains(@class, "measurement")]'):
            (value,) = row.xpath('./td[contains(@class, "value")]')
            (unit,) = row.xpath('./td[contains(@class, "unit")]')
            assert unit.get("data-unit") == unit.text_content().strip()
            rows.append((row.get("data-concept"), row.get("data-derivation"), unit.text_content().strip(),
                         float(value.get("data-value")), value.text_content().strip()))
    return found


def halfLastDigit(shown: str) -> float:
    """Half a unit of the last digit a number is written with (its rounding bound)."""
    decimals = len(shown.split(".", 1)[1]) if "." in shown else 0
    return 0.5 * 10.0 ** -decimals


def pngOf(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,"), uri[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


# -- the page ---------------------------------------------------------------------------------------------


def test_every_value_on_the_page_is_the_srs_value_and_unit(demo):
    root = lxml.html.fromstring(dumpDom(demo.html))
    expected = srMeasurements(demo.sr)
    shown = pageMeasurements(root)
    assert set(shown) == set(expected) and len(expected) == 1
    for uid, rows in expected.items():
        page = shown[uid]
        assert len(page) == len(rows) >= 15, "every measurement of the SR is on the page, once"
        assert sorted(row[:4] for row in page) == sorted(rows), "exact values, codes and units as in the SR"
        for concept, _, _, value, text in page:
            assert abs(float(text) - value) <= halfLastDigit(text) * (1 + 1e-9), (concept, text, value)
    # Identification and report state, as the SR says.
    header = pydicom.dcmread(demo.sr, stop_before_pixels=True)
    text = root.text_content()
    for expected_text in (str(header.PatientID), str(header.StudyInstanceUID), str(header.SOPInstanceUID),
                          "Doe, Jane", "verified", "baseline", "Nodule 1", "Lesion", "semiautomatic",
                          "QuantReport threshold + island", "SCT 52988006", "Morphologically Abnormal Structure"):
        assert expected_text in text, expected_text


def test_every_segment_has_a_key_image_and_the_page_is_not_blank(demo, tmp_path):
    root = lxml.html.fromstring(dumpDom(demo.html))
    seg = pydicom.dcmread(demo.seg, stop_before_pixels=True)
    images = root.xpath('//article[contains(@class, "lesion")]//img[contains(@class, "key-image")]')
    assert len(images) == len(seg.SegmentSequence) == 1
    pixels = pngOf(images[0].get("src"))
    assert pixels.shape[1] >= 1000 and pixels.std() > 30, "a key image with content"
    assert "largest cross-section" in images[0].get("alt")
    # The outline is drawn in the segment's color (a colored, not gray, line) on the gray image.
    colored = (np.abs(pixels[..., 0].astype(int) - pixels[..., 1]) > 60) | (
        np.abs(pixels[..., 1].astype(int) - pixels[..., 2]) > 60)
    assert colored.sum() > 500

    shot = np.asarray(Image.open(screenshot(demo.html, tmp_path / "page.png")).convert("L"), dtype=float)
    assert shot.shape == (1800, 1200)
    assert shot.std() > 25, "the rendered page is not blank"
    assert (shot < 60).mean() > 0.05, "the key image (dark) is on the first screen"


def test_key_slice_is_the_largest_cross_section_and_views_are_oriented(demo):
    areas = demo.mask.sum(axis=(1, 2))
    dom = lxml.html.fromstring(demo.html.read_text(encoding="utf-8"))
    caption = dom.xpath('//figcaption')[0].text_content()
    slice_number = int(re.search(r"Axial slice (\d+)", caption).group(1))
    assert areas[slice_number - 1] == areas.max()
    assert demo.volume.source_images[slice_number - 1].sop_instance_uid in caption


def test_long_and_short_axis_are_drawn_where_the_sr_measured_them(demo):
    """RECIST style: both axes on the key image, along the SR's SCOORD lines, in their legend colours."""
    from QuantReportLib.readout.keyimages import AXIS_COLORS

    dataset = pydicom.dcmread(demo.sr)
    (container,) = [item for item in dataset.ContentSequence if _concept(item) == ("126010", "DCM")]
    lines = {}
    for number in (item for item in container.ContentSequence[0].ContentSequence if item.ValueType == "NUM"):
        name = _concept(number)
        if name in (("103339001", "SCT"), ("103340004", "SCT")):
            (scoord,) = [child for child in number.ContentSequence if child.ValueType == "SCOORD"]
            lines[name[0]] = (float(number.MeasuredValueSequence[0].NumericValue), scoord)
    assert set(lines) == {"103339001", "103340004"}
    long_mm, short_mm = lines["103339001"][0], lines["103340004"][0]
    assert long_mm >= short_mm > 0
    feret = next(value for concept, _, unit, value in next(iter(srMeasurements(demo.sr).values()))
                 if concept == "81827009^SCT")
    assert long_mm <= feret + 1e-6, "the in-plane long axis is at most the 3D Feret diameter"
    key_slice = int(np.argmax(demo.mask.sum(axis=(1, 2))))
    for _, scoord in lines.values():
        image = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == demo.volume.source_images[key_slice].sop_instance_uid

    root = lxml.html.fromstring(demo.html.read_text(encoding="utf-8"))
    (image,) = root.xpath('//img[contains(@class, "key-image")]')
    assert "long axis and short axis as measured" in image.get("alt")
    pixels = pngOf(image.get("src")).astype(int)
    for color in AXIS_COLORS.values():
        rgb = np.array([int(color[n:n + 2], 16) for n in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=-1) < 30).sum() > 40, f"no {color} line on the key image"


def test_page_is_self_contained_and_needs_no_script(demo):
    html = demo.html.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert re.search(r"https?://", html) is None, "no reference to anything outside the page"
    root = lxml.html.fromstring(html)
    assert all(img.get("src").startswith("data:image/png;base64,") for img in root.iter("img"))
    assert not root.xpath("//link | //iframe | //object | //embed | //*[@href]")
    assert "url(" not in html
    (policy,) = root.xpath('//meta[@http-equiv="Content-Security-Policy"]/@content')
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_pdf_has_the_pages_and_text_of_the_page(demo, tmp_path):
    require_tool("pdftoppm")
    info = subprocess.run([require_tool("pdfinfo"), demo.pdf], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 1 <= pages <= 6
    subprocess.run([require_tool("pdftoppm"), "-r", "40", "-png", demo.pdf, tmp_path / "page"], check=True)
    rendered = sorted(tmp_path.glob("page*.png"))
    assert len(rendered) == pages
    first = np.asarray(Image.open(rendered[0]).convert("L"), dtype=float)
    assert first.std() > 20 and (first < 60).mean() > 0.02, "the first page shows the key image"
    text = subprocess.run([require_tool("pdftotext"), "-layout", demo.pdf, "-"], capture_output=True, text=True,
                          check=True).stdout
    header = pydicom.dcmread(demo.sr, stop_before_pixels=True)
    volume_mm3 = next(value for concept, _, unit, value in srMeasurements(demo.sr)[next(iter(srMeasurements(
        demo.sr)))] if concept == "118565006^SCT" and unit == "mm3")
    for expected in ("Quantitative imaging report", str(header.PatientID), "Nodule 1", formatValue(volume_mm3),
                     "Doe, Jane", "Attenuation Coefficient"):
        assert expected in text, expected


def test_dicom_key_images_are_valid_and_reference_sources_and_report(demo):
    captures = [path for path in demo.dicom if path.name.startswith("SC-")]
    (key_object,) = [path for path in demo.dicom if path.name.startswith("KO-")]
    assert len(captures) == 1
    for path in demo.dicom:
        assert_valid_dicom(path)
    capture = pydicom.dcmread(captures[0])
    sr = pydicom.dcmread(demo.sr, stop_before_pixels=True)
    assert capture.StudyInstanceUID == sr.StudyInstanceUID and capture.PatientID == sr.PatientID
    assert capture.SeriesInstanceUID not in (sr.SeriesInstanceUID, demo.volume.series_instance_uid)
    (source,) = capture.SourceImageSequence
    key_slice = [image.sop_instance_uid for image in demo.volume.source_images].index(source.ReferencedSOPInstanceUID)
    assert demo.mask[key_slice].sum() == demo.mask.sum(axis=(1, 2)).max()
    # What a PACS shows is what the page shows.
    root = lxml.html.fromstring(demo.html.read_text(encoding="utf-8"))
    assert np.array_equal(capture.pixel_array, pngOf(root.xpath('//img[contains(@class, "key-image")]')[0].get("src")))

    ko = pydicom.dcmread(key_object)
    assert ko.Modality == "KO" and ko.StudyInstanceUID == sr.StudyInstanceUID
    referenced = {str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                  for item in ko.ContentSequence if "ReferencedSOPSequence" in item}
    assert referenced == {capture.SOPInstanceUID, source.ReferencedSOPInstanceUID, sr.SOPInstanceUID}
    evidence_series = {str(series.SeriesInstanceUID) for study in ko.CurrentRequestedProcedureEvidenceSequence
                       for series in study.ReferencedSeriesSequence}
    assert demo.volume.series_instance_uid in evidence_series, "the key object references the source series"


def test_hostile_text_is_shown_as_text_and_never_runs(capsys, tmp_path):
    source = copyStudy(tmp_path / "ct", "hostile", PatientName=HOSTILE_NAME, StudyDescription=HOSTILE_STUDY)
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths([source], progress=False)
        (series,) = database.listSeries()
        volume = report.loadSeriesFromDatabase(database, series.series_instance_uid)
        sr = saveReport(database, series.series_instance_uid, [(HOSTILE_LABEL, generate_uid(), noduleMask(volume))])
    status, out, err = run(capsys, "report", sr, "--db", tmp_path / "db", "--out", tmp_path / "out", "--dicom")
    assert status == 0, err
    dom = dumpDom(tmp_path / "out" / "report.html")
    root = lxml.html.fromstring(dom)
    assert not root.xpath("//script | //b[.='B'] | //h1[@id='injected'] | //img[@onerror] | //*[@id='pw']")
    assert "PWNED" not in root.findtext(".//title")
    (name,) = root.xpath('//td[contains(@class, "patient-name")]')
    assert name.text_content() == "<script>document.body.setAttribute('id','pw')</script>, <b>B</b>"
    assert HOSTILE_LABEL in [heading.text_content().strip() for heading in root.xpath("//article/h3")]
    assert HOSTILE_STUDY in root.text_content()
    for path in (tmp_path / "out" / "dicom").iterdir():
        assert_valid_dicom(path)
        dataset = pydicom.dcmread(path)
        text = dataset.ImageComments if dataset.Modality != "KO" else next(
            str(item.TextValue) for item in dataset.ContentSequence if item.ValueType == "TEXT" and "113012" in str(
                item.ConceptNameCodeSequence[0].CodeValue))
        assert HOSTILE_LABEL in text, "labels in any language survive into the DICOM key images"

    # The check above can fail: the same browser runs a script that reaches the page unescaped.
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>t</title></head><body><p>{HOSTILE_NAME}</p></body></html>")
    assert lxml.html.fromstring(dumpDom(control)).xpath("//body[@id='pw']")


def test_a_label_holding_a_backslash_is_one_label_in_the_readout(capsys, tmp_path):
    """QuantReport refuses to write such a label (a backslash separates values); another writer's SEG holding
    one (its Segment Label two values) is read as the one label, shown and carried into the key images."""
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths([SAMPLE], progress=False)
        (series,) = database.listSeries()
        volume = report.loadSeriesFromDatabase(database, series.series_instance_uid)
        segment = Segment(1, "Left\\Right", DEFAULT_TERMINOLOGY)
        segmentation = Segmentation.fromMasks([noduleMask(volume)], volume.geometry, [segment])
        with pytest.raises(InvalidInputError, match=r"segment 1 label 'Left\\Right' holds a backslash"):
            report.saveReport(volume, segmentation, database=database)
        saved = report.saveReport(volume, segmentation.withSegments([segment.replace(label="Left-Right")]),
                                  database=database)
    dataset = pydicom.dcmread(saved.seg_path)
    dataset.SegmentSequence[0].SegmentLabel = "Left\\Right"  # as a writer without the check writes it
    assert dataset.SegmentSequence[0]["SegmentLabel"].VM == 2
    dataset.save_as(saved.seg_path)
    status, out, err = run(capsys, "report", saved.sr_path, "--db", tmp_path / "db", "--out", tmp_path / "out",
                           "--dicom")
    assert status == 0, err
    root = lxml.html.fromstring((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert [heading.text_content().strip() for heading in root.xpath("//article/h3")] == ["Left\\Right"]
    captures = [pydicom.dcmread(path) for path in sorted((tmp_path / "out" / "dicom").iterdir())]
    for path in sorted((tmp_path / "out" / "dicom").iterdir()):
        assert_valid_dicom(path)
    assert any(str(capture.ImageComments).startswith("Left\\Right: ") for capture in captures
               if capture.Modality != "KO")


def test_three_time_points_show_the_change_of_each_lesion(capsys, tmp_path):
    dates = ("20000101", "20000401", "20000701")
    folders = [copyStudy(tmp_path / f"tp{n}", f"timepoint-{n}", StudyDate=date) for n, date in enumerate(dates)]
    nodule_uid, gone_uid, new_uid = generate_uid(), generate_uid(), generate_uid()
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths(folders, progress=False)
        by_date = {}
        for series in database.listSeries():
            volume = report.loadSeriesFromDatabase(database, series.series_instance_uid)
            by_date[str(volume.headers[0].StudyDate)] = (series.series_instance_uid, volume)
        base = noduleMask(by_date[dates[0]][1])
        cross = scipy.ndimage.generate_binary_structure(3, 1)
        nodule = [base, scipy.ndimage.binary_dilation(base, cross), scipy.ndimage.binary_erosion(base, cross)]
        small = sphere(by_date[dates[0]][1], (10, 300, 150), 6)
        other = sphere(by_date[dates[0]][1], (10, 220, 380), 5)
        plans = [
            [("Nodule 1", nodule_uid, nodule[0]), ("Node 2", gone_uid, small)],
            [("Nodule 1", nodule_uid, nodule[1]), ("Node 2", gone_uid, small), ("Node 3", new_uid, other)],
            [("Nodule 1", nodule_uid, nodule[2]), ("Node 3", new_uid, other)],
        ]
        srs = [saveReport(database, by_date[date][0], plan, time_point=label)
               for date, plan, label in zip(dates, plans, ("baseline", "follow-up 1", FOLLOW_UP_2), strict=True)]
    # Given out of order: the page orders time points by study date.
    status, out, err = run(capsys, "report", srs[2], srs[0], srs[1], "--db", tmp_path / "db", "--out", tmp_path / "out")
    assert status == 0, err
    root = lxml.html.fromstring(dumpDom(tmp_path / "out" / "report.html"))
    (section,) = root.xpath('//section[contains(@class, "longitudinal")]')
    labels = section.xpath('.//table[contains(@class, "timepoints")]//tr/@data-timepoint-label')
    assert labels == ["baseline", "follow-up 1", FOLLOW_UP_2]

    voxels = [int(mask.sum()) for mask in nodule]
    assert voxels[1] > voxels[0] > voxels[2] > 0
    (track,) = section.xpath(f'.//div[@data-tracking-uid="{nodule_uid}"]')
    (volume_row,) = track.xpath('.//tr[@data-concept="118565006^SCT"][@data-unit="mm3"]')
    cells = volume_row.xpath("./td[@data-timepoint]")
    for index in (1, 2):  # independent: voxel counts of the masks (same voxel size at every time point)
        expected_percent = (voxels[index] - voxels[0]) / voxels[0] * 100
        assert float(cells[index].get("data-change-pct")) == pytest.approx(expected_percent, rel=1e-9)
        assert formatChange(expected_percent, percent=True) in cells[index].text_content()
    expected_previous = (voxels[2] - voxels[1]) / voxels[1] * 100
    assert float(cells[2].get("data-previous-change-pct")) == pytest.approx(expected_previous, rel=1e-9)
    voxel_volume = by_date[dates[0]][1].geometry.voxel_volume_mm3
    assert float(cells[1].get("data-change-abs")) == pytest.approx((voxels[1] - voxels[0]) * voxel_volume, rel=1e-9)
    assert track.xpath('.//div[@class="plot"]/img'), "a plot of volume and diameter over time"
    plot = pngOf(track.xpath('.//div[@class="plot"]/img')[0].get("src"))
    assert plot.std() > 10

    (gone,) = section.xpath(f'.//div[@data-tracking-uid="{gone_uid}"]')
    assert [(flag.get("data-status"), flag.get("data-timepoint")) for flag in gone.xpath(".//h3/span")] == [
        ("gone", "2")]
    (new,) = section.xpath(f'.//div[@data-tracking-uid="{new_uid}"]')
    assert [(flag.get("data-status"), flag.get("data-timepoint")) for flag in new.xpath(".//h3/span")] == [
        ("new", "1")]
    # Every time point has its own section with every lesion's key image.
    for sr, plan in zip(srs, plans, strict=True):
        header = pydicom.dcmread(sr, stop_before_pixels=True)
        (point,) = root.xpath(f'//section[@data-sr-uid="{header.SOPInstanceUID}"]')
        assert len(point.xpath('.//img[contains(@class, "key-image")]')) == len(plan)


def test_bad_input_is_one_line_and_writes_nothing(capsys, demo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    status, _, err = run(capsys, "report", demo.seg, "--db", demo.folder / "db", "--out", out)
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: {demo.seg}: ") and "SR" in err
    status, _, err = run(capsys, "report", tmp_path / "missing.dcm", "--out", out)
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ")
    monkeypatch.setenv("QUANTREPORT_CHROMIUM", str(tmp_path / "no-browser"))
    status, _, err = run(capsys, "report", demo.sr, "--db", demo.folder / "db", "--out", out, "--format", "pdf")
    assert status == 2 and err.count("\n") == 1 and "QUANTREPORT_CHROMIUM" in err
    assert not out.exists() or not any(out.rglob("*")), "no partial output"


def test_a_failure_while_writing_keeps_the_older_page_and_leaves_no_dicom(capsys, demo, tmp_path, monkeypatch):
    from QuantReportLib.readout import pdf

    out = tmp_path / "out"
    status, page, _ = run(capsys, "report", demo.sr, "--db", demo.folder / "db", "--out", out, "--format", "pdf")
    assert status == 0
    before = Path(page.strip()).read_bytes()

    def brokenPrinter(source, target, browser):
        Path(target).write_bytes(b"%PDF-1.4 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pdf, "printToPdf", brokenPrinter)
    status, _, err = run(capsys, "report", demo.sr, "--db", demo.folder / "db", "--out", out, "--format", "pdf",
                         "--dicom")
    assert status == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    assert Path(page.strip()).read_bytes() == before, "the older page is kept"
    assert sorted(path.name for path in out.rglob("*")) == ["report.pdf"], "no DICOM file, no temporary left"


def test_a_report_without_its_source_series_still_shows_the_table(capsys, demo, tmp_path):
    shutil.copy(demo.sr, tmp_path / "sr.dcm")
    shutil.copy(demo.seg, tmp_path / "seg.dcm")
    status, out, err = run(capsys, "report", tmp_path / "sr.dcm", "--out", tmp_path / "out")
    assert status == 0
    assert "warning: " in err and "source image series was not found" in err
    root = lxml.html.fromstring((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert not root.xpath('//img[contains(@class, "key-image")]')
    assert sorted(row[:4] for row in pageMeasurements(root)[next(iter(srMeasurements(demo.sr)))]) == sorted(
        next(iter(srMeasurements(demo.sr).values())))


# -- key image geometry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns, rows, name, right, down", [
    ((1, 0, 0), (0, 1, 0), "axial", "L", "P"),  # the usual axial CT
    ((-1, 0, 0), (0, -1, 0), "axial", "L", "P"),  # stored R-to-L and A-to-P: turned to the convention
    ((0, 1, 0), (0, 0, -1), "sagittal", "P", "I"),  # sagittal acquisition
    ((0, 0, -1), (0, 1, 0), "sagittal", "P", "I"),  # sagittal with rows and columns swapped: transposed
    ((1, 0, 0), (0, 0, -1), "coronal", "L", "I"),
])
def test_planes_are_turned_to_the_radiological_convention(columns, rows, name, right, down):
    columns, rows = np.array(columns, float), np.array(rows, float)
    normal = np.cross(columns, rows)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = columns * 0.5, rows * 0.5, normal * 2.0
    geometry = Geometry((4, 6, 8), matrix)
    array = np.zeros(geometry.shape, dtype=np.int16)
    array[2, 1, 6] = 100  # a marker voxel
    volume = Volume(array, geometry, "1.2", "1.3", None, "MR", tuple(
        SourceImage("1.2.840.10008.5.1.4.1.1.4", f"1.4.{k}") for k in range(4)))
    box = (slice(0, 4), slice(0, 6), slice(0, 8))
    plane = keyimages._plane(volume, array > 0, box, 0, 2)
    assert plane.name == name
    assert keyimages._letter(plane.right)[1] == right and keyimages._letter(plane.down)[1] == down
    # The marker is drawn where the display's directions put it.
    row, column = np.argwhere(plane.pixels == 100)[0]
    marker = geometry.ijkToLps(np.array([6, 1, 2]))
    origin_row, origin_column = plane.displayed(0, 0)
    corner = geometry.ijkToLps(np.array([0, 0, 2]))
    offset = marker - corner
    assert np.dot(offset, plane.right) == pytest.approx((column - origin_column) * plane.spacing[1])
    assert np.dot(offset, plane.down) == pytest.approx((row - origin_row) * plane.spacing[0])


# -- the Slicer module's Report button, through the logic on the real Slicer libraries ---------------------


@pytest.mark.slicer
def test_logic_writes_the_readout_of_the_saved_report_with_earlier_time_points(tmp_path):
    from conftest import require

    try:
        from trame_slicer.core import SlicerApp
    except ImportError:
        SlicerApp = None
    require(SlicerApp is not None, "trame-slicer / slicer-core are not installed")
    from QuantReportLib.inslicer.logic import ReportLogic

    folders = [copyStudy(tmp_path / f"tp{n}", f"logic-{n}", StudyDate=date)
               for n, date in enumerate(("20010101", "20010601"))]
    uid = generate_uid()
    app = SlicerApp()
    with EmbeddedDicomDatabase(tmp_path / "db") as database:
        database.importPaths(folders, progress=False)
        series = {str(report.loadSeriesFromDatabase(database, s.series_instance_uid).headers[0].StudyDate):
                  s.series_instance_uid for s in database.listSeries()}
        volume = report.loadSeriesFromDatabase(database, series["20010101"])
        mask = noduleMask(volume)
        first = saveReport(database, series["20010101"], [("Nodule 1", uid, mask)], time_point="baseline")
        second = saveReport(database, series["20010601"], [("Nodule 1", uid, scipy.ndimage.binary_dilation(mask))],
                            time_point="follow-up")
        second_uid = str(pydicom.dcmread(second, stop_before_pixels=True).SOPInstanceUID)
        logic = ReportLogic(app.scene, database, app.terminologies_logic)
        try:
            segmentation_node, _ = logic.loadReport(second_uid)
            written = logic.writeReadout(segmentation_node, str(tmp_path / "out" / "nodule.html"), storeKeyImages=True)
        finally:
            app.scene.Clear(False)
        modalities = sorted(s.modality for s in database.listSeries())
    assert written[0] == str(tmp_path / "out" / "nodule.html") and len(written) == 3
    assert modalities == ["CT", "CT", "KO", "OT", "SEG", "SEG", "SR", "SR"], "this report's key images stored"
    for path in written[1:]:
        assert Path(path).is_relative_to(tmp_path / "db"), "copied into the database's storage"
        assert_valid_dicom(path)
    root = lxml.html.fromstring(Path(written[0]).read_text(encoding="utf-8"))
    assert root.xpath('//table[contains(@class, "timepoints")]//tr/@data-timepoint-label') == ["baseline",
                                                                                                "follow-up"]
    first_uid = str(pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID)
    assert {section.get("data-sr-uid") for section in root.xpath("//section[@data-sr-uid]")} == {first_uid,
                                                                                                 second_uid}
