"""A Provenance that says under whose authority a write ran (issue 8): the on-behalf-of user as
its agent, the command as its entity, the access policy that allowed it as its policy. Fills only
what the caller left out: a Provenance the caller wrote in full is sent as given."""

from __future__ import annotations

from typing import Any

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.policy import AuthorizationRecord

POLICY_URI = "urn:writeback:policy:{rule}@{version}"
#: What Provenance.agent.who may reference (FHIR R4).
_AGENT_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Device", "Organization"}
)
_AUTHOR = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
        }
    ]
}


def with_authority(
    provenance: dict[str, Any], authorization: AuthorizationRecord | None, command: str
) -> dict[str, Any]:
    """``provenance`` completed from the authorization of the write it is about (``command``:
    that write's command identifier value)."""
    completed = dict(provenance)
    user = authorization.on_behalf_of if authorization else None
    if not completed.get("agent") and user and user.split("/", 1)[0] in _AGENT_TYPES:
        completed["agent"] = [{"type": _AUTHOR, "who": {"reference": user}}]
    if not completed.get("entity"):
        what = {"identifier": {"system": COMMAND_IDENTIFIER_SYSTEM, "value": command}}
        completed["entity"] = [{"role": "source", "what": what}]
    if not completed.get("policy") and authorization:
        rule, version = authorization.rule, authorization.policy_version
        completed["policy"] = [POLICY_URI.format(rule=rule, version=version)]
    return completed
