"""Webhook events, and where they come from: the audit ledger's hand-over.

Every write (and saga, and finding) hands its transitions to the ledger in a local activity
(workflows/audit_trail.py → activities/audit_ledger.py). Once a batch is recorded,
``WebhookHandOff`` turns each move into a state a subscriber can be told of into one
``WebhookDelivery`` workflow per subscribed endpoint, under an id fixed by endpoint and
event (adapters/ids.py ``webhook_delivery_id``): a batch handed over again (a local activity
may run twice) starts nothing new, so a healthy receiver hears of each event once. The writes'
own histories gain nothing, and nothing is started where nobody subscribed.

An event holds ids, codes and the reason (whose grammar keeps values out: adapters/reasons.py,
and it passes ``safe_reason`` again here): never resource content.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.audit_ledger import AuditEvent
from adapters.ids import FINDING_PREFIX, SAGA_PREFIX, webhook_delivery_id
from adapters.reasons import safe_reason
from adapters.webhooks import EVENT_OF_STATE, Event, RetrySettings, Subscriptions

log = logging.getLogger("writeback.webhooks")

#: The delivery workflow's type (workflows/webhook_delivery.py), started by name from here.
DELIVERY_WORKFLOW = "WebhookDelivery"
#: Events that say why (the error class and the reason); the others carry neither.
EXPLAINED: frozenset[Event] = frozenset({"rejected", "waiting", "mismatch"})

Subject = Literal["write", "saga", "finding"]


class EventData(BaseModel):
    """What happened, without clinical content."""

    event_id: str  # also the ``webhook-id`` header: the same on every attempt
    subject: Subject
    id: str  # the workflow id: for a write, its write id ``wb:{tenant}:{key}``
    tenant: str
    state: str
    error_class: str | None = None
    reason: str | None = None
    resource: str | None = None  # e.g. "Observation/123"
    at: datetime


class WebhookEvent(BaseModel):
    """A webhook's body, shaped as Standard Webhooks suggests: ``type``, ``timestamp``, ``data``."""

    type: str  # "{subject}.{event}", e.g. "write.verified"
    timestamp: datetime
    data: EventData


class DeliveryOrder(BaseModel):
    """One event for one endpoint: the delivery workflow's start argument (its url and secret
    are looked up when each attempt is sent, so a fixed endpoint is used on a resend)."""

    endpoint: str
    tenant: str
    event: WebhookEvent
    retry: RetrySettings


def subject_of(workflow_id: str) -> Subject:
    prefix = workflow_id.split(":", 1)[0]
    return {SAGA_PREFIX: "saga", FINDING_PREFIX: "finding"}.get(prefix, "write")  # type: ignore[return-value]


def webhook_event(event: AuditEvent) -> tuple[Event, WebhookEvent] | None:
    """The webhook a ledger line is, if any: a move (``notice``) into a state one hears of."""
    name = EVENT_OF_STATE.get(event.state or "")
    if event.kind != "transition" or event.notice is None or name is None:
        return None
    subject = subject_of(event.correlation_id)
    explained = name in EXPLAINED
    reason = event.notice.reason if explained else None
    data = EventData(
        event_id=event.entry_key,
        subject=subject,
        id=event.correlation_id,
        tenant=event.tenant,
        state=event.state or "",
        error_class=event.error_class if explained else None,
        reason=safe_reason(reason) if reason else None,
        resource=event.resource,
        at=event.at,
    )
    return name, WebhookEvent(type=f"{subject}.{name}", timestamp=event.at, data=data)


class WebhookHandOff:
    """``AuditSteps``' ``after``: starts the deliveries of a recorded batch (idempotent)."""

    def __init__(self, client: Client, subscriptions: Subscriptions, task_queue: str) -> None:
        self._client = client
        self._subscriptions = subscriptions
        self._task_queue = task_queue

    async def __call__(self, events: list[AuditEvent]) -> None:
        if not len(self._subscriptions):
            return
        orders = []
        for line in events:
            found = webhook_event(line)
            if found is None:
                continue
            name, event = found
            for endpoint in self._subscriptions.subscribers(line.tenant, name):
                orders.append(
                    DeliveryOrder(
                        endpoint=endpoint.id, tenant=line.tenant, event=event, retry=endpoint.retry
                    )
                )
        await asyncio.gather(
            *(start_delivery(self._client, self._task_queue, order) for order in orders)
        )


async def start_delivery(
    client: Client,
    task_queue: str,
    order: DeliveryOrder,
    reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> str:
    """Start one delivery; one already started (running, or closed) is left as it is.
    ``reuse``: ``ALLOW_DUPLICATE_FAILED_ONLY`` for a resend of a failed one."""
    delivery_id = webhook_delivery_id(order.tenant, order.endpoint, order.event.data.event_id)
    try:
        await client.start_workflow(
            DELIVERY_WORKFLOW, order, id=delivery_id, task_queue=task_queue, id_reuse_policy=reuse
        )
    except WorkflowAlreadyStartedError:
        log.debug("webhook delivery %s already started", delivery_id)
    return delivery_id
