"""How the EHR client reads, against a scripted EHR: a search for dedup (and for the crosswalk) —
every page, next links only on the tenant's own base URL, ``Prefer: handling=strict``, the self
link's parameters checked, a failure never taken for "nothing found" — and any read (a page, a
resource by id) sent again within the attempt when it failed in passing (activities/rereads.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from support.activities import activity_environment
from temporalio.exceptions import ApplicationError

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.fhir_http import MAX_SEARCH_PAGES
from activities.rereads import PAGE_READ_TRIES
from adapters.fhir_r4 import CreateRequest, prepare_create
from adapters.tenants import Capabilities, Tenant, TenantRegistry, Vendor
from workers import samples

BASE = "https://ehr.test/fhir/r4"
Handler = Callable[[httpx.Request], httpx.Response]


def tenant(drops_identifiers: bool = True) -> Tenant:
    return Tenant(
        id="t1",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url=BASE,
        capabilities=Capabilities(drops_identifiers=drops_identifiers),
        breaker={"failures": 1000},
    )


def bundle(
    resources: list[dict[str, Any]], self_url: str | None = None, next_url: str | None = None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}] if self_url else []
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


class ScriptedEhr:
    """Answers each request with ``handler``; records every request it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def ours_and_others() -> tuple[CreateRequest, dict[str, Any], list[dict[str, Any]]]:
    reading = samples.heart_rate("p1", 72)
    request = prepare_create(tenant(), reading, "t1:k")
    copy = {**reading, "id": "ours", "valueQuantity": {**reading["valueQuantity"], "value": 72.0}}
    others = [{**samples.heart_rate("p1", 60 + i), "id": f"o{i}"} for i in range(3)]
    return request, copy, others


async def find(ehr: ScriptedEhr, request: CreateRequest, t: Tenant | None = None) -> Any:
    the_tenant = t or tenant()
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        steps = EhrWrites(EhrClient(TenantRegistry([the_tenant], "test"), http))
        return await activity_environment().run(steps._find_existing, the_tenant, request, "r-1")


def first_self(request: CreateRequest) -> str:
    return f"{BASE}/{request.search_query()}"


async def test_every_page_is_read_whatever_shape_the_next_link_has() -> None:
    """Absolute under the base, relative, HAPI's ``{base}?_getpages=``: our copy on page four."""
    request, copy, others = ours_and_others()

    def answer(r: httpx.Request) -> httpx.Response:
        if "_getpages" in r.url.params:
            return httpx.Response(200, json=bundle([copy]))
        if r.url.params.get("_offset") == "2":
            return httpx.Response(200, json=bundle(others[2:], next_url=f"{BASE}?_getpages=x1"))
        if r.url.params.get("_offset") == "1":
            return httpx.Response(200, json=bundle(others[1:2], next_url="Observation?_offset=2"))
        page_two = f"{BASE}/Observation?_offset=1"
        return httpx.Response(200, json=bundle(others[:1], first_self(request), page_two))

    ehr = ScriptedEhr(answer)
    found = await find(ehr, request)

    assert [r["id"] for r in found] == ["ours"]
    assert len(ehr.requests) == 4
    assert {r.url.host for r in ehr.requests} == {"ehr.test"}
    assert all(r.headers["Prefer"] == "handling=strict" for r in ehr.requests)
    assert ehr.requests[3].url.path == "/fhir/r4/"  # HAPI's paging, on the base


@pytest.mark.parametrize(
    "next_url",
    [
        "https://proxy.internal:8443/fhir/r4/Observation?_offset=1",
        "http://ehr.test/fhir/r4/Observation?_offset=1",  # no TLS for the token
        "https://ehr.test:444/fhir/r4/Observation?_offset=1",
        "https://ehr.test/fhir/other/Observation?_offset=1",
        "https://ehr.test.example.com/fhir/r4/Observation?_offset=1",
        "//elsewhere.test/fhir/r4/Observation?_offset=1",
        "https://ehr.test/fhir/r4/../admin/Observation?_offset=1",
    ],
)
async def test_a_next_link_outside_the_base_url_is_refused_not_followed(next_url: str) -> None:
    request, _copy, others = ours_and_others()
    ehr = ScriptedEhr(
        lambda r: httpx.Response(200, json=bundle(others, first_self(request), next_url))
    )
    with pytest.raises(ApplicationError) as failure:
        await find(ehr, request)

    assert failure.value.type == "unsupported" and failure.value.non_retryable
    assert "next-page link" in failure.value.message
    assert [r.url.host for r in ehr.requests] == ["ehr.test"]  # nothing sent elsewhere


