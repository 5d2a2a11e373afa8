"""The cheap, pure steps of a write: validate, map, authorize, or all three as one (``prepare``).
Run as local activities: they do no I/O beyond reading the tenant registry and the caller keys
the worker loaded, so a retry is always safe. Each write step, like a saga's plan and a person's
decision, first proves the caller (adapters/callers.py): nothing reaches the EHR, not even a
crosswalk lookup, for a caller that did not prove who it is."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorClass, known_tenant, step_failure
from activities.models import (
    CommandInput,
    DecisionInput,
    DecisionProof,
    PreparedWrite,
    Refusal,
    SagaPlan,
    SagaPlanInput,
    SagaStepInput,
    SweepSettings,
    ValidatedWrite,
    WritePlan,
)
from adapters.caller_keys import CallerRegistry, load_callers
from adapters.callers import CredentialRefused, Expected, verify
from adapters.code_maps import mapped_codes
from adapters.compensation import can_compensate, withdrawal
from adapters.fhir_r4 import UnsupportedVendor, prepare_create, prepare_update
from adapters.policy import AccessRequest, AuthorizationRecord
from adapters.problems import ResourceInvalid
from adapters.tenants import Interaction, Tenant, TenantRegistry
from adapters.validation import clinical_context, validate_resource
from adapters.vendor import family_refusal

#: SMART v2 scope letter per interaction (an update reads the current version first).
LEAST_SCOPE = {Interaction.CREATE: "c", Interaction.UPDATE: "ru"}


#: The check a write records when its tenant takes callers at their word.
UNAUTHENTICATED = "caller-unauthenticated (tenant accepts unauthenticated callers)"


class CommandSteps:
    def __init__(self, tenants: TenantRegistry, callers: CallerRegistry | None = None) -> None:
        self._tenants = tenants
        self._callers = callers if callers is not None else load_callers()

    def _tenant(self, tenant_id: str) -> Tenant:
        return known_tenant(self._tenants, tenant_id)

    def _prove(self, tenant: Tenant, credential: str | None, caller: Expected | None) -> str:
        """How the caller was proved (the check to record), or a non-retryable
        ``authorization`` failure naming what failed. Without a credential, a tenant that
        accepts unauthenticated callers takes the command's word for it."""
        if tenant.caller_auth == "unauthenticated" and not credential:
            return UNAUTHENTICATED
        try:
            if caller is None:
                raise CredentialRefused("no caller binding to check the credential against")
            return verify(self._callers, credential, caller).summary
        except CredentialRefused as exc:
            raise step_failure(ErrorClass.AUTHORIZATION, f"caller not proved: {exc}") from None

    @activity.defn(name="prove_decision")
    async def prove_decision(self, decision: DecisionInput) -> DecisionProof:
        """A person's decision is acted on only once its ``by`` is proved (README: Security)."""
        tenant = self._tenant(decision.tenant)
        if tenant.caller_auth == "unauthenticated" and not decision.credential:
            return DecisionProof()
        try:
            proof = verify(self._callers, decision.credential, decision.caller)
        except CredentialRefused as exc:
            return DecisionProof(refused=f"decision refused: operator not proved: {exc}")
        return DecisionProof(jti=proof.jti)

    @activity.defn(name="prepare")
    async def prepare(self, command: CommandInput) -> PreparedWrite:
        """validate, map and authorize as one pure step: one local activity, the caller proved
        once. A refusal after validation (the vendor's rules, the tenant, the policy's
        ``unsupported``) is returned, not raised, so that the write records ``validated``
        before it ends ``rejected``, as it does with three steps."""
        tenant = self._tenant(command.tenant)
        proved = self._prove(tenant, command.credential, command.caller)
        validated = self._validated(tenant, command)
        try:
            plan = self._planned(tenant, command)
            authorization = self._decided(tenant, command, proved)
        except ApplicationError as exc:
            if not exc.non_retryable or exc.type is None:
                raise
            refusal = Refusal(error_class=exc.type, reason=exc.message)
            return PreparedWrite(validated=validated, refused=refusal)
        return PreparedWrite(validated=validated, plan=plan, authorization=authorization)

    @activity.defn(name="validate")
    async def validate(self, command: CommandInput) -> ValidatedWrite:
        tenant = self._tenant(command.tenant)
        self._prove(tenant, command.credential, command.caller)
        return self._validated(tenant, command)

    @activity.defn(name="map")
    async def map(self, command: CommandInput) -> WritePlan:
        return self._planned(self._tenant(command.tenant), command)

    @activity.defn(name="authorize")
    async def authorize(self, command: CommandInput) -> AuthorizationRecord:
        """Decide by the tenant's policy (adapters/policy.py). A denial is returned, not raised:
        the workflow records it (rule, policy version) before it ends ``rejected``."""
        tenant = self._tenant(command.tenant)
        proved = self._prove(tenant, command.credential, command.caller)
        return self._decided(tenant, command, proved)

    @staticmethod
    def _validated(tenant: Tenant, command: CommandInput) -> ValidatedWrite:
        # the workflow's clock, so every attempt judges "the future" against the same instant
        now = command.requested_at or activity.info().current_attempt_scheduled_time
        refusal = family_refusal(tenant.adapter(), command.resource)
        if refusal is not None:  # what the vendor has no write API for: before any request
            raise step_failure(ErrorClass.UNSUPPORTED, str(refusal))
        try:  # checked as it will be sent: local codes joined by the tenant's standard ones
            resource = mapped_codes(tenant.code_maps, command.resource)
            resource_type = validate_resource(resource, clinical_context(tenant, now))
        except ResourceInvalid as exc:
            raise step_failure(ErrorClass.VALIDATION, str(exc)) from None
        return ValidatedWrite(
            tenant=tenant.id,
            vendor=tenant.vendor.value,
            resource_type=resource_type,
            ehr_timeout_seconds=tenant.timeout_seconds,
            search_lag_seconds=tenant.capabilities.search_lag_seconds,
            quiet_period_seconds=tenant.quiet_period_seconds(),
            resend_after_quiet=tenant.resends_after_quiet(resource_type),
            searchable=tenant.searchable(resource_type),
            withdrawal=withdrawal(resource_type) if can_compensate(tenant, resource_type) else None,
            reconcile_after_seconds=tenant.reconcile.after_hours * 3600,
            adapter_version=tenant.adapter_version.value,
        )

    @staticmethod
    def _planned(tenant: Tenant, command: CommandInput) -> WritePlan:
        try:
            if command.interaction is Interaction.UPDATE and command.target:
                return WritePlan(update=prepare_update(tenant, command.resource, command.target))
            return WritePlan(
                create=prepare_create(tenant, command.resource, command.command_identifier)
            )
        except UnsupportedVendor as exc:
            raise step_failure(ErrorClass.UNSUPPORTED, str(exc)) from None
        except ResourceInvalid as exc:  # the vendor's own rules (adapters/epic.py, athena.py...)
            raise step_failure(ErrorClass.VALIDATION, f"{tenant.vendor.value}: {exc}") from None

    @staticmethod
    def _decided(tenant: Tenant, command: CommandInput, proved: str) -> AuthorizationRecord:
        resource_type = str(command.resource.get("resourceType"))
        interaction = command.interaction
        if not tenant.capabilities.allows(resource_type, interaction):
            raise step_failure(
                ErrorClass.UNSUPPORTED,
                f"tenant '{tenant.id}' does not accept {interaction.value} of {resource_type}",
            )
        policy = tenant.access_policy()
        decision, rule = policy.decide(
            AccessRequest(
                caller=command.requested_by,
                on_behalf_of=command.on_behalf_of,
                role=command.role,
                purpose=command.purpose,
                resource_type=resource_type,
                interaction=interaction,
            )
        )
        return AuthorizationRecord(
            decision=decision,
            rule=rule,
            policy_version=policy.version,
            requested_by=command.requested_by,
            on_behalf_of=command.on_behalf_of,
            role=command.role,
            purpose=command.purpose,
            scopes=[f"system/{resource_type}.{LEAST_SCOPE[interaction]}"]
            if decision == "allow"
            else [],
            checks=[proved, "tenant-accepts-interaction", f"policy:{rule}"],
            decided_at=datetime.now(UTC),
        )

    @activity.defn(name="plan_saga")
    async def plan_saga(self, saga: SagaPlanInput) -> SagaPlan:
        """Order a saga's steps so that what the tenant cannot withdraw is written as late as its
        references allow: a failure after such a write needs a person, before it needs nobody."""
        tenant = self._tenant(saga.tenant)
        self._prove(tenant, saga.credential, saga.caller)
        skipped = [
            step.name
            for step in saga.steps
            if step.optional
            and not tenant.capabilities.allows(step.resource_type, Interaction.CREATE)
        ]
        steps = [step for step in saga.steps if step.name not in skipped]
        compensable = {step.name: can_compensate(tenant, step.resource_type) for step in steps}
        return SagaPlan(
            vendor=tenant.vendor.value,
            order=saga_order(steps, compensable),
            withdrawal={
                step.name: withdrawal(step.resource_type) if compensable[step.name] else None
                for step in steps
            },
            skipped=skipped,
        )

    @activity.defn(name="sweep_settings")
    async def sweep_settings(self, tenant_id: str) -> SweepSettings:
        tenant = self._tenant(tenant_id)
        return SweepSettings(
            lookback_hours=tenant.reconcile.sweep_lookback_hours,
            auto_remediate_duplicates=tenant.reconcile.auto_remediate_duplicates,
        )


def saga_order(steps: list[SagaStepInput], compensable: dict[str, bool]) -> list[str]:
    """Dependencies first; among the steps ready to go, withdrawable ones before the others, in
    the order given. (The command was checked for cycles when it was accepted.)"""
    order: list[str] = []
    remaining = list(steps)
    while remaining:
        ready = [step for step in remaining if set(step.depends_on) <= set(order)]
        chosen = next((step for step in ready if compensable[step.name]), ready[0])
        order.append(chosen.name)
        remaining.remove(chosen)
    return order
