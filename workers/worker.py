"""The writeback worker: runs ClinicalWrite workflows and their activities for every tenant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerDeploymentConfig,
    WorkflowRunner,
)

from activities.audit_ledger import AuditLedger, AuditSteps
from activities.capability_discovery import CapabilityDiscovery, ProfileStore
from activities.command_steps import CommandSteps
from activities.crosswalk import Crosswalk
from activities.crosswalk_store import CROSSWALK_URL_ENV, CrosswalkStore, open_crosswalk
from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.sweep_reads import SweepReads
from activities.webhook_events import WebhookHandOff
from activities.webhook_post import WebhookPost
from activities.write_records import WriteRecords
from adapters.caller_keys import CALLER_KEYS_ENV, CallerKeysError, load_callers
from adapters.reasons import known_element_name
from adapters.tenants import TenantRegistry
from adapters.webhooks import configured_webhooks
from workers.audit_cli import ledger_location, shared_ledger
from workers.health import Health, serving_health
from workers.hygiene import install_log_filters
from workers.rate_share import ehr_activity_slots, keep_sharing_limits
from workers.settings import Settings
from workers.telemetry import configure_from_env
from workers.temporal_client import connect
from workers.tenant_isolation import TenantIsolation
from workers.versioning import deployment_config
from workflows.clinical_saga import ClinicalSaga
from workflows.clinical_write import ClinicalWrite
from workflows.reconcile_finding import ReconcileFinding
from workflows.reconcile_sweep import ReconcileSweep
from workflows.task_queues import ehr_task_queue
from workflows.tenant_discovery import TenantDiscovery
from workflows.webhook_delivery import WebhookDelivery

log = logging.getLogger("writeback.worker")

#: Printed on stdout once the worker polls its task queue (the dev stack waits for it).
WORKER_READY = "worker ready"


def workflow_runner() -> WorkflowRunner:
    """How the worker runs workflow code: in the worker's own interpreter, without Temporal's
    workflow sandbox. The sandbox re-imports per workflow run every module it does not pass
    through, and refuses clocks, randomness and I/O only in those: re-importing the workflows'
    modules held two fifths of a write's worker CPU, so all of them (and the libraries they use)
    were passed through, after which the sandbox checked none of this project's code and still
    cost an eighth of the worker's busy time per activation (bench/README.md, profile).
    tests/unit/test_workflow_determinism.py checks every module of workflows/ for what the
    sandbox would refuse, and tests/replay replays recorded histories on this runner."""
    return UnsandboxedWorkflowRunner()


#: Workflow tasks one worker process takes at a time. Python runs them one after another (one
#: interpreter lock), and a task's 10 s start-to-close timeout runs from the moment the worker
#: takes it. The SDK's default (100) let a worker that had just replaced a killed one take 100
#: tasks that each replay a whole history: the last ones timed out, and the server then backs a
#: timed-out task off for minutes between attempts — in the 10,000-write chaos run a write's next
#: task waited 44 minutes. Tasks this worker does not take stay on the queue for another worker.
WORKFLOW_TASK_SLOTS = 8


def build_workers(
    client: Client,
    tenants: TenantRegistry,
    http: httpx.AsyncClient,
    task_queue: str,
    ehr: EhrClient | None = None,
    ledger: AuditLedger | None = None,
    deployment: WorkerDeploymentConfig | None = None,
) -> list[Worker]:
    """The workflow worker (workflows + pure steps + the audit ledger) and one EHR worker per
    tenant, whose task queue carries the tenant's rate limit (enforced by the Temporal server for
    all workers). Installs the log filters (workers/hygiene.py) and learns the element names a
    reason may show (adapters/reasons.py) before any task runs."""
    install_log_filters()
    known_element_name("resource")  # reads the vocabulary once, outside any workflow task
    command_steps = CommandSteps(tenants, load_callers())
    webhooks = configured_webhooks()  # $WRITEBACK_WEBHOOKS (README: Webhooks)
    hand_off = WebhookHandOff(client, webhooks, task_queue)
    ledger = ledger or shared_ledger(ledger_location())
    audit = AuditSteps(ledger, after=hand_off)
    ehr = ehr or EhrClient(tenants, http)
    writes, sweep = EhrWrites(ehr), SweepReads(ehr, WriteRecords(ledger), client)
    crosswalk = Crosswalk(ehr, crosswalk_store())
    discovery = CapabilityDiscovery(tenants, http, ProfileStore(Settings.from_env().state_dir))
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[
                ClinicalWrite,
                ClinicalSaga,
                ReconcileSweep,
                ReconcileFinding,
                TenantDiscovery,
                WebhookDelivery,
            ],
            activities=[
                command_steps.prepare,
                command_steps.validate,
                command_steps.map,
                command_steps.authorize,
                command_steps.plan_saga,
                command_steps.prove_decision,
                command_steps.sweep_settings,
                audit.record,
                WebhookPost(webhooks, http).post,
            ],
            workflow_runner=workflow_runner(),
            max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
            graceful_shutdown_timeout=timedelta(seconds=10),
            interceptors=[TenantIsolation()],
            deployment_config=deployment,
        )
    ]
    for tenant in tenants:
        workers.append(
            Worker(
                client,
                task_queue=ehr_task_queue(task_queue, tenant.id),
                activities=[
                    writes.write,
                    writes.update,
                    writes.locate,
                    writes.copies,
                    writes.verify,
                    writes.withdraw,
                    sweep.window,
                    sweep.page,
                    crosswalk.resolve,
                    discovery.run,
                ],
                max_task_queue_activities_per_second=tenant.rate_limit_per_second,
                max_concurrent_activities=ehr_activity_slots(tenant.rate_limit_per_second),
                graceful_shutdown_timeout=timedelta(seconds=10),
                interceptors=[TenantIsolation(tenant.id)],
                deployment_config=deployment,
            )
        )
    return workers


def require_caller_keys(tenants: TenantRegistry) -> None:
    """A worker whose tenants want signed callers starts only with caller keys to check them
    against: without, it would reject every write, which a clear error at start says better."""
    signed = [tenant.id for tenant in tenants if tenant.caller_auth == "credential"]
    callers = load_callers()
    if signed and not len(callers):
        raise CallerKeysError(
            f"tenant(s) {', '.join(signed)} take only callers with a credential, and no caller "
            f"key is registered: set ${CALLER_KEYS_ENV} to the caller key registry (README: "
            'Security, Callers), or set caller_auth = "unauthenticated" on a demo tenant'
        )
    log.info("caller keys: %d registered from %s", len(callers), callers.source)


def crosswalk_store() -> CrosswalkStore:
    """``$WRITEBACK_CROSSWALK_URL`` (a ``postgresql://`` URI or a SQLite path), else a SQLite file
    in the state directory."""
    location = os.environ.get(CROSSWALK_URL_ENV)
    return open_crosswalk(location or str(Settings.from_env().state_dir / "crosswalk.db"))


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
    ehr = EhrClient(tenants, http)
    async with AsyncExitStack() as stack:
        workers = build_workers(client, tenants, http, task_queue, ehr, deployment=deployment)
        for worker in workers:
            await stack.enter_async_context(worker)
        sharing = (
            asyncio.create_task(keep_sharing_limits(client, ehr, tenants, task_queue))
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


@asynccontextmanager
async def deployed_workers(
    client: Client, settings: Settings, tenants: TenantRegistry
) -> AsyncIterator[None]:
    """The workers of a deployed process (``writeback worker``, ``writeback api --workers``):
    on the configured task queue and Worker Deployment Version, each tenant paced at this
    process's share of its limit among all the processes polling its queue."""
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
        yield


def ehr_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
    )


async def run_worker(settings: Settings, tenants: TenantRegistry) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks (up to the graceful timeout)."""
    require_caller_keys(tenants)
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
    async with deployed_workers(client, settings, tenants):
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
