"""A real browser for the page tests: headless Chromium with the network cut off, a fresh profile per run.

``dumpDom`` returns the document as Chromium built it after loading (scripts,
if any could run, have run); ``screenshot`` writes a PNG of the rendered
page.  Every host name resolves to nothing and every request goes to a
closed proxy port, so a page that needs the network shows it.  The process
handling (time-out, process group ended) is the product's
(:func:`QuantReportLib.readout.pdf.runBrowser`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from conftest import require_tool
from QuantReportLib.readout.pdf import browserCommand, runBrowser

NETWORK_OFF = ("--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium() -> str:
    return require_tool("chromium")


def _run(page: Path, *arguments: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="quantreport-test-browser-") as profile:
        command = browserCommand(chromium(), profile, *NETWORK_OFF, *arguments, page.resolve().as_uri())
        return runBrowser(command, timeout_s=120).stdout


def dumpDom(page: str | os.PathLike) -> str:
    """The serialized DOM of ``page`` after Chromium loaded it."""
    return _run(Path(page), "--dump-dom").decode("utf-8")


def screenshot(page: str | os.PathLike, png: str | os.PathLike, width: int = 1200, height: int = 1800) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of the rendered page."""
    _run(Path(page), f"--screenshot={os.fspath(png)}", f"--window-size={width},{height}", "--hide-scrollbars")
    return Path(png)
