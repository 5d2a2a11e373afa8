"""What a write tells the audit ledger (activities/audit_ledger.py), from inside the workflow.

Whenever the write publishes its state, its new transitions and EHR exchanges go to the ledger
in one local activity that runs beside the write's own steps; once more before the workflow
ends. Entry keys (``{workflow id}/t{n}``, ``/x{n}``) make a repeated hand-over harmless.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from adapters.ids import tenant_of_workflow
from workflows.contract import WriteCommand, WriteStatus

with workflow.unsafe.imports_passed_through():
    from activities.audit_ledger import AuditBatch, AuditEvent, AuditSteps

#: The ledger must not lose a line: keep trying (appends are idempotent per entry key).
_AUDIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
_AUDIT_TIMEOUT = timedelta(seconds=10)


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
            await workflow.execute_local_activity_method(
                AuditSteps.record,
                AuditBatch(events=events),
                start_to_close_timeout=_AUDIT_TIMEOUT,
                retry_policy=_AUDIT_RETRY,
            )
            self._transitions, self._exchanges = upto
        except (ActivityError, ApplicationError) as err:  # a local activity raises the latter
            # refused for good (never for an outage: those retry): the write goes on, the lines
            # stay pending for the next hand-over, and the refusal is in the worker's log
            cause = err.cause if isinstance(err, ActivityError) else err
            workflow.logger.error("audit ledger refused %d lines: %s", len(events), cause)
        finally:
            self._busy = False
