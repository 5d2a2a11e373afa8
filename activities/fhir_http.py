"""Reading FHIR HTTP answers: references from Location, versions from ETag, PHI-safe summaries
of OperationOutcomes, and searchset Bundles (matches, the criteria a server ignored, the next page).
Vendors differ here (docs/vendors.md: Epic's relative Location and empty body, Cerner's absolute
Location with ``Content-Length: 0``; HAPI's ``?_getpages=`` next links), so parsing accepts every
shape."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urljoin, urlsplit

import httpx

from activities.errors import ErrorClass
from adapters import reasons

_LOCATION = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/]+))?/?$"
)
_ETAG = re.compile(r'^(?:W/)?"(?P<vid>[^"]+)"$')
_VERSION = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def parse_location(location: str) -> tuple[str, str, str | None] | None:
    """(type, id, version) from an absolute or relative Location, with or without _history."""
    match = _LOCATION.search(location.split("?", 1)[0])
    if not match:
        return None
    return match["type"], match["id"], match["vid"]


def etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    match = _ETAG.match(etag.strip())
    return match["vid"] if match else None


def meta_of(resource: object) -> dict[str, Any]:
    """A resource's ``meta`` when it is an object (an EHR's answer may hold anything there)."""
    meta = resource.get("meta") if isinstance(resource, dict) else None
    return meta if isinstance(meta, dict) else {}


def id_of(resource: object) -> str | None:
    """A resource's ``id`` when it is a FHIR id (``[A-Za-z0-9-.]{1,64}``, not only dots)."""
    value = resource.get("id") if isinstance(resource, dict) else None
    return value if isinstance(value, str) and is_fhir_id(value) else None


def is_fhir_id(value: str) -> bool:
    return _VERSION.fullmatch(value) is not None and value.strip(".") != ""


def version_of(resource: object, response: httpx.Response | None = None) -> str | None:
    """A resource's ``meta.versionId``, else the version in the answer's ETag. A version that is
    not a FHIR id (``[A-Za-z0-9-.]{1,64}``), or a ``meta`` that is not an object, counts as no
    version: the answer is the EHR's, and a malformed one must not fail a write it committed."""
    version = meta_of(resource).get("versionId")
    if not (isinstance(version, str | int) and not isinstance(version, bool)):
        version = None
    if version is None and response is not None:
        version = etag_version(response.headers.get("ETag"))
    if version is None or not _VERSION.fullmatch(str(version)):
        return None
    return str(version)


def json_body(response: httpx.Response) -> dict[str, Any] | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(timedelta(0), when - datetime.now(UTC))


def outcome_summary(response: httpx.Response) -> str:
    """``HTTP 422 [invalid Observation.code 59012]``: status, issue codes, detail codes and element
    paths from an OperationOutcome, each in the grammar of adapters/reasons.py (anything else is
    ``?``). Diagnostics and details text are left out: EHRs echo submitted values there."""
    parts: list[str] = []
    body = json_body(response)
    if body and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue")
        for issue in (issues if isinstance(issues, list) else [])[:5]:
            if not isinstance(issue, dict):
                continue
            expressions = issue.get("expression")
            details = issue.get("details")
            codings = details.get("coding") if isinstance(details, dict) else None
            words = [reasons.issue_code(issue.get("code"))]
            words += [reasons.fhir_path(e) for e in _listed(expressions)[:3]]
            words += [
                reasons.detail_code(coding)
                for coding in _listed(codings)[:2]
                if isinstance(coding, dict) and coding.get("code")
            ]
            parts.append(" ".join(words))
    detail = f" [{'; '.join(parts)}]" if parts else ""
    if response.status_code == 403 and not response.content:
        # Epic's answer when the client is not registered for this API (docs/vendors.md quirk 5)
        detail = " [empty body: the client is probably not registered for this API at the EHR]"
    return reasons.safe_reason(f"HTTP {response.status_code}{detail}")


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def error_class_for_status(status: int) -> ErrorClass:
    if status == 429 or status >= 500:
        return ErrorClass.TRANSIENT
    if status in (400, 422):
        return ErrorClass.VALIDATION
    if status in (401, 403):
        return ErrorClass.AUTHORIZATION
    if status in (409, 412):
        return ErrorClass.CONFLICT
    if status in (404, 410):
        return ErrorClass.NOT_FOUND
    return ErrorClass.EHR_REJECTED


