"""Tenant files pointing at a test sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.families import RESOURCE_TYPE
from adapters.vendor import adapter_for


@dataclass(frozen=True)
class TenantSpec:
    id: str
    vendor: str
    personality: str
    conditional_create: bool
    if_match: bool
    timeout: float = 10.0
    writable: str = '["create", "update"]'
    drops_identifiers: bool = False
    rate_limit: float | None = None
    patch: bool = False
    #: SMART Backend Services: (client id, algorithm, scope style); keys come from smart_keys
    smart: tuple[str, str, str] | None = None
    #: re-read each verified write this many hours later (0 = off)
    reconcile_hours: float = 0.0
    #: proprietary write API: TOML inline-table fields after base_url ("{sandbox}" is the URL)
    vendor_api: str | None = None
    max_concurrent: int | None = None
    #: extra TOML closing the tenant's table (e.g. its ``[tenant.policy]``)
    extra: str = ""


POLICY = """
[tenant.policy]
version = "2026-11-test"

[[tenant.policy.rule]]
name = "batch-never-updates"
effect = "deny"
callers = ["batch-import"]
interactions = ["update"]

[[tenant.policy.rule]]
name = "nursing-vitals"
callers = ["nursing-app"]
resource_types = ["Observation"]
roles = ["nurse", "physician"]
purposes = ["TREAT"]
require_on_behalf_of = true

[[tenant.policy.rule]]
name = "batch-creates"
callers = ["batch-import"]
interactions = ["create"]

