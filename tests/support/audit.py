"""Independent audit: counts resources straight from the sandbox's SQLite file, not through the
product or the sandbox's HTTP API (whose search a personality may delay or filter)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM


def resources_for_command(db: Path, tenant: str, command_identifier: str) -> int:
    """Current, non-deleted resources carrying ``command_identifier`` (see sandbox/store.py)."""
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(DISTINCT id) FROM resource_tokens "
            "WHERE tenant = ? AND param = 'identifier' AND system = ? AND value = ?",
            (tenant, COMMAND_IDENTIFIER_SYSTEM, command_identifier),
        ).fetchone()
    return int(count)


def resources_in_tenant(db: Path, tenant: str) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(DISTINCT id) FROM resource_versions WHERE tenant = ?", (tenant,)
        ).fetchone()
    return int(count)


def resources_for_patient(db: Path, tenant: str, patient: str) -> int:
    """Current resources whose subject is ``patient`` (e.g. 'Patient/x'), whatever identifiers the
    EHR kept."""
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(DISTINCT id) FROM resource_tokens "
            "WHERE tenant = ? AND param = 'patient' AND value = ?",
            (tenant, patient),
        ).fetchone()
    return int(count)


def current_resources_for_command(
    db: Path, tenant: str, command_identifier: str
) -> list[dict[str, Any]]:
    """The current version of every non-deleted resource carrying ``command_identifier``."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT v.body FROM resource_tokens t "
            "JOIN resource_current c ON c.tenant = t.tenant AND c.type = t.type AND c.id = t.id "
            "JOIN resource_versions v ON v.tenant = c.tenant AND v.type = c.type AND v.id = c.id "
            "AND v.version = c.version "
            "WHERE t.tenant = ? AND t.param IN ('identifier', '_tag') "
            "AND t.system = ? AND t.value = ? "
            "AND c.deleted = 0 GROUP BY c.type, c.id",
            (tenant, COMMAND_IDENTIFIER_SYSTEM, command_identifier),
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


# -- the whole chart of a tenant, for the chaos run's audit -------------------------------------

#: Statuses that take a resource out of the chart without deleting it (entered-in-error, a revoked
#: ServiceRequest, a cancelled Task). Kept here, not taken from the product: the audit is its own.
WITHDRAWN_STATUSES = frozenset({"entered-in-error", "revoked", "cancelled"})


def is_live(body: dict[str, Any]) -> bool:
    """In the chart: not withdrawn by status, (Goal) lifecycleStatus nor (Condition,
    AllergyIntolerance) verificationStatus."""
    if (
        body.get("status") in WITHDRAWN_STATUSES
        or body.get("lifecycleStatus") in WITHDRAWN_STATUSES
    ):
        return False
    verification = body.get("verificationStatus")
    codings = verification.get("coding", []) if isinstance(verification, dict) else []
    return not any(
        isinstance(c, dict) and c.get("code") == "entered-in-error" for c in codings or []
    )


def _instant(value: Any, precise: bool = False) -> int | float | str | None:
    """A FHIR dateTime as epoch seconds (so '…+00:00' and '…Z' compare equal): whole seconds, or
    with their fraction when ``precise``."""
    if not isinstance(value, str):
        return None
    try:
        seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return value
    return seconds if precise else int(seconds)


def _codes(concept: Any) -> list[str]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return sorted(
        f"{c.get('system', '')}|{c.get('code', '')}" for c in codings if isinstance(c, dict)
    )


def value_of(resource: dict[str, Any]) -> Any:
    """An Observation's (or component's) value: a quantity's number, else the value[x] itself."""
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    return next((v for k, v in sorted(resource.items()) if k.startswith("value")), None)


def clinical_key(resource: dict[str, Any]) -> str | None:
    """The same clinical fact for the same patient, however the EHR stored it (identifier kept or
    not, codings' displays, time zone notation): an Observation's patient, codes, effective time
    and value(s). None for other types (they are audited by command identifier only)."""
    if resource.get("resourceType") != "Observation":
        return None
    effective = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get(
        "start"
    )
    components = sorted(
        json.dumps([_codes(c.get("code")), value_of(c)], default=str)
        for c in resource.get("component", [])
        if isinstance(c, dict)
    )
    key = [
        (resource.get("subject") or {}).get("reference"),
        _codes(resource.get("code")),
        _instant(effective),
        value_of(resource),
        components,
    ]
    return json.dumps(key, sort_keys=True, default=str)


@dataclass
class Chart:
    """Every current, non-deleted resource of one tenant, read from the file in one pass."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """'Type/id' -> the current version's body."""
    by_command: dict[str, list[str]] = field(default_factory=dict)
    """Command identifier (identifier or meta.tag) -> 'Type/id' of the resources carrying it."""
    by_content: dict[str, list[str]] = field(default_factory=dict)
    """clinical_key -> 'Type/id' of the resources with that content."""
    searchable_after: dict[str, float | None] = field(default_factory=dict)
    """'Type/id' -> seconds between storing its current version and search showing it (None:
    held back from search)."""

    def live(self, references: set[str]) -> list[str]:
        return sorted(r for r in references if is_live(self.bodies[r]))

    def copies(self, command_identifier: str, resource: dict[str, Any] | None) -> list[str]:
        """Live resources for one command: carrying its identifier, or (where the EHR dropped
        it) holding the same clinical content for the same patient."""
        found = set(self.by_command.get(command_identifier, []))
        key = clinical_key(resource) if resource is not None else None
        if key is not None:
            found |= set(self.by_content.get(key, []))
        return self.live(found)


def load_chart(db: Path, tenant: str) -> Chart:
    chart = Chart()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT c.type, c.id, v.body, c.indexed_at FROM resource_current c "
            "JOIN resource_versions v "
            "ON v.tenant = c.tenant AND v.type = c.type AND v.id = c.id AND v.version = c.version "
            "WHERE c.tenant = ? AND c.deleted = 0",
            (tenant,),
        ).fetchall()
    for rtype, rid, raw, indexed_at in rows:
        reference, body = f"{rtype}/{rid}", json.loads(raw)
        chart.bodies[reference] = body
        stored = _instant((body.get("meta") or {}).get("lastUpdated"), precise=True)
        chart.searchable_after[reference] = (
            None if indexed_at is None or not isinstance(stored, float) else indexed_at - stored
        )
        marks = body.get("identifier", []) + [
            {"system": t.get("system"), "value": t.get("code")}
            for t in (body.get("meta") or {}).get("tag", [])
        ]
        for mark in marks:
            if mark.get("system") == COMMAND_IDENTIFIER_SYSTEM and mark.get("value"):
                chart.by_command.setdefault(str(mark["value"]), []).append(reference)
        if (key := clinical_key(body)) is not None:
            chart.by_content.setdefault(key, []).append(reference)
    return chart


def versions(db: Path, tenant: str, reference: str) -> list[dict[str, Any]]:
    """Every stored version of one resource, oldest first (deletions as ``{}``)."""
    rtype, rid = reference.split("/", 1)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT deleted, body FROM resource_versions WHERE tenant = ? AND type = ? AND id = ? "
            "ORDER BY version",
            (tenant, rtype, rid),
        ).fetchall()
    return [{} if deleted else json.loads(body) for deleted, body in rows]


def live_resources_for_command(db: Path, tenant: str, command_identifier: str) -> int:
    """Current resources carrying ``command_identifier`` that are not withdrawn (entered in
    error, revoked, cancelled): what a clinician sees in the chart."""
    return sum(
        1 for body in current_resources_for_command(db, tenant, command_identifier) if is_live(body)
    )
