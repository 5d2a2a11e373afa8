"""Where the time of one workflow goes, read from its Temporal history.

Each event's gap since the previous event is charged to the later event's type: a gap ending in
WORKFLOW_TASK_STARTED is time the task waited for a worker to pick it up, one ending in
WORKFLOW_TASK_COMPLETED is the worker running workflow code (local activities included), one
ending in ACTIVITY_TASK_STARTED is an activity waiting on its queue (rate limits show up here),
one ending in ACTIVITY_TASK_COMPLETED is the activity running (the EHR's HTTP time).
What the client measured beyond the history's first-to-last span is ``outside history``
(the start request and the result long-poll)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

_PREFIX = "EVENT_TYPE_"
OUTSIDE = "outside history (start RPC + result long-poll)"


@dataclass(frozen=True)
class Timeline:
    events: int
    size: int  # bytes of all events (payloads included)
    counts: Counter[str]
    gaps: dict[str, float]  # seconds per event type
    span: float  # first to last event, seconds


async def timeline(client: Client, workflow_id: str) -> Timeline:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    events = list(history.events)
    counts: Counter[str] = Counter()
    gaps: dict[str, float] = defaultdict(float)
    previous = None
    for event in events:
        kind = EventType.Name(event.event_type).removeprefix(_PREFIX)
        counts[kind] += 1
        at = event.event_time.ToDatetime()
        if previous is not None:
            gaps[kind] += (at - previous).total_seconds()
        previous = at
    span = (
        (events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()).total_seconds()
        if events
        else 0.0
    )
    size = sum(event.ByteSize() for event in events)
    return Timeline(len(events), size, counts, dict(gaps), span)


def summarize(timelines: list[Timeline], client_latencies: list[float]) -> dict[str, object]:
    """Medians over several workflows: event counts and milliseconds per gap type."""
    kinds = sorted({k for t in timelines for k in t.gaps})
    gaps_ms = {
        kind: round(statistics.median(t.gaps.get(kind, 0.0) for t in timelines) * 1000, 1)
        for kind in kinds
    }
    outside = [lat - t.span for t, lat in zip(timelines, client_latencies, strict=True)]
    gaps_ms[OUTSIDE] = round(statistics.median(outside) * 1000, 1)
    kinds_counted = sorted({k for t in timelines for k in t.counts})
    return {
        "workflows": len(timelines),
        "events": statistics.median(t.events for t in timelines),
        "history_bytes": statistics.median(t.size for t in timelines),
        "event_counts": {
            k: statistics.median(t.counts[k] for t in timelines) for k in kinds_counted
        },
        "ms_by_gap": dict(sorted(gaps_ms.items(), key=lambda kv: -kv[1])),
    }
