"""The client API services use to start writes and ask what happened to them.

client = await WritebackClient.connect("localhost:7233")
submission = await client.submit(command)      # durable once this returns: state `requested`
status = await client.wait(submission.workflow_id)  # until verified / rejected / waiting
                                                    # (a waiting update: no polling)

Given a caller key (``signer``, else ``$WRITEBACK_CALLER_KEY``), the client signs each command
and decision it sends (adapters/callers.py): as the command's ``requested_by``, the decision's
``by``, whose registered key it must be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adapters.callers import (
    Binding,
    CallerSigner,
    decision_binding,
    saga_binding,
    write_binding,
)
from adapters.errors import EXIT_FAILED, WritebackError
from adapters.ids import tenant_of_workflow
from workers.settings import TASK_QUEUE
from workers.temporal_client import connect
from workflows import search_attributes as sa
from workflows.clinical_saga import ClinicalSaga
from workflows.clinical_write import ClinicalWrite
from workflows.contract import Resolution, WriteCommand, WriteDetails, WriteState, WriteStatus
from workflows.input_limits import check_command
from workflows.person_waits import SETTLED_ONLY, WAIT_SECONDS
from workflows.saga_contract import SagaCommand, SagaStatus

S = TypeVar("S", bound=WriteStatus)

#: One ``wait_settled`` call waits this long for its answer (the workflow answers within
#: WAIT_SECONDS) before the client looks by ``status`` (which raises NoWorker when no worker
#: answers) and asks again.
UPDATE_RPC_TIMEOUT = timedelta(seconds=WAIT_SECONDS + 10)


class WriteNotFound(WritebackError):
    """No write with that workflow id exists."""


class DecisionRefused(WritebackError):
    """The write is not waiting for a decision (or the decision is malformed)."""


class NoWorker(WritebackError):
    """A running write could not be asked for its state: no worker answered on the task queue."""


class WriteEndedAbnormally(WritebackError):
    """The workflow was terminated, cancelled, timed out or failed: an operator or a bug stopped
    it outside the write's own states. Temporal's Web UI has the history."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class WaitingWrite:
    """One entry of the review queue, from search attributes (no PHI) plus the write's reason."""

    workflow_id: str
    state: str
    tenant: str
    vendor: str | None
    error_class: str | None
    urgency: str | None
    waiting_since: datetime | None
    reason: str | None


def review_query(tenant: str | None = None, error_class: str | None = None) -> str:
    """The visibility query behind the review queue (also usable as a saved view in the Web UI)."""
    waiting = " OR ".join(
        f"{sa.STATE.name} = '{state.value}'" for state in WriteState if state.is_waiting_for_human
    )
    query = f"ExecutionStatus = 'Running' AND ({waiting})"
    if tenant:
        query += f" AND {sa.TENANT.name} = '{tenant}'"
    if error_class:
        query += f" AND {sa.ERROR_CLASS.name} = '{error_class}'"
    return query


@dataclass(frozen=True)
class Submission:
    workflow_id: str
    run_id: str | None
    #: the write already existed (running or finished) and this submission joined it; False:
    #: this submission started it, with its own command and memo
    joined: bool = False


