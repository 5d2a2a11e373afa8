"""The cheap, pure steps of a write: validate, map, authorize. Run as local activities: they do no
I/O beyond reading the tenant registry the worker loaded, so a retry is always safe."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities.errors import ErrorClass, step_failure
from activities.models import CommandInput, ValidatedWrite, WritePlan
from adapters.fhir_r4 import UnsupportedVendor, prepare_create, prepare_update
from adapters.policy import AccessRequest, AuthorizationRecord
from adapters.problems import ResourceInvalid
from adapters.tenants import Interaction, Tenant, TenantRegistry
from adapters.validation import validate_resource

#: SMART v2 scope letter per interaction (an update reads the current version first).
LEAST_SCOPE = {Interaction.CREATE: "c", Interaction.UPDATE: "ru"}


class CommandSteps:
    def __init__(self, tenants: TenantRegistry) -> None:
        self._tenants = tenants

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            known = ", ".join(self._tenants.ids)
            raise step_failure(
                ErrorClass.VALIDATION, f"unknown tenant '{tenant_id}' (configured: {known})"
            )
        return tenant

    @activity.defn(name="validate")
    async def validate(self, command: CommandInput) -> ValidatedWrite:
        tenant = self._tenant(command.tenant)
        try:
            resource_type = validate_resource(command.resource)
        except ResourceInvalid as exc:
            raise step_failure(ErrorClass.VALIDATION, str(exc)) from None
        return ValidatedWrite(
            tenant=tenant.id,
            vendor=tenant.vendor.value,
            resource_type=resource_type,
            ehr_timeout_seconds=tenant.timeout_seconds,
            search_lag_seconds=tenant.capabilities.search_lag_seconds,
        )

    @activity.defn(name="map")
    async def map(self, command: CommandInput) -> WritePlan:
        tenant = self._tenant(command.tenant)
        try:
            if command.interaction is Interaction.UPDATE and command.target:
                return WritePlan(update=prepare_update(tenant, command.resource, command.target))
            return WritePlan(
                create=prepare_create(tenant, command.resource, command.command_identifier)
            )
        except UnsupportedVendor as exc:
            raise step_failure(ErrorClass.UNSUPPORTED, str(exc)) from None

    @activity.defn(name="authorize")
    async def authorize(self, command: CommandInput) -> AuthorizationRecord:
        """Decide by the tenant's policy (adapters/policy.py). A denial is returned, not raised:
        the workflow records it (rule, policy version) before it ends ``rejected``."""
        tenant = self._tenant(command.tenant)
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
            checks=["tenant-accepts-interaction", f"policy:{rule}"],
            decided_at=datetime.now(UTC),
        )
