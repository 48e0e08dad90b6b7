"""Constants and helpers shared by the reliability tests (their fixtures are in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow_provider_oes.testing.connections import oes_connection_json

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator
    from pathlib import Path

TOKEN = "oes-secret-token-3f9a7c1e5b2d4e6f"
"""The access token of every connection in this suite; it must never show up in any output."""
ENTERPRISE_ID = "reliability-enterprise"
CONN_ID = "oes_default"
FAST_EXTRAS: dict[str, Any] = {
    "enterprise_id": ENTERPRISE_ID,
    "max_retries": 2,
    "retry_max_wait": 0.02,
    "read_timeout": 0.3,
    "connect_timeout": 1.0,
}
"""Connection extras that keep the suite fast: 3 attempts per call, backoff capped at 20 ms."""

FIGURES: Counter[str] = Counter()
"""Figures for the closing note, filled in by the tests."""


def connection_json(host: str, token: str = TOKEN, **extras: Any) -> str:
    """Return an ``AIRFLOW_CONN_*`` JSON value for an ``oes`` connection with the fast extras.

    :param host: the connection's Host (base URL).
    :param token: the access token (Password).
    :param extras: extras that override :data:`FAST_EXTRAS` (a value of ``None`` removes one).
    """
    return oes_connection_json(host, token, **{**FAST_EXTRAS, **extras})


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base of the suite's small hand-written servers: no access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run ``handler`` on a threaded server on a free 127.0.0.1 port; yield its base URL; stop it afterwards.

    :param handler: The request handler class.
    :param tls: A server-side TLS context, for an ``https://`` server.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls is not None else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class DripHandler(QuietHandler):
    """Answers 200 at once, then drips the body one byte every 50 ms: each read is quick, the whole is not."""

    hits = 0
    """Requests received (a client stuck on one body sends no more)."""

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "declared" in self.path:
            self.send_header("Content-Length", "400")
        self.end_headers()
        try:
            for _ in range(2_000):  # 100 s at most; the client is expected to hang up long before
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


def texts_of(obj: Any) -> list[str]:
    """Every text an error or value could show a user: str, repr, args, and its ``__dict__`` values."""
    texts = [str(obj), repr(obj)]
    args = getattr(obj, "args", None)
    if isinstance(args, tuple):
        texts.extend(repr(a) for a in args)
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        texts.extend(repr(v) for v in state.values())
    return texts


def assert_no_token(*items: Any, token: str = TOKEN) -> None:
    """Fail if the token appears in any of ``items`` (strings are scanned as they are; others via texts_of).

    Counts one scan per item and every leak in :data:`FIGURES`.
    """
    for item in items:
        texts = [item] if isinstance(item, str) else texts_of(item)
        FIGURES["token scans (texts checked)"] += len(texts)
        leaked = [t for t in texts if token in t]
        FIGURES["token leaks"] += len(leaked)
        assert not leaked, f"the access token leaked into: {leaked[0][:300]!r}"


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """Write a self-signed certificate for ``127.0.0.1`` (and ``localhost``) into ``folder``; return
    (certificate path, key path). The certificate is its own CA: use it as a ``ca_bundle``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)
