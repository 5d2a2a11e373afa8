"""Running an activity outside a worker (temporalio's ActivityEnvironment), with the timing a
real worker gives it: its default info says it was scheduled in 1970 with a 1 s timeout, which an
attempt deadline (activities/deadline.py) rightly reads as long past."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from temporalio.testing import ActivityEnvironment


def activity_environment(timeout: timedelta = timedelta(minutes=1)) -> ActivityEnvironment:
    """An environment whose activities started now, with ``timeout`` to run."""
    env = ActivityEnvironment()
    now = datetime.now(UTC)
    env.info = replace(
        env.info,
        scheduled_time=now,
        started_time=now,
        current_attempt_scheduled_time=now,
        schedule_to_close_timeout=timeout,
        start_to_close_timeout=timeout,
    )
    return env
