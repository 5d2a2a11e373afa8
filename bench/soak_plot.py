"""The soak's PNG: three stacked panels over time (minutes since the first arrival):
throughput (verified-or-settled writes/s per sample, the target rate, and the backlog on a second
axis), latency (p50 and p99 of the writes settled in each sample) and RSS (worker and Temporal
server). Worker restarts are dotted vertical lines, the end of arrivals a dashed one, and the two
latency windows the criteria compare are shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to a file only

import matplotlib.pyplot as plt

from bench.soak_stats import Sample, Windows


def plot(
    path: Path,
    samples: list[Sample],
    restarts: list[float],
    windows: Windows,
    rate: float,
    title: str,
) -> None:
    minutes = [s.t / 60 for s in samples]
    fig, (thr, lat, mem) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    fig.suptitle(title, fontsize=10)

    thr.plot(minutes, [s.completions_per_s for s in samples], label="settled writes/s")
    thr.axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"target {rate:g}/s")
    thr.set_ylabel("writes/s")
    backlog = thr.twinx()
    backlog.plot(minutes, [s.backlog for s in samples], color="tab:red", alpha=0.6)
    backlog.set_ylabel("backlog (submitted, not settled)", color="tab:red")
    thr.legend(loc="upper left", fontsize=8)

    lat.plot(minutes, [_none_nan(s.p50) for s in samples], label="p50")
    lat.plot(minutes, [_none_nan(s.p99) for s in samples], label="p99")
    lat.set_ylabel("latency due→verified (s)")
    for start, end in (windows.first, windows.last):
        lat.axvspan(start / 60, end / 60, color="tab:green", alpha=0.1)
    lat.legend(loc="upper left", fontsize=8)

    mem.plot(minutes, [s.worker_rss / 2**20 for s in samples], label="worker(s)")
    mem.plot(minutes, [s.server_rss / 2**20 for s in samples], label="Temporal server")
    mem.set_ylabel("RSS (MiB)")
    mem.set_xlabel("minutes since the first arrival")
    mem.legend(loc="upper left", fontsize=8)

    for axis in (thr, lat, mem):
        for at in restarts:
            axis.axvline(at / 60, color="black", linestyle=":", linewidth=0.8)
        axis.axvline(windows.duration / 60, color="black", linestyle="--", linewidth=0.8)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _none_nan(value: float | None) -> float:
    return float("nan") if value is None else value
