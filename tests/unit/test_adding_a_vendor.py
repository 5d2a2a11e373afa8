"""README "Adding a vendor", walked through with a toy vendor: (1) an adapter module, (2) its
registration line, (3) its sandbox personality. Nothing else is edited, yet the tenant file,
the pre-send rules, the planning of a create, the FHIR parameters, what the vendor can update and
what it hides from search, and the dev stack's personality all come from the toy adapter."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from adapters.compensation import can_compensate
from adapters.fhir_r4 import (
    DedupStrategy,
    UnsupportedVendor,
    fhir_query_params,
    prepare_create,
    prepare_update,
)
from adapters.problems import ResourceInvalid
from adapters.registry import VENDORS
from adapters.tenants import Tenant, TenantConfigError, load_tenants
from adapters.vendor import FhirVendor, Vendor, VendorAdapter
from sandbox import personalities
from workers import samples
from workers.devstack import proprietary_personalities

#: Step 1: the adapter module, as a vendor's author would write it in adapters/toy.py.
TOY_MODULE = '''
from __future__ import annotations

from typing import Any, Literal

from adapters.problems import Problem
from adapters.proprietary import VendorCall, VendorRefused, patient_id, vital_projection, utc_time
from adapters.tenants import Tenant
from adapters.vendor import ApiVendor, Vendor, VendorApiSettings


class ToyApiSettings(VendorApiSettings):
    kind: Literal["toy"] = "toy"
    clinic: str


class Toy(ApiVendor):
    """Writes vital signs through its own API, files them only as final, hides problems."""

    api_settings = ToyApiSettings
    dev_personality = "toy"
    holding_tank_types = frozenset({"Condition"})

    def create_problems(self, resource: dict[str, Any]) -> list[Problem]:
        if resource.get("status") != "final":
            return [Problem("status", "Toy EHR files final readings only")]
        return []

    def plan(self, tenant: Tenant, body: dict[str, Any]) -> tuple[VendorCall, dict[str, Any]]:
        assert isinstance(tenant.vendor_api, ToyApiSettings)
        clinic = tenant.vendor_api.clinic
        call = VendorCall(
            answer="toy_reading",
            path=f"clinics/{clinic}/patients/{patient_id(body)}/readings",
            form={"value": str(body["valueQuantity"]["value"])},
            id_prefix=f"toy-{clinic}-",
        )
        return call, vital_projection(body, utc_time(body))

    def vendor_id(self, call: VendorCall, answer: Any) -> str:
        if not isinstance(answer, dict) or "reading" not in answer:
            raise VendorRefused("Toy EHR answered without a reading")
        return str(answer["reading"])

    def fhir_params(self, tenant: Tenant) -> dict[str, str]:
        assert isinstance(tenant.vendor_api, ToyApiSettings)
        return {"clinic": tenant.vendor_api.clinic}


ADAPTER = Toy(Vendor("toy"))
'''

TOY_TENANTS = """
[[tenant]]
id = "toy-clinic"
vendor = "toy"
fhir_base_url = "http://toy.test/fhir"
allow_insecure_http = true
capabilities = { writable = { Observation = ["create", "update"] }, if_match = true }
vendor_api = { base_url = "http://toy.test/api", clinic = "42" }
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The toy adapter module, imported from a file of its own (as adapters/toy.py would be)."""
    source = tmp_path / "toy_adapter.py"
    source.write_text(textwrap.dedent(TOY_MODULE))
    spec = importlib.util.spec_from_file_location("toy_adapter", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_adapter", module)
    spec.loader.exec_module(module)
    return module


def register(monkeypatch: pytest.MonkeyPatch, toy: ModuleType) -> None:
    """Step 2: the registration line (adapters/registry.py: ``Vendor("toy"): toy.ADAPTER,``)."""
    monkeypatch.setitem(VENDORS, toy.ADAPTER.vendor, toy.ADAPTER)


def toy_tenant(tmp_path: Path) -> Tenant:
    path = tmp_path / "tenants.toml"
    path.write_text(TOY_TENANTS)
    (tenant,) = load_tenants(path)
    assert isinstance(tenant, Tenant)
    return tenant


def test_an_unregistered_vendor_is_refused_in_the_tenant_file(
    tmp_path: Path, toy: ModuleType
) -> None:
    with pytest.raises(TenantConfigError, match="unknown vendor 'toy'"):
        toy_tenant(tmp_path)


def test_a_registered_vendor_is_read_from_the_tenant_file_with_its_own_api_settings(
    tmp_path: Path, toy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, toy)
    tenant = toy_tenant(tmp_path)

    assert tenant.vendor == "toy" and tenant.vendor.value == "toy"
    assert tenant.adapter() is toy.ADAPTER
    assert isinstance(tenant.vendor_api, toy.ToyApiSettings)
    assert tenant.vendor_api.clinic == "42"


def test_validation_planning_and_parameters_come_from_the_adapter(
    tmp_path: Path, toy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, toy)
    tenant = toy_tenant(tmp_path)
    reading = samples.heart_rate("p1", 72)

    with pytest.raises(ResourceInvalid) as refused:
        prepare_create(tenant, reading | {"status": "preliminary"}, "toy-clinic:k")
    assert [p.path for p in refused.value.problems] == ["status"]

    request = prepare_create(tenant, reading, "toy-clinic:k")
    assert request.vendor_call is not None
    assert request.vendor_call.path == "clinics/42/patients/p1/readings"
    assert request.dedup is DedupStrategy.FINGERPRINT  # its API keeps no identifier of ours
    assert request.expected is not None and request.expected["valueQuantity"]["value"] == 72
    assert tenant.adapter().vendor_id(request.vendor_call, {"reading": 7}) == "7"
    assert fhir_query_params(tenant) == {"clinic": "42"}


def test_capabilities_come_from_the_adapter(
    tmp_path: Path, toy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, toy)
    tenant = toy_tenant(tmp_path)

    # the tenant accepts updates of Observations, but the toy's API cannot make one
    assert not can_compensate(tenant, "Observation")
    with pytest.raises(UnsupportedVendor):
        prepare_update(tenant, samples.heart_rate("p1", 72), "Observation/1")
    assert not tenant.searchable("Condition") and tenant.searchable("Observation")


def test_the_dev_stack_runs_its_tenants_under_its_sandbox_personality(
    tmp_path: Path, toy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, toy)
    # Step 3: the sandbox personality (sandbox/personalities.py: a Personality and its REGISTRY
    # entry), with the quirks the vendor documents
    toy_personality = personalities.Personality(name="toy", read_only=True)
    monkeypatch.setitem(personalities.REGISTRY, "toy", toy_personality)
    path = tmp_path / "tenants.toml"
    path.write_text(TOY_TENANTS)

    args = proprietary_personalities(path)
    assert args == ["--personality", "toy-clinic=toy"]
    mapping = personalities.parse_mapping(args[1:])
    assert personalities.for_tenant(mapping, "toy-clinic") is toy_personality


def test_every_registered_adapter_is_registered_under_its_own_name() -> None:
    for vendor, adapter in VENDORS.items():
        assert isinstance(vendor, Vendor) and adapter.vendor == vendor
    assert set(VENDORS) == {"epic", "cerner", "athena", "veradigm", "generic_r4"}


def test_a_plain_fhir_vendor_needs_no_more_than_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smallest adapter module: ``ADAPTER = FhirVendor(Vendor("name"))`` (generic_r4.py)."""
    adapter: VendorAdapter = FhirVendor(Vendor("plain"))
    monkeypatch.setitem(VENDORS, adapter.vendor, adapter)
    url = "http://plain.test/fhir"
    tenant = Tenant(id="p", vendor=Vendor("plain"), fhir_base_url=url, allow_insecure_http=True)
    request = prepare_create(tenant, samples.heart_rate("p1", 72), "p:k")
    assert request.vendor_call is None and request.dedup is DedupStrategy.SEARCH_BEFORE_CREATE