#: Sent with every search whose answer decides something: a server that does not support one of
#: our parameters must refuse the search rather than drop it (R4 search.html#errors).
STRICT_HANDLING = {"Prefer": "handling=strict"}
#: Pages one search may take before it is abandoned (at 200 a page: 10,000 resources).
MAX_SEARCH_PAGES = 50
#: Result parameters (search.html#return): not criteria, servers need not echo them.
RESULT_PARAMETERS = frozenset(
    {"_count", "_sort", "_elements", "_summary", "_total", "_include", "_revinclude", "_contained"}
    | {"_containedType", "_format", "_pretty"}
)


class LinkOutsideBase(Exception):
    """A searchset link that leads outside the tenant's FHIR base URL."""


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == relation and link.get("url"):
            return str(link["url"]).strip()
    return None


def _parameter_names(query: str) -> set[str]:
    """The names of a query string's parameters (``identifier`` for ``identifier:exact=…``)."""
    return {name.split(":")[0] for name, _ in parse_qsl(query, keep_blank_values=True)}


def ignored_criteria(bundle: dict[str, Any], query: str, optional: frozenset[str]) -> list[str]:
    """The criteria of ``query`` (``Type?name=value&…``) missing from the Bundle's ``self`` link,
    which R4 says SHALL show the parameters the server used: those a lenient server dropped.
    Parameters in ``optional`` and result parameters (``_count``…) are not checked.

    A Bundle without a self link is accepted (``Prefer: handling=strict`` is then the only guard):
    R4 requires the link, but several EHRs omit it, and refusing them would stop every write there.
    Only a first page's self link shows the query (HAPI's later pages show ``_getpages``)."""
    self_url = _link(bundle, "self")
    if self_url is None:
        return []
    kept = _parameter_names(urlsplit(self_url).query)
    sent = _parameter_names(query.partition("?")[2])
    return sorted(sent - kept - RESULT_PARAMETERS - optional)


def searchset_matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """A searchset's matches: not ``_include``d resources, nor an OperationOutcome the server
    adds about the search (``search.mode`` include / outcome)."""
    entries = bundle.get("entry")
    return [
        entry["resource"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and (entry.get("search") or {}).get("mode", "match") == "match"
        and entry["resource"].get("resourceType") != "OperationOutcome"
    ]


def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    try:
        port = url.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:  # not a port: nobody's origin
        return scheme, "", -1
    return scheme, (url.hostname or "").lower(), port


def next_page_path(bundle: dict[str, Any], base_url: str) -> str | None:
    """The Bundle's next page as a path under ``base_url`` (None: the last page).

    A next link is followed when it is relative, or on the base URL's origin (scheme, host,
    port) under its path: ``{base}/Observation?…&_offset=200``, or HAPI's ``{base}?_getpages=…``
    (then sent as ``{base}/?_getpages=…``). Any other link — another host (a proxy's internal
    name), http for https, a path outside the base — raises LinkOutsideBase: following it could
    send the tenant's token elsewhere (requests only ever go to the base URL), and stopping there
    would take part of an answer for all of it."""
    url = _link(bundle, "next")
    if url is None:
        return None
    base = urlsplit(base_url.rstrip("/") + "/")
    target = urlsplit(urljoin(base.geturl(), url))
    rest = target.path[len(base.path) :]
    if (
        _origin(target) != _origin(base)
        or not (target.path.startswith(base.path) or target.path == base.path.rstrip("/"))
        or ".." in unquote(rest).split("/")
    ):
        raise LinkOutsideBase("next")
    return rest + (f"?{target.query}" if target.query else "")
