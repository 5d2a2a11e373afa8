"""Independent audit: counts resources straight from the sandbox's SQLite file, not through the
product or the sandbox's HTTP API (whose search a personality may delay or filter)."""

from __future__ import annotations

import json
import sqlite3
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


def live_resources_for_command(db: Path, tenant: str, command_identifier: str) -> int:
    """Current resources carrying ``command_identifier`` that are not withdrawn (entered in
    error, revoked, cancelled): what a clinician sees in the chart."""
    withdrawn = {"entered-in-error", "revoked", "cancelled"}
    return sum(
        1
        for resource in current_resources_for_command(db, tenant, command_identifier)
        if resource.get("status") not in withdrawn
        and "entered-in-error" not in json.dumps(resource.get("verificationStatus", ""))
    )