@pytest.mark.parametrize(
    ("drops_identifiers", "dropped"), [(False, "identifier"), (True, "patient")]
)
async def test_a_criterion_missing_from_the_self_link_fails_the_search(
    drops_identifiers: bool, dropped: str
) -> None:
    """A lenient server ignored our criterion and answered with everything: not an answer."""
    t = tenant(drops_identifiers)
    request = prepare_create(t, samples.heart_rate("p1", 72), "t1:k")
    path, _, query = request.search_query().partition("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith(f"{dropped}="))
    ehr = ScriptedEhr(lambda r: httpx.Response(200, json=bundle([], f"{BASE}/{path}?{kept}")))

    with pytest.raises(ApplicationError) as failure:
        await find(ehr, request, t)

    assert failure.value.type == "unsupported" and failure.value.non_retryable
    assert f"ignored the search parameter '{dropped}'" in failure.value.message
    assert "p1" not in failure.value.message and "t1:k" not in failure.value.message


async def test_a_dropped_narrowing_parameter_or_no_self_link_is_accepted() -> None:
    """Without ``code`` the answer is a superset the fingerprint filters; without a self link
    (R4 SHALL, often omitted) the strict handling is the guard."""
    request, copy, _others = ours_and_others()
    without_code = f"{BASE}/Observation?patient=Patient/p1&_count=200"
    for self_url in (without_code, None):
        ehr = ScriptedEhr(lambda r, s=self_url: httpx.Response(200, json=bundle([copy], s)))
        assert [r["id"] for r in await find(ehr, request)] == ["ours"]
        assert "code" in unquote(str(ehr.requests[0].url))


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (500, None, "transient"),
        (429, None, "transient"),
        (400, None, "validation"),
        (200, "<html>login</html>", "transient"),
        (200, {"resourceType": "OperationOutcome"}, "transient"),
    ],
)
async def test_a_failed_page_raises_and_never_reads_as_nothing_found(
    status: int, body: Any, error_class: str
) -> None:
    request, _copy, others = ours_and_others()

    def answer(r: httpx.Request) -> httpx.Response:
        if "_offset" not in r.url.params:  # the first page is fine, the second fails
            page_two = f"{BASE}/Observation?_offset=1"
            return httpx.Response(200, json=bundle(others, first_self(request), page_two))
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=body or "")

    with pytest.raises(ApplicationError) as failure:
        await find(ScriptedEhr(answer), request)
    assert failure.value.type == error_class


def failing_page_two(
    request: CreateRequest,
    copy: dict[str, Any],
    others: list[dict[str, Any]],
    failures: int,
    failed: Callable[[], httpx.Response],
) -> ScriptedEhr:
    """Page one lists ``others``; page two (our copy) fails ``failures`` times, then answers."""
    left = [failures]

    def answer(r: httpx.Request) -> httpx.Response:
        if "_offset" not in r.url.params:
            page_two = f"{BASE}/Observation?_offset=1"
            return httpx.Response(200, json=bundle(others, first_self(request), page_two))
        if left[0] > 0:
            left[0] -= 1
            return failed()
        return httpx.Response(200, json=bundle([copy]))

    return ScriptedEhr(answer)


def dropped_connection() -> httpx.Response:
    raise httpx.ReadError("connection reset")


PASSING_FAILURES: dict[str, Callable[[], httpx.Response]] = {
    "503": lambda: httpx.Response(503),
    "429 without Retry-After": lambda: httpx.Response(429),
    "429 with a short Retry-After": lambda: httpx.Response(429, headers={"Retry-After": "1"}),
    "dropped connection": dropped_connection,
    "200 that is no Bundle": lambda: httpx.Response(200, text="<html>busy</html>"),
}


@pytest.mark.parametrize("failed", PASSING_FAILURES.values(), ids=PASSING_FAILURES.keys())
async def test_a_page_that_failed_in_passing_is_read_again_within_the_attempt(
    failed: Callable[[], httpx.Response],
) -> None:
    """One bad page among many does not cost the attempt (and its backoff): a GET is re-read."""
    request, copy, others = ours_and_others()
    ehr = failing_page_two(request, copy, others, PAGE_READ_TRIES - 1, failed)

    found = await find(ehr, request)

    assert [r["id"] for r in found] == ["ours"]
    assert len(ehr.requests) == 1 + PAGE_READ_TRIES
    assert all(r.method == "GET" for r in ehr.requests)


async def test_a_page_that_keeps_failing_fails_the_attempt_after_its_tries() -> None:
    request, copy, others = ours_and_others()
    ehr = failing_page_two(request, copy, others, PAGE_READ_TRIES, lambda: httpx.Response(503))

    with pytest.raises(ApplicationError) as failure:
        await find(ehr, request)

    assert failure.value.type == "transient" and not failure.value.non_retryable
    assert len(ehr.requests) == 1 + PAGE_READ_TRIES


