"""What the chaos run writes, where, and what the EHR does meanwhile: the tenants (one per vendor
personality, plus a SMART one), each tenant's seeded random faults, the tenants file the workers
read, and the plan of commands (creates, updates with If-Match, referral sagas)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sandbox.faults import TRANSIENT_MIX
from workers import samples
from workflows.contract import Interaction, WriteCommand
from workflows.saga_contract import SagaCommand

#: The HTTP timeout the runner gives every tenant: faults that answer later than this (commit_late,
#: commit_then_hang) are ambiguous outcomes for the product.
TIMEOUT_SECONDS = 2.0
SMART_TENANT, SMART_CLIENT, TOKEN_TTL = "chaos-smart", "chaos-client", 3
SAGA_TYPES = ("ServiceRequest", "Task", "Communication")


@dataclass(frozen=True)
class ChaosTenant:
    id: str
    personality: str
    vendor: str
    conditional_create: bool = False
    if_match: bool = False
    updates: bool = False
    """A share of its writes are updates (If-Match where the tenant has it) of charted resources."""
    sagas: bool = False
    """A share of its writes are referral sagas (ServiceRequest, Task, Communication)."""
    index_lag: bool = False
    """Search shows new versions only ``--index-lag`` seconds after they are stored (Epic and
    Oracle Health index asynchronously). The tenant file says nothing about it: no hand-tuned
    ``search_lag_seconds``; the product must cope with what the EHR does."""
    smart: bool = False
    vendor_api: str | None = None
    """Proprietary write API (athenaOne, Veradigm Unity): TOML fields after its base_url."""
    max_concurrent: int | None = None
    crowded: bool = False
    """Some of its patients have more than 200 Observations in the chart before the run, so that
    deduplication by content (these vendors keep no identifier of ours) must page."""

    @property
    def writable(self) -> dict[str, list[str]]:
        if self.vendor_api or not (self.updates or self.sagas):
            return {"Observation": ["create"]}
        types = ["Observation", *(SAGA_TYPES if self.sagas else ())]
        return {rtype: ["create", "update"] for rtype in types}


TENANTS: tuple[ChaosTenant, ...] = (
    ChaosTenant(
        "chaos-r4", "r4", "generic_r4", conditional_create=True, if_match=True, updates=True,
        sagas=True,
    ),
    ChaosTenant("chaos-epic", "epic", "epic", index_lag=True),
    ChaosTenant(
        "chaos-cerner", "cerner", "cerner", if_match=True, updates=True, sagas=True,
        index_lag=True,
    ),
    ChaosTenant(
        SMART_TENANT, "r4", "generic_r4", conditional_create=True, if_match=True, updates=True,
        smart=True,
    ),
    ChaosTenant(
        "chaos-athena", "athena", "athena", crowded=True, max_concurrent=25,
        vendor_api='practice_id = "195900", department_id = "1"',
    ),
    ChaosTenant(
        "chaos-veradigm", "veradigm", "veradigm", crowded=True,
        vendor_api='app_name = "writeback", app_user = "wb", username = "wb"',
    ),
)  # fmt: skip
_API_ROOT = {"athena": "athena", "veradigm": "unity"}


def pick_tenants(names: str | None) -> tuple[ChaosTenant, ...]:
    """``--tenants chaos-epic,chaos-cerner`` (or 'epic,cerner'): a subset, in the table's order."""
    if not names:
        return TENANTS
    wanted = {n.strip().removeprefix("chaos-") for n in names.split(",") if n.strip()}
    chosen = tuple(t for t in TENANTS if t.id.removeprefix("chaos-") in wanted)
    unknown = wanted - {t.id.removeprefix("chaos-") for t in chosen}
    if unknown:
        raise ValueError(
            f"unknown chaos tenants {sorted(unknown)}; known: {[t.id for t in TENANTS]}"
        )
    return chosen


def tenants_toml(
    tenants: tuple[ChaosTenant, ...],
    sandbox_url: str,
    keys_dir: Path,
    late_commit_seconds: float | None = None,
) -> str:
    blocks = []
    for t in tenants:
        writable = ", ".join(
            f"{rtype} = {json.dumps(interactions)}" for rtype, interactions in t.writable.items()
        )
        block = (
            f'[[tenant]]\nid = "{t.id}"\nvendor = "{t.vendor}"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{t.id}"\ntimeout_seconds = {TIMEOUT_SECONDS}\n'
            "allow_insecure_http = true\n"
            "breaker = { failures = 8, cooldown_seconds = 2 }\n"
            'allowed_callers = ["*"]\n'
            f"capabilities = {{ conditional_create = {str(t.conditional_create).lower()}, "
            f"if_match = {str(t.if_match).lower()}, writable = {{ {writable} }} }}\n"
        )
        if late_commit_seconds is not None:
            block += f"ambiguity = {{ late_commit_seconds = {late_commit_seconds} }}\n"
        if t.vendor_api:
            root = f"{sandbox_url}/{_API_ROOT[t.personality]}/{t.id}"
            block += f'vendor_api = {{ base_url = "{root}", {t.vendor_api} }}\n'
        if t.max_concurrent:
            block += f"max_concurrent_requests = {t.max_concurrent}\n"
        if t.smart:
            block += (
                f'auth = {{ kind = "smart_backend", client_id = "{SMART_CLIENT}", '
                f'private_key_file = "{keys_dir / SMART_CLIENT}.pem", '
                f'key_id = "{SMART_CLIENT}-1" }}\n'
            )
        blocks.append(block)
    return "\n".join(blocks)


