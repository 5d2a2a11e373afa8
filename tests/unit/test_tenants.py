"""Tenant files: where they come from, and errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.tenants import (
    DEFAULT_TENANTS_FILE,
    TENANTS_ENV,
    TenantConfigError,
    load_tenants,
    resolve_tenants_path,
)
from adapters.versions import LATEST_ADAPTER_VERSION


def test_default_file_ships_the_demo_tenants() -> None:
    registry = load_tenants(DEFAULT_TENANTS_FILE)
    assert registry.ids == ["demo-athena", "demo-cerner", "demo-epic", "demo-r4", "demo-veradigm"]
    epic = registry.get("demo-epic")
    assert epic is not None and not epic.capabilities.conditional_create


def test_flag_beats_environment_beats_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TENANTS_ENV, raising=False)
    assert resolve_tenants_path() == DEFAULT_TENANTS_FILE
    monkeypatch.setenv(TENANTS_ENV, str(tmp_path / "env.toml"))
    assert resolve_tenants_path() == tmp_path / "env.toml"
    assert resolve_tenants_path(str(tmp_path / "flag.toml")) == tmp_path / "flag.toml"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is = = not toml", "not valid TOML"),
        ("", "expected one or more [[tenant]] tables"),
        (
            '[[tenant]]\nid = "a"\nvendor = "epic"\nfhir_base_url = "ftp://x"\n',
            "tenant #1: fhir_base_url",
        ),
        (
            '[[tenant]]\nid = "a"\nvendor = "meditech"\nfhir_base_url = "http://x"\n',
            "tenant #1: vendor",
        ),
        (
            '[[tenant]]\nid = "a"\nvendor = "epic"\nfhir_base_url = "http://x"\ncolour = 1\n',
            "tenant #1: colour",
        ),
        (
            (
                '[[tenant]]\nid = "a"\nvendor = "epic"\nfhir_base_url = "http://x"\n'
                "allow_insecure_http = true\n"
            )
            * 2,
            "duplicate tenant ids",
        ),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(content)
    with pytest.raises(TenantConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_tenants(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TenantConfigError, match="tenant file not found"):
        load_tenants(tmp_path / "nope.toml")


def test_environment_variables_expand_with_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[[tenant]]\nid = "a"\nvendor = "epic"\n'
        'fhir_base_url = "${EHR_HOST:-http://fallback}/fhir/${EHR_SITE}"\n'
        "allow_insecure_http = true\n"
    )
    monkeypatch.delenv("EHR_HOST", raising=False)
    monkeypatch.setenv("EHR_SITE", "site-1")
    tenant = load_tenants(path).get("a")
    assert tenant is not None and tenant.fhir_base_url == "http://fallback/fhir/site-1"
    monkeypatch.setenv("EHR_HOST", "https://ehr.example")
    tenant = load_tenants(path).get("a")
    assert tenant is not None and tenant.fhir_base_url == "https://ehr.example/fhir/site-1"


def test_unset_variable_without_default_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text('[[tenant]]\nid = "a"\nvendor = "epic"\nfhir_base_url = "${EHR_NOPE}/x"\n')
    monkeypatch.delenv("EHR_NOPE", raising=False)
    expected = r"tenant #1\.fhir_base_url: environment variable EHR_NOPE"
    with pytest.raises(TenantConfigError, match=expected):
        load_tenants(path)


def test_adapter_version_is_pinned_per_tenant_and_checked(tmp_path: Path) -> None:
    base = '[[tenant]]\nid = "a"\nvendor = "epic"\nfhir_base_url = "https://x/fhir"\n'
    path = tmp_path / "t.toml"
    path.write_text(base)
    (tenant,) = load_tenants(path)
    assert tenant.adapter_version is LATEST_ADAPTER_VERSION
    path.write_text(base + 'adapter_version = "1"\n')
    (tenant,) = load_tenants(path)
    assert not tenant.adapter_version.checks_clinical_semantics
    path.write_text(base + 'adapter_version = "9"\n')
    with pytest.raises(TenantConfigError, match="adapter_version"):
        load_tenants(path)
