"""Faults and bad input of ``pull``, ``push`` and ``query``, each a test.

Against the real Orthanc where it can show the fault (unknown study, wrong
credentials, a SOP class it refuses or silently discards), and against a
small DICOMweb server of our own on loopback where a real server would have
to misbehave on request (a connection cut mid-transfer, truncated and
non-DICOM parts, hostile UIDs, 403, a bearer token, a STOW-RS refusal, TLS).
Every failure must be one ``error: <server>: <problem>`` line with exit
status 2, leave no partial file and no half-indexed database, and a rerun
must complete what was interrupted.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import subprocess
import tracemalloc
import uuid
from pathlib import Path

import pydicom
import pytest
from conftest import PROJECT_ROOT, require_tool
from orthanc import FILTERED_SOP_CLASS, FakeServer, freePort
from QuantReportLib import cli

SAMPLE_CT = sorted((PROJECT_ROOT / "QuantReport" / "QuantReportLib" / "data" / "lidc-idri-0001-nodule1").glob("*.dcm"))


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def errorLine(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def databaseFiles(db: Path) -> list[Path]:
    return sorted(path for path in (db / "dicom").rglob("*") if path.is_file()) if (db / "dicom").exists() else []


def indexedFiles(db: Path) -> dict[str, Path]:
    with sqlite3.connect(db / "ctkDICOM.sql") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {uid: db / name for uid, name in connection.execute("SELECT SOPInstanceUID, Filename FROM Images")}


def assertConsistent(db: Path) -> dict[str, Path]:
    """Every indexed file exists, every file in the folder is indexed, no temporary file is left."""
    indexed = indexedFiles(db)
    assert all(path.is_file() for path in indexed.values())
    assert sorted(indexed.values()) == databaseFiles(db), "files in the database folder that are not indexed"
    return indexed


# -- a DICOMweb server of our own ---------------------------------------------------------------------------


def fileBytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def sampleInstances(count: int, study: str = "1.2.3.4", series: str = "1.2.3.4.5") -> dict[str, bytes]:
    """``count`` CT instances (the sample's first slice with new UIDs), by SOP Instance UID."""
    template = pydicom.dcmread(SAMPLE_CT[0])
    instances = {}
    for number in range(count):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.5.6.{number + 1}"
        template.InstanceNumber = number + 1
        instances[template.SOPInstanceUID] = fileBytes(template)
    return instances


class FakeDicomWeb:
    """QIDO-RS, WADO-RS and STOW-RS over a dict of instances, with faults on request.

    ``parts`` maps a SOP Instance UID to the bytes its WADO-RS part carries
    (default: the instance); ``cut`` names instances whose answer is cut
    mid-body (the server dies); ``listed`` overrides the QIDO-RS instance
    list; ``status`` answers every request with that HTTP status.
    """

    def __init__(self, instances: dict[str, bytes], tls=None):
        self.instances = instances
        self.parts: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.listed: list[dict] | None = None
        self.status: int | None = None
        self.token: str | None = None
        self.stowAnswer = None
        self.stored: list[bytes] = []
        self.server = FakeServer(self.handle, tls=tls)

    def url(self, scheme: str = "http") -> str:
        return self.server.url(scheme)

    def retrieved(self) -> list[str]:
        return [path.rsplit("/", 1)[1] for method, path, _ in self.server.requests
                if method == "GET" and "/instances/" in path]

    def _headers(self, dataset: pydicom.Dataset) -> dict:
        def attribute(vr, value):
            return {"vr": vr, "Value": [value]}

        return {"0020000D": attribute("UI", str(dataset.StudyInstanceUID)),
                "0020000E": attribute("UI", str(dataset.SeriesInstanceUID)),
                "00080018": attribute("UI", str(dataset.SOPInstanceUID)),
                "00080016": attribute("UI", str(dataset.SOPClassUID)),
                "00100020": attribute("LO", "FAKE-1"), "00080060": attribute("CS", "CT"),
                "00280010": attribute("US", int(dataset.Rows)), "00201209": attribute("IS", len(self.instances))}

    def handle(self, method, path, headers, body):
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {}, b""
        if self.status is not None:
            return self.status, {}, b""
        route = path.split("?")[0].split("/dicom-web", 1)[1].strip("/").split("/")
        json_headers = {"Content-Type": "application/dicom+json"}
        if method == "POST":
            return self._stow(body)
        if route[-1] in ("series", "instances"):
            datasets = [pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True) for data in self.instances.values()]
            if "offset=" in path and "offset=0" not in path:
                return 200, json_headers, b"[]"
            if route[-1] == "series":
                listed = [self._headers(datasets[0])] if datasets else []
            else:
                listed = self.listed if self.listed is not None else [self._headers(d) for d in datasets]
            return 200, json_headers, json.dumps(listed).encode()
        uid = route[-1]
        part = self.parts.get(uid, self.instances.get(uid))
        if part is None:
            return 404, {}, b""
        boundary = uuid.uuid4().hex
        payload = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
                   + f"\r\n--{boundary}--\r\n".encode())
        answer = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
        if uid in self.cut:
            answer["X-Cut-After"] = str(len(payload) // 2)
        return 200, answer, payload

    def _stow(self, body):
        self.stored.append(body)
        return 200 if "FailedSOPSequence" not in self.stowAnswer else 202, \
            {"Content-Type": "application/dicom+json"}, json.dumps(self.stowAnswer).encode()

    def stop(self):
        self.server.stop()


@pytest.fixture
def fake():
    servers = []

    def start(instances: dict[str, bytes], **options) -> FakeDicomWeb:
        server = FakeDicomWeb(instances, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- the server is down, or stops mid-transfer -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "dimse"])
