"""The readout page: one self-contained HTML document rendered by Jinja2 from ``templates/readout.html.j2``.

Self-contained: pictures are ``data:`` URIs, the style sheet is inline, and
there is no script, so the page reads the same offline, in a mail client, in
an archive and printed.  Its Content-Security-Policy forbids scripts and any
load from elsewhere, and autoescaping is on for every value: a patient name or
segment label holding markup is shown as text.  Each measured value carries
its exact value as read from the SR in ``data-value`` (and its codes in data
attributes and in the hover title), so what the page says can be checked
against the SR.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import __version__
from ..model import Code
from .keyimages import KeyImage
from .longitudinal import Change, Timeline
from .values import formatChange, formatValue, quantityName, summary

TEMPLATE_FOLDER = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "readout.html.j2"

#: Coding schemes the page names in its legend.
SCHEME_NAMES = {
    "DCM": "DICOM (PS3.16)",
    "SCT": "SNOMED CT",
    "UCUM": "Unified Code for Units of Measure",
    "99QREPORT": "QuantReport private codes",
    "99QIICR": "QIICR private codes (dcmqi)",
    "UMLS": "Unified Medical Language System",
}


def renderPage(timelines: Sequence[Timeline], key_images: Mapping[tuple[str, int], KeyImage],
               plots: Mapping[tuple[int, str], bytes], *, generated: datetime.datetime | None = None) -> str:
    """The HTML page.

    ``key_images`` maps (SR SOP Instance UID, segment number) to the key
    image; ``plots`` maps (timeline index, tracking UID) to a PNG.
    """
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_FOLDER),
        autoescape=True,  # every value is text, whatever markup it holds
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        value=formatValue,
        exact=repr,
        change=_change,
        code=_code,
        codeTitle=_codeTitle,
        date=_date,
        time=_time,
        datetime=_dateTime,
        png=_pngUri,
        quantityName=quantityName,
    )
    schemes = sorted(_schemesUsed(timelines))
    return environment.get_template(TEMPLATE_NAME).render(
        timelines=timelines,
        key_images=key_images,
        plots=plots,
        summary=summary,
        version=__version__,
        generated=(generated or datetime.datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M %Z").strip(),
        schemes=[(scheme, SCHEME_NAMES.get(scheme, "")) for scheme in schemes],
    )


def _change(change: Change | None, unit: str = "") -> str:
    if change is None:
        return ""
    text = formatChange(change.absolute) + (f" {unit}" if unit else "")
    if change.percent is not None:
        text += f" ({formatChange(change.percent, percent=True)})"
    return text


def _code(code: Code | None) -> str:
    """``SCHEME VALUE``, as codes are cited."""
    return "" if code is None else f"{code.scheme} {code.value}"


def _codeTitle(code: Code | None) -> str:
    """A code for a hover title: ``(VALUE, SCHEME, "meaning")``."""
    return "" if code is None else f'({code.value}, {code.scheme}, "{code.meaning}")'


def _date(value: str) -> str:
    """A DICOM DA (``YYYYMMDD``) as ``YYYY-MM-DD``; other text unchanged."""
    value = (value or "").strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _time(value: str) -> str:
    """A DICOM TM (``HHMMSS.FFFFFF``) as ``HH:MM:SS``; other text unchanged."""
    value = (value or "").strip()
    digits = value.split(".", 1)[0]
    if digits.isdigit() and len(digits) in (2, 4, 6):
        return ":".join(digits[index:index + 2] for index in range(0, len(digits), 2))
    return value


def _dateTime(value: str) -> str:
    """A DICOM DT (``YYYYMMDDHHMMSS...``) as ``YYYY-MM-DD HH:MM:SS``."""
    value = (value or "").strip()
    return f"{_date(value[:8])} {_time(value[8:14])}".strip() if len(value) >= 8 else value


def _pngUri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _schemesUsed(timelines: Sequence[Timeline]) -> set[str]:
    schemes: set[str] = set()
    for timeline in timelines:
        for point in timeline.time_points:
            for lesion in point.report.lesions:
                terminology = lesion.segment.terminology
                for code in (terminology.category, terminology.type, terminology.type_modifier,
                             terminology.anatomic_region, terminology.anatomic_region_modifier):
                    if code is not None:
                        schemes.add(code.scheme)
                for measurement in lesion.measurements:
                    quantity = measurement.quantity
                    for code in (quantity.name, quantity.unit, quantity.derivation, quantity.method):
                        if code is not None:
                            schemes.add(code.scheme)
    return schemes
