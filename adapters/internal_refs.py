"""Internal references in commands: ``Patient/internal:123`` names *our* patient 123, which each
tenant knows under its own id. The crosswalk step replaces them with the tenant's references
before the write is mapped; references without the ``internal:`` prefix are the tenant's own ids
and pass through unchanged (commands that already carry tenant ids keep working).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CROSSWALK_TYPES = frozenset({"Patient", "Encounter", "Practitioner", "Organization"})
#: FHIR's id syntax, for our internal ids and the tenant's alike.
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_INTERNAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/internal:(?P<id>[A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class InternalRef:
    path: str  # where in the resource, e.g. "subject" or "performer[0]"
    resource_type: str
    internal_id: str


def internal_refs(resource: Any, path: str = "") -> Iterator[InternalRef]:
    """Every ``{"reference": "Type/internal:id"}`` in the resource, with its field path."""
    if isinstance(resource, dict):
        reference = resource.get("reference")
        if isinstance(reference, str) and (match := _INTERNAL.match(reference)):
            yield InternalRef(path or "reference", match["type"], match["id"])
        for key, value in resource.items():
            yield from internal_refs(value, f"{path}.{key}" if path else key)
    elif isinstance(resource, list):
        for index, item in enumerate(resource):
            yield from internal_refs(item, f"{path}[{index}]")


def has_internal_refs(resource: dict[str, Any]) -> bool:
    return next(internal_refs(resource), None) is not None


def with_tenant_refs(resource: Any, tenant_ids: dict[tuple[str, str], str]) -> Any:
    """A copy of ``resource`` whose internal references point at the tenant's ids."""
    if isinstance(resource, dict):
        out = {key: with_tenant_refs(value, tenant_ids) for key, value in resource.items()}
        reference = resource.get("reference")
        if isinstance(reference, str) and (match := _INTERNAL.match(reference)):
            out["reference"] = f"{match['type']}/{tenant_ids[(match['type'], match['id'])]}"
        return out
    if isinstance(resource, list):
        return [with_tenant_refs(item, tenant_ids) for item in resource]
    return resource