def test_server_down_is_one_line_naming_it(capsys, tmp_path, scheme):
    port = freePort()  # nothing listens there
    url = f"http://127.0.0.1:{port}/dicom-web" if scheme == "http" else f"dimse://ORTHANC@127.0.0.1:{port}"
    for command in (["pull", url, "--db", tmp_path / "db"], ["query", url], ["push", url, SAMPLE_CT[0]]):
        status, out, err = run(capsys, *command)
        assert status == 2
        line = errorLine(err)
        assert line.startswith(f"error: {url}: cannot connect"), line
    assert databaseFiles(tmp_path / "db") == []


def test_server_dying_mid_transfer_leaves_complete_indexed_files_and_a_rerun_completes(capsys, tmp_path, fake):
    instances = sampleInstances(8)
    server = fake(instances)
    uids = list(instances)
    server.cut = set(uids[5:])  # the connection breaks in the middle of these answers
    db = tmp_path / "db"
    status, out, err = run(capsys, "pull", server.url(), "--db", db, "--workers", "2")
    assert status == 2
    line = errorLine(err)
    assert line.startswith(f"error: {server.url()}: connection lost retrieving instance 1.2.3.4.5.6."), line
    indexed = assertConsistent(db)
    assert set(indexed) <= set(uids[:5]) and indexed, indexed
    assert all(path.read_bytes() == instances[uid] for uid, path in indexed.items())

    server.cut = set()  # the server is back
    before = len(server.retrieved())
    status, out, err = run(capsys, "pull", server.url(), "--db", db, "--json")
    assert status == 0, err
    assert json.loads(out)["indexed"] == len(uids) - len(indexed)
    assert sorted(server.retrieved()[before:]) == sorted(set(uids) - set(indexed))  # only what was missing
    assert {uid: path.read_bytes() for uid, path in assertConsistent(db).items()} == instances


# -- credentials ------------------------------------------------------------------------------------------------


def test_wrong_credentials_on_orthanc_are_reported_as_401(capsys, tmp_path, orthanc_auth, monkeypatch):
    orthanc_auth.upload(SAMPLE_CT[:2])
    monkeypatch.setenv("QR_PASSWORD", "not-the-password")
    status, _, err = run(capsys, "pull", orthanc_auth.dicomweb, "--db", tmp_path / "db", "--user", "alice",
                         "--password-env", "QR_PASSWORD")
    assert status == 2
    line = errorLine(err)
    assert line.startswith(f"error: {orthanc_auth.dicomweb}: 401 Unauthorized"), line
    assert "not-the-password" not in line
    status, _, err = run(capsys, "query", orthanc_auth.dicomweb)  # no credentials at all
    assert status == 2 and "401 Unauthorized" in errorLine(err)

    monkeypatch.setenv("QR_PASSWORD", "wonderland-7")
    status, out, err = run(capsys, "pull", orthanc_auth.dicomweb, "--db", tmp_path / "db", "--user", "alice",
                           "--password-env", "QR_PASSWORD", "--json")
    assert status == 0, err
    assert json.loads(out)["indexed"] == 2


@pytest.mark.parametrize("code, words", [(401, "401 Unauthorized"), (403, "403 Forbidden")])
def test_refusal_is_asked_once_not_retried(capsys, tmp_path, fake, code, words):
    server = fake(sampleInstances(3))
    server.status = code
    status, _, err = run(capsys, "pull", server.url(), "--db", tmp_path / "db")
    assert status == 2 and words in errorLine(err)
    assert len(server.server.requests) == 1, "a refused request must not be retried"


