"""Search (R4 search.html): token, reference and date parameters, _tag, _id, paging."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
from support.sandbox_process import new_cmd, observation


def _ids(client: httpx.Client, url: str) -> list[str]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_code_category_subject_encounter(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    patient = new_cmd()
    hr = observation(patient=patient)
    hr["encounter"] = {"reference": "Encounter/enc-1"}
    lab = observation(patient=patient)
    lab["code"] = {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}
    lab["category"] = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ]
    group = observation()
    group["subject"] = {"reference": f"Group/{patient}"}
    a, b, g = (client.post(url, json=x).json()["id"] for x in (hr, lab, group))

    assert _ids(client, f"{url}?patient={patient}&code=http://loinc.org|8867-4") == [a]
    assert _ids(client, f"{url}?patient={patient}&code=8867-4,2345-7") == [a, b]
    assert _ids(client, f"{url}?subject=Patient/{patient}&code=|8867-4") == []
    assert _ids(client, f"{url}?subject=Patient/{patient}&code=http://loinc.org|") == [a, b]
    assert _ids(client, f"{url}?patient={patient}&category=laboratory") == [b]
    assert _ids(client, f"{url}?patient={patient}&category=vital-signs") == [a]
    assert _ids(client, f"{url}?patient={patient}&encounter=Encounter/enc-1") == [a]
    assert _ids(client, f"{url}?patient={patient}&encounter=enc-1") == [a]
    assert _ids(client, f"{url}?subject=Group/{patient}") == [g]
    assert _ids(client, f"{url}?subject={patient}") == [a, b, g]  # bare id: any type
    assert _ids(client, f"{url}?patient={patient}") == [a, b]  # patient: Patient only
    base = str(client.base_url).rstrip("/")
    assert _ids(client, f"{url}?subject={base}/fhir/{tenant}/Patient/{patient}") == [a, b]
    assert _ids(client, f"{url}?_id={a},{g}") == [a, g]


def test_last_updated_prefixes(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    first = client.post(url, json=observation()).json()
    time.sleep(0.01)  # distinct millisecond stamps (not synchronisation)
    second = client.post(url, json=observation()).json()
    t1, t2 = first["meta"]["lastUpdated"], second["meta"]["lastUpdated"]
    assert t1 < t2
    q = f"{url}?_lastUpdated="
    assert _ids(client, q + f"eq{t1}") == [first["id"]]
    assert _ids(client, q + t1) == [first["id"]]
    assert _ids(client, q + f"gt{t1}") == [second["id"]]
    assert _ids(client, q + f"ge{t1}") == [first["id"], second["id"]]
    assert _ids(client, q + f"lt{t2}") == [first["id"]]
    assert _ids(client, q + f"le{t2}") == [first["id"], second["id"]]
    assert _ids(client, f"{q}ge{t1}&_lastUpdated=lt{t2}") == [first["id"]]
    today = datetime.now(UTC).date()
    assert len(_ids(client, q + today.isoformat())) == 2  # day precision
    assert _ids(client, q + f"gt{today.isoformat()}") == []
    assert len(_ids(client, q + f"gt{(today - timedelta(days=1)).isoformat()}")) == 2
    assert len(_ids(client, q + f"eq{today.year}")) == 2
    offset = datetime.fromisoformat(t1.replace("Z", "+00:00")).astimezone(
        timezone(timedelta(hours=2))
    )
    local = offset.isoformat(timespec="milliseconds")
    assert _ids(client, q + local.replace("+", "%2B")) == [first["id"]]


def test_paging_with_count_and_links(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    patient = new_cmd()
    created = [client.post(url, json=observation(patient=patient)).json()["id"] for _ in range(5)]
    page = client.get(f"{url}?patient={patient}&_count=2").json()
    assert page["total"] == 5 and len(page["entry"]) == 2
    seen: list[str] = []
    while True:
        seen += [e["resource"]["id"] for e in page["entry"]]
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert f"patient={patient}" in links["self"]
        if "next" not in links:
            break
        page = client.get(links["next"]).json()
        assert "previous" in {link["relation"] for link in page["link"]}
    assert seen == created
    summary = client.get(f"{url}?patient={patient}&_count=0").json()
    assert summary["total"] == 5 and summary.get("entry", []) == []
    assert _ids(client, f"{url}?patient={patient}&_count=2&_offset=4") == created[4:]


def test_unknown_params_lenient_or_strict_and_deletes(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    patient = new_cmd()
    rid = client.post(url, json=observation(patient=patient)).json()["id"]
    assert _ids(client, f"{url}?patient={patient}&bogus=1&_sort=date") == [rid]
    strict = client.get(f"{url}?patient={patient}&bogus=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert (
        client.get(f"{url}?code:text=x", headers={"Prefer": "handling=strict"}).status_code == 400
    )
    assert client.get(f"{url}?patient=").status_code == 400
    client.delete(f"{url}/{rid}")
    assert _ids(client, f"{url}?patient={patient}") == []
