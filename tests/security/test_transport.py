"""Issue 17, low: plain http for an EHR, its token endpoint or a vendor API (where a Unity
password goes) outside a test tenant; and the crosswalk's MRN in a logged query string.

Attacks: a tenant file naming http:// URLs without ``allow_insecure_http``; a crosswalk lookup
``Patient?identifier={system}|{MRN}`` with httpx logging at INFO (WRITEBACK_LOG_LEVEL=INFO)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from support.activities import activity_environment

from activities.crosswalk import Crosswalk, CrosswalkInput
from activities.crosswalk_store import SqliteCrosswalk
from activities.ehr_client import EhrClient
from adapters.tenants import TenantConfigError, TenantRegistry, load_tenants
from workers import samples

HTTPS_FHIR = 'fhir_base_url = "https://ehr.example/fhir"\n'


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ('vendor = "epic"\nfhir_base_url = "http://ehr.example/fhir"\n', "fhir_base_url"),
        (
            f'vendor = "epic"\n{HTTPS_FHIR}auth = {{ kind = "smart_backend", client_id = "c", '
            'private_key_env = "K", token_url = "http://ehr.example/token" }\n',
            "auth.token_url",
        ),
        (
            f'vendor = "veradigm"\n{HTTPS_FHIR}vendor_api = {{ base_url = "http://ehr.example/u", '
            'app_name = "a", app_user = "u", username = "u", password_env = "P" }\n',
            "vendor_api.base_url",
        ),
    ],
)
def test_plain_http_is_refused_unless_the_tenant_allows_it(
    tmp_path: Path, settings: str, named: str
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(f'[[tenant]]\nid = "a"\n{settings}')
    with pytest.raises(TenantConfigError, match=named.replace(".", r"\.")):
        load_tenants(path)
    path.write_text(f'[[tenant]]\nid = "a"\n{settings}allow_insecure_http = true\n')
    assert load_tenants(path).get("a") is not None


async def test_the_crosswalk_mrn_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from workers.hygiene import install_log_filters  # what every worker installs

    install_log_filters()
    mrn = f"MRN{uuid.uuid4().hex[:8]}"
    path = tmp_path / "tenants.toml"
    path.write_text(f'[[tenant]]\nid = "t1"\nvendor = "generic_r4"\n{HTTPS_FHIR}')
    tenant = load_tenants(path).get("t1")
    assert tenant is not None
    patient = {
        "resourceType": "Patient",
        "id": "tp-1",
        "identifier": [{"system": tenant.crosswalk.identifier_system, "value": mrn}],
    }

    def ehr(request: httpx.Request) -> httpx.Response:
        entry = [{"resource": patient, "search": {"mode": "match"}}]
        return httpx.Response(200, json={"resourceType": "Bundle", "entry": entry})

    resource = samples.heart_rate("p", 70)
    resource["subject"] = {"reference": f"Patient/internal:{mrn}"}
    order = CrosswalkInput(
        tenant="t1", request_id="r-1", resource=resource, requested_at=datetime.now(UTC)
    )
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
            crosswalk = Crosswalk(
                EhrClient(TenantRegistry([tenant], "test"), http),
                SqliteCrosswalk(tmp_path / "x.db"),
            )
            result = await activity_environment().run(crosswalk.resolve, order)
    assert result.learned == 1
    assert any("HTTP Request" in m and "/Patient" in m for m in caplog.messages)  # not vacuous
    assert mrn not in caplog.text
