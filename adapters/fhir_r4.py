"""The FHIR R4 write adapter: how a canonical resource becomes a create or an update for a tenant,
how the EHR side of idempotency works there, and how what the EHR stored is compared with what we
sent.

Epic, Oracle Health and generic R4 servers all take FHIR writes; what differs between them is
captured by the tenant's capabilities (conditional create, If-Match, identifiers kept or
dropped) and by the tenant's vendor adapter (adapters/vendor.py: create rules, adaptations).
athenahealth and Veradigm write through their proprietary APIs (adapters/athena.py,
adapters/veradigm.py): the create then carries the vendor call and the FHIR projection that
verification reads back.
"""

from __future__ import annotations

import copy
import re
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from adapters.code_maps import mapped_codes
from adapters.fingerprint import fingerprint as fingerprint  # re-exported: one import path
from adapters.ids import COMMAND_IDENTIFIER_SYSTEM as COMMAND_IDENTIFIER_SYSTEM  # re-exported
from adapters.problems import ResourceInvalid
from adapters.proprietary import VendorCall
from adapters.tenants import Tenant
from adapters.vendor import UnsupportedVendor as UnsupportedVendor  # re-exported

FHIR_JSON = "application/fhir+json"

#: Elements the server owns: never part of a content comparison or a merge.
SERVER_MANAGED = frozenset({"id", "meta", "text"})


class DedupStrategy(StrEnum):
    """How the EHR side of idempotency works for a tenant (the second layer after workflow ids)."""

    CONDITIONAL_CREATE = "conditional_create"  # If-None-Exist on the command identifier
    SEARCH_BEFORE_CREATE = "search_before_create"  # look for the identifier, create if absent
    FINGERPRINT = "fingerprint"  # the EHR drops identifiers: look for the same clinical content


#: R4 resource types without an ``identifier`` element: they carry the command identifier as a
#: ``meta.tag`` instead, and are found with the ``_tag`` search parameter.
TAGGED_TYPES = frozenset({"Provenance"})


def identifier_values(resource: dict[str, Any], system: str) -> list[str]:
    """Values ``resource`` carries under ``system``: in its identifiers, or (types without one,
    TAGGED_TYPES) as ``meta.tag`` codes."""

    def listed(value: object) -> list[dict[str, Any]]:  # an EHR's answer may hold anything
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []

    meta = resource.get("meta")
    marks = listed(resource.get("identifier")) + [
        {"system": tag.get("system"), "value": tag.get("code")}
        for tag in listed(meta.get("tag") if isinstance(meta, dict) else None)
    ]
    return [str(m["value"]) for m in marks if m.get("system") == system and m.get("value")]


#: How many resources one page of a fingerprint search asks for.
FINGERPRINT_PAGE_SIZE = 200
#: Search parameters a dedup search adds only to page less: a server that ignores one answers
#: with more to page through, which the fingerprint then filters, never with a wrong answer.
NARROWING_PARAMETERS = frozenset({"code"})
#: Characters that would change a token's meaning in a search value (search.html#escaping).
_TOKEN_SPECIALS = re.compile(r"[,|$\\]")


