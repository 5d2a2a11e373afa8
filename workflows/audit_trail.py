"""What a write tells the audit ledger (activities/audit_ledger.py), from inside the workflow.

Whenever the write publishes its state, its new transitions and EHR exchanges go to the ledger
in one local activity that runs beside the write's own steps; once more before the workflow
ends. Entry keys (``{workflow id}/t{n}``, ``/x{n}``) make a repeated hand-over harmless.

What else changes a chart or a write's fate goes to the ledger at once (``hand_over``), from any
workflow: a person's decision, as it is taken (``decision_event``: who, which action, in which
state, on what), and every withdrawal of a resource (``withdrawal_event``: a write's extra copy,
a saga step, a finding's duplicate). Histories recorded before that replay without it
(``workflow.patched(COVERAGE)``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from activities.audit_ledger import AuditBatch, AuditEvent, AuditSteps, Notice
from adapters.ids import tenant_of_workflow
from workflows.contract import Resolution, WriteCommand, WriteStatus

#: The ledger must not lose a line: keep trying (appends are idempotent per entry key).
_AUDIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
_AUDIT_TIMEOUT = timedelta(seconds=10)
#: ``workflow.patched`` id: decisions and withdrawals are handed to the ledger as they happen.
COVERAGE = "audit-coverage"
#: ``workflow.patched`` id: sagas and findings hand their moves into settled states over too.
SETTLED_MOVES = "settled-moves"


def decision_event(status: WriteStatus, resolution: Resolution) -> AuditEvent:
    """A person's decision as it is taken: who, which action, in which state, on what. Keyed by
    the transitions so far (every decision adds one, and they carry over continue-as-new). The
    reason is free text and stays out."""
    return AuditEvent(
        entry_key=f"{status.workflow_id}/d{len(status.transitions)}",
        tenant=tenant_of_workflow(status.workflow_id) or status.tenant,
        correlation_id=status.workflow_id,
        kind="decision",
        at=workflow.now(),
        requested_by=resolution.by,
        resource_type=status.resource_type,
        resource=resolution.reference or status.resource,
        state=status.state.value,
        step="resolve",
        outcome=resolution.action.value,
    )


def withdrawal_event(
    status: WriteStatus,
    key: str,
    requested_by: str,
    target: str,
    outcome: str,
    error_class: str | None = None,
) -> AuditEvent:
    """A withdrawal of ``target`` (``withdrawn`` or ``failed``); ``key``: unique in the workflow."""
    return AuditEvent(
        entry_key=f"{status.workflow_id}/w{key}",
        tenant=tenant_of_workflow(status.workflow_id) or status.tenant,
        correlation_id=status.workflow_id,
        kind="withdrawal",
        at=workflow.now(),
        requested_by=requested_by,
        resource_type=target.split("/", 1)[0],
        resource=target,
        state=status.state.value,
        step="withdraw",
        outcome=outcome,
        error_class=error_class,
    )


async def hand_over(events: list[AuditEvent]) -> None:
    """These lines to the ledger now (histories from before ``COVERAGE`` replay without)."""
    if events and workflow.patched(COVERAGE):
        await _record(events)


async def _record(events: list[AuditEvent]) -> bool:
    """One local activity; False when the ledger refused the lines for good (never for an
    outage: those retry), which the worker's log says; the workflow goes on."""
    try:
        await workflow.execute_local_activity_method(
            AuditSteps.record,
            AuditBatch(events=events),
            start_to_close_timeout=_AUDIT_TIMEOUT,
            retry_policy=_AUDIT_RETRY,
        )
    except (ActivityError, ApplicationError) as err:  # a local activity raises the latter
        cause = err.cause if isinstance(err, ActivityError) else err
        workflow.logger.error("audit ledger refused %d lines: %s", len(events), cause)
        return False
    return True


