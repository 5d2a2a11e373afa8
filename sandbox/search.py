"""Search (FHIR R4 search.html): parameters -> :class:`sandbox.store.Query`, and searchset Bundles.

Supported: ``identifier``, ``code``, ``category``, ``_tag`` (token: ``system|code``,
``code``, ``|code``, ``system|``; comma = OR), ``patient``, ``subject``,
``encounter`` (reference: ``Type/id``, absolute URL or bare id), ``_id``,
``_lastUpdated`` (prefixes eq, gt, ge, lt, le, sa, eb), ``_count`` and
``_offset`` (paging with ``self``/``next``/``previous`` links, offset-style or, per tenant,
HAPI-style: :mod:`sandbox.paging`). Result
parameters ``_format``, ``_pretty``, ``_summary``, ``_elements`` and ``_sort``
are accepted and ignored. Other parameters answer 400 with
``Prefer: handling=strict`` and are ignored otherwise. A ``lenient_search``
fault (:mod:`sandbox.faults`) makes one search forget ``identifier`` and
``_tag`` and ignore ``handling=strict``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from urllib.parse import urlencode

from sandbox.faults import fault_for_this_request
from sandbox.paging import PagingStyle, encode_token, page_url
from sandbox.responses import FhirError, Json
from sandbox.store import Query, TokenClause, TokenMatch, Version

TOKEN_PARAMS = frozenset({"identifier", "code", "category", "_tag"})
REFERENCE_PARAMS = frozenset({"patient", "subject", "encounter"})
IGNORED_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements", "_sort"})
SUPPORTED_PARAMS = TOKEN_PARAMS | REFERENCE_PARAMS | {"_id", "_lastUpdated", "_count", "_offset"}
#: What a search under a ``lenient_search`` fault does not know (and silently drops).
LENIENT_UNKNOWN = frozenset({"identifier", "_tag"})
DEFAULT_COUNT = 100
MAX_COUNT = 1000

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(.+)$")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_range(raw: str) -> tuple[str, str]:
    """[start, end) of a FHIR date/dateTime at its precision, as stored-format UTC strings."""
    m = _DATE.match(raw)
    if m is None:
        raise FhirError(400, "invalid", "_lastUpdated is not a FHIR date or dateTime")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz: tzinfo = UTC
    if zone and zone != "Z":
        tz = _offset(1 if zone[0] == "+" else -1, zone[1:])
    try:
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=tz)
            end = datetime(int(year) + 1, 1, 1, tzinfo=tz)
        elif day is None:
            start = datetime(int(year), int(month), 1, tzinfo=tz)
            end = (start + timedelta(days=32)).replace(day=1)
        elif hour is None:
            start = datetime(int(year), int(month), int(day), tzinfo=tz)
            end = start + timedelta(days=1)
        else:
            start = datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz
            )
            if fraction:
                ms = int((fraction[1:] + "000")[:3])
                start += timedelta(milliseconds=ms)
                end = start + timedelta(milliseconds=1)
            else:
                end = start + (timedelta(seconds=1) if second else timedelta(minutes=1))
    except ValueError:
        raise FhirError(400, "invalid", "_lastUpdated is not a valid date") from None
    return _iso(start), _iso(end)


def _offset(sign: int, hhmm: str) -> tzinfo:
    hours, minutes = hhmm.split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def _last_updated(raw: str) -> list[tuple[str, str]]:
    m = _PREFIX.match(raw)
    assert m is not None
    prefix, value = m.group(1) or "eq", m.group(2)
    start, end = date_range(value)
    if prefix == "eq":
        return [(">=", start), ("<", end)]
    if prefix in ("gt", "sa"):
        return [(">=", end)]
    if prefix in ("lt", "eb"):
        return [("<", start)]
    if prefix == "ge":
        return [(">=", start)]
    if prefix == "le":
        return [("<", end)]
    raise FhirError(400, "not-supported", f"_lastUpdated prefix {prefix} is not supported")


def _token(raw: str) -> TokenMatch:
    if "|" not in raw:
        return TokenMatch(None, raw)
    system, _, value = raw.partition("|")
    return TokenMatch(system, value or None)


def _reference(param: str, raw: str) -> TokenMatch:
    parts = raw.split("?")[0].rstrip("/").split("/")
    if len(parts) >= 2:
        return TokenMatch("", f"{parts[-2]}/{parts[-1]}")
    if param == "patient":
        return TokenMatch("", f"Patient/{raw}")
    if param == "encounter":
        return TokenMatch("", f"Encounter/{raw}")
    return TokenMatch("", raw, id_only=True)


def _int(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() but int("²") fails
        raise FhirError(400, "invalid", f"{name} must be a non-negative integer")
    return int(raw)


def parse_query(
    pairs: Sequence[tuple[str, str]],
    *,
    strict: bool,
    extra_ignored: Collection[str] = (),
    paging: bool = True,
) -> tuple[Query, list[tuple[str, str]]]:
    """AND-ed criteria and the (name, value) pairs that were used (for links)."""
    tokens: list[TokenClause] = []
    updated: list[tuple[str, str]] = []
    ids: list[str] | None = None
    count: int | None = DEFAULT_COUNT if paging else None
    offset = 0
    used: list[tuple[str, str]] = []
    fault = fault_for_this_request()
    lenient = paging and fault is not None and fault.kind == "lenient_search"
    strict = strict and not lenient
    for name, raw in pairs:
        if name in IGNORED_PARAMS or name in extra_ignored:
            continue
        if name not in SUPPORTED_PARAMS or (lenient and name in LENIENT_UNKNOWN):
            if strict:
                raise FhirError(400, "not-supported", f"Unsupported search parameter: {name}")
            continue
        if not raw:
            raise FhirError(400, "invalid", f"Empty value for search parameter {name}")
        if name == "_count":
            count = min(_int(name, raw), MAX_COUNT)
            continue
        if name == "_offset":
            offset = _int(name, raw)
            continue
        used.append((name, raw))
        values = raw.split(",")
        if name in TOKEN_PARAMS:
            tokens.append(TokenClause(name, tuple(_token(v) for v in values)))
        elif name in REFERENCE_PARAMS:
            tokens.append(TokenClause(name, tuple(_reference(name, v) for v in values)))
        elif name == "_id":
            ids = values if ids is None else [i for i in ids if i in values]
        else:
            updated += _last_updated(raw)
    query = Query(tuple(tokens), tuple(updated), None if ids is None else tuple(ids))
    if paging:
        query = Query(query.tokens, query.updated, query.ids, count, offset)
    return query, used


def searchset(
    base: str,
    rtype: str,
    query: Query,
    used: list[tuple[str, str]],
    total: int,
    page: list[Version],
    *,
    paging: PagingStyle = "offset",
    via_pages: bool = False,
) -> Json:
    """A searchset Bundle with ``self`` and, where they exist, ``next``/``previous`` links.

    ``paging="hapi"``: ``next``/``previous`` are ``{base}?_getpages=...`` links; so is ``self``
    when this page was itself asked for that way (``via_pages``)."""
    hapi = paging == "hapi" or via_pages
    token = encode_token(rtype, used) if hapi else ""

    def link(relation: str, offset: int, hapi: bool) -> Json:
        if hapi:
            return {"relation": relation, "url": page_url(base, token, offset, query.count or 0)}
        params = [*used, ("_count", str(query.count)), ("_offset", str(offset))]
        return {"relation": relation, "url": f"{base}/{rtype}?{urlencode(params)}"}

    links = [link("self", query.offset, via_pages)]
    count = query.count or 0
    if count and query.offset + count < total:
        links.append(link("next", query.offset + count, hapi))
    if count and query.offset > 0:
        links.append(link("previous", max(0, query.offset - count), hapi))
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/{rtype}/{v.id}", "resource": v.body, "search": {"mode": "match"}}
            for v in page
        ],
    }
