"""Each worker process's share of a tenant's EHR request limit, from the pollers the Temporal
server sees on the tenant's EHR task queue.

The server's task-queue rate limit caps activity starts on average, but its token bucket lets
bursts through, and every process's pacer would otherwise allow the full rate on its own (three
processes: up to 3R in one second). So every few seconds each process asks Temporal which
processes poll the tenant's queue, ranks itself among them and paces at its share
(``activities.pacer.Pacer.share``). A process that died stops polling and drops out of the count
after ``POLLER_FRESH``; until then the others keep to the smaller share (safe side). A process
that joins is counted by the others within ``REFRESH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from activities.ehr_client import EhrClient
from adapters.tenants import TenantRegistry
from workflows.task_queues import ehr_task_queue

log = logging.getLogger("writeback.rate_share")

#: An activity poll is held open up to ~60 s; a poller not seen for longer than this is gone.
POLLER_FRESH = timedelta(seconds=70)
REFRESH_SECONDS = 2.0
#: How many seconds of this tenant's requests one process takes on at a time. Activities waiting
#: for their pacer slot inside a process count against their start-to-close timeout; tasks
#: beyond these slots stay queued on the Temporal server, where they do not time out.
BACKLOG_SECONDS = 5
#: Temporal's default activity slots per worker, kept for tenants without a rate limit.
DEFAULT_SLOTS = 100


def ehr_activity_slots(rate_per_second: float | None) -> int:
    """Concurrent EHR activities one process runs for a tenant: ``BACKLOG_SECONDS`` of its rate
    (then a process pacing at 1/N of the rate holds at most ``N * BACKLOG_SECONDS`` of waiting)."""
    if not rate_per_second:
        return DEFAULT_SLOTS
    return max(1, min(DEFAULT_SLOTS, math.ceil(rate_per_second * BACKLOG_SECONDS)))


async def worker_share(client: Client, task_queue: str) -> tuple[int, int]:
    """(processes polling ``task_queue`` for activities, this process's rank among them)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    now = datetime.now(UTC)
    identities = {
        poller.identity
        for poller in response.pollers
        if now - poller.last_access_time.ToDatetime(tzinfo=UTC) <= POLLER_FRESH
    }
    identities.add(client.identity)
    ordered = sorted(identities)
    return len(ordered), ordered.index(client.identity)


async def keep_sharing_limits(
    client: Client, ehr: EhrClient, tenants: TenantRegistry, task_queue: str
) -> None:
    """Refresh every rate-limited tenant's share until cancelled."""
    shares: dict[str, tuple[int, int]] = {}
    while True:
        for tenant in tenants:
            if not tenant.rate_limit_per_second:
                continue
            try:
                share = await worker_share(client, ehr_task_queue(task_queue, tenant.id))
            except RPCError as exc:
                log.warning("tenant %s: cannot count workers (%s)", tenant.id, exc.status.name)
                continue
            if shares.get(tenant.id) != share:
                shares[tenant.id] = share
                ehr.share_tenant_limit(tenant.id, *share)
                log.info("tenant %s: pacing as worker %d of %d", tenant.id, share[1] + 1, share[0])
        await asyncio.sleep(REFRESH_SECONDS)
