"""The cheap, pure steps of a write: validate, map, authorize. Run as local activities: they do no
I/O beyond reading the tenant registry the worker loaded, so a retry is always safe."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities.errors import ErrorClass, step_failure
from activities.models import AuthorizationRecord, CommandInput, ValidatedWrite, WritePlan
from adapters.fhir_r4 import UnsupportedVendor, prepare_create, prepare_update
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
        except ResourceInvalid as exc:  # the vendor's own rules (adapters/epic.py, athena.py...)
            raise step_failure(ErrorClass.VALIDATION, f"{tenant.vendor.value}: {exc}") from None

    @activity.defn(name="authorize")
    async def authorize(self, command: CommandInput) -> AuthorizationRecord:
        """First-cut policy: the caller is allowed for the tenant and the tenant accepts this
        resource type and interaction. The scope is the least one for the write."""
        tenant = self._tenant(command.tenant)
        resource_type = str(command.resource.get("resourceType"))
        interaction = command.interaction
        checks = []
        if "*" not in tenant.allowed_callers and command.requested_by not in tenant.allowed_callers:
            raise step_failure(
                ErrorClass.AUTHORIZATION,
                f"caller '{command.requested_by}' may not write to tenant '{tenant.id}'",
            )
        checks.append("caller-allowed-for-tenant")
        if not tenant.capabilities.allows(resource_type, interaction):
            raise step_failure(
                ErrorClass.UNSUPPORTED,
                f"tenant '{tenant.id}' does not accept {interaction.value} of {resource_type}",
            )
        checks.append("tenant-accepts-interaction")
        return AuthorizationRecord(
            requested_by=command.requested_by,
            on_behalf_of=command.on_behalf_of,
            scopes=[f"system/{resource_type}.{LEAST_SCOPE[interaction]}"],
            checks=checks,
            decided_at=datetime.now(UTC),
        )
