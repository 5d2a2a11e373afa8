"""The client every EHR request goes through, with the FHIR interactions named as in the spec.

Behind each request, per tenant: the circuit breaker, the pacer and the concurrency slot (every
wait comes before the decision to send, and the request gets only the time its attempt has left:
activities/deadline.py), SMART Backend Services tokens (an ``httpx.Auth``, in
activities/smart_auth.py), a span and a latency metric (activities/ehr_telemetry.py), and the
error taxonomy: a transport failure or an unwanted status becomes a step failure of exactly one
class (activities/errors.py).

The interactions: ``read`` and ``vread``, ``search`` (every page, strict), ``create`` and
``update_latest``, which owns read → change → guarded write → read again when someone wrote in
between (an update and a withdrawal are both changes of the latest version).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

import httpx
from temporalio import activity

from activities.circuit_breaker import CircuitBreaker
from activities.deadline import acquire_slot, request_timeout, wait_for_turn
from activities.ehr_telemetry import ehr_exchange
from activities.errors import RETRYABLE, ErrorClass, known_tenant, step_failure
from activities.fhir_http import (
    MAX_SEARCH_PAGES,
    LinkOutsideBase,
    error_class_for_status,
    ignored_criteria,
    json_body,
    meta_of,
    next_page_path,
    outcome_summary,
    retry_after,
    searchset_matches,
    version_of,
)
from activities.models import WriteReceipt
from activities.pacer import Pacer
from activities.rereads import read_page, reread
from activities.smart_auth import SmartBackendAuth
from adapters.fhir_r4 import FHIR_JSON, fhir_query_params
from adapters.merge import changed_elements, guarded_patch
from adapters.schema_drift import drift_fields
from adapters.tenants import Tenant, TenantRegistry

#: Exceptions raised before anything was sent. Every other failure of an exchange may have come
#: after (part of) the request reached the EHR: its outcome is unknown (ambiguous).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
JSON_PATCH = "application/json-patch+json"
#: A change that loses a race with another writer re-reads and tries again this many times.
UPDATE_RACES = 3


@dataclass(frozen=True)
class Revision:
    """What ``update_latest`` does with the version it read: write ``body`` over it — or nothing,
    with ``body`` None, when that version already holds the change. ``expected`` is what the
    resource must show afterwards (the read-back compares it)."""

    body: dict[str, Any] | None
    expected: dict[str, Any]


#: Decides the revision of the latest version read (may read more, e.g. a base version to merge).
Change = Callable[[dict[str, Any]], Awaitable[Revision]]


class EhrClient:
    def __init__(self, tenants: TenantRegistry, http: httpx.AsyncClient) -> None:
        self._tenants = tenants
        self._http = http
        self._auth = SmartBackendAuth(http)
        self._breakers = {
            tenant.id: CircuitBreaker(tenant.breaker.failures, tenant.breaker.cooldown_seconds)
            for tenant in tenants
        }
        self._pacers = {
            tenant.id: Pacer(tenant.rate_limit_per_second)
            for tenant in tenants
            if tenant.rate_limit_per_second
        }
        self._slots = {
            tenant.id: asyncio.Semaphore(tenant.max_concurrent_requests)
            for tenant in tenants
            if tenant.max_concurrent_requests
        }

    def tenant(self, tenant_id: str) -> Tenant:
        return known_tenant(self._tenants, tenant_id)

    def share_tenant_limit(self, tenant_id: str, workers: int, rank: int) -> None:
        """This process is ``rank`` of ``workers`` serving the tenant (workers/rate_share.py)."""
        if pacer := self._pacers.get(tenant_id):
            pacer.share(workers, rank)

    # -- FHIR interactions ------------------------------------------------------------------

    async def read(self, tenant: Tenant, path: str, request_id: str) -> dict[str, Any] | None:
        """The resource at ``path`` (None: 404/410), its ``meta.versionId`` filled from the ETag
        where the body has none; read again when it fails in passing (activities/rereads.py)."""
        return await reread(partial(self._read_once, tenant, path, request_id))

    async def _read_once(self, tenant: Tenant, path: str, request_id: str) -> dict[str, Any] | None:
        response = await self.send(tenant, "GET", path, request_id)
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            raise self.failure(response, f"read {path.split('/')[0]}")
        resource = json_body(response) or {}
        rtype, _, rest = path.partition("/")
        if resource and (
            resource.get("resourceType") != rtype
            or resource.get("id", rest.split("/")[0]) != rest.split("/")[0]
        ):
            # a read answered by something else (a search Bundle for ``Observation/.``)
            raise step_failure(
                ErrorClass.EHR_REJECTED, f"read {rtype}: the EHR answered another resource"
            )
        if version := version_of(resource, response):
            resource["meta"] = {**meta_of(resource), "versionId": version}
        return resource

    async def vread(
        self, tenant: Tenant, reference: str, version: str, request_id: str
    ) -> dict[str, Any] | None:
        return await self.read(tenant, f"{reference}/_history/{version}", request_id)

    async def search(
        self,
        tenant: Tenant,
        query: str,
        request_id: str,
        what: str | None = None,
        optional: frozenset[str] = frozenset(),
    ) -> list[dict[str, Any]]:
        """The matches on every page of ``query``, sent with ``Prefer: handling=strict``. Raises,
        never answers "nothing found", when a page fails (read again first when the failure
        may pass: activities/rereads.py) or is no searchset Bundle, when the server
        ignored one of our criteria but ``optional`` ones (fhir_http.ignored_criteria), when a
        next link leads elsewhere (``next_page``) or after MAX_SEARCH_PAGES pages."""
        what = what or f"search {query.split('?')[0]}"
        found: list[dict[str, Any]] = []
        path: str | None = query
        pages = 0
        while path is not None:
            if pages == MAX_SEARCH_PAGES:
                raise step_failure(
                    ErrorClass.UNSUPPORTED,
                    f"{what}: the EHR's answer goes on past {MAX_SEARCH_PAGES} pages; an "
                    "incomplete answer cannot be used, so the search stops here",
                )
            pages += 1
            bundle = await read_page(
                partial(self.send, tenant, request_id=request_id), self.failure, path, what
            )
            if pages == 1 and (ignored := ignored_criteria(bundle, query, optional)):
                raise step_failure(
                    ErrorClass.UNSUPPORTED,
                    f"{what}: the EHR ignored the search parameter "
                    f"{', '.join(repr(name) for name in ignored)} (not in the Bundle's self link, "
                    "despite Prefer: handling=strict), so its answer is not an answer to this "
                    "search and cannot be used",
                )
            found += searchset_matches(bundle)
            path = self.next_page(bundle, tenant)
        return found

    async def create(
        self,
        tenant: Tenant,
        resource_type: str,
        body: dict[str, Any],
        headers: dict[str, str],
        request_id: str,
    ) -> httpx.Response:
        """POST a resource; the answer as it came (the caller reads 201/200, a 412 to
        ``If-None-Exist``, or a vendor's refusal)."""
        return await self.send(
            tenant, "POST", resource_type, request_id, headers=headers, json=body
        )

    async def update_latest(
        self, tenant: Tenant, target: str, request_id: str, change: Change, action: str
    ) -> WriteReceipt:
        """Apply ``change`` to the latest version of ``target``: read it, let ``change`` decide,
        write over exactly that version (``_write_over``) and, when someone wrote in between,
        read again (UPDATE_RACES times). ``action`` names it in failures ("update", "withdraw")."""
        resource_type = target.split("/", 1)[0]
        for _race in range(UPDATE_RACES):
            current = await self.read(tenant, target, request_id)
            if current is None:
                raise step_failure(ErrorClass.NOT_FOUND, f"{resource_type} to {action} is gone")
            revision = await change(current)
            if revision.body is None:
                return _receipt(resource_type, current, 200, revision.expected)
            response = await self._write_over(tenant, target, request_id, current, revision.body)
            if response is None:
                continue  # someone wrote between our read and our write: read again
            if response.status_code not in (200, 201):
                raise self.failure(response, f"{action} {resource_type}")
            version = version_of(json_body(response) or {}, response)
            stored = {**current, "meta": {"versionId": version}}
            return _receipt(resource_type, stored, response.status_code, revision.expected)
        raise step_failure(
            ErrorClass.CONFLICT,
            f"the {resource_type} kept changing while we tried to {action} it "
            f"({UPDATE_RACES} tries)",
        )

    async def _write_over(
        self,
        tenant: Tenant,
        target: str,
        request_id: str,
        current: dict[str, Any],
        body: dict[str, Any],
    ) -> httpx.Response | None:
        """Write ``body`` over ``current`` (read just before) so that the EHR refuses it when
        anyone wrote in between: If-Match with the version read where the tenant honours it, and
        a PATCH tests the elements it changes at their values as read (``guarded_patch``). None
        when the EHR refused it because the resource changed since our read — 409/412, or 400/422
        to a patch when a new read shows the change (servers answer a failed ``test`` with any of
        these) — so read again. Any other answer is returned as it is."""
        version = version_of(current)
        headers = {"Content-Type": FHIR_JSON}
        payload: dict[str, Any] | list[dict[str, Any]]
        if tenant.capabilities.if_match and version:
            headers["If-Match"] = f'W/"{version}"'
        if tenant.capabilities.patch:
            headers["Content-Type"] = JSON_PATCH
            tested_version = None if "If-Match" in headers else version
            method, payload = "PATCH", guarded_patch(current, body, tested_version)
        elif "If-Match" in headers:
            method, payload = "PUT", body
        else:
            raise step_failure(
                ErrorClass.UNSUPPORTED,
                f"{target.split('/')[0]} not written: nothing would stop it overwriting a change "
                "made since our read (the EHR gave no version for If-Match, and the tenant takes "
                "no PATCH)",
            )
        response = await self.send(
            tenant, method, target, request_id, headers=headers, json=payload
        )
        if response.status_code in (409, 412):
            return None
        if method == "PATCH" and response.status_code in (400, 422):
            now = await self.read(tenant, target, request_id)
            if now is None or version_of(now) != version or changed_elements(current, now):
                return None
        return response

    # -- one exchange -----------------------------------------------------------------------

    def next_page(self, bundle: dict[str, Any], tenant: Tenant) -> str | None:
        """The next page of a searchset as a path under the tenant's base URL (None: last page);
        ``unsupported`` when the link leads elsewhere (fhir_http.next_page_path says why)."""
        try:
            return next_page_path(bundle, tenant.base_url())
        except LinkOutsideBase:
            raise step_failure(
                ErrorClass.UNSUPPORTED,
                "the EHR's next-page link leads outside the tenant's FHIR base URL (another host, "
                "scheme or path): not followed, so that the tenant's token goes nowhere else; an "
                "incomplete answer cannot be used",
            ) from None

    @staticmethod
    def _fhir_url(tenant: Tenant, path: str) -> str:
        url = f"{tenant.base_url()}/{path}"
        if params := fhir_query_params(tenant):
            url += ("&" if "?" in path else "?") + urlencode(params)
        return url

    async def send(
        self,
        tenant: Tenant,
        method: str,
        path: str,
        request_id: str,
        *,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        **content: Any,
    ) -> httpx.Response:
        """One exchange, behind the tenant's circuit breaker, with transport failures mapped onto
        the taxonomy; transient answers (5xx, 429) are returned, and counted as failures. FHIR
        requests carry the tenant's token (a 401 gets one more try with a fresh one: SmartAuth).
        ``url`` (a vendor's proprietary API, which has its own credentials) replaces the FHIR URL
        of ``path``; ``content`` is httpx's ``json=`` or ``data=``."""
        attempt = activity.info().attempt
        breaker = self._breakers[tenant.id]
        what = f"{method} {path.split('?')[0]}"
        if wait := breaker.remaining_open():
            raise step_failure(
                ErrorClass.TRANSIENT,
                f"{what}: circuit open for tenant '{tenant.id}' after repeated failures",
                attempt=attempt,
                retry_after=timedelta(seconds=wait),
            )
        sent_headers = {"Accept": FHIR_JSON, "X-Request-Id": request_id, **(headers or {})}
        # the token comes first: fetching it is not sending, and may take its own time
        auth = None if url is not None else await self._auth.for_request(tenant, method, path)
        if pacer := self._pacers.get(tenant.id):
            await wait_for_turn(pacer.try_acquire, what)
        async with AsyncExitStack() as stack:
            if slot := self._slots.get(tenant.id):
                await acquire_slot(slot.acquire, what)
                stack.callback(slot.release)
            timeout = request_timeout(tenant.timeout_seconds, what)
            with ehr_exchange(tenant, method, path, sent_headers) as call:
                try:
                    async with asyncio.timeout(timeout):  # httpx's timeout is per phase
                        response = await self._http.request(
                            method,
                            url or self._fhir_url(tenant, path),
                            headers=sent_headers,
                            auth=auth,
                            timeout=timeout,
                            **content,
                        )
                except _NOT_SENT as exc:
                    breaker.record_failure()
                    raise step_failure(
                        ErrorClass.TRANSPORT, f"{what}: {type(exc).__name__}", attempt=attempt
                    ) from None
                except (httpx.RequestError, TimeoutError) as exc:
                    # anything else may have happened after (part of) the request went out: a
                    # write error mid-body, a dropped or undecodable answer, our own time limit;
                    # a read changes nothing, so only a write's outcome is unknown
                    breaker.record_failure()
                    if method == "GET":
                        raise step_failure(
                            ErrorClass.TRANSIENT, f"{what}: {type(exc).__name__}", attempt=attempt
                        ) from None
                    raise step_failure(
                        ErrorClass.AMBIGUOUS,
                        f"{what}: {type(exc).__name__} after sending",
                        attempt=attempt,
                        sent_at=datetime.now(UTC),
                    ) from None
                call.answered(response)
        if error_class_for_status(response.status_code) in RETRYABLE:
            breaker.record_failure()
        else:
            breaker.record_success()
        return response

    def failure(self, response: httpx.Response, what: str, creating: bool = False) -> Exception:
        """The step failure for an answer that is not the one wanted. For a create, a 500, 502
        or 504 is ambiguous: unlike 503 and 429 (refused unprocessed, RFC 9110) it says nothing
        about whether the EHR committed (docs/write-safety.md)."""
        if creating and response.status_code in (500, 502, 504):
            return step_failure(
                ErrorClass.AMBIGUOUS,
                f"{what}: {outcome_summary(response)}: the EHR may have committed",
                attempt=activity.info().attempt,
                sent_at=datetime.now(UTC),
            )
        if fields := drift_fields(response.status_code, json_body(response)):
            return step_failure(
                ErrorClass.SCHEMA_DRIFT,
                f"schema drift at {', '.join(fields)}: {what}: {outcome_summary(response)}; the "
                "tenant's contract changed — run `writeback tenants check` and update its adapter",
            )
        return step_failure(
            error_class_for_status(response.status_code),
            f"{what}: {outcome_summary(response)}",
            attempt=activity.info().attempt,
            retry_after=retry_after(response),
        )


def _receipt(
    resource_type: str, resource: dict[str, Any], status: int, sent: dict[str, Any]
) -> WriteReceipt:
    return WriteReceipt(
        resource_type=resource_type,
        id=str(resource.get("id")),
        version=version_of(resource),
        created=False,
        status_code=status,
        sent=sent,
    )
