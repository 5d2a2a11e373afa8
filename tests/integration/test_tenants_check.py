"""``writeback tenants check`` against the real sandbox: the profile, mismatches with the tenant's
configuration, and each schema-drift toggle reported as a change since the last check."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli import run_cli
from support.sandbox_process import SandboxProcess

LEGACY_EXTENSION = "http://example.org/fhir/StructureDefinition/legacy-flag"


@pytest.fixture
def onboarding_tenant(ehr: SandboxProcess) -> Iterator[str]:
    """A fresh sandbox tenant (r4 personality by default); its faults are cleared after."""
    tenant = f"onb-{uuid.uuid4().hex[:8]}"
    yield tenant
    httpx.delete(f"{ehr.url}/_admin/faults/{tenant}")


def tenants_toml(path: Path, ehr: SandboxProcess, tenant: str, capabilities: str) -> Path:
    path.write_text(
        f'[[tenant]]\nid = "{tenant}"\nvendor = "generic_r4"\n'
        f'fhir_base_url = "{ehr.url}/fhir/{tenant}"\ncapabilities = {{ {capabilities} }}\n'
        "allow_insecure_http = true\n"
    )
    return path


def check(tenants: Path, tenant: str, state: Path, *extra: str) -> tuple[int, str]:
    done = run_cli(
        "tenants", "check", tenant, "--tenants", str(tenants), "--state-dir", str(state), *extra
    )
    assert not done.stderr.strip() or done.returncode == 2, done.stderr
    return done.returncode, done.stdout


MATCHING = (
    'conditional_create = true, if_match = true, writable = { Observation = ["create", "update"] }'
)


def test_first_check_stores_the_profile_and_matches_a_true_config(
    ehr: SandboxProcess, onboarding_tenant: str, tmp_path: Path
) -> None:
    tenants = tenants_toml(tmp_path / "t.toml", ehr, onboarding_tenant, MATCHING)
    code, out = check(tenants, onboarding_tenant, tmp_path)
    assert code == 0, out
    assert "first check: profile stored" in out
    assert "mismatches 0" in out
    assert (tmp_path / "capabilities" / f"{onboarding_tenant}.json").exists()
    code, out = check(tenants, onboarding_tenant, tmp_path, "--json")
    report = json.loads(out)
    assert report["changes"] == [] and report["first_check"] is False
    observation = report["profile"]["resources"]["Observation"]
    assert observation["conditional_create"] is True
    assert {"create", "update", "patch"} <= set(observation["interactions"])
    assert "identifier" in observation["search_params"]
    assert report["profile"]["token_endpoint"].endswith(f"/fhir/{onboarding_tenant}/auth/token")


def test_config_promising_more_than_the_server_is_reported(
    ehr: SandboxProcess, onboarding_tenant: str, tmp_path: Path
) -> None:
    assert httpx.post(
        f"{ehr.url}/_admin/tenants/{onboarding_tenant}", json={"personality": "epic"}
    ).is_success
    promises = (
        "conditional_create = true, if_match = true, patch = true, "
        'writable = { Observation = ["create", "update"], Condition = ["create"] }'
    )
    tenants = tenants_toml(tmp_path / "t.toml", ehr, onboarding_tenant, promises)
    try:
        code, out = check(tenants, onboarding_tenant, tmp_path)
    finally:
        httpx.post(f"{ehr.url}/_admin/reset/{onboarding_tenant}")
    assert code == 1
    for line in (
        "Observation: configured conditional_create, server does not support it",
        "Observation: configured update, server has no update",
        "Observation: configured patch, server has no patch interaction",
        "Observation: configured if_match, server versioning is 'no-version'",
    ):
        assert line in out, out


@pytest.mark.parametrize(
    ("drift", "change", "mismatch"),
    [
        (
            {"required_fields": ["Observation.performer"]},
            "schema drift: Observation.performer is now required",
            "Observation: schema drift: Observation.performer is required by the server",
        ),
        (
            {"removed_extensions": [LEGACY_EXTENSION]},
            f"schema drift: Observation extension {LEGACY_EXTENSION} removed",
            f"Observation: schema drift: extension {LEGACY_EXTENSION} is removed",
        ),
        (
            {"code_bindings": {"Observation.code": "http://snomed.info/sct"}},
            "schema drift: Observation.code code binding none -> http://snomed.info/sct",
            "Observation: schema drift: Observation.code must be coded from http://snomed.info/sct",
        ),
    ],
    ids=["newly-required-field", "removed-extension", "changed-code-binding"],
)
def test_each_drift_toggle_is_reported_as_a_change_and_a_mismatch(
    ehr: SandboxProcess,
    onboarding_tenant: str,
    tmp_path: Path,
    drift: dict[str, Any],
    change: str,
    mismatch: str,
) -> None:
    tenants = tenants_toml(tmp_path / "t.toml", ehr, onboarding_tenant, MATCHING)
    assert check(tenants, onboarding_tenant, tmp_path)[0] == 0
    assert httpx.post(
        f"{ehr.url}/_admin/faults/{onboarding_tenant}", json={"drift": drift}
    ).is_success
    code, out = check(tenants, onboarding_tenant, tmp_path)
    assert code == 1
    assert "changes    0 since" not in out, out
    assert f"  {change}\n" in out
    assert f"  {mismatch}\n" in out

    httpx.delete(f"{ehr.url}/_admin/faults/{onboarding_tenant}")
    code, out = check(tenants, onboarding_tenant, tmp_path)
    assert code == 0, out  # the drift went away: no mismatch left
    assert "changes    0 since" not in out


def test_unknown_tenant_and_unreachable_server_are_usage_errors(tmp_path: Path) -> None:
    tenants = tmp_path / "t.toml"
    tenants.write_text(
        '[[tenant]]\nid = "gone"\nvendor = "generic_r4"\nfhir_base_url = "http://127.0.0.1:9/fhir/x"\n'
        "allow_insecure_http = true\n"
    )
    done = run_cli(
        "tenants", "check", "nope", "--tenants", str(tenants), "--state-dir", str(tmp_path)
    )
    assert done.returncode == 2 and "unknown tenant 'nope' (configured: gone)" in done.stderr
    done = run_cli(
        "tenants", "check", "gone", "--tenants", str(tenants), "--state-dir", str(tmp_path)
    )
    assert done.returncode == 2 and "discovery failed" in done.stderr


def test_a_mapping_recorded_by_hand_is_listed_with_its_provenance(
    ehr: SandboxProcess, onboarding_tenant: str, tmp_path: Path
) -> None:
    tenants = tenants_toml(tmp_path / "t.toml", ehr, onboarding_tenant, MATCHING)
    env = {"WRITEBACK_CROSSWALK_URL": str(tmp_path / "crosswalk.db")}
    done = run_cli(
        "tenants", "map", onboarding_tenant, "Patient", "p-42", "tp-9", "--by", "op-7",
        "--tenants", str(tenants), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run_cli("tenants", "crosswalk", onboarding_tenant, "--tenants", str(tenants), env=env)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("Patient/internal:p-42 -> tp-9  [manual, ")
    assert line.endswith(", writeback tenants map, by op-7]")


def test_a_malformed_id_is_refused_before_anything_is_stored(
    ehr: SandboxProcess, onboarding_tenant: str, tmp_path: Path
) -> None:
    tenants = tenants_toml(tmp_path / "t.toml", ehr, onboarding_tenant, MATCHING)
    env = {"WRITEBACK_CROSSWALK_URL": str(tmp_path / "crosswalk.db")}
    done = run_cli(
        "tenants", "map", onboarding_tenant, "Patient", "a b/c", "tp-9", "--by", "op-7",
        "--tenants", str(tenants), env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "internal_id must be 1-64 letters" in done.stderr
    assert not (tmp_path / "crosswalk.db").exists()
