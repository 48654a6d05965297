"""How a segment was made: Segment Editor effects -> DICOM Segment Algorithm Type and Name.

A SEG must say for every segment whether it was drawn by hand (``MANUAL``),
computed with user assistance (``SEMIAUTOMATIC``) or computed without it
(``AUTOMATIC``), and name the algorithm unless it is manual (PS3.3 C.8.20.2,
Segment Algorithm Type (0062,0008) and Name (0062,0009)).  The Slicer module
records the name of each Segment Editor effect that modified a segment; the
rules below turn that history into the two attributes, in the spirit of
QuantitativeReporting's ``SegmentEditorAlgorithmTracker``:

* only hand-drawing effects (:data:`MANUAL_EFFECTS`) keep a segment ``MANUAL``;
* any other effect (Threshold, Grow from seeds, Islands, Smoothing, ...) makes
  it ``SEMIAUTOMATIC``, and so does editing a segment that was ``AUTOMATIC``
  (a person corrected the algorithm's result);
* the name lists the effects in the order first used, prefixed by the
  application, truncated to the 64 characters of the LO value representation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MANUAL_EFFECTS = frozenset({"Paint", "Draw", "Erase", "Scissors"})
"""Segment Editor effects (``qSlicerSegmentEditorAbstractEffect.name``) that only follow the user's hand."""
EFFECTS_TAG = "QuantReport.SegmentEditorEffects"
"""vtkSegment tag: the effects that modified the segment, ``;``-separated, in the order first used."""
PRIOR_TYPE_TAG = "QuantReport.PriorAlgorithmType"
PRIOR_NAME_TAG = "QuantReport.PriorAlgorithmName"
"""vtkSegment tags: the algorithm type and name the segment carried before its first edit (e.g. from a SEG)."""
ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
"""The vtkSegment tags Slicer's DICOM SEG plugin and ``QuantReportLib.inslicer.nodes`` read and write."""
_LO_MAXIMUM_LENGTH = 64  # PS3.5 6.2: Long String


def updatedTags(tags: Mapping[str, str], effect: str) -> dict[str, str]:
    """The segment tags after ``effect`` modified the segment.

    ``tags`` maps tag names to values (missing tags may be absent or ``""``).
    On the first edit the segment's current algorithm type and name are kept
    as its prior provenance, so that deriving again after every edit never
    feeds on its own output.
    """
    updated = dict(tags)
    if not updated.get(EFFECTS_TAG):
        updated[PRIOR_TYPE_TAG] = updated.get(ALGORITHM_TYPE_TAG, "")
        updated[PRIOR_NAME_TAG] = updated.get(ALGORITHM_NAME_TAG, "")
    updated[EFFECTS_TAG] = addEffect(updated.get(EFFECTS_TAG, ""), effect)
    algorithm_type, algorithm_name = deriveAlgorithm(
        splitEffects(updated[EFFECTS_TAG]), updated.get(PRIOR_TYPE_TAG) or None, updated.get(PRIOR_NAME_TAG) or None)
    updated[ALGORITHM_TYPE_TAG] = algorithm_type
    updated[ALGORITHM_NAME_TAG] = algorithm_name or ""
    return updated


def addEffect(effects: str, effect: str) -> str:
    """The ``;``-separated effect history ``effects`` with ``effect`` appended unless already present."""
    names = splitEffects(effects)
    if effect and effect not in names:
        names.append(effect)
    return ";".join(names)


def splitEffects(effects: str) -> list[str]:
    return [name for name in (effects or "").split(";") if name]


def deriveAlgorithm(effects: Sequence[str], previousType: str | None = None, previousName: str | None = None,
                    application: str = "3D Slicer Segment Editor") -> tuple[str, str | None]:
    """Segment Algorithm Type and Name from the effects that modified a segment.

    Parameters
    ----------
    effects:
        Effect names in the order first used; empty when the segment was not
        edited in this session.
    previousType, previousName:
        What the segment already carried (for example from a loaded SEG).
    application:
        Prefix of the algorithm name.

    Returns
    -------
    tuple
        ``(algorithm_type, algorithm_name)``; the name is ``None`` only for
        ``MANUAL`` segments, as PS3.3 C.8.20.2 requires a name otherwise.
    """
    previousType = (previousType or "").upper() or None
    if not effects:
        if previousType in ("SEMIAUTOMATIC", "AUTOMATIC"):
            return previousType, previousName or application[:_LO_MAXIMUM_LENGTH]
        return "MANUAL", None
    manual_only = all(effect in MANUAL_EFFECTS for effect in effects)
    if manual_only and previousType in (None, "MANUAL"):
        return "MANUAL", None
    name = f"{application}: {', '.join(effects)}"
    if previousName and previousType in ("SEMIAUTOMATIC", "AUTOMATIC"):
        name = f"{previousName}; {', '.join(effects)}"
    return "SEMIAUTOMATIC", _truncate(name)


def _truncate(text: str) -> str:
    if len(text) <= _LO_MAXIMUM_LENGTH:
        return text
    return text[: _LO_MAXIMUM_LENGTH - 3].rstrip() + "..."
