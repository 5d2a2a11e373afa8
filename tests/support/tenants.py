"""Tenant files pointing at a test sandbox."""

from __future__ import annotations

from pathlib import Path

#: (tenant id, vendor, sandbox personality, conditional create, if-match, timeout seconds)
TEST_TENANTS = [
    ("demo-r4", "generic_r4", "r4", True, True, 10.0),
    ("demo-epic", "epic", "epic", False, False, 10.0),
    ("demo-cerner", "cerner", "cerner", False, True, 10.0),
    # short HTTP timeouts, so that commit-then-hang faults become ambiguous outcomes quickly
    ("fast-r4", "generic_r4", "r4", True, True, 1.0),
    ("fast-epic", "epic", "epic", False, False, 1.0),
]


def personality_args() -> list[str]:
    args: list[str] = []
    for tenant, _vendor, personality, *_ in TEST_TENANTS:
        args += ["--personality", f"{tenant}={personality}"]
    return args


def write_tenants_file(path: Path, sandbox_url: str) -> Path:
    blocks = []
    for tenant, vendor, _personality, conditional, if_match, timeout in TEST_TENANTS:
        blocks.append(
            "[[tenant]]\n"
            f'id = "{tenant}"\n'
            f'vendor = "{vendor}"\n'
            f'fhir_base_url = "{sandbox_url}/fhir/{tenant}"\n'
            f"timeout_seconds = {timeout}\n"
            f"capabilities = {{ conditional_create = {str(conditional).lower()}, "
            f'if_match = {str(if_match).lower()}, writable = {{ Observation = ["create"] }} }}\n'
        )
    path.write_text("\n".join(blocks))
    return path
