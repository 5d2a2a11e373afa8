"""Discovery documents: the CapabilityStatement (``/metadata``) and SMART configuration."""

from __future__ import annotations

from sandbox.auth import ALGORITHMS
from sandbox.drift import Drift, profile_elements
from sandbox.personalities import Personality
from sandbox.responses import Json
from sandbox.search import REFERENCE_PARAMS, TOKEN_PARAMS

ADVERTISED_TYPES = (
    "AllergyIntolerance",
    "CarePlan",
    "Communication",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Goal",
    "Immunization",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Patient",
    "Procedure",
    "Provenance",
    "QuestionnaireResponse",
    "ServiceRequest",
    "Task",
)
SCOPES_SUPPORTED = (
    "system/*.read",
    "system/*.write",
    "system/*.cruds",
    *(f"system/{t}.{p}" for t in ADVERTISED_TYPES for p in ("read", "write", "cruds")),
)


def _search_params() -> list[Json]:
    params = [{"name": n, "type": "token"} for n in sorted(TOKEN_PARAMS)]
    params += [{"name": n, "type": "reference"} for n in sorted(REFERENCE_PARAMS)]
    params += [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
    return params


def _drift_profile(drift: Drift, rtype: str, base: str) -> Json | None:
    """A contained StructureDefinition constraining ``rtype`` the way the drift does."""
    elements = profile_elements(drift, rtype)
    if not elements:
        return None
    return {
        "resourceType": "StructureDefinition",
        "id": f"drift-{rtype}",
        "url": f"{base}/StructureDefinition/drift-{rtype}",
        "name": f"Sandbox{rtype}",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": rtype,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def capability_statement(
    p: Personality, base: str, auth_enabled: bool, drift: Drift | None = None
) -> Json:
    """CapabilityStatement advertising what this personality really does; schema drift shows as
    a contained profile on the drifted resource types."""
    resources = []
    contained: list[Json] = []
    for rtype in ADVERTISED_TYPES:
        writable = not p.read_only and (p.writable_types is None or rtype in p.writable_types)
        codes = ["read", "search-type"]
        codes += ["vread"] if p.vread_allowed else []
        codes += ["history-instance"] if p.history_allowed else []
        codes += ["create"] if writable else []
        codes += ["update"] if writable and p.update_allowed else []
        codes += ["patch"] if writable and p.patch_allowed else []
        codes += ["delete"] if writable and p.delete_allowed else []
        versioning = "no-version"
        if p.etag:
            versioning = "versioned-update" if p.update_allowed else "versioned"
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": c} for c in codes],
                "versioning": versioning,
                "readHistory": p.vread_allowed,
                "updateCreate": False,
                "conditionalCreate": writable and p.honor_if_none_exist,
                "conditionalUpdate": writable and p.update_allowed and p.conditional_update,
                "conditionalDelete": "not-supported",
                "searchParam": _search_params(),
            }
        )
        if drift and (profile := _drift_profile(drift, rtype, base)):
            contained.append(profile)
            resources[-1]["profile"] = f"#{profile['id']}"
    rest: Json = {"mode": "server", "resource": resources}
    if p.batch_allowed:
        rest["interaction"] = [{"code": "batch"}, {"code": "transaction"}]
    if auth_enabled:
        rest["security"] = {
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                }
            ],
        }
    statement: Json = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "software": {"name": f"writeback sandbox EHR ({p.name})"},
        "implementation": {"description": f"Sandbox tenant, personality {p.name}", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [rest],
    }
    if contained:
        statement["contained"] = contained
    if p.patch_allowed:
        statement["patchFormat"] = ["application/json-patch+json"]
    return statement


def smart_configuration(base: str) -> Json:
    return {
        "token_endpoint": f"{base}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
