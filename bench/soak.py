"""Soak (issue #21): a steady open-loop load for a long time, with faults and worker restarts;
does anything grow (memory, latency, backlog), and is every write accounted for?

``--rate`` writes/s arrive on schedule across ``--tenants`` tenants of every vendor personality
(r4, Epic, Oracle Health, athenaOne, Veradigm in turn), the sandbox injects a transient fault
into ``--fault-rate`` of the requests (seeded per tenant), and every ``--restart-every`` seconds
the product worker is replaced (a rolling restart: the new one polls before the old one gets
SIGTERM; ``--kill``: SIGKILL). Afterwards: RSS growth of the worker and of the Temporal server,
p99 latency of the last window against the first, duplicates and lost writes from the sandbox's
file, and a PNG of throughput, latency and RSS over time beside the JSON.

    python -m bench.soak [--quick] [--minutes 30] [--rate 20] [--tenants 50] [--fault-rate 0.05]
                         [--restart-every 300] [--kill] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cli import print_results
from bench.report import BenchResult, Figure, save
from bench.soak_audit import Verdicts, audit
from bench.soak_load import Driver, Load, Plan, audit_keys, classify_unsettled
from bench.soak_plot import plot
from bench.soak_stats import Windows, due_in, mean_rss, p99_figure, rss_figure, window_p99
from bench.stack import Stack, TenantSpec, open_stack
from bench.writes import run_tag
from sandbox.faults import TRANSIENT_MIX

PERSONALITIES = ("r4", "epic", "cerner", "athena", "veradigm")
#: Transient faults only (sandbox/faults.py TRANSIENT_MIX, the chaos run's first kinds). Late
#: commits (the product then waits ``ambiguity.late_commit_seconds`` before deciding) are left to
#: the chaos run.
FAULT_KINDS: list[dict[str, Any]] = [dict(kind) for kind in TRANSIENT_MIX]
RSS_LIMIT = 0.10
P99_FACTOR = 1.2
RATE_SHARE = 0.95
"""Achieved arrival and completion rates count as keeping up from this share of the target."""


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 30.0
    rate: float = 20.0
    tenants: int = 50
    fault_rate: float = 0.05
    restart_every: float = 300.0
    kill: bool = False
    warmup: float = 60.0
    """Seconds after t = 0 before the first latency window starts."""
    window: float = 300.0
    """Length of the first and the last latency windows."""
    rss_at: float = 300.0
    """RSS 'before' is the mean over the ``rss_span`` seconds before this time."""
    rss_span: float = 60.0
    sample_every: float = 5.0
    drain_seconds: float = 600.0
    """After the last arrival, how long writes still out may take before they count as lost."""
    seed: int = 21

    @classmethod
    def quick(cls) -> SoakOptions:
        return cls(
            minutes=1.5,
            rate=5.0,
            tenants=10,
            restart_every=30.0,
            warmup=15.0,
            window=30.0,
            rss_at=30.0,
            rss_span=10.0,
            sample_every=2.0,
            drain_seconds=45.0,
        )

    @property
    def windows(self) -> Windows:
        return Windows(self.minutes * 60, self.warmup, self.window, self.rss_at, self.rss_span)


def tenants(options: SoakOptions) -> list[TenantSpec]:
    return [
        TenantSpec(f"soak-{i:02d}-{p}", personality=p)
        for i in range(options.tenants)
        for p in [PERSONALITIES[i % len(PERSONALITIES)]]
    ]


async def run(stack: Stack, options: SoakOptions) -> tuple[BenchResult, Load]:
    if options.fault_rate > 0:
        for i, spec in enumerate(stack.tenants):
            random = {"seed": options.seed + i, "rate": options.fault_rate, "kinds": FAULT_KINDS}
            await stack.admin.set_faults(spec.id, {"random": random})
    plan = Plan(
        duration=options.minutes * 60,
        rate=options.rate,
        tenants=[(t.id, t.personality) for t in stack.tenants],
        tag=run_tag(),
        sample_every=options.sample_every,
        restart_every=options.restart_every,
        kill=options.kill,
        drain_seconds=options.drain_seconds,
    )
    load = await Driver(stack, plan).run()
    await classify_unsettled(stack, load.writes)
    for _ in range(150):  # the EHR serving nothing of ours: the file is final
        if not set(await stack.admin.in_flight()) & {t.id for t in stack.tenants}:
            break
        await asyncio.sleep(0.2)
    faults: Counter[str] = Counter()
    for spec in stack.tenants:
        faults.update(await stack.admin.injected(spec.id))
    keys = {w.n: audit_keys(plan, w) for w in load.writes}
    verdicts = await asyncio.to_thread(audit, stack.sandbox_db, load.writes, keys)
    return _result(options, load, verdicts, dict(faults)), load


def _rate_figures(options: SoakOptions, load: Load) -> list[Figure]:
    w = options.windows
    writes = load.writes
    arrived = sum(1 for x in writes if x.submitted is not None and x.submitted < w.duration)
    steady = w.duration - w.warmup
    verified = sum(
        1
        for x in writes
        if x.state == "verified" and x.settled is not None and w.warmup <= x.settled < w.duration
    )
    first_end = _backlog_at(load, w.first[1])
    last_end = _backlog_at(load, w.duration)
    drain = None if load.drained_at is None else load.drained_at - w.duration
    return [
        Figure(
            "arrival rate achieved",
            arrived / w.duration,
            "/s",
            options.rate,
            "target",
            target=f"≥ {RATE_SHARE:g}x target",
            met=arrived / w.duration >= RATE_SHARE * options.rate,
        ),
        Figure(
            "verified writes/s after warm-up",
            verified / steady if steady > 0 else None,
            "/s",
            options.rate,
            "target",
            target=f"≥ {RATE_SHARE:g}x target",
            met=steady > 0 and verified / steady >= RATE_SHARE * options.rate,
        ),
        Figure(
            "backlog at end of arrivals",
            last_end,
            "writes",
            first_end,
            "end of first window",
            compare="diff",
        ),
        Figure("drain after arrivals", drain, "s"),
    ]


def _backlog_at(load: Load, t: float) -> float | None:
    """Submitted minus settled, at the last sample before ``t``."""
    before = [s for s in load.samples if s.t <= t]
    return float(before[-1].backlog) if before else None


def _result(
    options: SoakOptions, load: Load, verdicts: Verdicts, faults: dict[str, int]
) -> BenchResult:
    w = options.windows
    writes, samples = load.writes, load.samples
    first, last = window_p99(writes, w.first), window_p99(writes, w.last)
    p50s = [
        statistics.median(x) if (x := [v.latency for v in due_in(writes, span) if v.latency])
        else None
        for span in (w.first, w.last)
    ]  # fmt: skip
    worker = [mean_rss(samples, span, worker=True) for span in (w.rss_before, w.rss_after)]
    server = [mean_rss(samples, span, worker=False) for span in (w.rss_before, w.rss_after)]
    figures = [
        *_rate_figures(options, load),
        Figure(
            "p50 latency, last window",
            None if p50s[1] is None else p50s[1] * 1000,
            "ms",
            None if p50s[0] is None else p50s[0] * 1000,
            "first window",
        ),
        p99_figure(first, last, P99_FACTOR),
        rss_figure("worker RSS", worker[0], worker[1], RSS_LIMIT),
        rss_figure("Temporal server RSS", server[0], server[1], RSS_LIMIT),
        Figure("duplicates", len(verdicts.duplicates), "", target="0", met=not verdicts.duplicates),
        Figure("lost", len(verdicts.lost), "", target="0", met=not verdicts.lost),
        Figure(
            "unexplained", len(verdicts.unexplained), "", target="0", met=not verdicts.unexplained
        ),
    ]
    states = {p: dict(c) for p, c in sorted(verdicts.states.items())}
    startups = [ready for _, ready in load.restarts]
    return BenchResult(
        name="soak",
        figures=figures,
        details={
            "windows": {
                "latency_first": w.first,
                "latency_last": w.last,
                "rss_before": w.rss_before,
                "rss_after": w.rss_after,
            },
            "writes": len(writes),
            "states_by_personality": states,
            "faults_injected": faults,
            "restarts": load.restarts,
            "duplicates": verdicts.duplicates[:50],
            "lost": verdicts.lost[:50],
            "unexplained": verdicts.unexplained[:50],
            "samples": [asdict(s) for s in samples],
        },
        notes=[
            f"windows (s since the first arrival): latency first {_span(w.first)}, last "
            f"{_span(w.last)} (by due time; p99 of the writes verified, however late); RSS "
            f"mean over {_span(w.rss_before)} vs {_span(w.rss_after)}",
            f"{len(writes)} writes over {options.tenants} tenants; final states by "
            f"personality {states}",
            f"faults injected {faults}",
            f"{len(load.restarts)} worker restarts ({'SIGKILL' if options.kill else 'SIGTERM'}"
            f", replacement started first) at t={[at for at, _ in load.restarts]} s, start-up "
            f"mean {statistics.fmean(startups) if startups else 0:.1f} s",
            *[f"duplicate: {d}" for d in verdicts.duplicates[:5]],
            *[f"lost: {d}" for d in verdicts.lost[:5]],
            *[f"unexplained: {d}" for d in verdicts.unexplained[:5]],
        ],
    )


def _span(span: tuple[float, float]) -> str:
    return f"[{span[0]:g}, {span[1]:g})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 90 s at 5/s, 10 tenants, a restart every 30 s",
    )
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--rate", type=float, help="writes/s (open loop)")
    parser.add_argument("--tenants", type=int)
    parser.add_argument("--fault-rate", type=float, help="share of EHR requests that fail")
    parser.add_argument("--restart-every", type=float, help="seconds between worker restarts")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the old worker, not SIGTERM")
    parser.add_argument("--json", type=Path, help="also write the JSON (and the PNG) here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    base = SoakOptions.quick() if args.quick else SoakOptions()
    given = {
        "minutes": args.minutes,
        "rate": args.rate,
        "tenants": args.tenants,
        "fault_rate": args.fault_rate,
        "restart_every": args.restart_every,
    }
    options = SoakOptions(
        **{**asdict(base), **{k: v for k, v in given.items() if v is not None}},
        **({"kill": True} if args.kill else {}),
    )
    if options.windows.last[0] < options.windows.first[1]:
        print("note: the first and last latency windows overlap (a run shorter than them)")

    async def go() -> tuple[BenchResult, Load]:
        async with open_stack(tenants(options), keep=args.keep) as stack:
            print(f"== soak: {options.minutes:g} min at {options.rate:g}/s", flush=True)
            began = time.monotonic()
            result, load = await run(stack, options)
            result.seconds = time.monotonic() - began
            return result, load

    result, load = asyncio.run(go())
    print_results([result])
    json_path, md_path = save("soak", [result], asdict(options))
    png = json_path.with_suffix(".png")
    title = (
        f"soak: {options.rate:g} writes/s, {options.tenants} tenants, faults "
        f"{options.fault_rate:.0%}, restart every {options.restart_every:g} s"
    )
    plot(png, load.samples, [at for at, _ in load.restarts], options.windows, options.rate, title)
    if args.json:
        shutil.copyfile(json_path, args.json)
        shutil.copyfile(png, args.json.with_suffix(".png"))
    print(f"wrote {json_path}, {md_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
