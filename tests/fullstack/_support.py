"""Constants of the full-stack tests (importable; tests never import a conftest module)."""

from __future__ import annotations

BATCH_SIZE = 8
"""Ids per list request on the test connection: small, so 20 sensors need several batches per sweep."""
