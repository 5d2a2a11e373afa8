"""What the workflows that wait for a person share: ClinicalWrite, ClinicalSaga, ReconcileFinding.

Each keeps a status (a WriteStatus, or a model built on it) and a decision inbox
(workflows/decisions.py), and offers the same handlers, inherited (the SDK collects handlers from
base classes):

- the ``status`` query;
- the ``resolve`` update, whose validator accepts a decision only while the workflow waits for
  one (``_awaits_decision``), none while another is applied, and then asks the workflow for its own
  refusals (``_refusal``);
- the ``wait_settled`` update, for callers that follow a workflow: it returns the status once the
  workflow is settled (terminal, or parked for a person) or, given the number of transitions the
  caller has seen, as soon as there are others, and at the latest after WAIT_SECONDS (the caller
  asks again). It changes nothing (a waiting update instead of a
  caller that polls: Temporal's samples-python ``message_passing/safe_message_handlers``);

and the same way of moving between states (``_move``: the transition and ``waiting_since`` on the
status, then ``_publish`` for each workflow's search attributes and metrics).

A decision is acted on only once its operator is proved (``_prove_decision``, the check of each
workflow's DecisionInbox): its credential is verified by an activity (adapters/callers.py) when the
workflow takes it; decisions taken before this existed replay without it (``DECISIONS_PROVED``).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import ClassVar, Generic, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from activities.command_steps import CommandSteps
from activities.models import DecisionInput
from adapters.callers import decision_binding, expected
from workflows.audit_trail import decision_event, hand_over
from workflows.contract import Resolution, Transition, WriteState, WriteStatus
from workflows.decisions import DecisionInbox
from workflows.kernel import pure_step, reason_of

S = TypeVar("S", bound=WriteStatus)

#: ``wait_settled`` with this: return only once settled, whatever the transitions.
SETTLED_ONLY = -1
#: The longest one ``wait_settled`` waits before it answers with the status as it is.
WAIT_SECONDS = 20.0
#: ``workflow.patched`` id of a decision's proof, followed by the decision's number in the run
#: (``-1``, ``-2``, …): Temporal memoizes a patch per run, so one id would leave a workflow that
#: took a decision before this release taking every later one unproved; per decision, each one
#: taken after the release is proved, and each taken before replays without it
#: (tests/workflows/test_decision_proof_upgrade.py).
DECISIONS_PROVED = "decisions-proved"


class PersonWaits(Generic[S]):
    _status: S
    _decisions: DecisionInbox
    #: how refusals name the workflow: "write is 'in_flight', not waiting for a decision"
    _noun: ClassVar[str] = "write"
    #: a move from one waiting state to another restarts ``waiting_since`` (else it keeps the
    #: moment the workflow first stopped for a person)
    _wait_restarts: ClassVar[bool] = False

    # --- handlers -----------------------------------------------------------------------------

    @workflow.query
    def status(self) -> WriteStatus:
        return self._status

    @workflow.update
    async def resolve(self, resolution: Resolution) -> WriteStatus:
        """A person's decision; returns the status once it has been acted on."""
        await self._decisions.deliver(resolution)
        return self._status

    @resolve.validator
    def _resolve_allowed(self, resolution: Resolution) -> None:
        state = self._status.state
        if not self._awaits_decision(state):
            doing = self._doing()
            raise ValueError(f"{self._noun} is '{state}', not waiting for a decision{doing}")
        if self._decisions.busy:
            raise ValueError("a decision is already being applied")
        if why := self._refusal(resolution):
            raise ValueError(why)

    @workflow.update
    async def wait_settled(
        self, transitions_seen: int = SETTLED_ONLY, wait_seconds: float = WAIT_SECONDS
    ) -> WriteStatus:
        """The status once settled, or once it has other than ``transitions_seen`` transitions
        (``SETTLED_ONLY``: only once settled) — or as it is after ``wait_seconds``: a caller that
        gave up never leaves a handler open in the workflow (they would pile up, and Temporal
        caps the updates in flight), and one that still waits simply asks again."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    self._status.state.is_settled
                    or transitions_seen not in (SETTLED_ONLY, len(self._status.transitions))
                ),
                timeout=max(1.0, min(wait_seconds, WAIT_SECONDS)),
            )
        return self._status

    # --- what each workflow says --------------------------------------------------------------

    def _awaits_decision(self, state: WriteState) -> bool:
        """The states in which a decision is taken."""
        return state.is_waiting_for_human

    def _doing(self) -> str:
        """What the workflow is busy with, for a refused decision ("": nothing to say)."""
        return ""

    def _refusal(self, resolution: Resolution) -> str | None:
        """Why this decision cannot be taken now; None: it can."""
        return None

    def _publish(self, state: WriteState, began_waiting: bool) -> None:
        """Search attributes, metrics, the audit: whatever else a move to ``state`` does
        (``began_waiting``: the workflow was not waiting for a person before this move)."""

    # --- proof of who asks ---------------------------------------------------------------------

    def _accepted_at(self) -> datetime:
        """When Temporal accepted the command (the run's start; the first run's, as far as the
        status remembers, after a continue-as-new): its credential's validity is judged then."""
        return min(workflow.info().workflow_start_time, self._status.transitions[0].at)

    async def _prove_decision(self, resolution: Resolution) -> str | None:
        """Why ``resolution`` may not be taken (None: its ``by`` is proved, or the tenant takes
        operators at their word): its credential must be signed by ``by``'s registered key, for
        this workflow and this decision, and not used for another decision."""
        if not workflow.patched(f"{DECISIONS_PROVED}-{self._decisions.received}"):
            return None
        workflow_id, tenant = workflow.info().workflow_id, self._status.tenant
        binding = decision_binding(workflow_id, tenant, resolution)
        order = DecisionInput(
            tenant=tenant,
            credential=resolution.credential,
            caller=expected(binding, workflow_id, workflow.now()),
        )
        try:
            proof = await pure_step(CommandSteps.prove_decision, order)
        except (ActivityError, ApplicationError) as err:
            return f"decision refused: the operator could not be proved ({reason_of(err)[1]})"
        if proof.refused:
            return proof.refused
        if proof.jti is not None:
            if proof.jti in self._decisions.used_credentials:
                return "decision refused: its credential was already used for a decision"
            self._decisions.used_credentials.add(proof.jti)
        return None

    async def _audit_decision(self, resolution: Resolution) -> None:
        """A decision taken goes to the audit ledger before it is acted on (who decided what)."""
        await hand_over([decision_event(self._status, resolution)])

    # --- moves --------------------------------------------------------------------------------

    def _move(self, state: WriteState, detail: str | None = None) -> None:
        status = self._status
        began_waiting = state.is_waiting_for_human and not status.state.is_waiting_for_human
        if not state.is_waiting_for_human:
            status.waiting_since = status.next_check_at = None
        elif began_waiting or self._wait_restarts:
            status.waiting_since = workflow.now()
        status.state = state
        status.transitions.append(Transition(state=state, at=workflow.now(), detail=detail))
        self._publish(state, began_waiting)

    def _note(self, detail: str) -> None:
        """A transition that keeps the state: a decision taken, a wait, an attempt that failed."""
        self._status.transitions.append(
            Transition(state=self._status.state, at=workflow.now(), detail=detail)
        )
