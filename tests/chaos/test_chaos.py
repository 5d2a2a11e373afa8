"""The chaos run at CI size: every write ends verified exactly once, rejected having written
nothing, or waiting for a person with a reason — through EHR faults, worker SIGKILLs and a
Temporal server restart. Full size: `python tests/chaos/run_chaos.py --writes 10000`."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_chaos import ChaosConfig, print_report, run

pytestmark = pytest.mark.integration


async def test_chaos_at_ci_size_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = await run(ChaosConfig(writes=60, kill_every=(2.0, 4.0)), tmp_path)
    print_report(report)

    assert report.duplicates == []
    assert report.lost == []
    assert report.unexplained == []
    assert sum(report.states.values()) == 60
    assert report.states.get("rejected", 0) == report.expected_rejections
    assert report.worker_kills >= 1 and report.server_restarts == 1
    assert sum(report.faults.values()) > 0  # the EHR really misbehaved
