"""Small helpers shared by the reliability tests."""

from __future__ import annotations

from typing import Any

from tests.reliability.conftest import FIGURES, TOKEN


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