[[tenant.policy.rule]]
name = "operators-create"  # the CLI and the demo
callers = ["cli"]
interactions = ["create"]
"""

QUICK_QUIET = "ambiguity = { late_commit_seconds = 2 }\n"
SANDBOX_QUIET = "ambiguity = { late_commit_seconds = 10 }\n"

TEST_TENANTS = [
    # the sandbox commits what it received within its own latency: a short late-commit window
    TenantSpec("demo-r4", "generic_r4", "r4", True, True, extra=SANDBOX_QUIET),
    TenantSpec(
        "demo-epic", "epic", "epic", False, False, writable='["create"]', extra=SANDBOX_QUIET
    ),
    TenantSpec("demo-cerner", "cerner", "cerner", False, True, extra=SANDBOX_QUIET),
    # short HTTP timeouts, so that commit-then-hang faults become ambiguous outcomes quickly
    TenantSpec("fast-r4", "generic_r4", "r4", True, True, timeout=1.0),
    TenantSpec("fast-epic", "epic", "epic", False, False, timeout=1.0, writable='["create"]'),
    TenantSpec("fast-cerner", "cerner", "cerner", False, True, timeout=1.0),
    # an EHR that strips our command identifier: deduplication by content fingerprint
    TenantSpec("drops-ids", "generic_r4", "r4", False, True, timeout=1.0, drops_identifiers=True),
    # (the sandbox commits what it received within its own latency: a short late-commit window)
    TenantSpec("limited-r4", "generic_r4", "r4", True, True, rate_limit=5.0, extra=SANDBOX_QUIET),
    TenantSpec("patch-r4", "generic_r4", "r4", True, True, patch=True),
    # PATCH without If-Match: JSON Patch `test` operations are the only guard against a change
    # between our read and our write (tests/workflows/test_update_guards.py)
    TenantSpec("patch-only-r4", "generic_r4", "r4", True, False, patch=True),
    TenantSpec("outage-r4", "generic_r4", "r4", True, True, rate_limit=20.0),
    TenantSpec("reconcile-r4", "generic_r4", "r4", True, True, reconcile_hours=24.0),
    # reconciliation withdraws extra copies without asking (tests/security/test_forged_findings.py)
    TenantSpec(
        "remedy-r4",
        "generic_r4",
        "r4",
        True,
        True,
        extra="reconcile = { auto_remediate_duplicates = true }\n",
    ),
    # reconciliation sweeps: one tenant with planted differences, one left clean
    TenantSpec("sweep-r4", "generic_r4", "r4", True, True),
    TenantSpec("sweep-clean", "generic_r4", "r4", True, True),
    # sweeps at scale (tests/integration/test_sweep_at_scale.py): a lookback of 3.6 s, so only the
    # watermark reaches back; pages of 2; duplicates withdrawn without asking
    TenantSpec(
        "sweep-mark-r4",
        "generic_r4",
        "r4",
        True,
        True,
        extra="reconcile = { sweep_lookback_hours = 0.001 }\n",
    ),
    TenantSpec(
        "sweep-pages-r4",
        "generic_r4",
        "r4",
        True,
        True,
        extra="reconcile = { sweep_page_size = 2 }\n",
    ),
    TenantSpec(
        "sweep-remedy-r4",
        "generic_r4",
        "r4",
        True,
        True,
        extra="reconcile = { auto_remediate_duplicates = true }\n",
    ),
    # SMART Backend Services: the sandbox verifies our signed assertions and enforces scopes
    TenantSpec("smart-rs", "generic_r4", "r4", True, True, smart=("wb-rs", "RS384", "v2")),
    TenantSpec("smart-es", "generic_r4", "r4", True, True, smart=("wb-es", "ES384", "v1")),
    TenantSpec("smart-narrow", "generic_r4", "r4", True, True, smart=("wb-nc", "RS384", "v2")),
    # proprietary write APIs (athenaOne chart API, Veradigm Unity); FHIR only to read back
    TenantSpec(
        "demo-athena",
        "athena",
        "athena",
        False,
        False,
        writable='["create"]',
        vendor_api='practice_id = "195900", department_id = "1"',
        max_concurrent=25,
    ),
    TenantSpec(
        "demo-veradigm",
        "veradigm",
        "veradigm",
        False,
        False,
        writable='["create"]',
        vendor_api='app_name = "writeback", app_user = "wb", username = "wb"',
    ),
    # an athena practice with a low concurrency limit: the adapter keeps under it
    TenantSpec(
        "busy-athena",
        "athena",
        "athena",
        False,
        False,
        writable='["create"]',
        vendor_api='practice_id = "195901", department_id = "1"',
        max_concurrent=3,
    ),
    # a real access policy (tests/workflows/test_security.py)
    # every clinical family its vendor writes: tests/workflows/test_family_sagas.py and others
    TenantSpec("families-r4", "generic_r4", "r4", True, True, extra=SANDBOX_QUIET),
    TenantSpec("families-cerner", "cerner", "cerner", False, True, extra=SANDBOX_QUIET),
    TenantSpec("families-patch-r4", "generic_r4", "r4", True, True, patch=True),
    TenantSpec("policy-r4", "generic_r4", "r4", True, True, extra=POLICY),
    # one EHR request at a time per worker: attempts queue for the slot (activities/deadline.py)
    TenantSpec("one-slot-r4", "generic_r4", "r4", True, True, max_concurrent=1),
    # exactly once on real time (tests/integration/test_exactly_once.py): short request timeouts
    # and a short late-commit window, so quiet periods last seconds (2 + 5 s margin), not minutes
    TenantSpec(
        "lag-epic",
        "epic",
        "epic",
        False,
        False,
        timeout=1.0,
        writable='["create"]',
        extra=QUICK_QUIET,
    ),
    TenantSpec("lag-cerner", "cerner", "cerner", False, True, timeout=1.0, extra=QUICK_QUIET),
    TenantSpec("lag-r4", "generic_r4", "r4", True, True, timeout=1.0, extra=QUICK_QUIET),
    TenantSpec(
        "lag-ids",
        "generic_r4",
        "r4",
        False,
        True,
        timeout=1.0,
        drops_identifiers=True,
        extra=QUICK_QUIET,
    ),
]

#: Where each proprietary personality serves its vendor API in the sandbox.
_VENDOR_API_ROOT = {"athena": "athena", "veradigm": "unity"}


def _writable_types(tenant: TenantSpec) -> list[str]:
    """Each test tenant accepts the resource types of every family its vendor writes
    (adapters' ``families``, docs/vendors.md), with the interactions its spec allows."""
    families = adapter_for(tenant.vendor).families
    return sorted({RESOURCE_TYPE[family] for family in families})


def personality_args() -> list[str]:
    args: list[str] = []
    for tenant in TEST_TENANTS:
        args += ["--personality", f"{tenant.id}={tenant.personality}"]
    return args


def _toml(value: bool) -> str:
    return str(value).lower()


def write_tenants_file(path: Path, sandbox_url: str, keys_dir: Path | None = None) -> Path:
    """The test tenants; SMART tenants read their private key from ``keys_dir/{client}.pem``."""
    blocks = []
    for t in TEST_TENANTS:
        block = (
            "[[tenant]]\n"
            f'id = "{t.id}"\n'
            f'vendor = "{t.vendor}"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{t.id}"\n'
            "allow_insecure_http = true\n"  # the sandbox is http
            f"timeout_seconds = {t.timeout}\n"
            f"capabilities = {{ conditional_create = {_toml(t.conditional_create)}, "
            f"if_match = {_toml(t.if_match)}, drops_identifiers = {_toml(t.drops_identifiers)}, "
            f"patch = {_toml(t.patch)}, writable = {{ "
            + ", ".join(f"{rtype} = {t.writable}" for rtype in _writable_types(t))
            + " } }\n"
        )
        if t.vendor_api:
            root = f"{sandbox_url}/{_VENDOR_API_ROOT[t.personality]}/{t.id}"
            block += f'vendor_api = {{ base_url = "{root}", {t.vendor_api} }}\n'
        if t.max_concurrent:
            block += f"max_concurrent_requests = {t.max_concurrent}\n"
        if t.smart and keys_dir is not None:
            client_id, algorithm, style = t.smart
            block += (
                f'auth = {{ kind = "smart_backend", client_id = "{client_id}", '
                f'private_key_file = "{keys_dir / client_id}.pem", algorithm = "{algorithm}", '
                f'key_id = "{client_id}-1", scope_style = "{style}" }}\n'
            )
        if "[tenant.policy]" not in t.extra:
            block += 'allowed_callers = ["*"]  # every caller with a registered key\n'
        if t.rate_limit:
            block += f"rate_limit_per_second = {t.rate_limit}\n"
        if t.reconcile_hours:
            block += f"reconcile = {{ after_hours = {t.reconcile_hours} }}\n"
        blocks.append(block + t.extra)
    path.write_text("\n".join(blocks))
    return path
