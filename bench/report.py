"""Figures, the table they are printed in, and the files they are saved to.

A figure is a value measured by a benchmark next to a baseline measured in the same run (the
machines are noisy: only ratios and differences against a same-run baseline are comparable
between runs). A target is printed, never enforced: nothing here fails a run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    """True/False when a target applies; None when the figure is informative only."""
    compare: str = "ratio"
    """How value relates to baseline in the table: ``ratio`` (value / baseline) or ``diff``."""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def at_least(figure: Figure, times: float) -> Figure:
    """``figure`` with the target value ≥ ``times`` x its baseline (met unknown without one)."""
    ratio = figure.ratio
    figure.target = f"≥ {times:g} x {figure.baseline_name}"
    figure.met = None if ratio is None else ratio >= times
    return figure


def at_most(figure: Figure, times: float) -> Figure:
    """``figure`` with the target value ≤ ``times`` x its baseline (met unknown without one)."""
    ratio = figure.ratio
    figure.target = f"≤ {times:g} x {figure.baseline_name}"
    figure.met = None if ratio is None else ratio <= times
    return figure


def within(figure: Figure, limit: float) -> Figure:
    """``figure`` with the target value ≤ its baseline + ``limit`` (same unit)."""
    figure.target = f"≤ +{limit:g} {figure.unit} over {figure.baseline_name}"
    if figure.value is None or figure.baseline is None:
        figure.met = None
    else:
        figure.met = figure.value - figure.baseline <= limit
    return figure


@dataclass
class BenchResult:
    name: str
    figures: list[Figure]
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
            "notes": self.notes,
        }


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def _row(result: BenchResult, fig: Figure) -> list[str]:
    baseline = "—"
    if fig.baseline is not None:
        baseline = f"{_num(fig.baseline, fig.unit)} ({fig.baseline_name})"
    relation = "—"
    if fig.compare == "ratio" and fig.ratio is not None:
        relation = f"x{fig.ratio:.2f}"
    elif fig.compare == "diff" and fig.value is not None and fig.baseline is not None:
        relation = f"{fig.value - fig.baseline:+,.1f} {fig.unit}"
    verdict = {True: "yes", False: "**no**", None: ""}[fig.met]
    return [
        result.name,
        fig.name,
        _num(fig.value, fig.unit),
        baseline,
        relation,
        fig.target,
        verdict,
    ]


HEADER = ["benchmark", "figure", "value", "baseline (same run)", "vs baseline", "target", "met"]


def table(results: list[BenchResult]) -> str:
    rows = [HEADER, ["---"] * len(HEADER)]
    rows += [_row(r, f) for r in results for f in r.figures]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def machine() -> dict[str, Any]:
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "arch": arch or platform.machine(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_end": [round(x, 2) for x in load] if load else None,
    }


def save(stem: str, results: list[BenchResult], options: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results/{stem}.json`` (everything) and ``results/{stem}.md`` (the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    info = machine()
    payload = {
        "date": now,
        "machine": info,
        "options": options,
        "results": [r.to_json() for r in results],
    }
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    notes = [f"- {r.name}: {note}" for r in results for note in r.notes]
    md = [
        "# writeback benchmarks",
        "",
        f"{now} · `{info['arch']}` · {info['nproc']} CPUs · Python {info['python']}"
        f" · load average at end {info['load_average_at_end']}"
        f" · options {json.dumps(options, default=str)}",
        "",
        table(results),
        "",
        *(["## Notes", "", *notes, ""] if notes else []),
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path
