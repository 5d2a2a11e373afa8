"""Retry budgets by clinical urgency: how long a write may keep retrying transient failures before
it stops and asks a person (a stat result must escalate in minutes, a routine one may wait hours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from activities.errors import NON_RETRYABLE_TYPES
from workflows.contract import Urgency


@dataclass(frozen=True)
class RetryBudget:
    max_attempts: int
    max_duration: timedelta

    def policy(self) -> RetryPolicy:
        # Intervals here are only a floor: activities set next_retry_delay with full jitter.
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(minutes=5),
            maximum_attempts=self.max_attempts,
            non_retryable_error_types=NON_RETRYABLE_TYPES,
        )


BUDGETS: dict[Urgency, RetryBudget] = {
    Urgency.STAT: RetryBudget(max_attempts=5, max_duration=timedelta(minutes=3)),
    Urgency.URGENT: RetryBudget(max_attempts=10, max_duration=timedelta(minutes=30)),
    Urgency.ROUTINE: RetryBudget(max_attempts=25, max_duration=timedelta(hours=6)),
}
