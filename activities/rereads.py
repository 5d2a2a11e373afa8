"""A read (one page of a search, a resource by id) read again within the attempt when it fails
for a passing reason.

A search for our earlier copies can span many pages (an inpatient's Observations), and every page
must be read: an incomplete answer is never "nothing found". An update reads the resource before
it writes. Failing the whole attempt on one bad read makes the odds of a clean attempt fall with
every request, and each failed attempt costs its backoff (up to minutes), so a write to a crowded
chart could wait for an hour on an EHR that answers most requests. A GET changes nothing, so a
read that failed transiently (5xx, 429, a dropped connection, a search answer that is no Bundle)
is sent again at once, a few times, with a short jittered pause, as long as the attempt's deadline
leaves room (activities/deadline.py). A refusal (4xx), a Retry-After longer than a short pause
(the EHR asked for time, or the tenant's circuit is open) and the last try fail the attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deadline import MIN_REQUEST_SECONDS, seconds_left
from activities.errors import ErrorClass, step_failure
from activities.fhir_http import STRICT_HANDLING, json_body

#: Tries of one read within an attempt (the first read and its re-reads).
PAGE_READ_TRIES = 3
#: The pause before a re-read is uniform in [0, PAUSE * 2**(tries-1)] seconds.
PAGE_RETRY_PAUSE = 0.25
#: A Retry-After (or an open circuit) longer than this fails the attempt instead of waiting.
LONGEST_PAUSE = 2.0
_PASSING = frozenset({ErrorClass.TRANSIENT.value, ErrorClass.TRANSPORT.value})

Send = Callable[..., Awaitable[httpx.Response]]
Failure = Callable[[httpx.Response, str], Exception]


T = TypeVar("T")


async def reread(read: Callable[[], Awaitable[T]]) -> T:
    """``read()`` (one GET and what its answer means), tried again on a passing failure."""
    tries = 0
    while True:
        tries += 1
        try:
            return await read()
        except ApplicationError as exc:
            pause = _pause_before_reread(exc, tries)
            if pause is None:
                raise
        if activity.in_activity():
            activity.heartbeat()
        await asyncio.sleep(pause)


async def read_page(send: Send, failure: Failure, path: str, what: str) -> dict[str, Any]:
    """The searchset Bundle at ``path`` (``send(method, path, headers=...)`` sends one GET,
    ``failure`` turns an unwanted answer into its step failure), read again as ``reread``."""
    return await reread(lambda: _read_once(send, failure, path, what))


async def _read_once(send: Send, failure: Failure, path: str, what: str) -> dict[str, Any]:
    response = await send("GET", path, headers=dict(STRICT_HANDLING))
    if response.status_code != 200:
        raise failure(response, what)
    bundle = json_body(response)
    if bundle is None or bundle.get("resourceType") != "Bundle":
        raise step_failure(
            ErrorClass.TRANSIENT,
            f"{what}: HTTP 200 without a searchset Bundle",
            attempt=activity.info().attempt if activity.in_activity() else 1,
        )
    return bundle


def _pause_before_reread(exc: ApplicationError, tries: int) -> float | None:
    """Seconds to wait before reading the page again; None: fail the attempt with ``exc``."""
    if tries >= PAGE_READ_TRIES or exc.type not in _PASSING:
        return None
    told = exc.details[0] if exc.details and isinstance(exc.details[0], int | float) else 0.0
    pause = float(told) + random.uniform(0, PAGE_RETRY_PAUSE * 2 ** (tries - 1))
    left = seconds_left()
    if told > LONGEST_PAUSE or (left is not None and left - pause < MIN_REQUEST_SECONDS):
        return None
    return pause
