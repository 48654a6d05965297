"""Server addresses and credentials: what ``quantreport pull|push|query URL`` names and how it logs in.

Two URL forms (PS3.18 for DICOMweb, PS3.8 for DIMSE):

- ``http(s)://host[:port]/dicomweb-root``: a DICOMweb service (QIDO-RS, WADO-RS, STOW-RS under that root);
- ``dimse://AET@host:port``: a DICOM application entity (C-FIND, C-GET or C-MOVE, C-STORE).

Secrets never travel on the command line (where ``ps`` and shell histories show them): a password
or bearer token is read from the environment variable the user names, and a URL holding a password
is refused.  :attr:`ServerAddress.name`, the server as messages and logs name it, holds no secret.
"""

from __future__ import annotations

import importlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

DEFAULT_AE_TITLE = "QUANTREPORT"
"""Our application entity title unless ``--aet`` says otherwise."""

# PS3.5 6.2: an AE title is 1-16 characters of the default repertoire without backslash or control characters;
# leading and trailing spaces are not significant.
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")


def checkAeTitle(value: str, what: str) -> str:
    """``value`` stripped when it is a valid AE title (PS3.5 6.2), else :class:`InvalidInputError`."""
    title = value.strip()
    if not title or not _AE_TITLE.fullmatch(title):
        raise InvalidInputError(f"not a valid AE title (1-16 printable characters, no backslash): {value!r}", what)
    return title


@dataclass(frozen=True)
class Credentials:
    """How to log in to a DICOMweb server: HTTP basic (user + password) or a bearer token, or neither."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never print a secret, also not in a traceback's locals
        kind = "bearer token" if self.token else f"user {self.user!r}" if self.user else "none"
        return f"Credentials({kind})"

    @classmethod
    def fromEnvironment(cls, user: str | None = None, passwordEnv: str | None = None,
                        tokenEnv: str | None = None) -> Credentials:
        """Credentials from ``--user``, ``--password-env NAME`` and ``--token-env NAME``.

        Raises
        ------
        InvalidInputError
            A named variable is unset or empty, a password is given without a
            user (or the reverse), or both basic and bearer are asked for.
        """
        if tokenEnv and (user or passwordEnv):
            raise InvalidInputError("give --token-env or --user with --password-env, not both", "--token-env")
        if bool(user) != bool(passwordEnv):
            raise InvalidInputError("--user and --password-env go together", "--user" if user else "--password-env")

        def secret(variable: str, option: str) -> str:
            value = os.environ.get(variable)
            if not value:
                raise InvalidInputError(f"the environment variable {variable!r} is not set or empty", option)
            return value

        if tokenEnv:
            return cls(token=secret(tokenEnv, "--token-env"))
        if user and passwordEnv:
            return cls(user=user, password=secret(passwordEnv, "--password-env"))
        return cls()


@dataclass(frozen=True)
class ServerAddress:
    """A parsed server URL.

    ``protocol`` is ``"dicomweb"`` (``url`` is the service root, without a
    trailing slash) or ``"dimse"`` (``ae_title``, ``host``, ``port``).
    """

    protocol: str
    name: str
    url: str = ""
    ae_title: str = ""
    host: str = ""
    port: int = 0


def parseServerUrl(text: str) -> ServerAddress:
    """``http(s)://host[:port]/root`` or ``dimse://AET@host:port`` as a :class:`ServerAddress`.

    Raises
    ------
    InvalidInputError
        Another scheme, no host, a bad port or AE title, or a password in the URL.
    """
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port
    except ValueError as error:
        raise InvalidInputError(f"not a server URL: {error}", _shown(text)) from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if parts.password is not None:
            raise InvalidInputError("the URL holds a password: give --user and --password-env NAME instead "
                                    "(a password on the command line is visible to every user of this machine)",
                                    _shown(text))
        if parts.username is not None:
            raise InvalidInputError("give the user name with --user, not in the URL", _shown(text))
        if not parts.hostname:
            raise InvalidInputError("no host in the URL", _shown(text))
        if parts.query or parts.fragment:
            raise InvalidInputError("a DICOMweb URL is the service root, without '?' or '#'", _shown(text))
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None:
            netloc += f":{port}"
        url = urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
        return ServerAddress(protocol="dicomweb", name=url, url=url)
    if scheme == "dimse":
        if not parts.username or not parts.hostname or port is None or parts.password is not None:
            raise InvalidInputError("a DIMSE URL is dimse://AET@host:port", _shown(text))
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise InvalidInputError("a DIMSE URL is dimse://AET@host:port, without a path", _shown(text))
        title = checkAeTitle(urllib.parse.unquote(parts.username), _shown(text))
        name = f"dimse://{title}@{parts.hostname}:{port}"
        return ServerAddress(protocol="dimse", name=name, ae_title=title, host=parts.hostname, port=port)
    raise InvalidInputError("the server URL must start with http://, https:// or dimse://", _shown(text))


def _shown(text: str) -> str:
    """A URL as it may appear in a message: the password part of ``user:password@`` removed."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", text)[:200]


KEYRING_SERVICE = "QuantReport PACS"
"""The service name passwords are kept under in the system keyring (one entry per ``user@server``)."""


def _keyring() -> Any:
    """The ``keyring`` module (optional: not every Python, nor Slicer, has it), or None."""
    try:
        return importlib.import_module("keyring")
    except ImportError:
        return None


def storedPassword(url: str, user: str) -> str | None:
    """The password kept in the system keyring for ``user`` at ``url``; None without one or without ``keyring``."""
    keyring = _keyring()
    if keyring is None:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, f"{user}@{url}")
    except keyring.errors.KeyringError:
        return None


def storePassword(url: str, user: str, password: str) -> bool:
    """Keep (or, when empty, forget) a password in the system keyring; False when no keyring is available."""
    keyring = _keyring()
    if keyring is None:
        return False
    try:
        if password:
            keyring.set_password(KEYRING_SERVICE, f"{user}@{url}", password)
        elif keyring.get_password(KEYRING_SERVICE, f"{user}@{url}") is not None:
            keyring.delete_password(KEYRING_SERVICE, f"{user}@{url}")
        return True
    except keyring.errors.KeyringError:
        return False
