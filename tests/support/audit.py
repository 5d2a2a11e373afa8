"""Independent audit: counts resources straight from the sandbox's SQLite file, not through the
product or the sandbox's HTTP API (whose search a personality may delay or filter)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