def fault_mix(tenant: ChaosTenant, late: float, lag: float) -> list[dict[str, Any]]:
    """The kinds the tenant's seeded random generator draws from. ``late`` (a late commit) is
    longer than the tenant's timeout; ``lag`` hides a write from search for that long."""
    kinds: list[dict[str, Any]] = [
        *(dict(kind) for kind in TRANSIENT_MIX),
        {"kind": "commit_late", "seconds": late, "method": "POST"},
        {
            "kind": "combo",
            "method": "POST",
            "faults": [{"kind": "commit_then_drop"}, {"kind": "delayed_indexing", "seconds": lag}],
        },
        {
            "kind": "combo",
            "method": "POST",
            "faults": [
                {"kind": "commit_late", "seconds": late},
                {"kind": "delayed_indexing", "seconds": lag},
            ],
        },
    ]
    if tenant.updates or tenant.sagas:  # updates and saga withdrawals are PUTs
        kinds += [
            {"kind": "commit_late", "seconds": late, "method": "PUT"},
            {"kind": "commit_then_drop", "method": "PUT"},
        ]
    return kinds


Kind = Literal["create", "update", "saga"]


@dataclass(frozen=True)
class Slot:
    """One planned command before the chart is seeded: which tenant, which kind."""

    n: int
    tenant: ChaosTenant
    kind: Kind
    valid: bool = True
    crowded: int | None = None
    """Index of the crowded patient this create writes for (crowded tenants only)."""


@dataclass(frozen=True)
class Target:
    """An Observation in the chart before the run, that an update will change."""

    reference: str
    body: dict[str, Any]
    """Its version 1 (what the user saw)."""
    clinician_note: str | None = None
    """Set when a clinician added this note (version 2) before our update: it must survive."""


@dataclass
class Planned:
    slot: Slot
    command: WriteCommand | SagaCommand
    target: Target | None = None
    value: float | None = None
    """An update's new value: the audit counts the versions carrying it."""

    @property
    def workflow_id(self) -> str:
        return self.command.workflow_id


@dataclass
class Seeded:
    targets: dict[int, Target] = field(default_factory=dict)
    """Slot number -> what its update changes."""
    crowds: dict[str, list[str]] = field(default_factory=dict)
    """Tenant -> its crowded patients' ids."""
    resources: int = 0


def layout(
    writes: int,
    tenants: tuple[ChaosTenant, ...],
    rng: random.Random,
    *,
    invalid_share: float,
    update_share: float,
    saga_share: float,
    crowded_patients: int,
) -> list[Slot]:
    slots = []
    for n in range(writes):
        tenant = tenants[n % len(tenants)]
        draw = rng.random()
        kind: Kind = "create"
        if tenant.updates and draw < update_share:
            kind = "update"
        elif tenant.sagas and update_share <= draw < update_share + saga_share:
            kind = "saga"
        valid = kind != "create" or rng.random() >= invalid_share
        crowd = None
        if kind == "create" and tenant.crowded and crowded_patients and rng.random() < 0.5:
            crowd = rng.randrange(crowded_patients)
        slots.append(Slot(n, tenant, kind, valid, crowd))
    return slots


def commands(slots: list[Slot], seeded: Seeded, run: str) -> list[Planned]:
    """Each slot's command; readings are taken one second apart, so no two commands hold the same
    clinical content (the audit's duplicate key), and all of them before the run starts: a
    reading in the future is rightly refused (adapters/clinical_semantics.py), and a run of
    10,000 writes spans more seconds than it takes to run."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1, seconds=len(slots))
    planned = []
    for slot in slots:
        key = f"chaos-{run}-{slot.n}"
        tenant = slot.tenant.id
        if slot.kind == "saga":
            saga = SagaCommand(
                tenant=tenant, idempotency_key=key, kind="referral", steps=samples.referral(key)
            )
            planned.append(Planned(slot, saga))
        elif slot.kind == "update":
            target = seeded.targets[slot.n]
            value = float(100 + slot.n % 100)
            desired = {k: v for k, v in target.body.items() if k != "meta"}
            desired["valueQuantity"] = {**desired["valueQuantity"], "value": value}
            desired["status"] = "amended"
            update = WriteCommand(
                tenant=tenant,
                idempotency_key=key,
                interaction=Interaction.UPDATE,
                resource=desired,
                target=target.reference,
                base_version="1",
            )
            planned.append(Planned(slot, update, target, value))
        else:
            patient = key if slot.crowded is None else seeded.crowds[tenant][slot.crowded]
            resource = samples.heart_rate(
                patient, 50 + slot.n % 100, base + timedelta(seconds=slot.n)
            )
            if not slot.valid:
                del resource["code"]
            create = WriteCommand(tenant=tenant, idempotency_key=key, resource=resource)
            planned.append(Planned(slot, create))
    return planned
