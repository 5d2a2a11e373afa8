"""The writeback worker: runs ClinicalWrite workflows and their activities for every tenant."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit_ledger import AuditLedger, AuditSteps
from activities.command_steps import CommandSteps
from activities.ehr_steps import EhrSteps
from adapters.tenants import TenantRegistry
from workers.audit_cli import ledger_location, shared_ledger
from workers.settings import Settings
from workers.temporal_client import connect
from workers.tenant_isolation import TenantIsolation
from workflows.clinical_write import ClinicalWrite
from workflows.task_queues import ehr_task_queue

log = logging.getLogger("writeback.worker")

#: Printed on stdout once the worker polls its task queue (the dev stack waits for it).
WORKER_READY = "worker ready"

#: Modules the workflow sandbox shares with the worker instead of re-importing per workflow run
#: (TOOLCHAIN.md: fhir.resources re-imported in the sandbox made workflows 5x slower). They are
#: deterministic to import and hold no per-workflow state.
PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "fhir",
    "fhir_core",
    "httpx",
    "activities",
    "adapters",
    "workflows.audit_trail",
    "workflows.budgets",
    "workflows.contract",
    "workflows.search_attributes",
    "workflows.task_queues",
)


def build_workers(
    client: Client,
    tenants: TenantRegistry,
    http: httpx.AsyncClient,
    task_queue: str,
    ledger: AuditLedger | None = None,
) -> list[Worker]:
    """The workflow worker (workflows + pure steps + the audit ledger) and one EHR worker per
    tenant, whose task queue carries the tenant's rate limit (enforced by the Temporal server for
    all workers)."""
    command_steps = CommandSteps(tenants)
    audit = AuditSteps(ledger or shared_ledger(ledger_location()))
    ehr_steps = EhrSteps(tenants, http)
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[ClinicalWrite],
            activities=[
                command_steps.validate,
                command_steps.map,
                command_steps.authorize,
                audit.record,
            ],
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(
                    *PASSTHROUGH_MODULES
                )
            ),
            graceful_shutdown_timeout=timedelta(seconds=10),
            interceptors=[TenantIsolation()],
        )
    ]
    for tenant in tenants:
        workers.append(
            Worker(
                client,
                task_queue=ehr_task_queue(task_queue, tenant.id),
                activities=[ehr_steps.write, ehr_steps.update, ehr_steps.locate, ehr_steps.verify],
                max_task_queue_activities_per_second=tenant.rate_limit_per_second,
                graceful_shutdown_timeout=timedelta(seconds=10),
                interceptors=[TenantIsolation(tenant.id)],
            )
        )
    return workers


@asynccontextmanager
async def running_workers(
    client: Client, tenants: TenantRegistry, http: httpx.AsyncClient, task_queue: str
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for worker in build_workers(client, tenants, http, task_queue):
            await stack.enter_async_context(worker)
        yield


def ehr_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
    )


async def run_worker(settings: Settings, tenants: TenantRegistry) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks (up to the graceful timeout)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings.temporal_address, settings.namespace, wait_seconds=30)
    async with (
        ehr_http_client() as http,
        running_workers(client, tenants, http, settings.task_queue),
    ):
        log.info(
            "worker ready: task queue %s, tenants %s from %s",
            settings.task_queue,
            ", ".join(tenants.ids),
            tenants.source,
        )
        print(f"{WORKER_READY} on task queue '{settings.task_queue}'", flush=True)
        await stop.wait()
