"""Server URLs, AE titles and credentials (``QuantReportLib.pacs.urls``), and the command-line options around them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from QuantReportLib.errors import InvalidInputError
from QuantReportLib.pacs.urls import Credentials, checkAeTitle, parseServerUrl


@pytest.mark.parametrize("text, protocol, name", [
    ("http://127.0.0.1:8042/dicom-web", "dicomweb", "http://127.0.0.1:8042/dicom-web"),
    ("https://pacs.example.org/dicom-web/", "dicomweb", "https://pacs.example.org/dicom-web"),
    ("HTTPS://pacs.example.org", "dicomweb", "https://pacs.example.org"),
    ("dimse://ORTHANC@127.0.0.1:4242", "dimse", "dimse://ORTHANC@127.0.0.1:4242"),
    ("dimse://MY%20PACS@pacs:104", "dimse", "dimse://MY PACS@pacs:104"),
])
def test_url_forms(text, protocol, name):
    address = parseServerUrl(text)
    assert (address.protocol, address.name) == (protocol, name)


def test_dimse_url_parts():
    address = parseServerUrl("dimse://STORESCP@10.0.0.5:11112")
    assert (address.ae_title, address.host, address.port) == ("STORESCP", "10.0.0.5", 11112)


@pytest.mark.parametrize("text, words", [
    ("ftp://host/x", "must start with"),
    ("pacs.example.org/dicom-web", "must start with"),
    ("http://alice:secret@host/dicom-web", "--password-env"),
    ("http:///dicom-web", "no host"),
    ("http://alice@host/dicom-web", "--user"),
    ("http://host/dicom-web?x=1", "service root"),
    ("http://host:99999/x", "not a server URL"),
    ("dimse://host:104", "dimse://AET@host:port"),
    ("dimse://AET@host", "dimse://AET@host:port"),
    ("dimse://AET@host:104/path", "without a path"),
    ("dimse://A%5CB@host:104", "not a valid AE title"),
    ("dimse://SEVENTEEN-CHARACTER@host:104", "not a valid AE title"),
])
def test_bad_urls_are_refused_with_a_reason(text, words):
    with pytest.raises(InvalidInputError) as caught:
        parseServerUrl(text)
    assert words in str(caught.value)
    assert "secret" not in str(caught.value)


def test_ae_titles():
    assert checkAeTitle(" QUANTREPORT ", "--aet") == "QUANTREPORT"
    for bad in ("", "   ", "A" * 17, "BACK\\SLASH", "TAB\tX"):
        with pytest.raises(InvalidInputError):
            checkAeTitle(bad, "--aet")


def test_credentials_come_from_the_environment_and_are_never_shown(monkeypatch):
    monkeypatch.setenv("QR_PW", "hunter2")
    monkeypatch.setenv("QR_TOKEN", "tok-123")
    basic = Credentials.fromEnvironment("alice", "QR_PW")
    assert (basic.user, basic.password, basic.token) == ("alice", "hunter2", None)
    bearer = Credentials.fromEnvironment(tokenEnv="QR_TOKEN")
    assert bearer.token == "tok-123"
    assert "hunter2" not in repr(basic) and "tok-123" not in repr(bearer)
    assert Credentials.fromEnvironment() == Credentials()
    monkeypatch.delenv("QR_MISSING", raising=False)
    for kwargs, words in ((dict(user="alice", passwordEnv="QR_MISSING"), "not set"),
                          (dict(user="alice"), "go together"), (dict(passwordEnv="QR_PW"), "go together"),
                          (dict(user="alice", passwordEnv="QR_PW", tokenEnv="QR_TOKEN"), "not both")):
        with pytest.raises(InvalidInputError) as caught:
            Credentials.fromEnvironment(**kwargs)
        assert words in str(caught.value) and "hunter2" not in str(caught.value)


def test_options_of_the_other_protocol_are_refused(capsys):
    from QuantReportLib import cli

    for arguments in (["query", "dimse://A@127.0.0.1:1", "--user", "u", "--password-env", "X"],
                      ["query", "http://127.0.0.1:1/x", "--aet", "ME"],
                      ["query", "http://127.0.0.1:1/x", "--workers", "0"]):
        assert cli.main(arguments) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_help_is_fast_and_imports_no_network_client():
    code = ("import sys; from QuantReportLib import cli; cli.buildParser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dicomweb_client', 'pynetdicom', 'requests')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PROJECT_ROOT / "QuantReport", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    shown = subprocess.run([sys.executable, "-m", "QuantReportLib", "--help"], capture_output=True, text=True,
                           cwd=PROJECT_ROOT / "QuantReport", timeout=60).stdout
    for verb in ("pull", "push", "query"):
        assert verb in shown
