"""Three real poller processes share one token against one simulator that enforces the per-token limit.

Each process runs deferred ``AllocationStatusTrigger``s on its own shared poller, with the token's whole
limit as its static limit (no division by hand) and far more to poll than the limit allows. The adaptive
limiter must bring the three under the token's limit after a few 429s and keep them there, while every
allocation's flip still reaches its trigger.

The limit is scaled down for CI (60 requests per 10 s instead of BitGo's 360 per 60 s; the same rate, six
windows in a minute). The five-minute run at 360 per 60 s is ``bench/bench_shared_token.py``.
"""

from __future__ import annotations

import pytest

from airflow_provider_oes.testing.simulator import OESSimulator
from tests.harness.shared_token import run_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT, WINDOW = 60, 10.0
PROCESSES = 3
STEADY = 6 * WINDOW


def test_three_processes_on_one_token_converge_under_the_limit_and_see_every_flip() -> None:
    with OESSimulator(port=0, rate_limit=(LIMIT, WINDOW)) as sim:
        run = run_processes(sim, PROCESSES, allocations_per_process=30, steady_seconds=STEADY, flip_every=WINDOW)
    figures = run.figures
    print(
        f"\n[shared token] {PROCESSES} processes, limit {LIMIT} per {WINDOW:g} s: {figures.summary()}; "
        f"429s over the whole run {run.throttled_total}; limiters at the end {run.limiters}"
    )
    assert run.exit_codes == [0] * PROCESSES
    # Each alone would use the whole limit: together they did hit it, and the limiters adapted.
    assert figures.throttled, "the processes never met the token's limit: the test proves nothing"
    assert figures.converged_at <= 3 * WINDOW
    assert figures.end - figures.start - figures.converged_at >= 3 * WINDOW  # a long stretch after it
    assert figures.max_in_any_window_after_convergence() <= LIMIT
    assert figures.per_window_after_convergence() >= 0.5 * LIMIT  # under the limit, not starved
    assert len(figures.throttled) <= 4 * PROCESSES
    # Every flip reached its trigger, exactly once, with the status it flipped to.
    assert run.missed == []
    assert run.duplicates == []
    assert len(run.seen) == PROCESSES * 30
    assert sorted(set(run.expected.values())) == ["cleared", "released"]
