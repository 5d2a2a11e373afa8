"""The soak's moving parts: open-loop arrivals, the sampler, and the worker restarts.

Arrivals are open loop: write ``n`` is due at ``n / rate`` seconds and is submitted then, whether
or not earlier writes have settled, so a stack that cannot keep up shows a growing backlog (and
latencies counted from the due time), not a lower offered rate. Each write is awaited to its
workflow's result (a server-side long poll: no worker time), like bench/writes.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.measure import percentile
from bench.soak_stats import Sample, Write, latencies, settled_in
from bench.stack import Stack
from workers import samples
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteCommand

#: Submissions retried this many times, a second apart, before the write counts as not submitted.
SUBMIT_TRIES = 30
PROGRESS_EVERY = 30.0


@dataclass
class Plan:
    duration: float
    rate: float
    tenants: list[tuple[str, str]]
    """(tenant id, personality); write n goes to tenants[n % len(tenants)]."""
    tag: str
    sample_every: float
    restart_every: float
    kill: bool
    drain_seconds: float


@dataclass
class Load:
    writes: list[Write] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    restarts: list[tuple[float, float]] = field(default_factory=list)
    """(t of the restart, the replacement's start-up seconds)."""
    drained_at: float | None = None
    """t when the last write came back (None: some were still out at the drain deadline)."""


def command(plan: Plan, write: Write, when: datetime) -> WriteCommand:
    """A heart rate for a patient of its own (``{tag}-{n}``): the audit finds every copy of a
    write by its patient, on the vendors that keep no identifier of ours too."""
    key = f"{plan.tag}-{write.n}"
    return WriteCommand(
        tenant=write.tenant,
        idempotency_key=key,
        resource=samples.heart_rate(key, 60 + write.n % 40, when),
        requested_by="bench",
    )


def audit_keys(plan: Plan, write: Write) -> tuple[str, str]:
    """What the audit looks the write's copies up by: its command identifier and its patient."""
    cmd = command(plan, write, datetime.now(UTC))
    return cmd.command_identifier, f"Patient/{plan.tag}-{write.n}"


class Driver:
    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack, self.plan, self.load = stack, plan, Load()
        self.t0 = time.monotonic() + 1.0
        self._when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def clock(self) -> float:
        return time.monotonic() - self.t0

    async def _until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.clock()))

    async def _one(self, write: Write) -> None:
        client = self.stack.client
        cmd = command(self.plan, write, self._when)
        for _ in range(SUBMIT_TRIES):
            try:
                submission = await client.submit(cmd)
                break
            except Exception as exc:  # the server busy or a moment's gRPC error: try again
                write.state = f"not submitted: {type(exc).__name__}"
                await asyncio.sleep(1)
        else:
            return
        write.submitted, write.state = self.clock(), None
        write.workflow_id = submission.workflow_id
        handle = client.temporal.get_workflow_handle_for(ClinicalWrite.run, submission.workflow_id)
        try:
            status = await handle.result()
            write.state = status.state.value
        except Exception as exc:  # the workflow failed: an unexplained ending
            write.state = f"ended abnormally: {type(exc).__name__}"
        write.settled = self.clock()

    async def _arrivals(self, tasks: list[asyncio.Task[None]]) -> None:
        plan = self.plan
        for n in range(int(plan.duration * plan.rate)):
            tenant, personality = plan.tenants[n % len(plan.tenants)]
            write = Write(n, tenant, personality, due=n / plan.rate)
            self.load.writes.append(write)
            await self._until(write.due)
            tasks.append(asyncio.create_task(self._one(write)))

    def _rss(self) -> tuple[int, int]:
        worker = server = 0
        for name, child in list(self.stack.children.items()):
            if not (name.startswith("worker") or name == "temporal"):
                continue
            with contextlib.suppress(OSError):  # a worker that has just exited
                if name == "temporal":
                    server = child.rss()
                else:
                    worker += child.rss()
        return worker, server

    async def _sampler(self) -> None:
        every, writes = self.plan.sample_every, self.load.writes
        k, printed = 1, 0.0
        while True:
            await self._until(k * every)
            now = self.clock()
            window = settled_in(writes, now - every, now)
            times = latencies(window)
            worker, server = self._rss()
            sample = Sample(
                t=now,
                every=every,
                submitted=sum(w.submitted is not None for w in writes),
                settled=sum(w.settled is not None for w in writes),
                completions_per_s=len(window) / every,
                p50=percentile(times, 50),
                p99=percentile(times, 99),
                worker_rss=worker,
                server_rss=server,
            )
            self.load.samples.append(sample)
            if now - printed >= PROGRESS_EVERY:
                printed = now
                _progress(sample)
            k += 1

    async def _restarts(self) -> None:
        plan, k = self.plan, 1
        while k * plan.restart_every < plan.duration:
            await self._until(k * plan.restart_every)
            at = self.clock()
            ready = await asyncio.to_thread(self.stack.restart_worker, plan.kill)
            self.load.restarts.append((round(at, 1), round(ready, 1)))
            print(f"   t={at:.0f}s: worker restarted (replacement ready in {ready:.1f}s)")
            k += 1

    async def run(self) -> Load:
        tasks: list[asyncio.Task[None]] = []
        background = [asyncio.create_task(self._sampler())]
        if self.plan.restart_every > 0:
            background.append(asyncio.create_task(self._restarts()))
        try:
            await self._arrivals(tasks)
            await self._until(self.plan.duration)
            if len(background) > 1:  # a restart under way finishes before the drain is timed
                await background.pop()
            print(f"   t={self.clock():.0f}s: arrivals over; draining", flush=True)
            _done, out = await asyncio.wait(tasks, timeout=self.plan.drain_seconds)
            if not out:
                self.load.drained_at = max((w.settled or 0.0) for w in self.load.writes)
            for task in out:
                task.cancel()
            await asyncio.gather(*out, return_exceptions=True)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        return self.load


def _progress(s: Sample) -> None:
    p99 = "—" if s.p99 is None else f"{s.p99:.1f}s"
    print(
        f"   t={s.t:.0f}s: submitted {s.submitted}, settled {s.settled}, backlog {s.backlog}, "
        f"{s.completions_per_s:.1f}/s, p99 {p99}, RSS worker {s.worker_rss / 2**20:.0f} MiB, "
        f"server {s.server_rss / 2**20:.0f} MiB",
        flush=True,
    )


async def classify_unsettled(stack: Stack, writes: list[Write]) -> None:
    """For writes with no result: their state by query (a write waiting for a person has no
    result yet, and is settled), or ``unsettled``."""
    gate = asyncio.Semaphore(16)

    async def one(write: Write, workflow_id: str) -> None:
        async with gate:
            try:
                status = await asyncio.wait_for(stack.client.status(workflow_id), 15)
            except Exception as exc:
                write.state = f"unsettled (no status: {type(exc).__name__})"
                return
        value = status.state.value
        write.state = value if status.state.is_settled else f"unsettled ({value})"

    pending = [w for w in writes if w.submitted is not None and w.settled is None]
    await asyncio.gather(*(one(w, w.workflow_id) for w in pending))
