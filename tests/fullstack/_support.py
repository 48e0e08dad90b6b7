"""Constants and helpers of the full-stack tests (importable; tests never import a conftest module)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.harness.fullstack import FullStack

BATCH_SIZE = 8
"""Ids per list request on the test connection: small, so 20 sensors need several batches per sweep."""


def use_triggerers(stack: FullStack, count: int) -> list[str]:
    """Make exactly ``count`` triggerers run (start new ones one by one, stop extra ones gracefully).

    :param stack: The stack.
    :param count: Triggerers wanted.
    :return: Their component names, oldest first.
    """
    while len(stack.triggerer_names) > count:
        stack.stop_triggerer(stack.triggerer_names[0])
    while len(stack.triggerer_names) < count:
        stack.triggerer_job_id(stack.start_triggerer().name)  # one at a time, so each job id is known
    return stack.triggerer_names
