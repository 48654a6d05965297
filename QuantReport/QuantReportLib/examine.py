"""What the DICOM browser may load from a set of files: the pure half of QuantReport's DICOM plugins.

Slicer's DICOM module hands every plugin lists of files (one list per series)
and asks for *loadables*: an interpretation of some of the files with a name,
a tooltip and a confidence (``DICOMLib.DICOMPlugin.examineForImport``).  This
module answers that question for DICOM SEG (PS3.3 A.51) and TID 1500
Measurement Report SR (PS3.16 TID 1500) without Slicer, so that it can be
tested headless; ``QuantReportLib.inslicer.plugins`` only copies the answers into
``DICOMLoadable`` objects.

Confidence is chosen relative to Slicer's own SEG and TID 1500 plugins
(``DICOMSegmentationPlugin``, ``DICOMTID1500Plugin``), which offer every SEG
and TID 1500 SR with confidence 0.95.  ``DICOMUtils.selectHighestConfidenceLoadables``
preselects, per series, only the loadables with the highest confidence, and
*all* of them on a tie, so an equal 0.95 would load every object twice.

* :data:`OWN_CONFIDENCE` (0.97) for objects QuantReport wrote (Manufacturer
  :data:`~QuantReportLib.dicomio.identity.MANUFACTURER`): QuantReport is preselected because it
  restores what it wrote exactly (segment numbers, tracking UIDs, the
  measurement table).
* :data:`FOREIGN_CONFIDENCE` (0.90) for other SEG and TID 1500 SR: offered,
  but Slicer's plugin stays the default where it is installed; where it is
  not (Slicer before 5.12 without QuantitativeReporting), QuantReport's is the
  only and therefore the preselected interpretation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pydicom

from .dicomio.identity import (
    LABEL_MAP_SEGMENTATION_STORAGE,
    MANUFACTURER,
    MEASUREMENT_REPORT,
    SEG_SOP_CLASSES,
    SEGMENTATION_STORAGE,
    TID1500_SR_SOP_CLASSES,
    TID1500_TEMPLATE_ID,
)
from .dicomio.reading import readDicomHeader
from .errors import InvalidInputError

OWN_CONFIDENCE = 0.97
FOREIGN_CONFIDENCE = 0.90
SLICER_CORE_CONFIDENCE = 0.95
"""Confidence of Slicer's ``DICOMSegmentationPlugin`` and ``DICOMTID1500Plugin`` (Slicer 5.12)."""

# The loadable's name for each SEG SOP class.
_SEG_KINDS = {
    SEGMENTATION_STORAGE: "DICOM segmentation",
    LABEL_MAP_SEGMENTATION_STORAGE: "DICOM label map segmentation",
}


@dataclass(frozen=True)
class LoadableDescription:
    """One way to load one SEG or SR file, as Slicer's ``DICOMLoadable`` describes it.

    ``kind`` is ``"SEG"`` or ``"SR"``.  ``referenced_series_uids`` and
    ``referenced_instance_uids`` are what the object was derived from (SEG:
    Referenced Series Sequence, PS3.3 C.8.20.2; SR: Current Requested
    Procedure Evidence Sequence, PS3.3 C.17.2.3, and the content tree's
    image and composite references); the DICOM browser offers to load them too.
    """

    kind: str
    path: str
    name: str
    tooltip: str
    confidence: float
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series_uids: tuple[str, ...]
    referenced_instance_uids: tuple[str, ...]
    written_by_quantreport: bool

    @property
    def selected(self) -> bool:
        """Preselect only what QuantReport should load by default (see the module docstring)."""
        return self.confidence > SLICER_CORE_CONFIDENCE


def examineFiles(fileLists: Iterable[Sequence[str | os.PathLike]]) -> list[LoadableDescription]:
    """The SEG and TID 1500 SR loadables among ``fileLists`` (one loadable per file).

    Files that are not DICOM, or are DICOM of another kind, are skipped: the
    DICOM browser shows every plugin the same files, so a file that is not
    ours is not an error.
    """
    descriptions = []
    for files in fileLists:
        for path in files:
            description = describeFile(path)
            if description is not None:
                descriptions.append(description)
    return descriptions


def describeFile(path: str | os.PathLike) -> LoadableDescription | None:
    """The loadable of one SEG or TID 1500 SR file, or ``None`` for anything else."""
    try:
        header = readDicomHeader(path)
    except InvalidInputError:
        return None
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class in _SEG_KINDS:
        return _describe(path, header, "SEG", _SEG_KINDS[sop_class], _segReferences(header))
    if sop_class in TID1500_SR_SOP_CLASSES and isTid1500(header):
        return _describe(path, header, "SR", "DICOM TID 1500 measurement report", _srReferences(header))
    return None


