"""``python -m bench --readme`` rewrites only the README's table, between its markers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.readme_table import BEGIN, END, README, MarkersMissing, block, rewrite
from bench.report import BenchResult, Figure


def results() -> list[BenchResult]:
    figure = Figure(name="writes/s", value=9.0, unit="/s", baseline=10.0, baseline_name="minimal")
    return [BenchResult(name="throughput", figures=[figure], notes=[], details={})]


def test_the_table_between_the_markers_is_replaced_and_the_rest_kept() -> None:
    text = f"before\n{BEGIN}\nold table\n{END}\nafter\n"
    new = block(results(), ["--only", "throughput"], datetime(2026, 11, 26, tzinfo=UTC))

    out = rewrite(text, new)

    assert out.startswith(f"before\n{BEGIN}\n2026-11-26T00:00:00+00:00")
    assert "old table" not in out
    assert "`python -m bench --only throughput`" in out
    assert "| throughput | writes/s | 9.00 /s |" in out
    assert out.endswith(f"{END}\nafter\n")


def test_a_readme_without_markers_is_refused() -> None:
    with pytest.raises(MarkersMissing):
        rewrite("no markers here", "table")


def test_the_readme_has_its_markers_once() -> None:
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
