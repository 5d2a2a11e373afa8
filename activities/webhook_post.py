"""One attempt at delivering a webhook: a POST signed per Standard Webhooks (the
``standardwebhooks`` library signs; nothing here computes an HMAC), and what the answer means.

A 2xx is delivered; 408, 429, 5xx and a request that got no answer are worth trying again; any
other 4xx is permanent (the receiver refuses it as it is). The outcome's detail names the status
or the kind of transport failure, never the endpoint's url (it may carry a token) nor the
receiver's answer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

import httpx
from pydantic import BaseModel
from standardwebhooks import Webhook
from temporalio import activity

from activities.webhook_events import DeliveryOrder
from adapters.webhooks import Subscriptions

#: Answers worth another attempt later, besides 5xx.
RETRYABLE_STATUSES = frozenset({408, 429})


class PostOutcome(BaseModel):
    outcome: Literal["delivered", "retry", "permanent"]
    detail: str  # "HTTP 503", "transport: ConnectError", "endpoint 'crm' is not configured"
    status: int | None = None


def signed_headers(secret: str, event_id: str, body: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=now, data=body)
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def outcome_of(status: int) -> PostOutcome:
    detail = f"HTTP {status}"
    if 200 <= status < 300:
        return PostOutcome(outcome="delivered", detail=detail, status=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        return PostOutcome(outcome="retry", detail=detail, status=status)
    return PostOutcome(outcome="permanent", detail=detail, status=status)


class WebhookPost:
    """The activity; the endpoint's url and secret come from the worker's webhooks file."""

    def __init__(self, subscriptions: Subscriptions, http: httpx.AsyncClient) -> None:
        self._subscriptions = subscriptions
        self._http = http

    @activity.defn(name="post_webhook")
    async def post(self, order: DeliveryOrder) -> PostOutcome:
        endpoint = self._subscriptions.get(order.endpoint)
        if endpoint is None:
            detail = f"endpoint '{order.endpoint}' is not configured on this worker"
            return PostOutcome(outcome="retry", detail=detail)
        body = order.event.model_dump_json()
        now = datetime.fromtimestamp(int(time.time()), UTC)
        headers = signed_headers(endpoint.signing_secret, order.event.data.event_id, body, now)
        try:
            answer = await self._http.post(
                endpoint.url,
                content=body.encode(),
                headers=headers,
                timeout=endpoint.retry.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            return PostOutcome(outcome="retry", detail=f"transport: {type(exc).__name__}")
        return outcome_of(answer.status_code)
