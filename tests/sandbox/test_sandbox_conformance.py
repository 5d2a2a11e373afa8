"""FHIR R4 http.html conformance of the strict r4 personality: vread, history, If-Match,
conditional update, JSON PATCH, Prefer, OperationOutcome on every error, CapabilityStatement."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from support.sandbox_process import ident, new_cmd, observation

PATCH = {"Content-Type": "application/json-patch+json"}


def _oo(r: httpx.Response) -> dict[str, object]:
    assert r.headers["content-type"].startswith("application/fhir+json"), r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body  # type: ignore[no-any-return]


def test_vread_history_and_deleted_410(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    rid = v1["id"]
    v2 = client.put(f"{url}/{rid}", json={**v1, "status": "amended"}).json()
    assert v2["meta"]["versionId"] == "2"
    assert client.get(f"{url}/{rid}/_history/1").json()["status"] == "final"
    assert client.get(f"{url}/{rid}/_history/2").json()["status"] == "amended"
    _oo(client.get(f"{url}/{rid}/_history/9"))
    assert client.get(f"{url}/{rid}/_history/x").status_code == 404

    assert client.delete(f"{url}/{rid}").status_code == 204
    assert client.delete(f"{url}/{rid}").status_code == 204  # idempotent
    gone = client.get(f"{url}/{rid}")
    assert gone.status_code == 410
    _oo(gone)
    assert client.get(f"{url}/{rid}/_history/3").status_code == 410
    assert client.get(f"{url}/{rid}/_history/2").json()["status"] == "amended"

    history = client.get(f"{url}/{rid}/_history").json()
    assert history["type"] == "history" and history["total"] == 3
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]  # newest first
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in history["entry"][0]
    assert client.get(f"{url}/nope/_history").status_code == 404
    assert client.delete(f"{url}/nope").status_code == 404


def test_update_if_match_412_and_unknown_404(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    rid = v1["id"]
    ok = client.put(f"{url}/{rid}", json=v1, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    stale = client.put(f"{url}/{rid}", json=v1, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    _oo(stale)
    assert client.delete(f"{url}/{rid}", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.get(f"{url}/{rid}").json()["meta"]["versionId"] == "2"
    missing = client.put(f"{url}/unknown1", json={**v1, "id": "unknown1"})
    assert missing.status_code == 404
    _oo(missing)


def test_conditional_update_zero_one_many(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    cmd = new_cmd()
    created = client.put(f"{url}?{ident(cmd)}", json=observation(cmd))
    assert created.status_code == 201
    rid = created.json()["id"]
    assert created.headers["location"].endswith(f"/Observation/{rid}/_history/1")

    updated = client.put(f"{url}?{ident(cmd)}", json={**observation(cmd), "status": "amended"})
    assert updated.status_code == 200
    assert updated.json()["id"] == rid and updated.json()["meta"]["versionId"] == "2"
    stale = client.put(f"{url}?{ident(cmd)}", json=observation(cmd), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    wrong_id = client.put(f"{url}?{ident(cmd)}", json={**observation(cmd), "id": "other"})
    assert wrong_id.status_code == 400

    client.post(url, json=observation(cmd))  # now two resources carry the identifier
    many = client.put(f"{url}?{ident(cmd)}", json=observation(cmd))
    assert many.status_code == 412
    _oo(many)
    assert client.get(f"{url}?{ident(cmd)}").json()["total"] == 2
    assert client.put(url, json=observation()).status_code == 405  # no id, no criteria
    assert client.put(f"{url}?bogus=1", json=observation()).status_code == 400


def test_json_patch_ops_if_match_and_validation(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation()).json()
    rid = v1["id"]
    ops = [
        {"op": "test", "path": "/status", "value": "final"},
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "add", "path": "/note", "value": [{"text": "first"}]},
        {"op": "add", "path": "/note/-", "value": {"text": "second"}},
        {"op": "copy", "from": "/code", "path": "/valueCodeableConcept"},
        {"op": "remove", "path": "/valueCodeableConcept"},
        {"op": "move", "from": "/note/1", "path": "/note/0"},
    ]
    r = client.patch(f"{url}/{rid}", json=ops, headers={**PATCH, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "amended" and body["meta"]["versionId"] == "2"
    assert [n["text"] for n in body["note"]] == ["second", "first"]
    assert "valueCodeableConcept" not in body
    assert r.headers["etag"] == 'W/"2"'
    assert client.get(f"{url}/{rid}").json() == body

    stale = client.patch(f"{url}/{rid}", json=ops[1:2], headers={**PATCH, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    failed_test = [{"op": "test", "path": "/status", "value": "final"}]
    assert client.patch(f"{url}/{rid}", json=failed_test, headers=PATCH).status_code == 422
    no_path = [{"op": "remove", "path": "/nothing/here"}]
    assert client.patch(f"{url}/{rid}", json=no_path, headers=PATCH).status_code == 422
    invalid = [{"op": "remove", "path": "/code"}]  # result would not be a valid Observation
    bad = client.patch(f"{url}/{rid}", json=invalid, headers=PATCH)
    assert bad.status_code == 422 and "Observation.code" in bad.text
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert client.patch(f"{url}/{rid}", json=change_id, headers=PATCH).status_code == 422
    malformed = client.patch(f"{url}/{rid}", json={"op": "add"}, headers=PATCH)
    assert malformed.status_code == 400
    _oo(malformed)
    wrong_type = client.patch(
        f"{url}/{rid}", json=ops, headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert client.patch(f"{url}/missing", json=ops, headers=PATCH).status_code == 404
    assert client.get(f"{url}/{rid}").json()["meta"]["versionId"] == "2"


def test_prefer_return_on_update_and_patch(client: httpx.Client, tenant: str) -> None:
    url = f"/fhir/{tenant}/Observation"
    v1 = client.post(url, json=observation(), headers={"Prefer": "return=representation"}).json()
    minimal = client.put(f"{url}/{v1['id']}", json=v1, headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 200 and minimal.content == b""
    assert minimal.headers["etag"] == 'W/"2"'
    oo = client.patch(
        f"{url}/{v1['id']}",
        json=[{"op": "replace", "path": "/status", "value": "amended"}],
        headers={**PATCH, "Prefer": "return=OperationOutcome"},
    )
    assert oo.status_code == 200 and oo.json()["issue"][0]["severity"] == "information"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/fhir/{t}/Observation/x/y/z", {}, 404),
        ("POST", "/fhir/{t}/Observation/abc", {"json": {}}, 405),
        ("POST", "/fhir/{t}/Observation", {"content": b"{"}, 400),
        ("POST", "/fhir/{t}/Bogus", {"json": {"resourceType": "Bogus"}}, 404),
        ("GET", "/fhir/{t}/Observation/nothere", {}, 404),
        ("GET", "/fhir/{t}/Observation?_lastUpdated=yesterday", {}, 400),
        ("GET", "/fhir/{t}/Observation?_count=-1", {}, 400),
        ("PUT", "/fhir/{t}/Observation/abc", {"json": [1]}, 400),
        ("POST", "/fhir/{t}", {"json": {"resourceType": "Bundle", "type": "searchset"}}, 400),
    ],
)
def test_every_error_is_an_operation_outcome(
    client: httpx.Client,
    tenant: str,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
) -> None:
    r = client.request(method, path.format(t=tenant), **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status
    _oo(r)


def test_validation_422_names_paths_never_values(client: httpx.Client, tenant: str) -> None:
    secret = "PHI-SECRET-4711"
    bad = observation()
    del bad["code"]
    bad["valueQuantity"]["value"] = secret
    r = client.post(f"/fhir/{tenant}/Observation", json=bad)
    assert r.status_code == 422
    issue = _oo(r)["issue"][0]  # type: ignore[index]
    assert set(issue["expression"]) >= {"Observation.code", "Observation.valueQuantity.value"}
    assert secret not in r.text


@pytest.mark.parametrize("personality", ["r4", "epic", "cerner", "athena", "veradigm"])
def test_capability_statement_validates_and_reflects_personality(
    client: httpx.Client, tenant: str, personality: str
) -> None:
    assert client.post(f"/_admin/tenants/{tenant}", json={"personality": personality}).is_success
    r = client.get(f"/fhir/{tenant}/metadata")
    assert r.status_code == 200
    CapabilityStatement.model_validate(r.json())
    rest = r.json()["rest"][0]
    obs = {x["type"]: x for x in rest["resource"]}["Observation"]
    codes = {i["code"] for i in obs["interaction"]}
    batch = {i["code"] for i in rest.get("interaction", [])}
    expected = {
        "r4": ({"create", "update", "patch", "delete", "vread", "history-instance"}, True),
        "epic": ({"create"}, False),
        "cerner": ({"create", "update", "delete", "vread"}, False),
        "athena": (set(), False),
        "veradigm": (set(), False),
    }[personality]
    assert expected[0] <= codes
    assert ("transaction" in batch) is expected[1]
    assert ("patch" in codes) is (personality == "r4")
    assert obs["conditionalCreate"] is (personality == "r4")
    assert obs["conditionalUpdate"] is (personality == "r4")
    if personality in ("athena", "veradigm"):
        assert "create" not in codes


def test_client_meta_tags_are_kept_and_searchable(client: httpx.Client, tenant: str) -> None:
    body = observation()
    body["meta"] = {
        "versionId": "77",
        "lastUpdated": "2001-01-01T00:00:00Z",
        "source": "client",
        "tag": [{"system": "urn:test:tags", "code": "batch-7"}],
    }
    created = client.post(f"/fhir/{tenant}/Observation", json=body).json()
    assert created["meta"]["versionId"] == "1" and "source" not in created["meta"]
    assert created["meta"]["tag"] == [{"system": "urn:test:tags", "code": "batch-7"}]
    found = client.get(f"/fhir/{tenant}/Observation?_tag=urn:test:tags|batch-7").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
