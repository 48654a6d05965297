"""Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) run by the tests, and small servers of our own.

:func:`startOrthanc` writes a configuration (temporary storage, free ports,
the DICOMweb plugin, optional users, our AE as a modality, optional Lua),
starts ``Orthanc``, waits until its REST API answers and returns a handle
whose :meth:`Orthanc.stop` ends the process by PID.  Orthanc 1.10 has no
option to bind to one address: its HTTP server accepts loopback clients only
(``RemoteAccessAllowed`` false) and its DICOM server only our AE from
127.0.0.1 (``DicomCheckModalityHost``; unknown AEs may only C-ECHO).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
CLIENT_AE_TITLE = "QUANTREPORT"
# Raw Data Storage: the SOP class the Lua filter of the unauthenticated Orthanc discards.
FILTERED_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66"


def dicomWebPlugin() -> str | None:
    """The DICOMweb plugin of the ``orthanc-dicomweb`` package (``dpkg -L orthanc-dicomweb``), or None."""
    for candidate in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so"):
        if os.path.exists(candidate):
            return candidate
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30)
        for line in listing.stdout.splitlines():
            if "libOrthancDicomWeb.so" in line and os.path.isfile(line):
                return line
    return None


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its ports, DICOMweb root, credentials and process."""

    name: str
    http_port: int
    dicom_port: int
    aet: str
    folder: Path
    process: subprocess.Popen
    users: dict[str, str]
    move_port: int

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    def _auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items())) if self.users else None

    def request(self, method: str, path: str, **kwargs):
        import requests

        response = requests.request(method, self.rest + path, auth=self._auth(), timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, paths) -> list[str]:
        """Orthanc's own upload (REST ``POST /instances``); the Orthanc IDs of the instances."""
        return [self.request("POST", "/instances", data=Path(path).read_bytes()).json()["ID"] for path in paths]

    def clear(self) -> None:
        for patient in self.request("GET", "/patients").json():
            self.request("DELETE", f"/patients/{patient}")

    def instanceUids(self) -> set[str]:
        """SOP Instance UIDs of everything stored (Orthanc's REST API, not DICOMweb)."""
        found = self.request("POST", "/tools/find", json={"Level": "Instance", "Query": {}, "Expand": True}).json()
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in found}

    def log(self) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def startOrthanc(folder: Path, name: str, users: dict[str, str] | None = None, dicom: bool = True,
                 luaFilter: bool = False) -> Orthanc:
    """Start Orthanc with a generated configuration in ``folder`` and wait until it answers."""
    plugin = dicomWebPlugin()
    if plugin is None:
        raise RuntimeError("the Orthanc DICOMweb plugin (Debian package orthanc-dicomweb) is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    httpPort, dicomPort, movePort = freePort(), freePort(), freePort()
    aet = name.upper()[:16]
    configuration = {
        "Name": name, "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "storage"),
        "HttpPort": httpPort, "DicomPort": dicomPort, "DicomAet": aet, "DicomServerEnabled": dicom,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(users), "RegisteredUsers": users or {},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"quantreport": [CLIENT_AE_TITLE, "127.0.0.1", movePort]},
        "DicomCheckModalityHost": True, "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False, "SaveJobs": False, "ConcurrentJobs": 2, "HttpThreadsCount": 20,
        "StorageCompression": False, "OrthancExplorerEnabled": False,
    }
    if luaFilter:
        script = folder / "filter.lua"
        script.write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                          f"  return dicom.SOPClassUID ~= '{FILTERED_SOP_CLASS}'\nend\n")
        configuration["LuaScripts"] = [str(script)]
    config = folder / "orthanc.json"
    config.write_text(json.dumps(configuration, indent=2))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                               start_new_session=True)
    log.close()
    server = Orthanc(name, httpPort, dicomPort, aet, folder, process, users or {}, movePort)
    _waitUntilReady(server)
    return server


def _waitUntilReady(server: Orthanc, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with status {server.process.returncode}:\n{server.log()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.rest + "/system", auth=server._auth(), timeout=2).ok:
                return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout} s:\n{server.log()[-3000:]}")


def orthancInstalled() -> bool:
    return shutil.which("Orthanc") is not None or os.path.exists(ORTHANC)


# -- servers of our own, for what a real server does not do on request -------------------------------------


class FakeServer:
    """A loopback HTTP server answering with ``handler(request) -> (status, headers, body)``; stop() ends it.

    ``handler`` may also return None to drop the connection without an answer.
    Every request is recorded in :attr:`requests` as ``(method, path, headers)``.
    """

    def __init__(self, handler, tls: tuple[str, str] | None = None):
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._readChunked()
                fake.requests.append((self.command, self.path, dict(self.headers)))
                answer = fake.handler(self.command, self.path, dict(self.headers), body)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, payload = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                written = headers.get("X-Cut-After")
                self.wfile.write(payload if written is None else payload[:int(written)])
                if written is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _readChunked(self) -> bytes:
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()

            do_GET = do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http") -> str:
        host = "localhost" if scheme == "https" else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/dicom-web"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