def test_bearer_token_from_the_environment_never_shown(capsys, tmp_path, fake, monkeypatch, caplog):
    instances = sampleInstances(2)
    server = fake(instances)
    server.token = "s3cr3t-t0ken"
    monkeypatch.setenv("QR_TOKEN", "s3cr3t-t0ken")
    caplog.set_level(logging.DEBUG)
    status, out, err = run(capsys, "pull", server.url(), "--db", tmp_path / "db", "--token-env", "QR_TOKEN", "--json")
    assert status == 0, err
    assert json.loads(out)["indexed"] == 2
    assert all(headers.get("Authorization") == "Bearer s3cr3t-t0ken" for _, _, headers in server.server.requests)
    assert "s3cr3t-t0ken" not in out + err + caplog.text
    monkeypatch.setenv("QR_TOKEN", "wrong")
    status, _, err = run(capsys, "query", server.url(), "--token-env", "QR_TOKEN")
    assert status == 2 and "401 Unauthorized" in errorLine(err)
    # A password in the URL is refused before anything is sent (it would be visible in the process list).
    status, _, err = run(capsys, "query", server.url().replace("http://", "http://alice:pw@"))
    assert status == 2 and "--password-env" in errorLine(err) and ":pw@" not in err


def test_tls_is_verified_and_a_ca_file_makes_a_private_certificate_acceptable(capsys, tmp_path, fake):
    openssl = require_tool("openssl")
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=120)
    server = fake(sampleInstances(1), tls=(str(certificate), str(key)))
    status, _, err = run(capsys, "query", server.url("https"))
    assert status == 2
    line = errorLine(err)
    assert "TLS failure" in line and "--ca-file" in line, line
    status, out, err = run(capsys, "query", server.url("https"), "--ca-file", certificate, "--json")
    assert status == 0, err
    assert json.loads(out)[0]["patient_id"] == "FAKE-1"


# -- what the server refuses, and what does not exist -----------------------------------------------------------


def rawDataFile(tmp_path: Path) -> Path:
    """A Raw Data Storage instance: the class the test Orthanc's Lua filter discards."""
    dataset = pydicom.dcmread(SAMPLE_CT[0])
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = FILTERED_SOP_CLASS
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "raw-data.dcm"
    dataset.save_as(path)
    return path


def privateClassFile(tmp_path: Path) -> Path:
    """An instance of a SOP class Orthanc does not know (it refuses the presentation context)."""
    dataset = pydicom.dcmread(SAMPLE_CT[1])
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.10.511.99.1"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "private-class.dcm"
    dataset.save_as(path)
    return path


def test_dimse_server_refusing_a_sop_class_stores_the_others(capsys, tmp_path, orthanc):
    refused = privateClassFile(tmp_path)
    status, out, err = run(capsys, "push", orthanc.dimse, SAMPLE_CT[0], refused, SAMPLE_CT[1], "--json")
    assert status == 2
    result = json.loads(out)
    assert result["stored"] == 2 and result["already_present"] == 0
    assert [failure["path"] for failure in result["failed"]] == [str(refused)]
    assert "abstract syntax not supported" in result["failed"][0]["reason"]
    assert errorLine(err) == f"error: {orthanc.dimse}: 1 of 3 file(s) not stored"
    assert len(orthanc.instanceUids()) == 2


def test_orthanc_discarding_an_instance_it_answered_stored_is_reported(capsys, tmp_path, orthanc):
    """Orthanc 1.10 answers STOW-RS (and C-STORE) with success for an instance its filter discards."""
    discarded = rawDataFile(tmp_path)
    for url in (orthanc.dicomweb, orthanc.dimse):
        status, out, err = run(capsys, "push", url, SAMPLE_CT[2], discarded, "--json")
        assert status == 2
        result = json.loads(out)
        assert result["stored"] + result["already_present"] == 1
        assert [failure["path"] for failure in result["failed"]] == [str(discarded)], result
        assert "does not list it" in result["failed"][0]["reason"] or "refused" in result["failed"][0]["reason"]


