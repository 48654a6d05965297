"""PACS and DICOMweb servers: query, pull into the database, push SEG + SR (and any DICOM file) back.

- :mod:`.urls`: ``http(s)://host[:port]/root`` and ``dimse://AET@host:port``; credentials from the environment.
- :mod:`.transfer`: what moves (only what is missing or not yet stored) and how it lands in the database.
- :mod:`.dicomweb`: QIDO-RS, WADO-RS and STOW-RS through ``dicomweb-client``.
- :mod:`.dimse`: C-FIND, C-GET / C-MOVE and C-STORE through ``pynetdicom``.
- :mod:`.commands`: ``quantreport pull``, ``push``, ``query`` and ``export --push``.

The clients are imported inside the functions that use them, so that the
command line starts fast and Slicer imports QuantReport without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transfer import PacsConnection
    from .urls import Credentials

DEFAULT_WORKERS = 4
"""Transfers in flight at once: enough to keep a loopback or LAN server busy while this process writes files."""


def connect(url: str, credentials: Credentials | None = None, caFile: str | None = None, aeTitle: str | None = None,
            movePort: tuple[str, int] | None = None) -> PacsConnection:
    """A connection to the server at ``url`` (``http(s)://...`` or ``dimse://AET@host:port``); close it after use.

    ``credentials`` and ``caFile`` are for DICOMweb, ``aeTitle`` (ours,
    default ``QUANTREPORT``) and ``movePort`` (C-MOVE instead of C-GET) for DIMSE.

    Raises
    ------
    InvalidInputError
        A malformed URL, or options of the other protocol.
    """
    from ..errors import InvalidInputError
    from .urls import DEFAULT_AE_TITLE, checkAeTitle, parseServerUrl

    address = parseServerUrl(url)
    if address.protocol == "dicomweb":
        if aeTitle or movePort:
            raise InvalidInputError("--aet and --move-port are for dimse:// servers", address.name)
        from .dicomweb import DicomWebConnection

        return DicomWebConnection(address, credentials, caFile=caFile)
    if (credentials is not None and (credentials.user or credentials.token)) or caFile:
        raise InvalidInputError("--user, --password-env, --token-env and --ca-file are for http(s):// servers",
                                address.name)
    from .dimse import DimseConnection

    return DimseConnection(address, checkAeTitle(aeTitle, "--aet") if aeTitle else DEFAULT_AE_TITLE, movePort)
