"""A DICOMweb service (PS3.18: QIDO-RS, WADO-RS, STOW-RS) through ``dicomweb-client``.

Instances are retrieved one request each, several at a time (one client per
thread), in the transfer syntax the server stores (``application/dicom; transfer-syntax=*``),
and stored in STOW-RS requests of a few instances per study.  Failures become
one :class:`ServerError` line naming the server: a refused connection, TLS
verification, 401/403 (never retried), a lost connection.  A part that is not
a DICOM instance is rejected with the UID it was asked for; the others go on.
"""

from __future__ import annotations

import functools
import logging
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydicom.errors import InvalidDicomError

from ..database import SeriesSummary
from ..errors import ServerError
from .transfer import (
    INSTANCE_KEYS,
    SERIES_KEYS,
    InstanceSink,
    LocalInstance,
    RemoteInstance,
    instanceFromAnswer,
    runConcurrently,
    seriesFromAnswer,
)
from .urls import Credentials, ServerAddress

logger = logging.getLogger(__name__)

#: Instances per STOW-RS request, and the bytes of files after which a request is sent earlier.
STORE_BATCH_INSTANCES = 16
STORE_BATCH_BYTES = 64 << 20

#: Connect and read timeouts (s): a server that stops answering is reported, not waited for forever.
TIMEOUT = (10, 120)

# STOW-RS Failure Reason values (PS3.18 table I.2-1 and the storage statuses of PS3.4 table B.2-1).
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0117: "invalid object instance",
    0x0119: "SOP class and instance conflict",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}

# What dicomweb-client and pydicom raise for a part that is not a DICOM instance (after network errors,
# which requests raises as OSError subclasses and are handled first).
_CONTENT_ERRORS = (InvalidDicomError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                   AttributeError, OverflowError, NotImplementedError, RecursionError)



