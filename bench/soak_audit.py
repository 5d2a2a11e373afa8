"""The soak's audit: duplicates and lost writes, from the sandbox's SQLite file (not through the
product, nor the sandbox's search, which a personality may delay).

A write's copies are the live (not entered-in-error) Observations that carry its command
identifier (``identifier`` or ``meta.tag``: r4, Epic, Oracle Health keep it) or whose subject is
the write's own patient: every soak write is for a patient of its own, so on athenaOne and
Veradigm, whose proprietary APIs keep no identifier of ours, the patient is the content key (the
chaos run's audit matches patient, code, time and value; here the patient alone is unique)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from bench.soak_stats import SETTLED_STATES, Write

WITHDRAWN = frozenset({"entered-in-error", "cancelled"})


@dataclass
class Chart:
    by_command: dict[str, set[str]] = field(default_factory=dict)
    by_patient: dict[str, set[str]] = field(default_factory=dict)

    def copies(self, command_identifier: str, patient: str) -> set[str]:
        return self.by_command.get(command_identifier, set()) | self.by_patient.get(patient, set())


def load_chart(db: Path, tenant: str) -> Chart:
    chart = Chart()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT c.id, v.body FROM resource_current c JOIN resource_versions v "
            "ON v.tenant = c.tenant AND v.type = c.type AND v.id = c.id AND v.version = c.version "
            "WHERE c.tenant = ? AND c.type = 'Observation' AND c.deleted = 0",
            (tenant,),
        ).fetchall()
    for rid, raw in rows:
        body = json.loads(raw)
        if body.get("status") in WITHDRAWN:
            continue
        marks = body.get("identifier", []) + [
            {"system": t.get("system"), "value": t.get("code")}
            for t in (body.get("meta") or {}).get("tag", [])
        ]
        for mark in marks:
            if mark.get("system") == COMMAND_IDENTIFIER_SYSTEM and mark.get("value"):
                chart.by_command.setdefault(str(mark["value"]), set()).add(rid)
        subject = (body.get("subject") or {}).get("reference")
        if subject:
            chart.by_patient.setdefault(str(subject), set()).add(rid)
    return chart


@dataclass
class Verdicts:
    states: dict[str, Counter[str]] = field(default_factory=dict)
    """Personality -> final state -> writes."""
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Not settled (or never submitted), or verified with nothing in the chart."""
    unexplained: list[str] = field(default_factory=list)
    """Settled in a state that contradicts the chart (rejected while written, ended abnormally)."""


def audit(db: Path, writes: list[Write], key_of: dict[int, tuple[str, str]]) -> Verdicts:
    """``key_of``: write number -> (command identifier, patient reference)."""
    verdicts = Verdicts()
    charts = {tenant: load_chart(db, tenant) for tenant in {w.tenant for w in writes}}
    for w in writes:
        state = w.state or "unsettled"
        verdicts.states.setdefault(w.personality, Counter())[state] += 1
        identifier, patient = key_of[w.n]
        copies = charts[w.tenant].copies(identifier, patient)
        label = f"{w.workflow_id or w.n} ({w.tenant})"
        if len(copies) > 1:
            verdicts.duplicates.append(f"{label}: {len(copies)} copies {sorted(copies)}, {state}")
        if state not in SETTLED_STATES:
            verdicts.lost.append(f"{label}: {state}")
        elif state == "verified" and not copies:
            verdicts.lost.append(f"{label}: verified, nothing in the chart")
        elif state == "rejected" and copies:
            verdicts.unexplained.append(f"{label}: rejected, {len(copies)} in the chart")
    return verdicts
