"""WebhookDelivery: one event to one endpoint, durably, until it is delivered or the attempts run
out (README: Webhooks).

Started by the ledger's hand-off (activities/webhook_events.py) under an id fixed by endpoint and
event, so a repeated hand-over joins or finds the same delivery. Each attempt is one activity (one
POST); between attempts the workflow waits with full jitter — a draw from 0 up to the first delay
doubled per attempt, at most the endpoint's cap — so receivers coming back from an outage are not
hit by every delivery at once. A permanent refusal (4xx but 408/429) or the last attempt's failure
ends the workflow *failed* (its execution status: ``writeback webhooks list --failed``); a resend
starts a new run under the same id (``writeback webhooks resend``).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from activities.webhook_events import DeliveryOrder
from activities.webhook_post import PostOutcome, WebhookPost
from adapters.webhooks import RetrySettings

#: The failure type a delivery that gave up ends with.
DELIVERY_FAILED = "WebhookDeliveryFailed"


class DeliveryStatus(BaseModel):
    """What the delivery query ``status`` and its result say."""

    endpoint: str
    event_id: str
    type: str
    outcome: str = "delivering"  # delivering | delivered | failed
    attempts: int = 0
    last: str | None = Field(default=None, description="the last attempt's outcome, e.g. HTTP 503")


def jittered_wait(retry: RetrySettings, attempt: int, draw: float) -> timedelta:
    """Full jitter after attempt number ``attempt`` (1, 2, …); ``draw`` in [0, 1)."""
    ceiling = min(retry.max_delay_seconds, retry.first_delay_seconds * 2 ** (attempt - 1))
    return timedelta(seconds=ceiling * draw)


@workflow.defn(name="WebhookDelivery")
class WebhookDelivery:
    @workflow.init
    def __init__(self, order: DeliveryOrder) -> None:
        self._order = order
        self._status = DeliveryStatus(
            endpoint=order.endpoint, event_id=order.event.data.event_id, type=order.event.type
        )

    @workflow.query
    def status(self) -> DeliveryStatus:
        return self._status

    @workflow.query
    def order(self) -> DeliveryOrder:
        """The start argument, for a resend."""
        return self._order

    @workflow.run
    async def run(self, order: DeliveryOrder) -> DeliveryStatus:
        retry, status = order.retry, self._status
        while status.attempts < retry.attempts:
            status.attempts += 1
            answer = await self._attempt(order)
            status.last = answer.detail
            if answer.outcome == "delivered":
                status.outcome = "delivered"
                return status
            if answer.outcome == "permanent" or status.attempts == retry.attempts:
                break
            await workflow.sleep(jittered_wait(retry, status.attempts, workflow.random().random()))
        status.outcome = "failed"
        raise ApplicationError(
            f"webhook not delivered after {status.attempts} attempt(s): {status.last}",
            status.model_dump(mode="json"),
            type=DELIVERY_FAILED,
            non_retryable=True,
        )

    async def _attempt(self, order: DeliveryOrder) -> PostOutcome:
        try:
            return await workflow.execute_activity_method(
                WebhookPost.post,
                order,
                start_to_close_timeout=timedelta(seconds=order.retry.timeout_seconds + 5),
                retry_policy=RetryPolicy(maximum_attempts=1),  # the workflow paces attempts
            )
        except ActivityError as err:  # the worker died or timed out mid-attempt: try again later
            return PostOutcome(outcome="retry", detail=f"attempt ended: {type(err.cause).__name__}")
