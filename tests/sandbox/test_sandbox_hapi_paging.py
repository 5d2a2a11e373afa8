"""Tenant setting ``paging = "hapi"``: searchset next/previous links on the FHIR base
(``{base}?_getpages=...``, as HAPI FHIR pages), served like any other FHIR request."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from support.sandbox_process import SigningKey, new_cmd, observation, token_form

from sandbox.paging import seal

PAGES_KEYS = {"_getpages", "_getpagesoffset", "_count", "_bundletype"}


def _links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def _hapi(client: httpx.Client, tenant: str) -> None:
    r = client.post(f"/_admin/tenants/{tenant}", json={"paging": "hapi"})
    assert r.status_code == 200, r.text
    assert r.json()["paging"] == "hapi"


def _created(client: httpx.Client, tenant: str, n: int) -> tuple[str, list[str]]:
    patient = new_cmd()
    url = f"/fhir/{tenant}/Observation"
    ids = [client.post(url, json=observation(patient=patient)).json()["id"] for _ in range(n)]
    return patient, ids


def _assert_pages_link(url: str, base: str, offset: int, count: int) -> None:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == base  # the base, no resource type
    query = parse_qs(parts.query)
    assert set(query) == PAGES_KEYS
    assert query["_getpagesoffset"] == [str(offset)]
    assert query["_count"] == [str(count)]
    assert query["_bundletype"] == ["searchset"]
    token = query["_getpages"][0]
    assert "Observation" not in token and "patient" not in token  # opaque-looking


def test_hapi_next_links_walk_every_resource_once(client: httpx.Client, tenant: str) -> None:
    _hapi(client, tenant)
    patient, created = _created(client, tenant, 7)
    base = f"{str(client.base_url).rstrip('/')}/fhir/{tenant}"
    page = client.get(f"/fhir/{tenant}/Observation?patient={patient}&_count=3").json()
    seen: list[str] = []
    offset = 0
    while True:
        assert page["type"] == "searchset" and page["total"] == 7
        seen += [e["resource"]["id"] for e in page["entry"]]
        links = _links(page)
        if offset:
            _assert_pages_link(links["self"], base, offset, 3)
            _assert_pages_link(links["previous"], base, offset - 3, 3)
        if "next" not in links:
            break
        offset += 3
        _assert_pages_link(links["next"], base, offset, 3)
        r = client.get(links["next"])
        assert r.status_code == 200, r.text
        page = r.json()
    assert seen == created  # every resource exactly once, in order
    assert offset == 6

    # the base with a trailing slash serves the same page
    first_next = _links(client.get(f"/fhir/{tenant}/Observation?patient={patient}&_count=3").json())
    slashed = first_next["next"].replace(f"/fhir/{tenant}?", f"/fhir/{tenant}/?")
    r = client.get(slashed)
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == created[3:6]

    logged = client.get(f"/_admin/requests/{tenant}").json()["requests"]
    assert [r["path"] for r in logged if r["method"] == "GET"].count(f"/fhir/{tenant}") == 2


def test_pages_meet_faults_and_auth_of_their_search(client: httpx.Client, tenant: str) -> None:
    _hapi(client, tenant)
    patient, created = _created(client, tenant, 3)
    page = client.get(f"/fhir/{tenant}/Observation?patient={patient}&_count=2").json()
    next_url = _links(page)["next"]

    fault = {"kind": "status", "status": 503, "method": "GET", "type": "Observation"}
    client.post(f"/_admin/faults/{tenant}", json={"queue": [fault]})
    assert client.get(next_url).status_code == 503  # a fault on the token's resource type
    assert [e["resource"]["id"] for e in client.get(next_url).json()["entry"]] == created[2:]
    logged = client.get(f"/_admin/requests/{tenant}").json()["requests"]
    assert [(r["status"], r["fault"] is not None) for r in logged[-2:]] == [
        (503, True),
        (200, False),
    ]

    key = SigningKey("RS384")
    auth = {
        "enabled": True,
        "clients": [
            {"client_id": "c", "jwks": {"keys": [key.public_jwk()]}, "scopes": ["system/*.c"]}
        ],
    }
    assert client.post(f"/_admin/tenants/{tenant}/auth", json=auth).status_code == 200
    assert client.get(next_url).status_code == 401  # no token
    token_url = f"{str(client.base_url).rstrip('/')}/fhir/{tenant}/auth/token"
    form = token_form(key.assertion("c", token_url), "system/Observation.c")
    token = client.post(f"/fhir/{tenant}/auth/token", data=form).json()["access_token"]
    denied = client.get(next_url, headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403  # creating is not searching Observation


def test_malformed_pages_requests_answer_400(client: httpx.Client, tenant: str) -> None:
    _hapi(client, tenant)
    good = seal(b"Observation?patient=x")
    bad = [
        "_getpages=not%20a%20token!",
        "_getpages=%%%",
        f"_getpages={seal(b'NotAType?patient=x')}",
        f"_getpages={seal(b'Observation')}",  # no query separator
        f"_getpages={seal(bytes([0xFF, 0xFE, 0x3F]))}",  # not UTF-8
        f"_getpages={seal(b'Observation?a=1&&&=')}",  # not a query string
        f"_getpages={good[:9]}{'B' if good[9] == 'A' else 'A'}{good[10:]}",  # check fails
        f"_getpages={good}&_getpagesoffset=-1",
        f"_getpages={good}&_getpagesoffset=%C2%B2",  # a unicode digit
        f"_getpages={good}&_count=abc",
        f"_getpages={good}&_bundletype=history",
        "_getpages=",
        "",
    ]
    for query in bad:
        r = client.get(f"/fhir/{tenant}?{query}")
        assert r.status_code == 400, (query, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", query
    assert client.get(f"/fhir/{tenant}?_getpages={good}").status_code == 200


def test_default_is_offset_links_and_the_setting_is_validated(
    client: httpx.Client, tenant: str
) -> None:
    assert client.get(f"/_admin/tenants/{tenant}").json()["paging"] == "offset"
    patient, _ = _created(client, tenant, 3)
    url = f"/fhir/{tenant}/Observation"
    links = _links(client.get(f"{url}?patient={patient}&_count=2").json())
    base = str(client.base_url).rstrip("/")
    assert links["next"].startswith(f"{base}{url}?") and "_offset=2" in links["next"]
    assert "_getpages" not in links["next"]

    r = client.post(f"/_admin/tenants/{tenant}", json={"paging": "cursor"})
    assert r.status_code == 400 and "paging" in r.json()["error"]
    _hapi(client, tenant)
    links = _links(client.get(f"{url}?patient={patient}&_count=2").json())
    assert links["self"].startswith(f"{base}{url}?")  # the search as asked
    assert links["next"].startswith(f"{base}/fhir/{tenant}?_getpages=")
    back = client.post(f"/_admin/tenants/{tenant}", json={"paging": "offset"})
    assert back.json()["paging"] == "offset"
    links = _links(client.get(f"{url}?patient={patient}&_count=2").json())
    assert "_offset=2" in links["next"]
