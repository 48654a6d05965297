"""Lesions over time: reports grouped by patient, lesions followed by their Tracking UID.

A lesion is the same lesion at two time points when its measurement groups
share the Tracking Unique Identifier (TID 4108), which QuantReport keeps for a
segment across reports.  For each patient the reports are ordered by the TID
1502 Time Point Order when every report has one, else by study date and time
(reports of the same date keep the order they were given in).  A report that
another given report names as its predecessor (it was amended) is left out
of the timeline and listed as superseded.

For every lesion and quantity the change is computed against the first time
point (the baseline) and against the previous one, absolute and, for sizes
(:data:`~.values.SIZE_KEYS`), in percent of the reference value (none when
the reference is 0).  A lesion
reported at a time point but not at the one before is *new* there; one
reported before but not at a time point is *gone* there.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from ..model import Quantity
from .gather import Identification, Lesion, ReadReport
from .keyimages import fontFamilies
from .values import DIAMETER_KEYS, SIZE_KEYS, VOLUME_KEY, formatValue, shortName, unitForPeople

#: Status of a lesion at a time point.
BASELINE, MEASURED, NEW, GONE, ABSENT = "baseline", "measured", "new", "gone", "absent"


@dataclass(frozen=True)
class TimePoint:
    """One report of the timeline; ``label`` is its TID 1502 time point, else ``TP <n>``."""

    index: int
    label: str
    report: ReadReport

    @property
    def date(self) -> str:
        return self.report.identification.study_date


@dataclass(frozen=True)
class Change:
    """A change against a reference value; ``percent`` is ``None`` when the reference is 0 or not a size."""

    absolute: float
    percent: float | None

    @classmethod
    def between(cls, reference: float, value: float, percent: bool = True) -> Change:
        difference = value - reference
        return cls(difference, difference / abs(reference) * 100.0 if percent and reference != 0 else None)


@dataclass(frozen=True)
class QuantityTrack:
    """One quantity of one lesion across the time points (``None`` where not measured)."""

    quantity: Quantity
    values: tuple[float | None, ...]
    from_baseline: tuple[Change | None, ...]
    from_previous: tuple[Change | None, ...]


@dataclass(frozen=True)
class LesionTrack:
    """One lesion across the time points: its group at each (``None`` where not reported) and its quantities."""

    tracking_uid: str
    label: str
    lesions: tuple[Lesion | None, ...]
    statuses: tuple[str, ...]
    quantities: tuple[QuantityTrack, ...]

    def quantity(self, key: str) -> QuantityTrack | None:
        return next((track for track in self.quantities if track.quantity.key == key), None)


@dataclass(frozen=True)
class Timeline:
    """The reports of one patient in time order and the lesions followed across them."""

    identification: Identification
    time_points: tuple[TimePoint, ...]
    lesions: tuple[LesionTrack, ...]
    superseded: tuple[ReadReport, ...]

    @property
    def longitudinal(self) -> bool:
        return len(self.time_points) > 1


def buildTimelines(reports: Sequence[ReadReport]) -> list[Timeline]:
    """The reports grouped by patient (in order of first appearance), each patient's in time order."""
    replaced = {uid for report in reports for uid in report.predecessor_uids}
    patients: dict[tuple[str, str], list[ReadReport]] = {}
    for report in reports:
        patients.setdefault(report.identification.patient_key, []).append(report)
    timelines = []
    for patient_reports in patients.values():
        current = [report for report in patient_reports if report.sop_instance_uid not in replaced]
        superseded = tuple(report for report in patient_reports if report.sop_instance_uid in replaced)
        ordered = _inTimeOrder(current)
        time_points = tuple(TimePoint(index, report.time_point or f"TP {index + 1}", report)
                            for index, report in enumerate(ordered))
        timelines.append(Timeline(ordered[0].identification if ordered else patient_reports[0].identification,
                                  time_points, _lesionTracks(time_points), superseded))
    return timelines


def _inTimeOrder(reports: list[ReadReport]) -> list[ReadReport]:
    if reports and all(report.time_point_order is not None for report in reports):
        return sorted(reports, key=lambda report: report.time_point_order or 0)
    return sorted(reports, key=lambda report: (report.identification.study_date, report.identification.study_time))


def _lesionTracks(time_points: Sequence[TimePoint]) -> tuple[LesionTrack, ...]:
    # Lesions by Tracking UID, in order of first appearance; a group without one cannot be followed.
    by_uid: dict[str, list[Lesion | None]] = {}
    for point in time_points:
        for number, lesion in enumerate(point.report.lesions):
            uid = lesion.tracking_uid or f"untracked:{point.index}:{number}"
            slots = by_uid.setdefault(uid, [None] * len(time_points))
            if slots[point.index] is None:
                slots[point.index] = lesion
    tracks = []
    for uid, lesions in by_uid.items():
        label = next(lesion.label for lesion in reversed(lesions) if lesion is not None)
        tracks.append(LesionTrack(uid, label, tuple(lesions), _statuses(lesions), _quantityTracks(lesions)))
    return tuple(tracks)