class WritebackClient:
    def __init__(
        self,
        client: Client,
        task_queue: str = TASK_QUEUE,
        signer: CallerSigner | None = None,
        clock: Callable[[], Awaitable[datetime]] | None = None,
        eager_start: bool = False,
    ) -> None:
        self.temporal = client
        self.task_queue = task_queue
        #: ask the server to hand a new write's first workflow task straight back to this process
        #: (eager workflow start): one dispatch fewer, when this process runs the workflow worker
        #: on this same ``client`` and task queue (workers/worker.py ``running_workers``).
        #: Otherwise the server starts the workflow as usual.
        self.eager_start = eager_start
        #: signs commands and decisions that carry no credential yet (None: sent unsigned)
        self.signer = signer or CallerSigner.from_env()
        #: when credentials are issued (default: this machine's clock; tests on Temporal's
        #: time-skipping server give the server's)
        self._clock = clock

    async def _sign(self, binding: Binding) -> str:
        assert self.signer is not None
        return self.signer.sign(binding, now=await self._clock() if self._clock else None)

    @classmethod
    async def connect(
        cls,
        address: str,
        namespace: str = "default",
        task_queue: str = TASK_QUEUE,
        signer: CallerSigner | None = None,
    ) -> WritebackClient:
        return cls(await connect(address, namespace), task_queue, signer)

    async def submit(self, command: WriteCommand, memo: dict[str, str] | None = None) -> Submission:
        """Start the write, or join the one already started for the same tenant + key. A command
        over the input limits (workflows/input_limits.py) raises LimitExceeded, naming the limit
        and the element's path (CommandRefused for one JSON cannot carry), and starts nothing.
        ``memo`` is recorded with a workflow this call starts (sealed by the payload codec; the
        HTTP API keeps its request digest there: workers/api/idempotency.py)."""
        check_command(command)  # before signing: a command too deep to serialize cannot be signed
        if self.signer and not command.credential:
            credential = await self._sign(write_binding(command))
            command = command.model_copy(update={"credential": credential})
        return await self._start("ClinicalWrite", command, command.workflow_id, memo)

    async def submit_saga(
        self, command: SagaCommand, memo: dict[str, str] | None = None
    ) -> Submission:
        """Start a multi-resource saga (or join the one with the same tenant + key). Its id works
        with status, wait and the review commands like a single write's; ``memo`` as submit's."""
        check_command(command)  # before signing (as for a write)
        if self.signer and not command.credential:
            credential = await self._sign(saga_binding(command))
            command = command.model_copy(update={"credential": credential})
        return await self._start("ClinicalSaga", command, command.workflow_id, memo)

    async def saga(self, workflow_id: str) -> SagaStatus:
        """A saga's status with each step's state and compensation."""
        handle = self.temporal.get_workflow_handle_for(ClinicalSaga.run, workflow_id)
        return await self._current(handle, ClinicalSaga.status)

    async def _start(
        self,
        workflow: str,
        command: WriteCommand | SagaCommand,
        workflow_id: str,
        memo: dict[str, str] | None = None,
    ) -> Submission:
        check_command(command)  # what a worker would refuse is not started at all
        try:
            handle = await self.temporal.start_workflow(
                workflow,
                command,
                id=workflow_id,
                task_queue=self.task_queue,
                request_eager_start=self.eager_start,
                # a resubmission, running or finished, is refused as already started and joins
                # the write below; FAIL rather than USE_EXISTING so that a caller knows which
                # submission started it (the HTTP API then compares only joined requests)
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo=memo,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.STATE, WriteState.REQUESTED.value),
                        SearchAttributePair(sa.TENANT, command.tenant),
                        SearchAttributePair(sa.URGENCY, command.urgency.value),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError as started:
            # the same command, running or already finished: the same write, not a new one
            return Submission(workflow_id=workflow_id, run_id=started.run_id, joined=True)
        return Submission(workflow_id=handle.id, run_id=handle.result_run_id)

    def _handle(self, workflow_id: str) -> WorkflowHandle[ClinicalWrite, WriteStatus]:
        return self.temporal.get_workflow_handle_for(ClinicalWrite.run, workflow_id)

    async def status(self, workflow_id: str) -> WriteStatus:
        return await self._current(self._handle(workflow_id), ClinicalWrite.status)

    async def _current(self, handle: WorkflowHandle[Any, S], query: Any) -> S:
        """The workflow's result once it completed, else what its ``status`` query answers."""
        workflow_id = handle.id
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise WriteNotFound(workflow_id) from None
            raise
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return await handle.result()
        if description.status != WorkflowExecutionStatus.RUNNING:
            status_name = description.status.name if description.status else "UNKNOWN"
            raise WriteEndedAbnormally(f"{workflow_id}: workflow {status_name.lower()}")
        try:
            return cast(S, await handle.query(query))
        except RPCError as exc:
            if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) or (
                "Timeout expired" in exc.message
            ):
                raise NoWorker(
                    f"no worker answered for {workflow_id} on task queue "
                    f"'{description.task_queue}': is `writeback worker` running?"
                ) from None
            raise

    async def wait(
        self,
        workflow_id: str,
        on_change: Callable[[WriteStatus], None] | None = None,
        poll_seconds: float = 0.2,
    ) -> WriteStatus:
        """Follow a write (a saga, a finding) until it is settled: terminal, or waiting for a
        person. The workflow answers a waiting update (``wait_settled``) the moment that happens,
        or, with ``on_change``, at each new transition: nothing polls. A workflow that ended, and
        one whose worker predates the update, are asked by ``status`` (then every
        ``poll_seconds``)."""
        seen = 0 if on_change else SETTLED_ONLY  # every status has a transition: 0 answers now
        while True:
            status = await self._settled_or_changed(workflow_id, seen, poll_seconds)
            if on_change and len(status.transitions) != seen:
                seen = len(status.transitions)
                on_change(status)
            if status.state.is_settled:
                return status

    async def _settled_or_changed(
        self, workflow_id: str, seen: int, poll_seconds: float
    ) -> WriteStatus:
        handle = self.temporal.get_workflow_handle(workflow_id)
        try:
            settled: WriteStatus = await handle.execute_update(
                "wait_settled",
                args=[seen, WAIT_SECONDS],
                result_type=WriteStatus,
                rpc_timeout=UPDATE_RPC_TIMEOUT,
            )
            return settled
        except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
            # ended (its result is its status), unknown, no worker answering, or an older worker
            # that has no such update: ``status`` says which (or raises), and the next ask waits
            status = await self.status(workflow_id)
            unchanged = seen in (SETTLED_ONLY, len(status.transitions))
            if unchanged and not status.state.is_settled:
                await asyncio.sleep(poll_seconds)
            return status

    async def details(self, workflow_id: str) -> WriteDetails | WriteStatus:
        """The full record of a write (command, payload sent, EHR state, exchanges). For the
        other entries of the review queue: a saga's status with its steps (SagaStatus), or a
        reconciliation finding's status."""
        status = await self.status(workflow_id)  # same errors as status for unknown writes
        workflow_type = (await self._handle(workflow_id).describe()).workflow_type
        if workflow_type == "ClinicalSaga":
            return await self.saga(workflow_id)
        if workflow_type != "ClinicalWrite":
            return status
        return await self._handle(workflow_id).query(ClinicalWrite.details)

    async def waiting(
        self, tenant: str | None = None, error_class: str | None = None, limit: int = 200
    ) -> list[WaitingWrite]:
        """Writes waiting for a person, oldest first."""
        found = []
        async for execution in self.temporal.list_workflows(
            review_query(tenant, error_class), limit=limit
        ):
            attributes = execution.typed_search_attributes
            found.append((execution.id, attributes))
        statuses = await asyncio.gather(
            *(self.status(workflow_id) for workflow_id, _ in found), return_exceptions=True
        )
        entries = []
        for (workflow_id, attributes), status in zip(found, statuses, strict=True):
            known = status if isinstance(status, WriteStatus) else None
            entries.append(
                WaitingWrite(
                    workflow_id=workflow_id,
                    state=known.state.value if known else str(attributes.get(sa.STATE)),
                    tenant=str(attributes.get(sa.TENANT)),
                    vendor=attributes.get(sa.VENDOR),
                    error_class=attributes.get(sa.ERROR_CLASS),
                    urgency=attributes.get(sa.URGENCY),
                    waiting_since=attributes.get(sa.WAITING_SINCE),
                    reason=known.reason if known else None,
                )
            )
        return sorted(entries, key=lambda e: e.waiting_since or datetime.max.replace(tzinfo=UTC))

    async def resolve(
        self, workflow_id: str, resolution: Resolution, decision_id: str
    ) -> WriteStatus:
        """Apply a person's decision; ``decision_id`` deduplicates a resent decision."""
        if self.signer and not resolution.credential:
            tenant = tenant_of_workflow(workflow_id) or ""
            binding = decision_binding(workflow_id, tenant, resolution)
            resolution = resolution.model_copy(update={"credential": await self._sign(binding)})
        try:
            return await self._handle(workflow_id).execute_update(
                ClinicalWrite.resolve, resolution, id=decision_id
            )
        except WorkflowUpdateFailedError as exc:
            raise DecisionRefused(str(exc.cause or exc)) from None
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise DecisionRefused(f"{workflow_id}: {exc.message}") from None
            raise
