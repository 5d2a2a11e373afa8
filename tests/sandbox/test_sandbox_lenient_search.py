"""The ``lenient_search`` fault: one search answered like a server that does not know
``identifier`` / ``_tag`` and ignores ``Prefer: handling=strict`` (it drops them silently)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
from support.sandbox_process import ident, new_cmd, observation

STRICT = {"Prefer": "handling=strict"}
LENIENT = {"kind": "lenient_search", "method": "GET", "type": "Observation"}


def _self_params(bundle: dict[str, object]) -> set[str]:
    links = bundle["link"]
    assert isinstance(links, list)
    url = next(link["url"] for link in links if link["relation"] == "self")
    return {name for name, _ in parse_qsl(urlsplit(url).query)}


def test_lenient_search_drops_the_identifier_for_one_search(
    client: httpx.Client, tenant: str
) -> None:
    url = f"/fhir/{tenant}/Observation"
    patient = new_cmd()
    ours, other = new_cmd(), new_cmd()
    client.post(url, json=observation(ours, patient=patient))
    client.post(url, json=observation(other, patient=patient))
    assert client.post(f"/_admin/faults/{tenant}", json={"queue": [LENIENT]}).status_code == 200

    lenient = client.get(f"{url}?{ident(ours)}&patient={patient}", headers=STRICT)
    assert lenient.status_code == 200  # handling=strict ignored, identifier dropped
    assert lenient.json()["total"] == 2
    assert _self_params(lenient.json()) == {"patient", "_count", "_offset"}

    honest = client.get(f"{url}?{ident(ours)}&patient={patient}", headers=STRICT)
    assert honest.json()["total"] == 1  # the fault was for one search only
    assert "identifier" in _self_params(honest.json())
    assert client.get(f"/_admin/faults/{tenant}").json()["injected"] == {"lenient_search": 1}