def _statuses(lesions: Sequence[Lesion | None]) -> tuple[str, ...]:
    statuses = []
    for index, lesion in enumerate(lesions):
        before = lesions[index - 1] if index else None
        if lesion is not None:
            statuses.append(BASELINE if index == 0 else MEASURED if before is not None else NEW)
        else:
            statuses.append(GONE if before is not None else ABSENT)
    return tuple(statuses)


def _quantityTracks(lesions: Sequence[Lesion | None]) -> tuple[QuantityTrack, ...]:
    quantities: dict[Quantity, None] = {}
    for lesion in lesions:
        for measurement in lesion.measurements if lesion is not None else ():
            quantities.setdefault(measurement.quantity, None)
    tracks = []
    for quantity in quantities:
        values = tuple(_valueOf(lesion, quantity) for lesion in lesions)
        baseline = values[0]
        size = quantity.key in SIZE_KEYS
        from_baseline = tuple(None if index == 0 or baseline is None or value is None
                              else Change.between(baseline, value, size) for index, value in enumerate(values))
        from_previous = tuple(None if index == 0 or values[index - 1] is None or value is None
                              else Change.between(values[index - 1], value, size)  # type: ignore[arg-type]
                              for index, value in enumerate(values))
        tracks.append(QuantityTrack(quantity, values, from_baseline, from_previous))
    return tuple(tracks)


def _valueOf(lesion: Lesion | None, quantity: Quantity) -> float | None:
    if lesion is None:
        return None
    return next((measurement.value for measurement in lesion.measurements if measurement.quantity == quantity), None)


# -- the plot --------------------------------------------------------------------------------------


def plotLesion(track: LesionTrack, time_points: Sequence[TimePoint]) -> bytes | None:
    """Volume and longest diameter of a lesion over the time points, as PNG (``None`` without either)."""
    panels = [quantity for quantity in (track.quantity(VOLUME_KEY), _diameter(track)) if quantity is not None]
    if not panels:
        return None
    import matplotlib

    with matplotlib.rc_context({"font.family": fontFamilies()}):
        return _plot(track, time_points, panels)


def _plot(track: LesionTrack, time_points: Sequence[TimePoint], panels: list[QuantityTrack]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2 * len(panels), 2.2), dpi=100, facecolor="white", layout="constrained")
    FigureCanvasAgg(figure)
    labels = [point.label for point in time_points]
    positions = list(range(len(time_points)))
    for ax, quantity_track in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        measured = [(x, value) for x, value in zip(positions, quantity_track.values, strict=True)
                    if value is not None]
        xs, ys = [x for x, _ in measured], [value for _, value in measured]
        ax.plot(xs, ys, marker="o", color="#1f5fa8", linewidth=1.6)
        for x, value in measured:
            ax.annotate(formatValue(value), (x, value), textcoords="offset points", xytext=(0, 5), ha="center",
                        fontsize=7.5)
        for x, status in zip(positions, track.statuses, strict=True):
            if status in (GONE, ABSENT) and any(value is not None for value in quantity_track.values[:x]):
                ax.axvline(x, color="#b03030", linestyle=":", linewidth=1)
        quantity = quantity_track.quantity
        unit = unitForPeople(quantity)
        # Names and time point labels come from the files: drawn as they are, never as mathtext.
        ax.set_title(f"{shortName(quantity)}{f' [{unit}]' if unit else ''}", fontsize=9, parse_math=False)
        ax.set_xticks(positions, labels, fontsize=7.5, parse_math=False)
        ax.set_xlim(-0.4, len(positions) - 0.6)
        low, high = min(ys + [0.0]), max(ys) if ys else 1.0
        ax.set_ylim(low, high * 1.2 if high > 0 else 1.0)
        ax.tick_params(axis="y", labelsize=7.5)
        ax.grid(True, axis="y", color="#dddddd", linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _diameter(track: LesionTrack) -> QuantityTrack | None:
    """The diameter to plot: the first of :data:`DIAMETER_KEYS` measured at every time point the lesion has."""
    measured = [index for index, lesion in enumerate(track.lesions) if lesion is not None]
    for key in DIAMETER_KEYS:
        quantity = track.quantity(key)
        if quantity is not None and all(quantity.values[index] is not None for index in measured):
            return quantity
    return None
