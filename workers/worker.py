"""The writeback worker: runs ClinicalWrite workflows and their activities for every tenant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.command_steps import CommandSteps
from activities.ehr_steps import EhrSteps
from adapters.tenants import TenantRegistry
from workers.health import Health, serving_health
from workers.rate_share import ehr_activity_slots, keep_sharing_limits
from workers.settings import Settings
from workers.telemetry import configure_from_env
from workers.temporal_client import connect
from workers.versioning import deployment_config
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
    "workflows.budgets",
    "workflows.contract",
    "workflows.search_attributes",
    "workflows.task_queues",
    "workflows.write_metrics",
    "opentelemetry",
)


def build_workers(
    client: Client,
    tenants: TenantRegistry,
    task_queue: str,
    ehr_steps: EhrSteps,
    deployment: WorkerDeploymentConfig | None = None,
) -> list[Worker]:
    """The workflow worker (workflows + pure steps) and one EHR worker per tenant, whose task
    queue carries the tenant's rate limit (enforced by the Temporal server for all workers)."""
    command_steps = CommandSteps(tenants)
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[ClinicalWrite],
            activities=[command_steps.validate, command_steps.map, command_steps.authorize],
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(
                    *PASSTHROUGH_MODULES
                )
            ),
            graceful_shutdown_timeout=timedelta(seconds=10),
            deployment_config=deployment,
        )
    ]
    for tenant in tenants:
        workers.append(
            Worker(
                client,
                task_queue=ehr_task_queue(task_queue, tenant.id),
                activities=[ehr_steps.write, ehr_steps.update, ehr_steps.locate, ehr_steps.verify],
                max_task_queue_activities_per_second=tenant.rate_limit_per_second,
                max_concurrent_activities=ehr_activity_slots(tenant.rate_limit_per_second),
                graceful_shutdown_timeout=timedelta(seconds=10),
                deployment_config=deployment,
            )
        )
    return workers


@asynccontextmanager
async def running_workers(
    client: Client,
    tenants: TenantRegistry,
    http: httpx.AsyncClient,
    task_queue: str,
    share_limits: bool = False,
    deployment: WorkerDeploymentConfig | None = None,
) -> AsyncIterator[None]:
    """``share_limits``: pace each tenant at this process's share of its limit among all the
    processes polling the tenant's queue (workers/rate_share.py)."""
    ehr_steps = EhrSteps(tenants, http)
    async with AsyncExitStack() as stack:
        for worker in build_workers(client, tenants, task_queue, ehr_steps, deployment):
            await stack.enter_async_context(worker)
        sharing = (
            asyncio.create_task(keep_sharing_limits(client, ehr_steps, tenants, task_queue))
            if share_limits
            else None
        )
        try:
            yield
        finally:
            if sharing is not None:
                sharing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sharing


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
    health = Health()
    telemetry = configure_from_env(settings)
    if telemetry.exporters:
        log.info("telemetry to %s", ", ".join(telemetry.exporters))
    async with AsyncExitStack() as probes:
        probes.callback(telemetry.shutdown)
        if settings.health_port is not None:
            await probes.enter_async_context(serving_health(health, settings.health_port))
        client = await connect(settings.temporal_address, settings.namespace, wait_seconds=30)
        await _serve_until_stopped(client, settings, tenants, health, stop)


async def _serve_until_stopped(
    client: Client, settings: Settings, tenants: TenantRegistry, health: Health, stop: asyncio.Event
) -> None:
    async with (
        ehr_http_client() as http,
        running_workers(
            client,
            tenants,
            http,
            settings.task_queue,
            share_limits=True,
            deployment=deployment_config(settings),
        ),
    ):
        health.ready = True
        log.info(
            "worker ready: task queue %s, tenants %s from %s",
            settings.task_queue,
            ", ".join(tenants.ids),
            tenants.source,
        )
        print(f"{WORKER_READY} on task queue '{settings.task_queue}'", flush=True)
        await stop.wait()
        # Draining: readiness fails while the workers finish in-flight tasks (graceful timeout).
        health.ready = False
        log.info("stopping: finishing in-flight tasks")
