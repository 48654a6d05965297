"""The readout as PDF: the HTML page printed by a headless Chromium (or Chrome, or Edge).

Why Chromium and not WeasyPrint: the PDF is then laid out by the same engine
that shows the HTML, so the two read the same (grid layout, fonts, images
scaled alike); Chromium is packaged everywhere (Debian ``chromium``, Chrome
and Edge on desktops: Edge is on every Windows), while WeasyPrint needs the
Pango and HarfBuzz system libraries, which a pip install cannot bring into
3D Slicer on Windows or macOS; and the tests drive the same browser anyway.

The browser runs with a fresh profile in a temporary folder, no first-run,
sync, component updates or background networking, and every host name
resolves to nothing: the page loads nothing from anywhere (its
Content-Security-Policy says so too).  ``QUANTREPORT_CHROMIUM`` names the
browser executable when it is not found on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import QuantReportError

BROWSER_VARIABLE = "QUANTREPORT_CHROMIUM"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "msedge")
_KNOWN_LOCATIONS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
    r"C:\Program Files\Microsoft\Edge\Application\msedge.exe",
)
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",  # the page has no script and loads nothing; the sandbox fails in containers run as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
TIMEOUT_S = 120


class BrowserError(QuantReportError):
    """The browser is missing, or failed to print the page."""


def findBrowser() -> str:
    """The Chromium-family browser to print with (see the module docstring).

    Raises
    ------
    BrowserError
        When none is found.
    """
    named = os.environ.get(BROWSER_VARIABLE)
    if named:
        if shutil.which(named) or Path(named).is_file():
            return shutil.which(named) or named
        raise BrowserError("no such browser executable", f"${BROWSER_VARIABLE}={named}")
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for location in _KNOWN_LOCATIONS:
        if Path(location).is_file():
            return location
    raise BrowserError("PDF output needs Chromium, Google Chrome or Microsoft Edge (install one, or name it in "
                       f"${BROWSER_VARIABLE}); HTML output needs no browser", "--format pdf")


def browserCommand(browser: str, profile: str | os.PathLike, *arguments: str) -> list[str]:
    """The headless command line (with a fresh profile folder) for ``arguments``."""
    return [browser, *HEADLESS_FLAGS, f"--user-data-dir={os.fspath(profile)}", *arguments]


def printToPdf(html: Path, pdf: Path, browser: str | None = None) -> None:
    """Print the page ``html`` to ``pdf`` (A4, the page's own margins, no browser header or footer)."""
    browser = browser or findBrowser()
    with tempfile.TemporaryDirectory(prefix="quantreport-browser-") as profile:
        runBrowser(browserCommand(browser, profile, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                                  html.resolve().as_uri()))
    with open(pdf, "rb") as written:
        if written.read(5) != b"%PDF-":
            raise BrowserError("the browser wrote no PDF", browser)


def runBrowser(command: list[str], timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a headless browser command; on a time-out its whole process group is ended (no helper left)."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=sys.platform != "win32")
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _endGroup(process)
        raise BrowserError(f"the browser did not finish within {timeout_s:g} s", command[0]) from None
    except BaseException:
        _endGroup(process)
        raise
    if process.returncode != 0:
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise BrowserError(f"the browser failed (exit status {process.returncode}): {last}", command[0])
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _endGroup(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.communicate()