@pytest.mark.parametrize(
    ("failed", "error_class"),
    [
        (lambda: httpx.Response(400), "validation"),
        (lambda: httpx.Response(403), "authorization"),
        (lambda: httpx.Response(429, headers={"Retry-After": "30"}), "transient"),
        (lambda: httpx.Response(503, headers={"Retry-After": "120"}), "transient"),
    ],
    ids=["400", "403", "429 asking for 30 s", "503 asking for 2 min"],
)
async def test_a_refused_page_or_one_the_ehr_asked_time_for_is_not_read_again(
    failed: Callable[[], httpx.Response], error_class: str
) -> None:
    """A refusal will not change on a re-read, and an EHR that asked for time gets it: the attempt
    fails and the workflow's backoff (on top of Retry-After) takes over."""
    request, copy, others = ours_and_others()
    ehr = failing_page_two(request, copy, others, 1, failed)

    with pytest.raises(ApplicationError) as failure:
        await find(ehr, request)

    assert failure.value.type == error_class
    assert len(ehr.requests) == 2


async def test_a_search_that_never_ends_is_bounded() -> None:
    request, _copy, others = ours_and_others()

    def answer(r: httpx.Request) -> httpx.Response:
        offset = int(r.url.params.get("_offset", "0"))
        next_url = f"{BASE}/Observation?_offset={offset + 1}"
        return httpx.Response(200, json=bundle(others, first_self(request), next_url))

    ehr = ScriptedEhr(answer)
    with pytest.raises(ApplicationError) as failure:
        await find(ehr, request)

    assert failure.value.type == "unsupported" and failure.value.non_retryable
    assert f"past {MAX_SEARCH_PAGES} pages" in failure.value.message
    assert len(ehr.requests) == MAX_SEARCH_PAGES


async def test_the_crosswalk_search_is_strict_paged_and_checked() -> None:
    """``search`` (identity crosswalk): every page, matches only, and a dropped identifier fails."""
    patient = {"resourceType": "Patient", "id": "pt-1"}
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    query = "Patient?identifier=urn%3Ainternal%7C42"

    organization = {"resourceType": "Organization", "id": "org-1"}

    def answer(r: httpx.Request) -> httpx.Response:
        if "_offset" in r.url.params:  # an outcome without a search mode: not a match either
            page = bundle([patient])
            page["entry"].append({"resource": outcome})
            return httpx.Response(200, json=page)
        page = bundle([outcome, organization], f"{BASE}/{query}", f"{BASE}/Patient?_offset=1")
        page["entry"][0]["search"] = {"mode": "outcome"}
        page["entry"][1]["search"] = {"mode": "include"}
        return httpx.Response(200, json=page)

    async with httpx.AsyncClient(transport=httpx.MockTransport(ScriptedEhr(answer))) as http:
        client = EhrClient(TenantRegistry([tenant(False)], "test"), http)
        found = await activity_environment().run(client.search, client.tenant("t1"), query, "r-1")
    assert found == [patient]

    lenient = ScriptedEhr(lambda r: httpx.Response(200, json=bundle([patient], f"{BASE}/Patient")))
    async with httpx.AsyncClient(transport=httpx.MockTransport(lenient)) as http:
        client = EhrClient(TenantRegistry([tenant(False)], "test"), http)
        with pytest.raises(ApplicationError, match="'identifier'"):
            await activity_environment().run(client.search, client.tenant("t1"), query, "r-1")
    assert lenient.requests[0].headers["Prefer"] == "handling=strict"


async def read_through(ehr: ScriptedEhr, path: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        client = EhrClient(TenantRegistry([tenant(False)], "test"), http)
        return await activity_environment().run(client.read, client.tenant("t1"), path, "r-1")


@pytest.mark.parametrize("failed", PASSING_FAILURES.values(), ids=PASSING_FAILURES.keys())
async def test_a_read_by_id_that_failed_in_passing_is_sent_again_within_the_attempt(
    failed: Callable[[], httpx.Response],
) -> None:
    """The read an update makes before it writes (and a read-back): a GET, so re-sent at once."""
    stored = {**samples.heart_rate("p1", 72), "id": "obs-1", "meta": {"versionId": "3"}}
    left = [PAGE_READ_TRIES - 1]

    def answer(r: httpx.Request) -> httpx.Response:
        if left[0] > 0:
            left[0] -= 1
            response = failed()
            if response.status_code == 200:  # a read's answer that is no resource at all
                return httpx.Response(503)
            return response
        return httpx.Response(200, json=stored)

    ehr = ScriptedEhr(answer)
    assert await read_through(ehr, "Observation/obs-1") == stored
    assert len(ehr.requests) == PAGE_READ_TRIES


@pytest.mark.parametrize(("status", "read_as"), [(404, None), (410, None), (400, "validation")])
async def test_a_read_the_ehr_answered_is_not_sent_again(status: int, read_as: str | None) -> None:
    ehr = ScriptedEhr(lambda r: httpx.Response(status))
    if read_as is None:
        assert await read_through(ehr, "Observation/obs-1") is None
    else:
        with pytest.raises(ApplicationError) as failure:
            await read_through(ehr, "Observation/obs-1")
        assert failure.value.type == read_as
    assert len(ehr.requests) == 1
