"""Small helpers shared by the reliability tests."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from tests.reliability.conftest import FIGURES, TOKEN

if TYPE_CHECKING:
    from pathlib import Path


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
