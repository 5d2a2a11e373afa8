"""The public contract of a clinical saga: several resources written as one unit, or withdrawn.

A saga is an ordered list of steps, each one ClinicalWrite with the same safety as a single write
(idempotency, error taxonomy, read-back verification, a person for the ambiguous cases). A step's
resource refers to an earlier step's resource with the placeholder ``"saga:<step name>"`` as a
Reference's ``reference`` value; the saga replaces it with the ``Type/id`` the EHR assigned.

When a step cannot complete, the steps written before it are withdrawn the clinical way
(entered-in-error, revoked, cancelled: adapters/compensation.py), newest first, each withdrawal
read back. A withdrawal that fails waits for a person (``compensation_failed``) with the saga's
whole context.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from adapters.callers import MAX_CREDENTIAL_CHARS
from adapters.ids import saga_step_key, workflow_id_for
from adapters.ids import saga_workflow_id as saga_workflow_id  # re-exported
from workflows.contract import TOKEN_PATTERN, Transition, Urgency, WriteState, WriteStatus

#: Prefix of a Reference.reference value naming another step of the same saga.
STEP_REFERENCE = "saga:"
STEP_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
#: Saga keys are shorter than write keys: each step's write key is ``saga.{key}.{step}``.
SAGA_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,85}$"
#: The most steps one saga has.
MAX_STEPS = 20


def step_references(value: Any) -> set[str]:
    """Names of the steps a resource refers to (``{"reference": "saga:<name>"}`` anywhere)."""
    found: set[str] = set()
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith(STEP_REFERENCE):
            found.add(reference.removeprefix(STEP_REFERENCE))
        for item in value.values():
            found |= step_references(item)
    elif isinstance(value, list):
        for item in value:
            found |= step_references(item)
    return found


def resolve_step_references(value: Any, assigned: dict[str, str]) -> Any:
    """A copy of ``value`` with every ``saga:<name>`` reference replaced by ``assigned[name]``."""
    if isinstance(value, dict):
        resolved = {key: resolve_step_references(item, assigned) for key, item in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith(STEP_REFERENCE):
            resolved["reference"] = assigned[reference.removeprefix(STEP_REFERENCE)]
        return resolved
    if isinstance(value, list):
        return [resolve_step_references(item, assigned) for item in value]
    return value


class SagaStep(BaseModel):
    name: str = Field(pattern=STEP_NAME_PATTERN, description="e.g. 'request', 'task'")
    resource: dict[str, Any]
    optional: bool = Field(
        default=False,
        description="skipped, not failed, where the tenant does not accept its resource type "
        "(a Provenance on a tenant that takes none)",
    )

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType"))

    @property
    def depends_on(self) -> set[str]:
        return step_references(self.resource)


class SagaCommand(BaseModel):
    """'Write these resources into tenant T on behalf of user U, all of them or none'."""

    tenant: str = Field(pattern=TOKEN_PATTERN)
    idempotency_key: str = Field(pattern=SAGA_KEY_PATTERN)
    kind: str = Field(pattern=TOKEN_PATTERN, description="e.g. referral, note-with-provenance")
    steps: list[SagaStep] = Field(min_length=1, max_length=MAX_STEPS)
    requested_by: str = Field(default="cli", pattern=TOKEN_PATTERN)
    on_behalf_of: str | None = Field(default=None, max_length=256)
    urgency: Urgency = Urgency.ROUTINE
    credential: str | None = Field(
        default=None,
        max_length=MAX_CREDENTIAL_CHARS,
        description="the caller's proof (adapters/callers.py): a JWS over this saga, signed by "
        "requested_by's key; it proves each step's write too",
    )

    @model_validator(mode="after")
    def _steps_form_a_plan(self) -> SagaCommand:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique")
        for step in self.steps:
            if not step.resource.get("resourceType"):
                raise ValueError(f"step '{step.name}': resource has no resourceType")
            unknown = step.depends_on - set(names)
            if unknown:
                raise ValueError(f"step '{step.name}' refers to unknown step(s) {sorted(unknown)}")
            if step.name in step.depends_on:
                raise ValueError(f"step '{step.name}' refers to itself")
            optional = {other.name for other in self.steps if other.optional} & step.depends_on
            if optional:
                raise ValueError(
                    f"step '{step.name}' refers to optional step(s) {sorted(optional)}"
                )
        done: set[str] = set()
        remaining = list(self.steps)
        while remaining:
            ready = [step for step in remaining if step.depends_on <= done]
            if not ready:
                raise ValueError("steps refer to each other in a cycle")
            done |= {step.name for step in ready}
            remaining = [step for step in remaining if step.name not in done]
        return self

    @property
    def workflow_id(self) -> str:
        return saga_workflow_id(self.tenant, self.idempotency_key)

    def step_key(self, step: str) -> str:
        """Idempotency key of a step's own write."""
        return saga_step_key(self.idempotency_key, step)


#: What became of a step when its saga was undone:
#: ``withdrawn``: its withdrawn form set through the API and read back;
#: ``withdrawn_by_hand``: a person said so (``confirm``) and a read-back agrees (withdrawn in any
#: form, or gone: 404/410; the detail says which);
#: ``not_found``: its write may have reached the EHR (an unanswered attempt), a person confirmed
#: it is not in the chart and a search for its identifier agrees;
#: ``failed``: not (yet) out of the chart, the detail says why; ``not_possible``: the tenant's API
#: cannot withdraw its type, the detail says what to do by hand.
Compensation = Literal["withdrawn", "withdrawn_by_hand", "not_found", "failed", "not_possible"]


class SagaStepStatus(BaseModel):
    name: str
    resource_type: str
    write_id: str = Field(description="workflow id of the step's ClinicalWrite")
    state: WriteState | None = Field(default=None, description="None: not started")
    resource: str | None = None
    version: str | None = None
    compensable: bool = Field(description="the tenant can withdraw this type (adapters)")
    compensation: Compensation | None = None
    detail: str | None = None


class SagaStatus(WriteStatus):
    """A saga's status: a WriteStatus (so the review queue and ``writeback status`` show it like
    any write) plus each step's own state and compensation."""

    kind: str
    steps: list[SagaStepStatus] = Field(default_factory=list)

    @classmethod
    def requested(cls, command: SagaCommand, workflow_id: str, now: datetime) -> SagaStatus:
        """A saga's status as it starts: requested, no step started."""
        return cls(
            workflow_id=workflow_id,
            tenant=command.tenant,
            kind=command.kind,
            resource_type=f"saga:{command.kind}",
            state=WriteState.REQUESTED,
            transitions=[Transition(state=WriteState.REQUESTED, at=now)],
            steps=[
                SagaStepStatus(
                    name=step.name,
                    resource_type=step.resource_type,
                    write_id=workflow_id_for(command.tenant, command.step_key(step.name)),
                    compensable=False,
                )
                for step in command.steps
            ],
        )
