"""Synthetic benchmark inputs: a realistic CT series as DICOM files and labelmaps on it.

Everything is deterministic (fixed seeds, UIDs derived from the case name) and
cached under ``benchmarks/.cache`` so that every tool of one run, and every
later run, reads the very same files.  The CT is an axial chest/abdomen-like
phantom: air around an elliptic body of soft tissue (HU noise), two lungs,
a spine and a liver whose size varies along the body axis.  Labelmaps are
written as gzip NRRD (what Slicer writes) with dcmqi segment meta JSON (what
``itkimage2segimage`` and ``quantreport export --segments`` read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
PIXEL_SPACING_MM = 0.7
SLICE_SPACING_MM = 1.25
ROWS = COLUMNS = 512

# Segment codes (SNOMED CT, as in CID 7150/7151): lesions are "Mass" in "Morphologically Abnormal Structure",
# the 100-segment case cycles through organs in "Anatomical Structure".
_TISSUE = {"CodeValue": "49755003", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Morphologically Altered Structure"}
_MASS = {"CodeValue": "4147007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Mass"}
_ANATOMY = {"CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"}
_ORGANS = [("10200004", "Liver"), ("78961009", "Spleen"), ("64033007", "Kidney"), ("15776009", "Pancreas"),
           ("89837001", "Urinary bladder"), ("80891009", "Heart"), ("39607008", "Lung"), ("28273000", "Bile duct"),
           ("23451007", "Adrenal gland"), ("71854001", "Colon")]


@dataclass(frozen=True)
class CtSeries:
    """A cached synthetic CT series: its folder, files (slice order) and series UID."""

    folder: Path
    files: tuple[Path, ...]
    series_instance_uid: str


@dataclass(frozen=True)
class LabelmapCase:
    """A cached labelmap on a :class:`CtSeries`: NRRD, dcmqi meta JSON and segment count."""

    name: str
    ct: CtSeries
    nrrd: Path
    meta: Path
    segments: int
    labelled_fraction: float


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["QuantReport benchmark", *map(str, parts)])


def _slicePhantom(k: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """HU values of axial slice ``k``: body, lungs (upper 60 %), liver (lower part), spine, noise."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS].astype(np.float32)
    x = (x - COLUMNS / 2) * PIXEL_SPACING_MM
    y = (y - ROWS / 2) * PIXEL_SPACING_MM
    z = k / max(slices - 1, 1)  # 0 = top (head side) .. 1 = bottom
    hu = np.full((ROWS, COLUMNS), -1000.0, dtype=np.float32)
    body = (x / 165) ** 2 + (y / 120) ** 2 <= 1
    hu[body] = 40
    hu[body & ((x / 155) ** 2 + (y / 110) ** 2 > 1)] = -100  # subcutaneous fat
    lung_size = max(0.0, 1.0 - z / 0.6)
    if lung_size > 0:
        for side in (-1, 1):
            lung = ((x - side * 70) / (55 * lung_size ** 0.5)) ** 2 + ((y + 5) / (85 * lung_size ** 0.5)) ** 2 <= 1
            hu[lung] = -850
    liver_size = max(0.0, 1.0 - abs(z - 0.7) / 0.3)
    if liver_size > 0:
        liver = ((x + 50) / (70 * liver_size ** 0.5)) ** 2 + ((y + 10) / (60 * liver_size ** 0.5)) ** 2 <= 1
        hu[liver] = 60
    spine = (x / 18) ** 2 + ((y - 70) / 16) ** 2 <= 1
    hu[spine] = 700
    hu += rng.normal(0, 12, hu.shape).astype(np.float32)
    return hu


