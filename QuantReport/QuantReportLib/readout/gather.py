"""Reports read back from their files, as plain data for the readout.

Every value a readout shows comes from here, and everything here comes from
the files: the SR (its measurement groups through
:func:`~QuantReportLib.report.loadReport`, its header and observation context
through pydicom), the SEG it references (segments, terminology, provenance,
voxels) and the source series (the pixels of the key images).  Nothing is
taken from a session's memory, so a readout shows what a PACS holds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from ..database import DicomDatabase
from ..dicomio.uids import checkUid
from ..errors import InvalidInputError, NotFoundError, QuantReportError, malformedInput
from ..model import Measurement, Segment, Segmentation, Volume
from ..report import LoadedReport, loadReport
from ..sr import MeasurementGroup, readSr
from ..sr.content import IMAGING_MEASUREMENTS, conceptName

# Observation context (TID 1002-1004) and time point (TID 1502) concepts read from the SR.
_OBSERVER_TYPE = ("121005", "DCM")
_PERSON = ("121006", "DCM")
_PERSON_NAME = ("121008", "DCM")
_PERSON_ORGANIZATION = ("121009", "DCM")
_DEVICE_UID = ("121012", "DCM")
_DEVICE_NAME = ("121013", "DCM")
_DEVICE_MANUFACTURER = ("121014", "DCM")
_DEVICE_MODEL = ("121015", "DCM")
_TIME_POINT = ("C2348792", "UMLS")
_TIME_POINT_ORDER = ("126073", "DCM")
_OBSERVER_FIELDS = {_PERSON_NAME: "name", _DEVICE_NAME: "name", _PERSON_ORGANIZATION: "organization",
                    _DEVICE_UID: "uid", _DEVICE_MANUFACTURER: "manufacturer", _DEVICE_MODEL: "model"}


@dataclass(frozen=True)
class Observer:
    """A person or device observer of the report (TID 1002), as the SR names it."""

    kind: str  # "person" or "device"
    name: str = ""
    organization: str = ""
    uid: str = ""
    manufacturer: str = ""
    model: str = ""


@dataclass(frozen=True)
class Identification:
    """Who and what the report is about: the Patient and General Study modules of the SR."""

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str

    @property
    def patient_key(self) -> tuple[str, str]:
        """What groups reports of one patient: Patient ID, else the name."""
        return (self.patient_id, "") if self.patient_id else ("", self.patient_name)


@dataclass(frozen=True)
class Lesion:
    """One measurement group of the SR: its tracking, the SR's measurements, and its segment.

    ``segment`` is the segment of the referenced SEG (label, terminology,
    color, provenance as stored there) when the SEG was found, else one made
    from the group's finding and tracking identifier; ``segment_number`` is
    the referenced segment's number (``None`` for a group without one).
    ``measurements`` carry the table keys and labels of the quantities
    QuantReport knows (:func:`~QuantReportLib.measurements.withTableLabels`).
    """

    group: MeasurementGroup
    segment: Segment
    segment_number: int | None
    measurements: tuple[Measurement, ...]

    @property
    def tracking_uid(self) -> str:
        return self.group.tracking_uid

    @property
    def label(self) -> str:
        return self.segment.label or self.group.tracking_identifier


@dataclass(frozen=True, eq=False)
class ReadReport:
    """One SR read back with what it references.

    ``volume`` and ``segmentation`` are ``None`` when the source series or the
    SEG was not found; ``notes`` then say so (one line each), and so do the
    SR's parts that could not be read.
    """

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    series_description: str
    content_date: str
    content_time: str
    identification: Identification
    observers: tuple[Observer, ...]
    completed: bool
    verified: bool
    verifiers: tuple[tuple[str, str], ...]  # (name, date/time) of each Verifying Observer
    predecessor_uids: tuple[str, ...]
    time_point: str
    time_point_order: int | None
    seg_sop_instance_uid: str | None
    volume: Volume | None
    segmentation: Segmentation | None
    lesions: tuple[Lesion, ...]
    notes: tuple[str, ...]
    header: Dataset

    @property
    def source_series_description(self) -> str:
        return self.volume.series_description if self.volume is not None else ""


def gatherReports(sources: Sequence[str | os.PathLike], database: DicomDatabase | None = None) -> list[ReadReport]:
    """Read each SR (a file, or a SOP Instance UID in ``database``) with its SEG and source series.

    Raises
    ------
    InvalidInputError
        When a source is not a TID 1500 SR (a SEG, an image), or is unreadable.
    NotFoundError
        When a UID is not in the database.
    """
    return [readReport(source, database) for source in sources]


def readReport(source: str | os.PathLike, database: DicomDatabase | None = None) -> ReadReport:
    """One SR and what it references, read back (see :class:`ReadReport`)."""
    loaded = loadReport(source, database)
    if loaded.kind != "SR" or loaded.sr is None:
        raise InvalidInputError("a readout is made from an SR (measurement report); this is a "
                                f"{loaded.kind}", loaded.path)
    with malformedInput(loaded.path, "SR"):
        header = pydicom.dcmread(loaded.path, stop_before_pixels=True)
        observers = _observers(header.get("ContentSequence", []))
        time_point, time_point_order = _timePoint(header)
        identification = _identification(header)
        verifiers = tuple((_personName(item.get("VerifyingObserverName")), str(item.get("VerificationDateTime", "")))
                          for item in header.get("VerifyingObserverSequence", []))
    notes = [f"not read from the SR: {line}" for line in loaded.sr.unsupported]
    if loaded.seg is None:
        notes.append("the SEG this report references was not found: no key images (give --db with the database "
                     "that holds it, or put it beside the SR)")
    elif loaded.volume is None:
        notes.append("the source image series was not found: no key images (give --db with the database that "
                     "holds it)")
    return ReadReport(
        path=loaded.path,
        sop_instance_uid=loaded.sop_instance_uid,
        series_instance_uid=loaded.series_instance_uid,
        series_description=loaded.sr.series_description,
        content_date=str(header.get("ContentDate", "")),
        content_time=str(header.get("ContentTime", "")),
        identification=identification,
        observers=observers,
        completed=loaded.sr.completed,
        verified=loaded.sr.verified,
        verifiers=verifiers,
        predecessor_uids=loaded.sr.predecessor_uids,
        time_point=time_point,
        time_point_order=time_point_order,
        seg_sop_instance_uid=None if loaded.seg is None else loaded.seg.sop_instance_uid,
        volume=loaded.volume if loaded.segmentation is not None else None,
        segmentation=loaded.segmentation if loaded.volume is not None else None,
        lesions=_lesions(loaded),
        notes=tuple(notes),
        header=header,
    )


def relatedReports(database: DicomDatabase, sr_uid: str) -> list[str]:
    """The SR ``sr_uid`` and the other SRs of its patient in ``database`` that follow one of its lesions.

    A report follows a lesion when one of its groups has the Tracking UID of
    a group of ``sr_uid``.  Returns SOP Instance UIDs (``sr_uid`` first);
    which are current and in which time order is for
    :func:`~.longitudinal.buildTimelines` to decide.
    """
    checkUid(sr_uid, "SR")
    path = database.fileForInstance(sr_uid)
    if not path:
        raise NotFoundError("no such SR in the database", sr_uid)
    with malformedInput(path, "SR"):
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        tracked = {group.tracking_uid for group in readSr(path).groups if group.tracking_uid}
    patient = str(header.get("PatientID", ""))
    related = [sr_uid]
    for series in database.listSeries():
        if series.modality != "SR" or series.patient_id != patient:
            continue
        for candidate in database.filesForSeries(series.series_instance_uid):
            try:
                loaded = readSr(candidate)
            except QuantReportError:
                continue  # not a measurement report (another kind of SR): not a time point of a lesion
            if loaded.sop_instance_uid != sr_uid and tracked & {group.tracking_uid for group in loaded.groups}:
                related.append(loaded.sop_instance_uid)
    return related


def _lesions(loaded: LoadedReport) -> tuple[Lesion, ...]:
    """The SR's groups with their table rows.

    ``LoadedReport.table`` has one row per group that references a segment of
    the SEG, in document order (every group when the SEG was not found); the
    groups are paired with the rows in that same order.
    """
    assert loaded.sr is not None and loaded.table is not None
    segmented = loaded.seg is not None
    groups = [group for group in loaded.sr.groups if group.segment is not None or not segmented]
    if len(groups) != len(loaded.table.rows):  # the table was built by the same rule; a mismatch is a bug
        raise AssertionError(f"{len(groups)} groups but {len(loaded.table.rows)} table rows")
    return tuple(Lesion(group, row.segment, group.segment.number if group.segment is not None else None,
                        row.measurements)
                 for group, row in zip(groups, loaded.table.rows, strict=True))


def _identification(header: Dataset) -> Identification:
    return Identification(
        patient_name=_personName(header.get("PatientName")),
        patient_id=str(header.get("PatientID", "") or ""),
        patient_birth_date=str(header.get("PatientBirthDate", "") or ""),
        patient_sex=str(header.get("PatientSex", "") or ""),
        study_instance_uid=str(header.get("StudyInstanceUID", "") or ""),
        study_date=str(header.get("StudyDate", "") or ""),
        study_time=str(header.get("StudyTime", "") or ""),
        study_description=str(header.get("StudyDescription", "") or ""),
        accession_number=str(header.get("AccessionNumber", "") or ""),
    )


def _personName(value: Any) -> str:
    """A PN value for people: ``Family, Given Middle`` (the components the name has)."""
    if not value:
        return ""
    name = pydicom.valuerep.PersonName(value) if not isinstance(value, pydicom.valuerep.PersonName) else value
    given = " ".join(part for part in (name.given_name, name.middle_name) if part)
    family = name.family_name
    text = f"{family}, {given}" if family and given else family or given or str(value)
    return " ".join(part for part in (name.name_prefix, text, name.name_suffix) if part)



def _observers(items: Sequence[Dataset]) -> tuple[Observer, ...]:
    """The observers of the document's observation context (TID 1002), in document order.

    Each "Observer Type" item starts an observer (TID 1003 person or TID 1004
    device); the name, organisation, UID, manufacturer and model items after
    it describe that observer.
    """
    observers: list[dict[str, str]] = []
    for item in items:
        if item.get("RelationshipType") != "HAS OBS CONTEXT":
            continue
        name = conceptName(item)
        if name == _OBSERVER_TYPE and item.get("ConceptCodeSequence"):
            concept = item.ConceptCodeSequence[0]
            person = (str(concept.CodeValue), str(concept.CodingSchemeDesignator)) == _PERSON
            observers.append({"kind": "person" if person else "device"})
            continue
        field = _OBSERVER_FIELDS.get(name) if name is not None else None
        if field is None:
            continue
        if not observers:  # a person name without an Observer Type item: TID 1002 defaults to a person
            observers.append({"kind": "device" if name in (_DEVICE_UID, _DEVICE_NAME) else "person"})
        value = item.get("PersonName") if name == _PERSON_NAME else item.get("UID") or item.get("TextValue")
        observers[-1][field] = _personName(value) if name == _PERSON_NAME else str(value or "")
    return tuple(Observer(**observer) for observer in observers)


def _timePoint(header: Dataset) -> tuple[str, int | None]:
    """The TID 1502 Time Point and Time Point Order of the report's measurement groups (first one given)."""
    point, order = "", None
    for container in header.get("ContentSequence", []):
        if conceptName(container) != IMAGING_MEASUREMENTS:
            continue
        for group in container.get("ContentSequence", []):
            for item in group.get("ContentSequence", []):
                name = conceptName(item)
                if name == _TIME_POINT and not point:
                    point = str(item.get("TextValue", "") or "")
                elif name == _TIME_POINT_ORDER and order is None and item.get("MeasuredValueSequence"):
                    order = int(float(item.MeasuredValueSequence[0].NumericValue))
            if point:
                return point, order
    return point, order
