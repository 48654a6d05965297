"""A DICOM application entity over the DICOM upper layer (PS3.7, PS3.8) through ``pynetdicom``.

Study Root Query/Retrieve (PS3.4 annex C): C-FIND lists series and
instances; C-GET retrieves them on the same association (we take the storage
SCP role for their SOP classes), or C-MOVE sends them to our own storage SCP
when a move port is given (the server must know our AE title, host and port).
C-STORE pushes files as they are; a SOP class or transfer syntax the server
does not accept is reported with the server's reason for that presentation
context.  Instances arrive encoded as sent and are written unchanged.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from .urls import DEFAULT_AE_TITLE, ServerAddress

logger = logging.getLogger(__name__)

#: Seconds to wait for an association, a DIMSE answer, and network silence.
ACSE_TIMEOUT = 10
DIMSE_TIMEOUT = 120
NETWORK_TIMEOUT = 120

# Study Root Query/Retrieve Information Model SOP classes (PS3.4 C.6.2) and Verification (PS3.4 A.4).
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
VERIFICATION = "1.2.840.10008.1.1"

# Presentation context results (PS3.8 table 9-18).
_CONTEXT_RESULTS = {1: "rejected by the user", 2: "rejected, no reason given", 3: "abstract syntax not supported",
                    4: "transfer syntaxes not supported"}
_PENDING = (0xFF00, 0xFF01)
_STORE_WARNINGS = (0xB000, 0xB006, 0xB007)
# Statuses our storage SCP answers for an instance it does not keep (PS3.4 table B.2-1).
_CANNOT_UNDERSTAND = 0xC000


class DimseConnection:
    """:class:`~.transfer.PacsConnection` over DIMSE.

    Parameters
    ----------
    address:
        The parsed ``dimse://AET@host:port`` URL (the called AE).
    aeTitle:
        Our (calling) AE title.
    movePort:
        ``(address, port)`` for our storage SCP to receive C-MOVE sub-operations;
        None retrieves with C-GET.
    """

    def __init__(self, address: ServerAddress, aeTitle: str = DEFAULT_AE_TITLE,
                 movePort: tuple[str, int] | None = None):
        self.name = address.name
        self._address = address
        self._aeTitle = aeTitle
        self._movePort = movePort

    def close(self) -> None:
        """Nothing stays open between calls: every operation opens and releases its associations."""

    # -- associations ------------------------------------------------------------------------------------

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self._aeTitle)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT, DIMSE_TIMEOUT, NETWORK_TIMEOUT
        return ae

    @contextmanager
    def _association(self, contexts: Sequence[tuple[str, Sequence[str]]], doing: str, roles: Sequence[Any] = (),
                     handlers: Sequence[Any] = (), refusable: bool = False) -> Iterator[Any]:
        """An established association with these (abstract syntax, transfer syntaxes), released at the end.

        When the server accepts none of the contexts, ``refusable`` raises
        :class:`_NoAcceptedContext` (the caller reports each file), else :class:`ServerError`.
        """
        ae = self._ae()
        for abstractSyntax, transferSyntaxes in contexts:
            ae.add_requested_context(abstractSyntax, list(transferSyntaxes))
        association = ae.associate(self._address.host, self._address.port, ae_title=self._address.ae_title,
                                   ext_neg=list(roles) or None, evt_handlers=list(handlers) or None)
        if not association.is_established:
            if association.rejected_contexts and not association.accepted_contexts:
                if refusable:
                    raise _NoAcceptedContext({cx.abstract_syntax: cx.result for cx in association.rejected_contexts})
                raise ServerError(f"the server accepts none of the presentation contexts {doing}", self.name)
            if association.is_rejected:
                raise ServerError(f"association rejected {doing} (is our AE title {self._aeTitle!r} known to the "
                                  "server, and its AE title right?)", self.name)
            raise ServerError(f"cannot connect {doing}: no association (is the server running, are host and port "
                              "right?)", self.name)
        try:
            yield association
        finally:
            if association.is_established:
                association.release()

    def _find(self, identifier: Any, doing: str) -> list[Any]:
        with self._association([(STUDY_ROOT_FIND, _uncompressed())], doing) as association:
            answers = []
            for status, found in association.send_c_find(identifier, STUDY_ROOT_FIND):
                code = _statusCode(status, self.name, doing)
                if code in _PENDING:
                    if found is not None:
                        answers.append(found)
                elif code != 0x0000:
                    raise ServerError(f"C-FIND failed {doing}: status {code:04X}H {_comment(status)}", self.name)
            return answers

    # -- query ---------------------------------------------------------------------------------------------

    def findSeries(self, patientId: str | None = None, studyUid: str | None = None, seriesUid: str | None = None,
                   modality: str | None = None) -> list[SeriesSummary]:
        from pydicom import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        matching = {"PatientID": patientId, "StudyInstanceUID": studyUid, "SeriesInstanceUID": seriesUid,
                    "Modality": modality}
        for keyword in SERIES_KEYS:
            setattr(query, keyword, matching.get(keyword) or None)  # empty: a return key (PS3.4 C.2.2.1.2)
        return [seriesFromAnswer(functools.partial(_text, found), studyUid)
                for found in self._find(query, "searching for series")]

    def findInstances(self, studyUid: str, seriesUid: str) -> list[RemoteInstance]:
        from pydicom import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        for keyword in INSTANCE_KEYS:
            setattr(query, keyword, None)
        query.StudyInstanceUID, query.SeriesInstanceUID = studyUid, seriesUid
        return [instanceFromAnswer(functools.partial(_text, found), studyUid, seriesUid)
                for found in self._find(query, f"searching for the instances of series {seriesUid}")]

    # -- retrieve ------------------------------------------------------------------------------------------

    def retrieve(self, instances: Sequence[RemoteInstance], sink: InstanceSink, workers: int,
                 wholeSeries: frozenset[str] = frozenset()) -> None:
        """C-GET (or C-MOVE) the series of ``wholeSeries`` as a whole, the other instances one by one."""
        from pynetdicom import evt

        handler = (evt.EVT_C_STORE, _storeHandler(sink))
        requests = _retrieveRequests(instances, wholeSeries)
        sopClasses = sorted({instance.sop_class_uid for instance in instances if instance.sop_class_uid})
        if self._movePort is None:
            runConcurrently([functools.partial(self._get, request, sopClasses, handler) for request in requests],
                            workers, sink.idle)
            return
        from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context

        receiver = self._ae()
        # Every storage SOP class in every transfer syntax: instances arrive as the server stores them.
        receiver.supported_contexts = [build_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
                                       for cx in AllStoragePresentationContexts]
        receiver.add_supported_context(VERIFICATION)
        try:
            server = receiver.start_server(self._movePort, block=False, evt_handlers=[handler])
        except OSError as error:
            raise ServerError(f"cannot listen on {self._movePort[0] or '*'}:{self._movePort[1]} for C-MOVE: "
                              f"{error.strerror or error}", self.name) from None
        try:
            runConcurrently([functools.partial(self._move, request) for request in requests], workers, sink.idle)
        finally:
            server.shutdown()

    def _get(self, request: Any, sopClasses: Sequence[str], handler: Any) -> None:
        from pynetdicom import build_role

        doing = f"retrieving {_describe(request)} (C-GET)"
        contexts = [(STUDY_ROOT_GET, _uncompressed())] + [(sopClass, _uncompressed()) for sopClass in sopClasses[:120]]
        roles = [build_role(sopClass, scp_role=True) for sopClass in sopClasses[:120]]
        with self._association(contexts, doing, roles=roles, handlers=[handler]) as association:
            self._retrieveResponses(association.send_c_get(request, STUDY_ROOT_GET), doing)

    def _move(self, request: Any) -> None:
        doing = f"retrieving {_describe(request)} (C-MOVE to {self._aeTitle})"
        with self._association([(STUDY_ROOT_MOVE, _uncompressed())], doing) as association:
            self._retrieveResponses(association.send_c_move(request, self._aeTitle, STUDY_ROOT_MOVE), doing)

    def _retrieveResponses(self, responses: Any, doing: str) -> None:
        for status, _ in responses:
            code = _statusCode(status, self.name, doing)
            if code in _PENDING or code in (0x0000, 0xB000):  # B000: some sub-operations failed (reported per UID)
                continue
            if code == 0xA801:
                raise ServerError(f"the server does not know our AE title {self._aeTitle!r} as a C-MOVE "
                                  f"destination {doing}", self.name)
            raise ServerError(f"retrieve failed {doing}: status {code:04X}H {_comment(status)}", self.name)

    # -- store ---------------------------------------------------------------------------------------------

    def store(self, files: Sequence[LocalInstance], workers: int) -> dict[Path, str | None]:
        outcomes: dict[Path, str | None] = {}
        lock = threading.Lock()
        shares = [list(files[index::max(1, workers)]) for index in range(max(1, min(workers, len(files))))]

        def storeShare(share: list[LocalInstance]) -> None:
            answer = self._storeShare(share)
            with lock:
                outcomes.update(answer)

        runConcurrently([functools.partial(storeShare, share) for share in shares if share], workers)
        return outcomes

    def _storeShare(self, share: list[LocalInstance]) -> dict[Path, str | None]:
        """C-STORE the files over one association: one presentation context per SOP class and transfer syntax."""
        pairs = sorted({(instance.sop_class_uid, instance.transfer_syntax_uid) for instance in share})
        outcomes: dict[Path, str | None] = {}
        doing = f"storing {len(share)} instance(s)"
        for start in range(0, len(pairs), 120):  # at most 128 presentation contexts per association (PS3.8 9.3.2.2)
            chosen = set(pairs[start:start + 120])
            members = [instance for instance in share if (instance.sop_class_uid, instance.transfer_syntax_uid)
                       in chosen]
            try:
                with self._association([(sopClass, [syntax]) for sopClass, syntax in sorted(chosen)], doing,
                                       refusable=True) as association:
                    accepted = {(cx.abstract_syntax, syntax) for cx in association.accepted_contexts
                                for syntax in cx.transfer_syntax}
                    rejected = {cx.abstract_syntax: cx.result for cx in association.rejected_contexts}
                    self._storeMembers(association, members, accepted, rejected, outcomes)
            except _NoAcceptedContext as refusal:
                self._storeMembers(None, members, set(), refusal.results, outcomes)
        return outcomes

    def _storeMembers(self, association: Any, members: list[LocalInstance], accepted: set[tuple[str, str]],
                      rejected: dict[str, int], outcomes: dict[Path, str | None]) -> None:
        for instance in members:
            key = (instance.sop_class_uid, instance.transfer_syntax_uid)
            if key not in accepted:
                reason = _CONTEXT_RESULTS.get(rejected.get(instance.sop_class_uid, 0), "not accepted")
                outcomes[instance.path] = (f"refused by the server: SOP class {_uidName(key[0])} with "
                                           f"{_uidName(key[1])} ({reason})")
                continue
            status = association.send_c_store(instance.path)
            code = _statusCode(status, self.name, f"storing {instance.path}")
            if code == 0x0000 or code in _STORE_WARNINGS:
                outcomes[instance.path] = None
            else:
                outcomes[instance.path] = (f"refused by the server: {_storeMeaning(code)} (status {code:04X}H)"
                                           f"{_comment(status)}")


class _NoAcceptedContext(Exception):
    """The server accepted none of the proposed presentation contexts: ``results`` by abstract syntax."""

    def __init__(self, results: dict[str, int]):
        super().__init__("no presentation context accepted")
        self.results = results


def _storeHandler(sink: InstanceSink) -> Callable[[Any], int]:
    """The EVT_C_STORE handler: hand the instance, as encoded by the sender, to ``sink``."""
    def handle(event: Any) -> int:
        claimed = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            encoded = event.encoded_dataset()
            dataset = event.dataset
            dataset.file_meta = event.file_meta
        except Exception as error:  # noqa: BLE001 -- a malformed dataset from the peer, whatever pydicom raises
            sink.reject(claimed, f"undecodable instance: {type(error).__name__}: {error}"[:300])
            return _CANNOT_UNDERSTAND
        kept = sink.accept(dataset, lambda path: path.write_bytes(encoded))
        return 0x0000 if kept else _CANNOT_UNDERSTAND

    return handle


def _retrieveRequests(instances: Sequence[RemoteInstance], wholeSeries: frozenset[str]) -> list[Any]:
    """C-GET/C-MOVE identifiers: one per series in ``wholeSeries``, one per instance for the others."""
    from pydicom import Dataset

    requests = []
    done: set[str] = set()
    for instance in instances:
        series = instance.series_instance_uid
        if series in done:
            continue
        request = Dataset()
        request.StudyInstanceUID, request.SeriesInstanceUID = instance.study_instance_uid, series
        if series in wholeSeries:
            request.QueryRetrieveLevel = "SERIES"
            done.add(series)
        else:
            request.QueryRetrieveLevel = "IMAGE"
            request.SOPInstanceUID = instance.sop_instance_uid
        requests.append(request)
    return requests


def _describe(request: Any) -> str:
    if request.QueryRetrieveLevel == "IMAGE":
        return f"instance {request.SOPInstanceUID}"
    return f"series {request.SeriesInstanceUID}"


def _uncompressed() -> list[str]:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    return [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _statusCode(status: Any, server: str, doing: str) -> int:
    """The Status of a DIMSE answer; an empty answer means the association died."""
    code = getattr(status, "Status", None) if status is not None else None
    if code is None:
        raise ServerError(f"connection lost {doing}: no answer (association aborted or timed out)", server)
    return int(code)


def _comment(status: Any) -> str:
    comment = str(getattr(status, "ErrorComment", "") or "").strip()
    return f": {comment}" if comment else ""


def _storeMeaning(code: int) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    return STORAGE_SERVICE_CLASS_STATUS.get(code, ("Failure", "failure"))[1]


def _uidName(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def _text(dataset: Any, keyword: str) -> str:
    value = dataset.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):  # multi-valued: the first value
        value = next(iter(value), "")
    return str(value)
