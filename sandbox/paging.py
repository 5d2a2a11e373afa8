"""HAPI FHIR-style paging links (tenant setting ``paging = "hapi"``).

HAPI FHIR pages a search through its base URL, not ``{base}/{Type}?...``::

    {base}?_getpages={token}&_getpagesoffset={offset}&_count={count}&_bundletype=searchset

HAPI's token names a search it keeps on the server; ours is stateless: the urlsafe base64
(unpadded) of a 4-byte SHA-256 check and ``{Type}?{the search's own parameters}``. A token is
validated when decoded (the alphabet, the check, UTF-8, a known resource type, a well-formed
query string): anything else is a 400 OperationOutcome. The check catches a mangled token, it
is no secret (a client could forge a search it may run anyway). ``_count``/``_offset`` inside a
token are overridden by the page's own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from sandbox.resources import model_class
from sandbox.responses import FhirError

PagingStyle = Literal["offset", "hapi"]
PAGING_STYLES: tuple[PagingStyle, ...] = ("offset", "hapi")
PAGES_PARAM = "_getpages"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,4096}$")
_CHECK = 4


def _check(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:_CHECK]


def seal(payload: bytes) -> str:
    """The token carrying ``payload`` (``{Type}?{query}``, UTF-8)."""
    return base64.urlsafe_b64encode(_check(payload) + payload).decode("ascii").rstrip("=")


def encode_token(rtype: str, used: Sequence[tuple[str, str]]) -> str:
    return seal(f"{rtype}?{urlencode(list(used))}".encode())


def _bad(what: str) -> FhirError:
    return FhirError(400, "invalid", f"Invalid paging request: {what}")


def decode_token(token: str) -> tuple[str, list[tuple[str, str]]]:
    """(resource type, search parameters) of a token; raises a 400 FhirError when malformed."""
    if not _TOKEN.match(token):
        raise _bad(f"{PAGES_PARAM} is not a paging token")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        check, payload = sealed[:_CHECK], sealed[_CHECK:]
        if check != _check(payload):
            raise ValueError("check")
        raw = payload.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise _bad(f"{PAGES_PARAM} is not a paging token") from None
    rtype, sep, query = raw.partition("?")
    if not sep or model_class(rtype) is None:
        raise _bad(f"{PAGES_PARAM} does not name a search")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise _bad(f"{PAGES_PARAM} does not name a search") from None
    return rtype, pairs


def token_type(token: str) -> str:
    """The token's resource type, or "" when malformed (the handler then answers 400)."""
    try:
        return decode_token(token)[0]
    except FhirError:
        return ""


def page_url(base: str, token: str, offset: int, count: int) -> str:
    params = {
        PAGES_PARAM: token,
        "_getpagesoffset": str(offset),
        "_count": str(count),
        "_bundletype": "searchset",
    }
    return f"{base}?{urlencode(params)}"


def _int(name: str, raw: str) -> str:
    if not (raw.isascii() and raw.isdigit()):
        raise _bad(f"{name} must be a non-negative integer")
    return raw


def page_request(params: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``GET {base}?_getpages=...`` -> (resource type, search pairs for that page)."""
    values = dict(params)
    token = values.get(PAGES_PARAM)
    if not token:
        raise _bad(f"GET on the base needs {PAGES_PARAM}")
    if values.get("_bundletype", "searchset") != "searchset":
        raise _bad("_bundletype must be searchset")
    rtype, pairs = decode_token(token)
    pairs = [(k, v) for k, v in pairs if k not in ("_count", "_offset")]
    pairs.append(("_offset", _int("_getpagesoffset", values.get("_getpagesoffset", "0"))))
    if "_count" in values:
        pairs.append(("_count", _int("_count", values["_count"])))
    return rtype, pairs