def audit_events(
    command: WriteCommand, status: WriteStatus, transitions_from: int, exchanges_from: int
) -> list[AuditEvent]:
    """Ledger lines for the transitions and exchanges from the given positions on. Transition
    details are left out: a person's free-text reason may hold anything."""
    authorization = status.authorization
    policy = None
    if authorization is not None:
        policy = f"{authorization.decision} {authorization.rule}@{authorization.policy_version}" + (
            f" scopes {' '.join(authorization.scopes)}" if authorization.scopes else ""
        )
    common = {
        # the workflow's own tenant: a command naming another one is refused, and recorded here
        "tenant": tenant_of_workflow(status.workflow_id) or command.tenant,
        "correlation_id": status.workflow_id,
        "requested_by": command.requested_by,
        "on_behalf_of": command.on_behalf_of,
        "resource_type": status.resource_type,
        "resource": status.resource,
        "version": status.version,
        "policy": policy,
    }
    events = [
        AuditEvent(
            entry_key=f"{status.workflow_id}/t{index}",
            kind="transition",
            at=transition.at,
            state=transition.state.value,
            outcome=transition.state.value,
            error_class=status.error_class if transition.state is status.state else None,
            notice=_notice(status, index),
            **common,
        )
        for index, transition in enumerate(status.transitions)
        if index >= transitions_from
    ]
    events += [
        AuditEvent(
            entry_key=f"{status.workflow_id}/x{index}",
            kind="exchange",
            at=exchange.at,
            step=exchange.step,
            attempt=exchange.attempt,
            outcome=exchange.outcome,
            **common,
        )
        for index, exchange in enumerate(status.ehr_log)
        if index >= exchanges_from
    ]
    return events


def _notice(status: WriteStatus, index: int) -> Notice | None:
    """A move into another state (a note in the same state is none) carries the status's reason
    while the state is still the one moved into, for the webhooks."""
    transitions = status.transitions
    if index and transitions[index - 1].state is transitions[index].state:
        return None
    return Notice(reason=status.reason if transitions[index].state is status.state else None)


class AuditTrail:
    def __init__(self) -> None:
        self.due = False
        self._busy = False
        self._transitions = 0
        self._exchanges = 0

    async def run(self, command: WriteCommand, status: WriteStatus) -> None:
        """Record whenever ``due`` is set (the workflow sets it when it publishes its state)."""
        while True:
            await workflow.wait_condition(lambda: self.due)
            await self.record(command, status)

    async def record(self, command: WriteCommand, status: WriteStatus) -> None:
        await workflow.wait_condition(lambda: not self._busy)
        self.due = False
        upto = (len(status.transitions), len(status.ehr_log))
        events = audit_events(command, status, self._transitions, self._exchanges)
        if not events:
            return
        self._busy = True
        try:
            # refused lines stay pending for the next hand-over
            if await _record(events):
                self._transitions, self._exchanges = upto
        finally:
            self._busy = False


class SettledMoves:
    """A saga's or a finding's moves into settled states (verified, rejected, waiting for a
    person, compensated, abandoned, reconciled…), as ledger lines — and so as webhooks
    (activities/webhook_events.py): what ``AuditTrail`` is for a write, for workflows whose
    other transitions stay in their status. ``moved`` when the workflow publishes a state;
    ``hand_over`` wherever it then stops or waits. Histories from before replay without it."""

    def __init__(self, requested_by: str) -> None:
        self._requested_by = requested_by
        self._pending: list[AuditEvent] = []

    def moved(self, status: WriteStatus) -> None:
        if not status.state.is_settled:
            return
        index = len(status.transitions) - 1
        transition = status.transitions[index]
        self._pending.append(
            AuditEvent(
                entry_key=f"{status.workflow_id}/t{index}",
                tenant=tenant_of_workflow(status.workflow_id) or status.tenant,
                correlation_id=status.workflow_id,
                kind="transition",
                at=transition.at,
                requested_by=self._requested_by,
                resource_type=status.resource_type,
                resource=status.resource,
                state=transition.state.value,
                outcome=transition.state.value,
                error_class=status.error_class,
                notice=Notice(reason=status.reason),
            )
        )

    async def hand_over(self) -> None:
        events, self._pending = self._pending, []
        if events and workflow.patched(SETTLED_MOVES):
            await _record(events)
