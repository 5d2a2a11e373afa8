"""A tenant's capability profile: what its FHIR server says it can do (CapabilityStatement and
SMART configuration), reduced to what writes depend on, comparable across time and against the
tenant's configuration.

* ``build_profile`` reads the two discovery documents;
* ``profile_diff`` lists what changed since the last stored profile (schema drift included:
  newly required fields, changed code bindings, removed extensions — from the profiles the
  CapabilityStatement carries);
* ``config_mismatches`` lists where ``adapters/tenants.py`` configuration promises something the
  server does not offer (e.g. configured conditional create, server without it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.tenants import Interaction, Tenant

_WRITE_INTERACTION = {Interaction.CREATE: "create", Interaction.UPDATE: "update"}


class ResourceProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    interactions: list[str] = Field(default_factory=list)
    conditional_create: bool = False
    conditional_update: bool = False
    versioning: str = "no-version"
    search_params: list[str] = Field(default_factory=list)
    required_fields: list[str] = Field(default_factory=list, description="profile min >= 1")
    code_bindings: dict[str, str] = Field(default_factory=dict, description="path -> value set")
    removed_extensions: list[str] = Field(default_factory=list, description="profile max 0")

    @property
    def if_match(self) -> bool:
        return self.versioning == "versioned-update"


class CapabilityProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    fhir_version: str | None = None
    software: str | None = None
    resources: dict[str, ResourceProfile] = Field(default_factory=dict)
    patch_formats: list[str] = Field(default_factory=list)
    system_interactions: list[str] = Field(default_factory=list)
    token_endpoint: str | None = None
    scopes: list[str] = Field(default_factory=list)
    auth_methods: list[str] = Field(default_factory=list)


def _codes(items: Any) -> list[str]:
    return sorted({str(i.get("code")) for i in items or [] if isinstance(i, dict)})


def _profile_constraints(definition: dict[str, Any]) -> dict[str, Any]:
    """Required fields, bindings and removed extensions from a StructureDefinition's
    differential (snapshot when there is no differential)."""
    section = definition.get("differential") or definition.get("snapshot") or {}
    required, bindings, removed = [], {}, []
    for element in section.get("element") or []:
        path = str(element.get("path", ""))
        if path.endswith(".extension") and element.get("max") == "0":
            for kind in element.get("type") or []:
                removed += [str(url) for url in kind.get("profile") or []]
            continue
        if isinstance(element.get("min"), int) and element["min"] >= 1 and "." in path:
            required.append(path)
        binding = element.get("binding") or {}
        if binding.get("strength") == "required" and binding.get("valueSet"):
            bindings[path] = str(binding["valueSet"])
    return {
        "required_fields": sorted(required),
        "code_bindings": bindings,
        "removed_extensions": sorted(removed),
    }


def build_profile(statement: dict[str, Any], smart: dict[str, Any] | None) -> CapabilityProfile:
    """The profile from a CapabilityStatement (``/metadata``) and a SMART configuration."""
    contained = {
        f"#{c.get('id')}": c
        for c in statement.get("contained") or []
        if isinstance(c, dict) and c.get("resourceType") == "StructureDefinition"
    }
    rest: dict[str, Any] = next(
        (r for r in statement.get("rest") or [] if r.get("mode") == "server"),
        {},
    )
    resources = {}
    for entry in rest.get("resource") or []:
        constraints = {}
        definition = contained.get(str(entry.get("profile")))
        if definition is not None:
            constraints = _profile_constraints(definition)
        resources[str(entry.get("type"))] = ResourceProfile(
            interactions=_codes(entry.get("interaction")),
            conditional_create=bool(entry.get("conditionalCreate")),
            conditional_update=bool(entry.get("conditionalUpdate")),
            versioning=str(entry.get("versioning") or "no-version"),
            search_params=sorted(str(p.get("name")) for p in entry.get("searchParam") or []),
            **constraints,
        )
    smart = smart or {}
    return CapabilityProfile(
        fhir_version=statement.get("fhirVersion"),
        software=(statement.get("software") or {}).get("name"),
        resources=resources,
        patch_formats=sorted(statement.get("patchFormat") or []),
        system_interactions=_codes(rest.get("interaction")),
        token_endpoint=smart.get("token_endpoint"),
        scopes=sorted(smart.get("scopes_supported") or []),
        auth_methods=sorted(smart.get("token_endpoint_auth_methods_supported") or []),
    )


def _list_changes(what: str, old: list[str], new: list[str]) -> list[str]:
    return [f"{what}: {item} added" for item in sorted(set(new) - set(old))] + [
        f"{what}: {item} removed" for item in sorted(set(old) - set(new))
    ]


def _resource_diff(rtype: str, old: ResourceProfile, new: ResourceProfile) -> list[str]:
    changes = _list_changes(f"{rtype} interaction", old.interactions, new.interactions)
    changes += _list_changes(f"{rtype} search parameter", old.search_params, new.search_params)
    for flag in ("conditional_create", "conditional_update", "versioning"):
        before, after = getattr(old, flag), getattr(new, flag)
        if before != after:
            changes.append(f"{rtype} {flag}: {before} -> {after}")
    changes += [
        f"schema drift: {path} is now required"
        for path in sorted(set(new.required_fields) - set(old.required_fields))
    ]
    changes += [
        f"{path} is no longer required"
        for path in sorted(set(old.required_fields) - set(new.required_fields))
    ]
    for path in sorted(set(old.code_bindings) | set(new.code_bindings)):
        before, after = old.code_bindings.get(path), new.code_bindings.get(path)
        if before != after:
            changes.append(
                f"schema drift: {path} code binding {before or 'none'} -> {after or 'none'}"
            )
    changes += [
        f"schema drift: {rtype} extension {url} removed"
        for url in sorted(set(new.removed_extensions) - set(old.removed_extensions))
    ]
    changes += [
        f"{rtype} extension {url} accepted again"
        for url in sorted(set(old.removed_extensions) - set(new.removed_extensions))
    ]
    return changes


def profile_diff(old: CapabilityProfile | None, new: CapabilityProfile) -> list[str]:
    """One line per change since ``old`` (empty when nothing changed or there is no ``old``)."""
    if old is None:
        return []
    changes = []
    for field in ("fhir_version", "software", "token_endpoint"):
        before, after = getattr(old, field), getattr(new, field)
        if before != after:
            changes.append(f"{field}: {before} -> {after}")
    changes += _list_changes("resource type", list(old.resources), list(new.resources))
    for rtype in sorted(set(old.resources) & set(new.resources)):
        changes += _resource_diff(rtype, old.resources[rtype], new.resources[rtype])
    changes += _list_changes("patch format", old.patch_formats, new.patch_formats)
    changes += _list_changes("system interaction", old.system_interactions, new.system_interactions)
    changes += _list_changes("scope", old.scopes, new.scopes)
    return changes


def config_mismatches(tenant: Tenant, profile: CapabilityProfile) -> list[str]:
    """Where the tenant's configuration promises what the server does not offer, and what the
    server now demands of writes that the configuration knows nothing about (schema drift)."""
    caps = tenant.capabilities
    found = []
    for rtype, interactions in sorted(caps.writable.items()):
        server = profile.resources.get(rtype)
        if server is None:
            found.append(f"{rtype}: configured writable, server does not list the type")
            continue
        for interaction in interactions:
            if _WRITE_INTERACTION[interaction] not in server.interactions:
                found.append(
                    f"{rtype}: configured {interaction.value}, server has no {interaction.value}"
                )
        if caps.conditional_create and not server.conditional_create:
            found.append(f"{rtype}: configured conditional_create, server does not support it")
        if caps.if_match and Interaction.UPDATE in interactions and not server.if_match:
            found.append(
                f"{rtype}: configured if_match, server versioning is '{server.versioning}'"
            )
        if caps.patch and "patch" not in server.interactions:
            found.append(f"{rtype}: configured patch, server has no patch interaction")
        if "identifier" not in server.search_params:
            found.append(f"{rtype}: server cannot search by identifier (needed to deduplicate)")
        found += [
            f"{rtype}: schema drift: {path} is required by the server"
            for path in server.required_fields
        ]
        found += [
            f"{rtype}: schema drift: {path} must be coded from {system}"
            for path, system in sorted(server.code_bindings.items())
        ]
        found += [
            f"{rtype}: schema drift: extension {url} is removed"
            for url in server.removed_extensions
        ]
    if tenant.auth.kind == "smart_backend":
        if not profile.token_endpoint and not tenant.auth.token_url:
            found.append("auth: smart_backend configured, server advertises no token endpoint")
        if profile.auth_methods and "private_key_jwt" not in profile.auth_methods:
            found.append("auth: server does not accept private_key_jwt client assertions")
    for rtype in sorted(tenant.crosswalk.types):
        server = profile.resources.get(rtype)
        if server is not None and "identifier" not in server.search_params:
            found.append(f"crosswalk: server cannot search {rtype} by identifier")
    return found