def serverError(error: BaseException, server: str, doing: str) -> ServerError:
    """One line for a failed request: what failed, and the likely cause when it is known."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return ServerError(f"401 Unauthorized {doing}: the server refused the credentials "
                               "(check --user and --password-env, or --token-env)", server)
        if status == 403:
            return ServerError(f"403 Forbidden {doing}: these credentials are not allowed to do this", server)
        return ServerError(f"HTTP {status} {error.response.reason or ''} {doing}".strip(), server)
    if isinstance(error, requests.exceptions.SSLError):
        detail = _innermost(error)
        hint = " (give --ca-file with the server's certificate authority)" if "CERTIFICATE_VERIFY" in detail else ""
        return ServerError(f"TLS failure {doing}: {detail}{hint}", server)
    if isinstance(error, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return ServerError(f"no answer {doing} (timed out)", server)
    if isinstance(error, requests.exceptions.ConnectionError) and "Connection refused" in str(error):
        return ServerError(f"cannot connect {doing}: connection refused (is the server running, is the URL right?)",
                           server)
    if isinstance(error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ConnectionError):
        return ServerError(f"connection lost {doing}: {_innermost(error)}", server)
    return ServerError(f"{type(error).__name__} {doing}: {_innermost(error)}", server)


def _innermost(error: BaseException) -> str:
    """The message of the exception at the root of a requests/urllib3 chain (the part that says what happened)."""
    seen = error
    while True:
        nested = seen.__cause__ or seen.__context__
        if nested is None:
            arguments = [a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)]
            nested = arguments[0] if arguments else None
        if nested is None or nested is seen:
            break
        seen = nested
    return " ".join(str(seen).split())[:200] or type(seen).__name__


def _tags(keywords: Sequence[str]) -> list[str]:
    """QIDO-RS ``includefield`` values (PS3.18 8.3.4.3): tags as eight hexadecimal digits."""
    from pydicom.datadict import tag_for_keyword

    return [f"{tag_for_keyword(keyword):08X}" for keyword in keywords]


def _value(item: dict, keyword: str) -> str:
    """The first value of an attribute of a DICOM JSON answer as text (person names by their alphabetic form)."""
    from pydicom.datadict import tag_for_keyword

    values = item.get(f"{tag_for_keyword(keyword):08X}", {}).get("Value") or [""]
    first = values[0]
    if isinstance(first, dict):
        first = first.get("Alphabetic", "")
    return "" if first is None else str(first)


class DicomWebConnection:
    """:class:`~.transfer.PacsConnection` over DICOMweb.

    Parameters
    ----------
    address:
        The parsed ``http(s)://`` URL.
    credentials:
        HTTP basic or bearer credentials (or none).
    caFile:
        A PEM file of certificate authorities to verify the server's TLS
        certificate with, instead of the system's.
    """

    def __init__(self, address: ServerAddress, credentials: Credentials | None = None, caFile: str | None = None):
        self.name = address.name
        self._url = address.url
        self._credentials = credentials or Credentials()
        self._caFile = caFile
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._lock = threading.Lock()

    def _client(self) -> Any:
        """This thread's client (requests sessions are not documented as thread-safe)."""
        client = getattr(self._local, "client", None)
        if client is None:
            import requests
            from dicomweb_client import DICOMwebClient

            session = requests.Session()
            session.verify = self._caFile or True
            if self._caFile:
                # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own verify setting;
                # the file named on the command line must win (proxies from the environment are still used).
                session.proxies = requests.utils.get_environ_proxies(self._url)
                session.trust_env = False
            # Orthanc (HttpCompressionEnabled, on by default) gzips every answer a client accepts compressed: about
            # 40 ms of its CPU per CT slice, twenty times the transfer on a LAN.  DICOM is sent as it is stored.
            session.headers["Accept-Encoding"] = "identity"
            if self._credentials.token:
                session.headers["Authorization"] = f"Bearer {self._credentials.token}"
            elif self._credentials.user:
                session.auth = (self._credentials.user, self._credentials.password or "")
            try:
                client = DICOMwebClient(self._url, session=session, timeout=TIMEOUT)
            except ValueError as error:
                raise ServerError(f"not a usable DICOMweb URL: {error}", self.name) from None
            # Retry only what the server says is temporary (429, 408, 503, 504), and briefly; 401/403 never.
            client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
            self._local.client = client
            with self._lock:
                self._sessions.append(session)
        return client

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _search(self, doing: str, search: Callable[[Any], list[dict]]) -> list[dict]:
        import requests

        try:
            return search(self._client())
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code == 404:
                return []  # a study or series the server does not have
            raise serverError(error, self.name, doing) from None
        except requests.RequestException as error:
            raise serverError(error, self.name, doing) from None
        except _CONTENT_ERRORS as error:
            raise ServerError(f"unreadable answer {doing}: {type(error).__name__}: {error}", self.name) from None

    def findSeries(self, patientId: str | None = None, studyUid: str | None = None, seriesUid: str | None = None,
                   modality: str | None = None) -> list[SeriesSummary]:
        filters = {key: value for key, value in (("PatientID", patientId), ("SeriesInstanceUID", seriesUid),
                                                 ("Modality", modality)) if value}
        found = self._search("searching for series", lambda client: client.search_for_series(
            study_instance_uid=studyUid, search_filters=filters, fields=_tags(SERIES_KEYS), get_remaining=True))
        return [seriesFromAnswer(functools.partial(_value, item), studyUid) for item in found]

    def findInstances(self, studyUid: str, seriesUid: str) -> list[RemoteInstance]:
        found = self._search(f"searching for the instances of series {seriesUid}",
                             lambda client: client.search_for_instances(
                                 study_instance_uid=studyUid, series_instance_uid=seriesUid,
                                 fields=_tags(INSTANCE_KEYS), get_remaining=True))
        return [instanceFromAnswer(functools.partial(_value, item), studyUid, seriesUid) for item in found]

    # -- retrieve ----------------------------------------------------------------------------------------

    def retrieve(self, instances: Sequence[RemoteInstance], sink: InstanceSink, workers: int,
                 wholeSeries: frozenset[str] = frozenset()) -> None:
        """One WADO-RS request per instance (``wholeSeries`` changes nothing: one request each is as fast here
        and isolates a bad part to its instance)."""
        runConcurrently([functools.partial(self._retrieveOne, instance, sink) for instance in instances], workers,
                        sink.idle)

    def _retrieveOne(self, instance: RemoteInstance, sink: InstanceSink) -> None:
        import requests

        uid = instance.sop_instance_uid
        doing = f"retrieving instance {uid}"
        try:
            dataset = self._client().retrieve_instance(
                instance.study_instance_uid, instance.series_instance_uid, uid,
                media_types=(("application/dicom", "*"),))
        except requests.HTTPError as error:
            if error.response is not None and error.response.status_code in (404, 410):
                sink.reject(uid, f"HTTP {error.response.status_code}: the server listed it but does not send it")
                return
            raise serverError(error, self.name, doing) from None
        except requests.RequestException as error:
            raise serverError(error, self.name, doing) from None
        except _CONTENT_ERRORS as error:
            detail = " ".join(str(error).split())[:200]
            sink.reject(uid, f"the server's part is not a DICOM instance: {type(error).__name__}: {detail}")
            return
        if str(dataset.get("SOPInstanceUID", "")) != uid:
            sink.reject(uid, f"the server sent SOP Instance UID {str(dataset.get('SOPInstanceUID', ''))[:80]!r} "
                             "instead")
            return
        # As it came (pydicom writes what it read unchanged); a bare dataset gets its PS3.10 header.
        bare = "TransferSyntaxUID" not in getattr(dataset, "file_meta", {})
        sink.accept(dataset, lambda path: dataset.save_as(path, enforce_file_format=bare))

    # -- store ---------------------------------------------------------------------------------------------

    def store(self, files: Sequence[LocalInstance], workers: int) -> dict[Path, str | None]:
        outcomes: dict[Path, str | None] = {}
        lock = threading.Lock()

        def storeBatch(batch: list[LocalInstance]) -> None:
            answer = self._storeBatch(batch)
            with lock:
                outcomes.update(answer)

        runConcurrently([functools.partial(storeBatch, batch) for batch in _batches(files)], workers)
        return outcomes

    def _storeBatch(self, batch: list[LocalInstance]) -> dict[Path, str | None]:
        import pydicom
        import requests

        study = batch[0].study_instance_uid
        datasets = [pydicom.dcmread(instance.path) for instance in batch]
        client = self._client()
        # One request with a Content-Length, not chunked: under load, Orthanc 1.10 left instances of chunked
        # STOW-RS requests out of its answer (and unstored).  dicomweb-client chunks what exceeds its chunk size.
        # (The chunk size bounds nothing else here: retrieval does not stream.)
        client.set_chunk_size(2 * sum(instance.path.stat().st_size for instance in batch) + (1 << 20))
        try:
            response = client.store_instances(datasets, study_instance_uid=study)
        except requests.HTTPError as error:
            if error.response is None or error.response.status_code in (401, 403) or not error.response.content:
                raise serverError(error, self.name, f"storing {len(batch)} instance(s)") from None
            try:  # 409 Conflict and other refusals carry the same answer as a partial success
                response = pydicom.Dataset.from_json(error.response.content)
            except _CONTENT_ERRORS:
                raise serverError(error, self.name, f"storing {len(batch)} instance(s)") from None
        except requests.RequestException as error:
            raise serverError(error, self.name, f"storing {len(batch)} instance(s)") from None
        except _CONTENT_ERRORS as error:
            raise ServerError(f"unreadable STOW-RS answer: {type(error).__name__}: {error}", self.name) from None
        stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in response.get("ReferencedSOPSequence", [])}
        failed = {str(item.get("ReferencedSOPInstanceUID", "")): _failureReason(item)
                  for item in response.get("FailedSOPSequence", [])}
        outcomes: dict[Path, str | None] = {}
        for instance in batch:
            uid = instance.sop_instance_uid
            if uid in failed:
                outcomes[instance.path] = failed[uid]
            elif uid in stored:
                outcomes[instance.path] = None
            else:
                outcomes[instance.path] = "the server's STOW-RS answer does not mention this instance"
        return outcomes


def _failureReason(item: Any) -> str:
    code = item.get("FailureReason")
    if code is None:
        return "refused by the server (no reason given)"
    code = int(code)
    meaning = FAILURE_REASONS.get(code) or FAILURE_REASONS.get(code & 0xFF00, "refused")
    return f"refused by the server: {meaning} (Failure Reason {code:04X}H)"


def _batches(files: Sequence[LocalInstance]) -> list[list[LocalInstance]]:
    """STOW-RS requests: instances of one study, at most :data:`STORE_BATCH_INSTANCES` and about the byte limit."""
    byStudy: dict[str, list[LocalInstance]] = {}
    for instance in files:
        byStudy.setdefault(instance.study_instance_uid, []).append(instance)
    batches: list[list[LocalInstance]] = []
    for members in byStudy.values():
        batch: list[LocalInstance] = []
        size = 0
        for instance in members:
            fileSize = instance.path.stat().st_size
            if batch and (len(batch) >= STORE_BATCH_INSTANCES or size + fileSize > STORE_BATCH_BYTES):
                batches.append(batch)
                batch, size = [], 0
            batch.append(instance)
            size += fileSize
        if batch:
            batches.append(batch)
    return batches
