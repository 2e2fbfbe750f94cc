"""Where the command line connects, checked before anything is opened or written.

A URI is a server's (``http``, ``https`` or ``tcp`` with a host, and a port that is a
number below 65536), a Unix socket (``unix:PATH``), or a Milvus Lite database: a path
ending in ``.db``. Anything else is a usage error (exit 2), as is an empty ``--uri``.

A Lite path must name a database that exists: nothing there is exit 1 (a typo must
not create a database). Milvus Lite 3 keeps a database in a folder (``collections/``,
``databases/``, ``LOCK``), Milvus Lite 2 in a file; a folder without either of the
first two is someone else's (``photos.db/`` holding pictures): exit 2, and nothing is
written into it.

Connecting to a server, within the command's one deadline. pymilvus reports a port
where nothing listens, a failed TLS handshake and a refused login alike (code 2, "Fail
connecting"), and 2.5 retries each until its connect timeout where 2.6+ gives up at
once. So before pymilvus connects, the command asks for itself, the same on every
pymilvus line:

1. ``knock``: does anything accept a TCP connection at the host and port? A refusal
   (a server restarting, not yet listening) is retried with ``FlushPolicy.retry``'s
   back-off until the deadline (exit 3), or the retry budget without one.
2. ``handshake_problem``: a TLS handshake as pymilvus would make it (``Tls``: the CA or
   server certificate, the client certificate, the server name). A certificate the
   server rejects, or one the client cannot verify, is final (exit 1), named. Without
   TLS, a server that completes a TLS handshake is named too ("pass --secure"): plain
   gRPC to it can never work.
3. Then pymilvus connects with what is left of the deadline; with nothing left (a
   silent server's probe waits for it all) the command times out without asking it:
   a connect that fails still costs its close, where gRPC waits up to 0.2 s for the
   connectivity watch pymilvus's wait started. A refused login is what fails there at
   once, with the server's answer (``UNAUTHENTICATED``) as its cause.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from ._exits import Exit
from ._schedule import FlushPolicy

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "KNOCK_TIMEOUT",
    "SCHEMES",
    "TLS_FLAGS",
    "NotConnected",
    "Target",
    "Tls",
    "address",
    "handshake_problem",
    "is_lite",
    "knock",
    "left_of",
    "lite_problem",
    "login_refused",
    "reach",
    "uri_problem",
]

logger = logging.getLogger("pymilvus_flushsync")

#: The longest a knock, and a handshake (and the alert that may follow it), may take:
#: both are on the command's deadline, whatever is left of it when shorter.
KNOCK_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 1.0
_ALERT_WAIT = 0.3
#: The URI schemes pymilvus connects to a server with (besides ``unix:``).
SCHEMES = ("http", "https", "tcp")
_EXPECTED = (
    "expected http[s]://host[:port], tcp://host:port, unix:PATH, or a Milvus Lite file "
    "ending in .db"
)
#: What a Milvus Lite 3 database folder holds.
_LITE_FOLDERS = ("collections", "databases")


def is_lite(uri: str) -> bool:
    """pymilvus's own test: a URI ending in ``.db`` is a Milvus Lite database."""
    return uri.endswith(".db") and "://" not in uri


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` is malformed, or ``None`` when it is not."""
    if not uri:
        return f"it is empty: {_EXPECTED}"
    if is_lite(uri) or uri.startswith("unix:"):
        return None
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  # raises ValueError for a port that is no number, or too large
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        return _EXPECTED
    return None


def lite_problem(uri: str) -> tuple[Exit, str] | None:
    """Why the Lite database at ``uri`` cannot be opened as one (exit code, reason)."""
    path = Path(uri)
    if not path.exists():
        return Exit.MILVUS, f"no Milvus Lite database at {uri}"
    if path.is_dir() and not any((path / name).is_dir() for name in _LITE_FOLDERS):
        return Exit.USAGE, f"{uri} is a folder that is not a Milvus Lite database"
    return None


def address(uri: str) -> tuple[str, int] | None:
    """The host and port a server URI connects to (pymilvus's defaults: 19530, or 443
    for ``https``); ``None`` for a Lite path or a Unix socket."""
    if is_lite(uri) or uri.startswith("unix:"):
        return None
    parts = urlsplit(uri)
    default = 443 if parts.scheme.lower() == "https" else 19530
    return parts.hostname or "localhost", parts.port or default


@dataclass(frozen=True)
class Tls:
    """pymilvus's TLS arguments (``MilvusClient(..., secure=True, server_pem_path=...)``):
    one-way TLS with ``server_pem_path`` (the server's certificate) or ``ca_pem_path``;
    mutual TLS with ``ca_pem_path``, ``client_pem_path`` and ``client_key_path``. Any
    path makes the connection secure, as does ``secure``."""

    secure: bool = False
    server_pem_path: str = ""
    ca_pem_path: str = ""
    client_pem_path: str = ""
    client_key_path: str = ""
    server_name: str = ""

    @property
    def on(self) -> bool:
        return self.secure or any(getattr(self, name) for name in _PATHS)

    @property
    def mutual(self) -> bool:
        return bool(self.client_pem_path or self.client_key_path)

    def problem(self) -> str | None:
        """Why these arguments cannot make a connection (a usage error), or ``None``."""
        if self.mutual and not (self.client_pem_path and self.client_key_path and self.ca_pem_path):
            return "mutual TLS takes --ca-pem-path, --client-pem-path and --client-key-path"
        if self.mutual and self.server_pem_path:
            return "--server-pem-path is for server TLS; mutual TLS takes --ca-pem-path"
        for name in _PATHS:
            path = getattr(self, name)
            if path and not Path(path).is_file():
                return f"--{name.replace('_', '-')} {path}: no such file"
        return None

    def kwargs(self) -> dict[str, Any]:
        """What ``MilvusClient`` takes for them (nothing without TLS)."""
        if not self.on:
            return {}
        given = {name: getattr(self, name) for name in (*_PATHS, "server_name")}
        given = {name: value for name, value in given.items() if value}
        if self.ca_pem_path and not self.mutual:  # pymilvus reads a CA as the server's root
            given["server_pem_path"] = given.pop("ca_pem_path")
        return {"secure": True, **given}

    def context(self) -> ssl.SSLContext:
        """An ``ssl`` context that checks what gRPC will check: the given root, the
        server name; with the client's certificate. Without a root given, gRPC uses its
        own roots, which may differ from Python's: the handshake is then not verified."""
        root = self.server_pem_path or self.ca_pem_path
        context = _unverified() if not root else ssl.create_default_context(cafile=root)
        context.set_alpn_protocols(["h2"])
        if self.mutual:
            context.load_cert_chain(self.client_pem_path, self.client_key_path)
        return context


#: The ``Tls`` fields that name files.
_PATHS = ("server_pem_path", "ca_pem_path", "client_pem_path", "client_key_path")


def knock(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to ``host:port`` is refused (nothing listens there);
    any other outcome (accepted, unreachable, slow) is for pymilvus to meet."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def handshake_problem(host: str, port: int, tls: Tls, timeout: float) -> str | None:
    """Why a TLS connection as ``tls`` says (or a plain one) can never work here, or
    ``None`` (it may: pymilvus goes on). See the module docstring, step 2."""
    context = tls.context()  # without TLS: unverified, to see whether the server speaks it
    name = tls.server_name or host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name) as secured,
        ):
            secured.settimeout(min(timeout, _ALERT_WAIT))  # an alert after the handshake
            with contextlib.suppress(TimeoutError, ssl.SSLWantReadError):
                secured.recv(1)  # (TLS 1.3: a client certificate refused)
    except ssl.SSLError as error:
        reason = error.reason or str(error)
        if tls.on:
            return f"TLS handshake failed: {reason.lower().replace('_', ' ')}"
        if "ALERT" not in reason:  # not TLS at all (a wrong version number, ...)
            return None
        # a TLS server's alert (it wants a client certificate, ...): it speaks TLS
    except OSError:
        return None  # refused, reset, not TLS, slow: not a TLS verdict
    if tls.on:
        return None
    return "the server speaks TLS: pass --secure, with --server-pem-path or --ca-pem-path"


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


#: The TLS flags and what each is: each is also read from ``$MILVUS_<NAME>``.
TLS_FLAGS = {
    "server_pem_path": "the server's certificate, for server TLS",
    "ca_pem_path": "the CA's certificate (server TLS, or mutual TLS with the two below)",
    "client_pem_path": "the client's certificate, for mutual TLS",
    "client_key_path": "the client's private key, for mutual TLS",
    "server_name": "the name the server's certificate holds, if not the URI's host",
}


class NotConnected(Exception):
    """The command cannot connect, or may not try: its exit code and its one line."""

    def __init__(self, code: Exit, line: str) -> None:
        super().__init__(line)
        self.code, self.line = code, line


@dataclass(frozen=True)
class Target:
    """Where and how to connect: each flag, else its ``$MILVUS_*`` variable."""

    uri: str
    token: str
    user: str
    password: str
    tls: Tls

    @classmethod
    def of(cls, flag: Callable[[str], Any], default_uri: str) -> Target:
        """From ``flag(name)`` (``None``: not given), else ``$MILVUS_<NAME>``; the URI
        else ``default_uri``."""

        def given(name: str) -> str:
            value = flag(name)
            return str(value) if value is not None else os.environ.get(f"MILVUS_{name.upper()}", "")

        uri = flag("uri")
        uri = uri if uri is not None else os.environ.get("MILVUS_URI") or default_uri
        secure = bool(flag("secure")) or given("secure").lower() in {"1", "true", "yes", "on"}
        tls = Tls(secure, *(given(name) for name in TLS_FLAGS))
        return cls(uri, given("token"), given("user"), given("password"), tls)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What ``_redact`` removes, besides the URIs' userinfo."""
        login = f"{self.user}:{self.password}" if self.password else ""
        return (self.token, login, os.environ.get("MILVUS_TOKEN", ""))

    def check(self) -> None:
        """Usage errors (exit 2), and a Lite path that is missing (exit 1) or someone
        else's folder (exit 2): ``NotConnected``, before anything is opened."""
        malformed = uri_problem(self.uri)
        problem = f"invalid --uri {self.uri}: {malformed}" if malformed else None
        if problem is None and self.token and (self.user or self.password):
            problem = "give --token, or --user and --password: not both"
        problem = problem or self.tls.problem()
        if problem is not None:
            raise NotConnected(Exit.USAGE, problem)
        lite = lite_problem(self.uri) if is_lite(self.uri) else None
        if lite is not None:
            raise NotConnected(*lite)


def left_of(timeout: float | None, started: float) -> float | None:
    """What is left of a deadline of ``timeout`` seconds from ``started`` (``None``:
    there is none)."""
    return None if timeout is None else timeout - (time.monotonic() - started)


def _within(seconds: float, left: float | None) -> float:
    return seconds if left is None else max(0.0, min(seconds, left))


def reach(target: Target, timeout: float | None, started: float, policy: FlushPolicy) -> None:
    """Steps 1 and 2 of the module docstring: wait while nothing listens at the server's
    port, with ``policy.retry``'s back-off (one INFO line a retry), until the deadline
    (exit 3) or, without one, ``policy.retry_budget`` (exit 1); then refuse a TLS
    handshake that can never work (exit 1). Raises ``NotConnected``."""
    where = address(target.uri)
    if where is None:
        return
    host, port = where
    limit = timeout if timeout is not None else policy.retry_budget
    for attempt in itertools.count():
        left = left_of(limit, started)
        if left is not None and left <= 0:
            line = f"nothing listens at {host}:{port} ({target.uri})"
            if timeout is not None:
                raise NotConnected(Exit.TIMEOUT, f"timed out: {line} within {timeout:g} s")
            raise NotConnected(Exit.MILVUS, f"cannot connect: {line} for {limit:g} s")
        if not knock(host, port, _within(KNOCK_TIMEOUT, left)):
            break
        delay = _within(policy.retry.delay(attempt), left)
        logger.info(
            "connecting to %s:%d: refused; next try in %.2f s (retry %d)",
            host, port, delay, attempt + 1,
        )  # fmt: skip
        time.sleep(delay)
    left = left_of(timeout, started)
    problem = handshake_problem(host, port, target.tls, _within(HANDSHAKE_TIMEOUT, left))
    if problem is not None:
        raise NotConnected(Exit.MILVUS, f"cannot connect to {target.uri}: {problem}")


def login_refused(error: BaseException) -> str | None:
    """Step 3: the server's refusal of the login (``UNAUTHENTICATED``,
    ``PERMISSION_DENIED``) behind pymilvus's "Fail connecting", if that is what it was."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and all(seen is not one for one in chain):  # pymilvus raises
        chain.append(seen)  # an error "from" itself: the chain may loop
        code = getattr(seen, "code", None)
        status = code() if isinstance(seen, grpc.RpcError) and callable(code) else None
        if status in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return f"{status.name}: {seen.details()}"  # type: ignore[attr-defined]
        seen = seen.__cause__ or seen.__context__
    return None
