"""The README's benchmark table, regenerated from a run (``python -m bench --readme``).

The table sits between two markers in README.md; a run replaces what is between them with its own
table, headed by the date, the machine and the command, so that every figure in the README is one
run's, dated. The prose around it (what the figures mean) is written by hand.
"""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.report import BenchResult, machine, table

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- bench:table (python -m bench --readme rewrites this part) -->"
END = "<!-- /bench:table -->"


class MarkersMissing(Exception):
    """README.md has no pair of bench table markers to write between."""


def block(results: list[BenchResult], argv: list[str], at: datetime | None = None) -> str:
    box = machine()
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    load = box["load_average_at_end"]
    command = shlex.join(["python", "-m", "bench", *argv])
    return (
        f"{when} · `{box['arch']}` · {box['nproc']} CPUs · Python {box['python']} · load "
        f"average at end {load} · `{command}`\n\n{table(results)}"
    )


def rewrite(text: str, new_block: str) -> str:
    """``text`` with the part between the markers replaced by ``new_block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"README.md needs the lines {BEGIN!r} and {END!r}")
    return f"{text[: start + len(BEGIN)]}\n{new_block}\n{text[end:]}"


def update(results: list[BenchResult], path: Path = README) -> Path:
    path.write_text(rewrite(path.read_text(), block(results, sys.argv[1:])))
    return path