def ctSeries(slices: int, name: str | None = None) -> CtSeries:
    """The cached CT series of ``slices`` 512x512 slices (written on first use).

    Single-frame CT Image Storage, Explicit VR Little Endian, 16-bit signed
    stored values with Rescale Intercept -1024, as scanners write them.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    name = name or f"ct-{slices}"
    folder = CACHE / name
    files = tuple(folder / f"CT{k:04d}.dcm" for k in range(slices))
    series_uid = _uid(name, "series")
    if (folder / ".complete").exists():
        return CtSeries(folder, files, series_uid)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(slices)
    study_uid, frame_uid = _uid(name, "study"), _uid(name, "frame")
    # Anatomy changes slowly along the body axis: compute one phantom per 10 slices and add fresh noise.
    base = {}
    for k in range(slices):
        key = (k // 10) * 10
        if key not in base:
            base = {key: _slicePhantom(key, slices, rng)}
        hu = base[key] + rng.normal(0, 3, (ROWS, COLUMNS)).astype(np.float32)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = _uid(name, "instance", k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(files[k]), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "BENCH1"
        ds.Modality = "CT"
        ds.Manufacturer = "QuantReport benchmark phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Benchmark chest-abdomen CT"
        ds.SeriesDescription = f"Synthetic CT {slices} slices"
        ds.PatientName = "Benchmark^Phantom"
        ds.PatientID = f"BENCH-{name}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = SLICE_SPACING_MM
        ds.KVP = 120
        ds.PatientPosition = "FFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-(COLUMNS - 1) * PIXEL_SPACING_MM / 2, -(ROWS - 1) * PIXEL_SPACING_MM / 2,
                                   k * SLICE_SPACING_MM]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = k * SLICE_SPACING_MM
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = np.clip(np.rint(hu + 1024), -32768, 32767).astype("<i2").tobytes()
        pydicom.dcmwrite(files[k], ds, enforce_file_format=True)
    (folder / ".complete").write_text("ok\n")
    return CtSeries(folder, files, series_uid)


def _geometryMatrix(slices: int) -> np.ndarray:
    """IJK -> LPS of the phantom (slice k at z = k * spacing, as written above: the loaded volume's own grid)."""
    matrix = np.eye(4)
    matrix[0, 0] = matrix[1, 1] = PIXEL_SPACING_MM
    matrix[2, 2] = SLICE_SPACING_MM
    matrix[:3, 3] = [-(COLUMNS - 1) * PIXEL_SPACING_MM / 2, -(ROWS - 1) * PIXEL_SPACING_MM / 2, 0]
    return matrix


def _blob(labelmap: np.ndarray, value: int, center: np.ndarray, radii_mm: np.ndarray, rng: np.random.Generator,
          overwrite: bool = True) -> int:
    """Paint an irregular ellipsoid (radius modulated by low-order harmonics); return the voxels painted."""
    spacing = np.array([SLICE_SPACING_MM, PIXEL_SPACING_MM, PIXEL_SPACING_MM])
    half = np.ceil(radii_mm * 1.3 / spacing).astype(int)
    low = np.maximum(center - half, 0)
    high = np.minimum(center + half + 1, labelmap.shape)
    if np.any(high <= low):
        return 0
    grid = np.ogrid[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    offsets = [(g - c) * s / r for g, c, s, r in zip(grid, center, spacing, radii_mm, strict=True)]
    distance = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2)
    angle = np.arctan2(offsets[1], offsets[2])
    phase = rng.uniform(0, 2 * np.pi, 2)
    bumps = 1 + 0.15 * np.sin(3 * angle + phase[0]) + 0.1 * np.cos(5 * angle + phase[1]) * np.cos(offsets[0])
    inside = distance <= bumps
    region = labelmap[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    painted = inside if overwrite else inside & (region == 0)
    region[painted] = value
    return int(np.count_nonzero(painted))


def _bodyCenter(rng: np.random.Generator, slices: int, margin_mm: float) -> np.ndarray:
    """A random voxel inside the body ellipse, ``margin_mm`` away from its edge."""
    while True:
        x, y = rng.uniform(-165 + margin_mm, 165 - margin_mm), rng.uniform(-120 + margin_mm, 120 - margin_mm)
        if (x / (165 - margin_mm)) ** 2 + (y / (120 - margin_mm)) ** 2 <= 1:
            break
    k = rng.integers(0, slices)
    return np.array([k, round(y / PIXEL_SPACING_MM + ROWS / 2), round(x / PIXEL_SPACING_MM + COLUMNS / 2)])


def _makeLabelmap(slices: int, segments: int, kind: str, seed: int) -> np.ndarray:
    """Lesions (5-25 mm blobs) or an organ atlas (segments of mixed sizes)."""
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if segments < 256 else np.uint16
    labelmap = np.zeros((slices, ROWS, COLUMNS), dtype=dtype)
    if kind == "lesions":
        for value in range(1, segments + 1):
            radius = rng.uniform(5, 25)
            _blob(labelmap, value, _bodyCenter(rng, slices, 40), np.array([radius, radius, radius]) *
                  rng.uniform(0.8, 1.2, 3), rng)
        return labelmap
    # Organ atlas: a few large organs, more medium and many small structures (TotalSegmentator-like).
    # Small ones are painted first and nothing overwrites, so larger organs wrap around smaller ones;
    # a structure hidden entirely by earlier ones is moved elsewhere.
    sizes = np.sort(np.exp(rng.uniform(np.log(6), np.log(70), segments)))
    for value, size in enumerate(sizes, 1):
        radii = np.array([size * rng.uniform(0.8, 2.5), size * rng.uniform(0.6, 1.2), size * rng.uniform(0.6, 1.2)])
        while not _blob(labelmap, value, _bodyCenter(rng, slices, min(size, 60)), radii, rng, overwrite=False):
            pass
    return labelmap


def segmentMeta(segments: int, kind: str) -> dict:
    """dcmqi ``itkimage2segimage`` meta JSON describing segments 1..N."""
    attributes = []
    for number in range(1, segments + 1):
        if kind == "lesions":
            label, category, property_type = f"Lesion {number}", _TISSUE, _MASS
        else:
            code, meaning = _ORGANS[(number - 1) % len(_ORGANS)]
            label = f"{meaning} {number}"
            category = _ANATOMY
            property_type = {"CodeValue": code, "CodingSchemeDesignator": "SCT", "CodeMeaning": meaning}
        rgb = [int(v) for v in np.random.default_rng(number).integers(40, 255, 3)]
        attributes.append({"labelID": number, "SegmentLabel": label, "SegmentDescription": label,
                           "SegmentAlgorithmType": "MANUAL", "recommendedDisplayRGBValue": rgb,
                           "SegmentedPropertyCategoryCodeSequence": category,
                           "SegmentedPropertyTypeCodeSequence": property_type})
    return {"ContentCreatorName": "Benchmark^Reader", "ClinicalTrialSeriesID": "1", "ClinicalTrialTimePointID": "1",
            "SeriesDescription": "Segmentation", "SeriesNumber": "300", "InstanceNumber": "1",
            "BodyPartExamined": "CHEST", "segmentAttributes": [attributes]}


def labelmapCase(slices: int, segments: int, kind: str | None = None) -> LabelmapCase:
    """The cached labelmap with ``segments`` segments on the ``slices``-slice CT (written on first use).

    ``kind`` is ``"lesions"`` (5-25 mm blobs; the default up to 10 segments) or ``"organs"`` (an atlas
    of structures of mixed sizes covering about a quarter of the volume; the default above 10).
    """
    from QuantReportLib.labelmaps import writeLabelmapNrrd
    from QuantReportLib.model import Geometry

    kind = kind or ("lesions" if segments <= 10 else "organs")
    ct = ctSeries(slices)
    name = f"{kind}-{slices}x{segments}"
    folder = CACHE / name
    nrrd, meta, info = folder / "labelmap.nrrd", folder / "meta.json", folder / "info.json"
    if not info.exists():
        folder.mkdir(parents=True, exist_ok=True)
        labelmap = _makeLabelmap(slices, segments, kind, seed=1000 * segments + slices)
        present = set(np.unique(labelmap).tolist()) - {0}
        if len(present) != segments:
            raise RuntimeError(f"labelmap {name}: only {len(present)} segments have voxels")
        writeLabelmapNrrd(labelmap, Geometry(labelmap.shape, _geometryMatrix(slices)), nrrd)
        meta.write_text(json.dumps(segmentMeta(segments, kind), indent=1))
        info.write_text(json.dumps({"labelled_fraction": np.count_nonzero(labelmap) / labelmap.size}))
    fraction = json.loads(info.read_text())["labelled_fraction"]
    return LabelmapCase(name, ct, nrrd, meta, segments, fraction)


def testdataFolder() -> Path:
    """``../shared/testdata`` beside the project (or ``$QUANTREPORT_TESTDATA``), as the tests find it."""
    default = Path(__file__).resolve().parents[2] / "shared" / "testdata"
    return Path(os.environ.get("QUANTREPORT_TESTDATA", default))


def realCase() -> LabelmapCase:
    """The real LIDC-IDRI-0001 CT (50 slices) of the shared test data, with its real nodule SEG as labelmap."""
    from QuantReportLib import seg, series
    from QuantReportLib.labelmaps import writeLabelmapNrrd

    testdata = testdataFolder()
    files = tuple(sorted((testdata / "ct" / "lidc-idri-0001").glob("*.dcm")))
    if not files:
        raise FileNotFoundError(f"real test series not found under {testdata}")
    folder = CACHE / "real-lidc"
    nrrd, meta = folder / "labelmap.nrrd", folder / "meta.json"
    volume = None
    if not meta.exists():
        folder.mkdir(parents=True, exist_ok=True)
        volume = series.loadSeries([str(path) for path in files])
        loaded = seg.readSeg(testdata / "seg" / "lidc-idri-0001-nodule1-annotation0.dcm", volume)
        labelmap = loaded.segmentation.labelmap()
        writeLabelmapNrrd(labelmap, volume.geometry, nrrd)
        meta.write_text(json.dumps(segmentMeta(len(loaded.segmentation.segments), "lesions"), indent=1))
    import pydicom

    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
    segments = len(json.loads(meta.read_text())["segmentAttributes"][0])
    return LabelmapCase("real-lidc", CtSeries(files[0].parent, files, uid), nrrd, meta, segments, float("nan"))


def caseFromParams(params: dict) -> LabelmapCase:
    """The inputs named by a case's parameters (``{"real": true}`` or slices, segments, kind)."""
    if params.get("real"):
        return realCase()
    if params.get("series_only"):
        ct = ctSeries(params["slices"])
        return LabelmapCase(f"series-{params['slices']}", ct, Path(), Path(), 0, 0.0)
    return labelmapCase(params["slices"], params["segments"], params.get("kind"))


def workFolder(case: LabelmapCase) -> Path:
    """Scratch folder for the outputs of one case."""
    return cacheFolder("work", case.name)


def cacheFolder(*parts: str) -> Path:
    """A scratch folder under the cache (created)."""
    folder = CACHE.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fileSize(path: str | os.PathLike) -> int:
    """Bytes of a file, or of all files under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