def isTid1500(dataset: pydicom.Dataset) -> bool:
    """True for a PS3.16 TID 1500 Imaging Measurement Report.

    It is identified by its template ID in the Content Template Sequence
    (PS3.3 C.18.8.1.2) or, when a writer omits it, by its root concept name
    (DCM 126000).
    """
    templates = dataset.get("ContentTemplateSequence") or []
    if any(str(item.get("TemplateIdentifier", "")) == TID1500_TEMPLATE_ID for item in templates):
        return True
    concepts = dataset.get("ConceptNameCodeSequence") or []
    return any((str(item.get("CodeValue", "")), str(item.get("CodingSchemeDesignator", "")))
               == MEASUREMENT_REPORT for item in concepts)


def _describe(path: str | os.PathLike, header: pydicom.Dataset, kind: str, what: str,
              references: tuple[tuple[str, ...], tuple[str, ...]]) -> LoadableDescription | None:
    sop_instance_uid = str(header.get("SOPInstanceUID", ""))
    if not sop_instance_uid:
        return None
    own = str(header.get("Manufacturer", "")) == MANUFACTURER
    description = str(header.get("SeriesDescription", "") or "") or (
        "Segmentation" if kind == "SEG" else "Measurement report")
    number = str(header.get("SeriesNumber", "") or "")
    name = f"{number}: {description}" if number else description
    reader = "QuantReport" if own else "QuantReport (highdicom)"
    return LoadableDescription(
        kind=kind,
        path=os.fspath(path),
        name=name,
        tooltip=f"{name} - {what}, read by {reader}",
        confidence=OWN_CONFIDENCE if own else FOREIGN_CONFIDENCE,
        sop_instance_uid=sop_instance_uid,
        series_instance_uid=str(header.get("SeriesInstanceUID", "")),
        referenced_series_uids=references[0],
        referenced_instance_uids=references[1],
        written_by_quantreport=own,
    )


def _segReferences(header: pydicom.Dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Series and instances in the Referenced Series Sequence (PS3.3 C.8.20.2, C.7.4.3)."""
    return _seriesAndInstances(header.get("ReferencedSeriesSequence") or [], "ReferencedInstanceSequence")


def _srReferences(header: pydicom.Dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Evidence (PS3.3 C.17.2.3) plus every SOP instance referenced from the content tree, SEGs excepted.

    The SR plugin loads the SEG itself; offered as a reference too, the DICOM
    browser would load it a second time (``DICOMBrowser.loadCheckedLoadables``
    loads the selected loadables of every referenced series).
    """
    series: dict[str, None] = {}
    instances: dict[str, None] = {}
    segs: set[str] = set()
    for study in header.get("CurrentRequestedProcedureEvidenceSequence") or []:
        items = []
        for item in study.get("ReferencedSeriesSequence") or []:
            references = item.get("ReferencedSOPSequence") or []
            found = {str(r.get("ReferencedSOPInstanceUID", "")) for r in references
                     if str(r.get("ReferencedSOPClassUID", "")) in SEG_SOP_CLASSES}
            segs |= found
            if not found or len(found) < len(references):
                items.append(item)
        found_series, found_instances = _seriesAndInstances(items, "ReferencedSOPSequence")
        series.update(dict.fromkeys(found_series))
        instances.update(dict.fromkeys(uid for uid in found_instances if uid not in segs))
    for item in _contentItems(header.get("ContentSequence") or []):
        for reference in item.get("ReferencedSOPSequence") or []:
            uid = str(reference.get("ReferencedSOPInstanceUID", ""))
            if uid and uid not in segs and \
                    str(reference.get("ReferencedSOPClassUID", "")) not in SEG_SOP_CLASSES:
                instances[uid] = None
    return tuple(series), tuple(instances)


def _seriesAndInstances(items: Iterable[Any], instance_sequence: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    series: dict[str, None] = {}
    instances: dict[str, None] = {}
    for item in items:
        uid = str(item.get("SeriesInstanceUID", ""))
        if uid:
            series[uid] = None
        for reference in item.get(instance_sequence) or []:
            instance = str(reference.get("ReferencedSOPInstanceUID", ""))
            if instance:
                instances[instance] = None
    return tuple(series), tuple(instances)


def _contentItems(items: Iterable[Any]) -> Iterator[Any]:
    """Every item of an SR content tree, depth first (PS3.3 C.17.3)."""
    for item in items:
        yield item
        yield from _contentItems(item.get("ContentSequence") or [])