def test_stow_refusal_lists_the_servers_reason(capsys, tmp_path, fake):
    server = fake({})
    accepted, refused = SAMPLE_CT[3], rawDataFile(tmp_path)
    acceptedUid = str(pydicom.dcmread(accepted, stop_before_pixels=True).SOPInstanceUID)
    refusedUid = str(pydicom.dcmread(refused, stop_before_pixels=True).SOPInstanceUID)
    server.stowAnswer = {
        "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [acceptedUid]}}]},
        "00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [refusedUid]},
                                             "00081197": {"vr": "US", "Value": [0x0122]}}]}}
    server.instances = {}  # QIDO lists nothing before the push ...
    original = server.handle

    def afterStore(method, path, headers, body):  # ... and the accepted one after it
        if method == "GET" and server.stored:
            server.instances = {acceptedUid: Path(accepted).read_bytes()}
        return original(method, path, headers, body)

    server.server.handler = afterStore
    status, out, err = run(capsys, "push", server.url(), accepted, refused, "--json")
    assert status == 2
    assert json.loads(out) == {"stored": 1, "already_present": 0, "failed": [
        {"path": str(refused), "reason": "refused by the server: SOP class not supported (Failure Reason 0122H)"}]}


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_unknown_study_is_one_line_and_nothing_is_written(capsys, tmp_path, orthanc, protocol):
    orthanc.upload(SAMPLE_CT[:1])
    url = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    status, out, err = run(capsys, "pull", url, "--study", "1.2.826.0.1.3680043.10.511.404", "--db", tmp_path / "db")
    assert status == 2 and out == ""
    assert errorLine(err) == f"error: {url}: study 1.2.826.0.1.3680043.10.511.404 not found on the server"
    assert databaseFiles(tmp_path / "db") == []
    status, _, err = run(capsys, "pull", url, "--study", "../etc", "--db", tmp_path / "db")
    assert status == 2 and "not a valid DICOM UID" in errorLine(err)


# -- what a broken or hostile server sends ----------------------------------------------------------------------


def test_truncated_and_non_dicom_parts_are_rejected_by_uid_and_the_rest_kept(capsys, tmp_path, fake):
    instances = sampleInstances(4)
    server = fake(instances)
    uids = list(instances)
    server.parts[uids[1]] = instances[uids[1]][: len(instances[uids[1]]) // 2]  # cut inside the pixel data
    server.parts[uids[2]] = b"<html>502 Bad Gateway</html>"
    server.parts[uids[3]] = instances[uids[3]][:900]  # cut in the header: no pixel data at all
    db = tmp_path / "db"
    status, out, err = run(capsys, "pull", server.url(), "--db", db, "--json")
    assert status == 2
    result = json.loads(out)
    assert result["indexed"] == 1
    reasons = {skipped["path"]: skipped["reason"] for skipped in result["skipped"]}
    assert set(reasons) == set(uids[1:])
    assert reasons[uids[1]].startswith("truncated")
    assert "not a DICOM instance" in reasons[uids[2]]
    assert "without pixel data" in reasons[uids[3]]
    assert errorLine(err) == f"error: {server.url()}: 3 instance(s) rejected (the others are stored and indexed)"
    assert set(assertConsistent(db)) == {uids[0]}


def test_hostile_uids_never_become_paths(capsys, tmp_path, fake):
    instances = sampleInstances(3)
    server = fake(instances)
    uids = list(instances)
    hostile = ["../../../../escaped", "/tmp/absolute", "1.2/../../x"]
    listing = []
    for uid, name in zip(uids, hostile, strict=True):
        entry = server._headers(pydicom.dcmread(io.BytesIO(instances[uid]), stop_before_pixels=True))
        entry["00080018"]["Value"] = [name]
        listing.append(entry)
    # And one listed correctly whose file claims a hostile study UID.
    evil = pydicom.dcmread(io.BytesIO(instances[uids[0]]))
    evil.SOPInstanceUID = evil.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.99"
    evil.StudyInstanceUID = "../../outside"
    server.parts["1.2.3.4.5.6.99"] = fileBytes(evil)
    goodEntry = server._headers(pydicom.dcmread(io.BytesIO(instances[uids[1]]), stop_before_pixels=True))
    goodEntry["00080018"]["Value"] = ["1.2.3.4.5.6.99"]
    server.listed = listing + [goodEntry]
    db = tmp_path / "work" / "db"
    status, out, err = run(capsys, "pull", server.url(), "--db", db, "--json")
    assert status == 2
    result = json.loads(out)
    assert result["indexed"] == 0 and len(result["skipped"]) == 4
    assert all("invalid UID" in s["reason"] or "not those the server listed" in s["reason"]
               for s in result["skipped"]), result
    outside = [path for path in tmp_path.rglob("*") if path.is_file() and db not in path.parents]
    assert outside == [], outside
    assert server.retrieved() == ["1.2.3.4.5.6.99"]  # the hostile names were never even requested
    assert assertConsistent(db) == {}


def test_memory_stays_bounded_while_pulling_many_instances(capsys, tmp_path, fake):
    """Instances are handled one at a time per worker: the peak is a few instances, not the study."""
    instances = sampleInstances(100)
    server = fake(instances)
    size = len(next(iter(instances.values())))
    tracemalloc.start()
    try:
        status, out, err = run(capsys, "pull", server.url(), "--db", tmp_path / "db", "--json", "--workers", "2")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 0, err
    assert json.loads(out)["indexed"] == 100
    # Allocations of both sides (the server builds each answer too): a bounded number of instances, not 100.
    assert peak < 25 * size, f"peak {peak / 1e6:.1f} MB for instances of {size / 1e6:.2f} MB"