class CreateRequest(BaseModel):
    """A create, ready to send: the body carries the command identifier."""

    resource_type: str
    body: dict[str, Any]
    identifier_system: str
    identifier_value: str
    dedup: DedupStrategy
    fingerprint: str = Field(
        description="the content fingerprint when the request was prepared (a record: is_ours "
        "recomputes it, so a request in the history of an older version still finds its copy)"
    )
    patient: str | None = None
    vendor_call: VendorCall | None = Field(
        default=None, description="athenaOne / Unity: the proprietary call that makes the write"
    )
    expected: dict[str, Any] | None = Field(
        default=None, description="the FHIR the EHR will show, when it differs from the body"
    )

    @property
    def identifier_token(self) -> str:
        """``system|value`` search token, URL-encoded for a query string."""
        return quote(f"{self.identifier_system}|{self.identifier_value}", safe="")

    def search_query(self) -> str:
        """The search that finds this command's resource (before a create, or to locate it).

        By fingerprint: the patient's resources of this type, narrowed for an Observation to its
        codes (``code``, which US Core servers SHALL support with ``patient``); every page must be
        read. Not narrowed by ``date``: US Core makes patient+code+date only a SHOULD, and under
        ``Prefer: handling=strict`` a server without it would refuse the search. Notes are not
        narrowed by ``type`` for the same reason."""
        if self.dedup is DedupStrategy.FINGERPRINT:
            query = f"{self.resource_type}?patient={quote(self.patient or '', safe='/')}"
            if codes := self._narrowing_codes():
                query += f"&code={','.join(quote(code, safe='') for code in codes)}"
            return f"{query}&_count={FINGERPRINT_PAGE_SIZE}"
        return f"{self.resource_type}?{self._search_parameter}={self.identifier_token}"

    def _narrowing_codes(self) -> list[str]:
        """Our Observation's codes as search tokens (OR-ed), or none when one cannot be sent."""
        if self.resource_type != "Observation":
            return []
        concept = self._fingerprinted().get("code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        tokens = []
        for coding in codings if isinstance(codings, list) else []:
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                return []
            system, code = str(coding.get("system") or ""), coding["code"]
            if _TOKEN_SPECIALS.search(system + code):
                return []
            tokens.append(f"{system}|{code}" if system else code)
        return sorted(set(tokens))

    @property
    def _search_parameter(self) -> str:
        return "_tag" if self.resource_type in TAGGED_TYPES else "identifier"

    def _fingerprinted(self) -> dict[str, Any]:
        """What our copy looks like in the EHR's FHIR: the projection, or the body."""
        return self.expected if self.expected is not None else self.body

    def is_ours(self, stored: dict[str, Any]) -> bool:
        if self.dedup is DedupStrategy.FINGERPRINT:
            return fingerprint(stored) == fingerprint(self._fingerprinted())
        return self.identifier_value in identifier_values(stored, self.identifier_system)

    def comparable_body(self) -> dict[str, Any]:
        """What read-back must find: all we sent, less the identifier where the EHR drops it (or,
        through a proprietary API, the FHIR projection of what we sent)."""
        if self.expected is not None:
            return self.expected
        if self.dedup is DedupStrategy.FINGERPRINT:
            return {k: v for k, v in self.body.items() if k != "identifier"}
        return self.body

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.dedup is DedupStrategy.CONDITIONAL_CREATE:
            headers["If-None-Exist"] = f"{self._search_parameter}={self.identifier_token}"
        return headers


class UpdateRequest(BaseModel):
    """An update, ready to send: the whole resource as the user wants it."""

    resource_type: str
    target: str = Field(description="e.g. 'Observation/123'")
    body: dict[str, Any]


def fhir_query_params(tenant: Tenant) -> dict[str, str]:
    """Query parameters every FHIR call to this tenant must carry (athenaOne's ah-practice)."""
    return tenant.adapter().fhir_params(tenant)


def dedup_strategy(tenant: Tenant) -> DedupStrategy:
    if tenant.capabilities.drops_identifiers:
        return DedupStrategy.FINGERPRINT
    if tenant.capabilities.conditional_create:
        return DedupStrategy.CONDITIONAL_CREATE
    return DedupStrategy.SEARCH_BEFORE_CREATE


def prepare_create(
    tenant: Tenant,
    resource: dict[str, Any],
    identifier_value: str,
    identifier_system: str = COMMAND_IDENTIFIER_SYSTEM,
) -> CreateRequest:
    """The create for ``tenant``, its codes mapped by its code maps (adapters/code_maps.py);
    raises ResourceInvalid when a local code has no mapping or the vendor would refuse it, and
    UnsupportedVendor when it has no way to write it. A vendor that does not write FHIR plans the
    call to its own API from the body."""
    resource = mapped_codes(tenant.code_maps, resource)
    adapter = tenant.adapter()
    if problems := adapter.create_problems(resource):
        raise ResourceInvalid(problems)
    resource = adapter.adapted(resource)
    body = copy.deepcopy({k: v for k, v in resource.items() if k not in {"id", "meta"}})
    if body["resourceType"] in TAGGED_TYPES:
        body["meta"] = {"tag": [{"system": identifier_system, "code": identifier_value}]}
    else:
        identifiers = [
            ident
            for ident in body.get("identifier", [])
            if ident.get("system") != identifier_system
        ]
        identifiers.append({"system": identifier_system, "value": identifier_value})
        body["identifier"] = identifiers
    subject = (body.get("subject") or {}).get("reference")
    if not adapter.writes_fhir:
        call, expected = adapter.plan(tenant, body)
        return CreateRequest(
            resource_type=body["resourceType"],
            body=body,
            identifier_system=identifier_system,
            identifier_value=identifier_value,
            dedup=DedupStrategy.FINGERPRINT,  # no idempotency key, no identifier of ours kept
            fingerprint=fingerprint(expected),
            patient=subject if isinstance(subject, str) else None,
            vendor_call=call,
            expected=expected,
        )
    return CreateRequest(
        resource_type=body["resourceType"],
        body=body,
        identifier_system=identifier_system,
        identifier_value=identifier_value,
        dedup=dedup_strategy(tenant),
        fingerprint=fingerprint(body),
        patient=subject if isinstance(subject, str) else None,
    )


def prepare_update(tenant: Tenant, resource: dict[str, Any], target: str) -> UpdateRequest:
    """The update of ``target`` for ``tenant``, its codes mapped as a create's are."""
    if not tenant.adapter().writes_fhir:
        raise UnsupportedVendor(f"vendor {tenant.vendor} has no FHIR write path yet")
    resource = mapped_codes(tenant.code_maps, resource)
    body = copy.deepcopy({k: v for k, v in resource.items() if k != "meta"})
    body["id"] = target.split("/", 1)[1]
    return UpdateRequest(resource_type=body["resourceType"], target=target, body=body)


def differences(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Paths where ``stored`` lacks or changed what we ``sent`` (extra stored elements are fine).
    An element sent as JSON null must be absent from ``stored``: null is never a FHIR value, and
    an update's expectation (``with_removals``) says "removed" with it, as JSON Merge Patch does."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        found: list[str] = []
        for key, value in sent.items():
            if not path and key in SERVER_MANAGED:
                continue
            child = f"{path}.{key}" if path else key
            if value is None:
                if stored.get(key) is not None:
                    found.append(child)
            elif key not in stored:
                found.append(child)
            else:
                found += differences(value, stored[key], child)
        return found
    if isinstance(sent, list) and isinstance(stored, list):
        if len(sent) != len(stored):
            return [path]
        return [
            diff
            for index, (a, b) in enumerate(zip(sent, stored, strict=True))
            for diff in differences(a, b, f"{path}[{index}]")
        ]
    return [] if sent == stored else [path]


def with_removals(desired: Any, current: Any, top: bool = True) -> Any:
    """What an update of ``current`` to ``desired`` must leave: ``desired``, plus a JSON null for
    every element ``current`` holds that ``desired`` omits — at any depth, in objects and in lists
    of the same length (another length is a difference anyway); server-managed elements aside.

    ``differences(with_removals(desired, current), x)`` is empty only when ``x`` holds all of
    ``desired`` and none of what the update removes: the "already applied" check before an update
    and its read-back after. A create's read-back keeps comparing the body alone, so elements the
    server adds to a new resource stay fine."""
    if isinstance(desired, dict) and isinstance(current, dict):
        expected = {
            key: with_removals(value, current[key], top=False) if key in current else value
            for key, value in desired.items()
        }
        removed = set(current) - set(desired) - (SERVER_MANAGED if top else set())
        return expected | dict.fromkeys(sorted(removed))
    if isinstance(desired, list) and isinstance(current, list) and len(desired) == len(current):
        return [with_removals(a, b, top=False) for a, b in zip(desired, current, strict=True)]
    return desired
