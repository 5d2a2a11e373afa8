"""Tenant isolation at the activity boundary: an activity runs for the tenant of the workflow that
scheduled it, or not at all.

Every activity input names its tenant, and the activity picks that tenant's base URL, credentials
and breaker from the registry. A workflow started under ``wb:A:…`` carrying a command for tenant
B (started around ``WritebackClient.submit``, or a bug) would otherwise reach B's EHR with B's
credentials while its payloads are sealed with A's key. This interceptor refuses such an
activity (non-retryable ``authorization`` failure; the write ends ``rejected``), and an EHR
activity arriving on another tenant's task queue.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.errors import ErrorClass, step_failure
from adapters.ids import tenant_of_workflow


def _tenants_of_input(args: Any) -> set[str]:
    """Tenants an activity input names: its ``tenant``, and each of its ``events``' (the audit
    ledger's batches)."""
    tenants: set[str] = set()
    for arg in args:
        for item in [arg, *getattr(arg, "events", [])]:
            tenant = getattr(item, "tenant", None)
            if isinstance(tenant, str):
                tenants.add(tenant)
    return tenants


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, queue_tenant: str | None) -> None:
        super().__init__(next)
        self._queue_tenant = queue_tenant

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        owner = tenant_of_workflow(info.workflow_id)
        allowed = {owner} if not self._queue_tenant or owner == self._queue_tenant else set()
        foreign = sorted(_tenants_of_input(input.args) - allowed)
        if foreign:
            raise step_failure(
                ErrorClass.AUTHORIZATION,
                f"cross-tenant step refused: {info.activity_type} for tenant '{foreign[0]}' in a "
                f"write of tenant '{owner}'",
            )
        return await super().execute_activity(input)


class TenantIsolation(Interceptor):
    """Worker interceptor; ``queue_tenant`` is the tenant whose EHR task queue the worker polls
    (None for the workflow worker, whose local activities serve every tenant)."""

    def __init__(self, queue_tenant: str | None = None) -> None:
        self._queue_tenant = queue_tenant

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._queue_tenant)
