"""Tenant files pointing at a test sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    breaker_failures: int = 5
    patch: bool = False
    #: SMART Backend Services: (client id, algorithm, scope style); keys come from smart_keys
    smart: tuple[str, str, str] | None = None
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

TEST_TENANTS = [
    TenantSpec("demo-r4", "generic_r4", "r4", True, True),
    TenantSpec("demo-epic", "epic", "epic", False, False, writable='["create"]'),
    TenantSpec("demo-cerner", "cerner", "cerner", False, True),
    # short HTTP timeouts, so that commit-then-hang faults become ambiguous outcomes quickly
    # (its breaker stays closed: workflow tests skip time, the breaker's cooldown is real time)
    TenantSpec("fast-r4", "generic_r4", "r4", True, True, timeout=1.0, breaker_failures=100),
    TenantSpec("fast-epic", "epic", "epic", False, False, timeout=1.0, writable='["create"]'),
    TenantSpec("fast-cerner", "cerner", "cerner", False, True, timeout=1.0),
    # an EHR that strips our command identifier: deduplication by content fingerprint
    TenantSpec("drops-ids", "generic_r4", "r4", False, True, timeout=1.0, drops_identifiers=True),
    TenantSpec("limited-r4", "generic_r4", "r4", True, True, rate_limit=5.0),
    TenantSpec("patch-r4", "generic_r4", "r4", True, True, patch=True),
    TenantSpec("outage-r4", "generic_r4", "r4", True, True, rate_limit=20.0),
    # SMART Backend Services: the sandbox verifies our signed assertions and enforces scopes
    TenantSpec("smart-rs", "generic_r4", "r4", True, True, smart=("wb-rs", "RS384", "v2")),
    TenantSpec("smart-es", "generic_r4", "r4", True, True, smart=("wb-es", "ES384", "v1")),
    TenantSpec("smart-narrow", "generic_r4", "r4", True, True, smart=("wb-nc", "RS384", "v2")),
    # a real access policy (tests/workflows/test_security.py)
    TenantSpec("policy-r4", "generic_r4", "r4", True, True, extra=POLICY),
]


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
            f"timeout_seconds = {t.timeout}\n"
            f"capabilities = {{ conditional_create = {_toml(t.conditional_create)}, "
            f"if_match = {_toml(t.if_match)}, drops_identifiers = {_toml(t.drops_identifiers)}, "
            f"patch = {_toml(t.patch)}, writable = {{ Observation = {t.writable} }} }}\n"
        )
        if t.smart and keys_dir is not None:
            client_id, algorithm, style = t.smart
            block += (
                f'auth = {{ kind = "smart_backend", client_id = "{client_id}", '
                f'private_key_file = "{keys_dir / client_id}.pem", algorithm = "{algorithm}", '
                f'key_id = "{client_id}-1", scope_style = "{style}" }}\n'
            )
        block += f"breaker = {{ failures = {t.breaker_failures} }}\n"
        if t.rate_limit:
            block += f"rate_limit_per_second = {t.rate_limit}\n"
        blocks.append(block + t.extra)
    path.write_text("\n".join(blocks))
    return path
