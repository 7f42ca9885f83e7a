"""The bounded log policy shared by the engine and the device (icp/ratelimit.py)."""

from __future__ import annotations

import pytest

from icp.ratelimit import OVERFLOW, LogBudget


def test_a_flood_writes_a_few_lines_then_one_summary_per_interval():
    budget = LogBudget(per_interval=5, interval_s=60.0)
    written = [budget.admit(("dev1", "invalid"), t * 0.001).log for t in range(35_000)]
    assert sum(written) == 5 and written[:5] == [True] * 5
    (summary,) = budget.due(60.0)
    assert summary.key == ("dev1", "invalid") and summary.count == 35_000 - 5
    assert "34995 more like it suppressed in the last 60 s" == summary.describe()
    assert budget.due(120.0) == []  # nothing left to say


def test_keys_are_independent_and_a_new_interval_starts_fresh_with_the_last_summary():
    budget = LogBudget(per_interval=1, interval_s=10.0)
    assert budget.admit("a", 0.0).log and budget.admit("b", 0.0).log
    assert not budget.admit("a", 1.0).log and not budget.admit("a", 2.0).log
    nxt = budget.admit("a", 10.5)
    assert nxt.log and nxt.summary is not None and nxt.summary.count == 2 and nxt.summary.until == 10.0
    assert budget.admit("b", 10.5).summary is None  # b suppressed nothing


def test_memory_is_bounded_by_max_keys():
    budget = LogBudget(per_interval=1, interval_s=10.0, max_keys=3)
    for i in range(1000):
        budget.admit(("dev", i), 0.0)
    assert len(budget._windows) <= 4
    (summary,) = budget.due(10.0)
    assert summary.key == OVERFLOW and summary.count == 1000 - 3 - 1


def test_bad_settings_fail_at_once():
    with pytest.raises(ValueError):
        LogBudget(per_interval=0)
    with pytest.raises(ValueError):
        LogBudget(interval_s=0)
