"""An attempt's deadline: after it, nothing more of that attempt leaves this process.

The workflow reasons about an unanswered attempt with one instant: the latest moment any of its
requests could have been sent (the quiet period after an unanswered create counts from it). That
instant must hold even when the attempt outlives the workflow's interest in it: a worker that
was slow to pick the task up, a pacer or a concurrency slot that kept it waiting, a 401 that made
it fetch a token and send again. So every EHR request of an activity goes through here first:

- the deadline is the earliest of the attempt's ``send_by`` (chosen by the workflow) and the
  activity's own timeouts as Temporal counts them, less a margin for clock skew between this
  worker and the server;
- waits for the tenant's pacer and concurrency slot come *before* the decision to send, heartbeat
  while they last, and give up when the deadline would pass first;
- a request is sent only when it can complete in the time left: its timeout is capped to it, and
  the whole exchange (connect, send, answer) is bounded by it, not each phase separately.

Giving up before sending is a ``transport`` failure ("not sent"): safe to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorClass, step_failure

#: Clocks of workers and the Temporal server may disagree by this much.
CLOCK_SKEW = timedelta(seconds=1)
#: A request is sent only with at least this much time left for it.
MIN_REQUEST_SECONDS = 0.5
#: How often a wait for the pacer or a slot tells Temporal the activity is alive.
HEARTBEAT_EVERY = 1.0

_send_by: ContextVar[datetime | None] = ContextVar("send_by", default=None)


@contextmanager
def attempt_deadline(send_by: datetime | None) -> Iterator[None]:
    """Within the block, requests are bounded by ``send_by`` as well as the activity's timeouts."""
    token = _send_by.set(send_by)
    try:
        yield
    finally:
        _send_by.reset(token)


def deadline() -> datetime | None:
    """The instant after which this attempt sends nothing (None: unbounded, outside activities)."""
    candidates = [explicit] if (explicit := _send_by.get()) is not None else []
    if activity.in_activity():
        info = activity.info()
        if info.start_to_close_timeout and info.started_time:
            candidates.append(info.started_time + info.start_to_close_timeout)
        if info.schedule_to_close_timeout and info.scheduled_time:
            candidates.append(info.scheduled_time + info.schedule_to_close_timeout)
    return min(candidates) - CLOCK_SKEW if candidates else None


def seconds_left() -> float | None:
    until = deadline()
    return None if until is None else (until - datetime.now(UTC)).total_seconds()


def not_sent(what: str, waiting_for: str) -> ApplicationError:
    return step_failure(
        ErrorClass.TRANSPORT,
        f"{what}: not sent: the attempt's deadline came while waiting for {waiting_for}",
        attempt=activity.info().attempt if activity.in_activity() else 1,
    )


def _heartbeat() -> None:
    if activity.in_activity():
        activity.heartbeat()


async def wait_for_turn(try_acquire: Callable[[], float], what: str) -> None:
    """Wait for a pacer slot (``try_acquire`` answers 0 when one is taken, else seconds to wait),
    heartbeating; give up when the slot would come too late to send."""
    while delay := try_acquire():
        left = seconds_left()
        if left is not None and left - delay < MIN_REQUEST_SECONDS:
            raise not_sent(what, "the tenant's request pacing")
        _heartbeat()
        await asyncio.sleep(min(delay, HEARTBEAT_EVERY))


async def acquire_slot(acquire: Callable[[], Awaitable[object]], what: str) -> None:
    """Wait for one of the tenant's concurrent-request slots, heartbeating, until the deadline."""
    while True:
        left = seconds_left()
        if left is not None and left < MIN_REQUEST_SECONDS:
            raise not_sent(what, "a free concurrent-request slot")
        wait = HEARTBEAT_EVERY if left is None else min(HEARTBEAT_EVERY, left - MIN_REQUEST_SECONDS)
        try:
            await asyncio.wait_for(acquire(), timeout=wait)
            return
        except TimeoutError:
            _heartbeat()


def request_timeout(tenant_timeout: float, what: str) -> float:
    """The tenant's request timeout, capped to the time this attempt has left."""
    left = seconds_left()
    if left is None:
        return tenant_timeout
    if left < MIN_REQUEST_SECONDS:
        raise not_sent(what, "its turn")
    return min(tenant_timeout, left)
