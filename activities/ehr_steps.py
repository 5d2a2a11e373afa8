"""The EHR I/O steps of a write: send a create or an update, find what a create left behind, and
read back what the EHR stored.

Every create is idempotent at the EHR, so a retry after an ambiguous outcome cannot duplicate:
a conditional create (``If-None-Exist`` on the command identifier), a search for the command
identifier before creating (Epic, Oracle Health), or — where the EHR drops our identifier — a
search for the same clinical content (fingerprint). An update checks the current version just
before writing and sends ``If-Match`` where the tenant supports it.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from temporalio import activity

from activities.circuit_breaker import CircuitBreaker
from activities.deadline import acquire_slot, attempt_deadline, request_timeout, wait_for_turn
from activities.ehr_telemetry import ehr_exchange
from activities.errors import RETRYABLE, ErrorClass, step_failure
from activities.fhir_http import (
    MAX_SEARCH_PAGES,
    STRICT_HANDLING,
    LinkOutsideBase,
    error_class_for_status,
    etag_version,
    ignored_criteria,
    json_body,
    next_page_path,
    outcome_summary,
    parse_location,
    retry_after,
    searchset_matches,
)
from activities.models import (
    Copies,
    EhrCopies,
    EhrLocate,
    EhrUpdate,
    EhrVerify,
    EhrWithdraw,
    EhrWrite,
    ExamineOrder,
    Finding,
    FindingKind,
    ScannedResource,
    ScanOrder,
    ScanResult,
    Verification,
    WriteReceipt,
)
from activities.pacer import Pacer
from activities.smart_auth import SmartBackendAuth
from activities.vendor_api import VendorApi
from adapters import epic
from adapters.clinical_notes import comparable
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import (
    COMMAND_IDENTIFIER_SYSTEM,
    FHIR_JSON,
    NARROWING_PARAMETERS,
    TAGGED_TYPES,
    CreateRequest,
    DedupStrategy,
    differences,
    fhir_query_params,
    identifier_values,
    with_removals,
)
from adapters.ids import write_id_of
from adapters.merge import changed_elements, guarded_patch, three_way_merge
from adapters.schema_drift import drift_fields
from adapters.tenants import Tenant, TenantRegistry

#: Exceptions raised before anything was sent. Every other failure of an exchange may have come
#: after (part of) the request reached the EHR: its outcome is unknown (ambiguous).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
JSON_PATCH = "application/json-patch+json"
#: An update that loses a race with another writer re-reads and tries again this many times.
_UPDATE_RACES = 3


def _version_of(resource: dict[str, Any], response: httpx.Response | None = None) -> str | None:
    version = (resource.get("meta") or {}).get("versionId")
    if version is None and response is not None:
        version = etag_version(response.headers.get("ETag"))
    return str(version) if version is not None else None


class EhrSteps:
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
        self._vendor_api = VendorApi(self._send, self._fail_for)

    def share_tenant_limit(self, tenant_id: str, workers: int, rank: int) -> None:
        """This process is ``rank`` of ``workers`` serving the tenant (workers/rate_share.py)."""
        if pacer := self._pacers.get(tenant_id):
            pacer.share(workers, rank)

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise step_failure(ErrorClass.VALIDATION, f"unknown tenant '{tenant_id}'")
        return tenant

    async def _send(
        self, tenant: Tenant, method: str, path: str, request_id: str, **kwargs: Any
    ) -> httpx.Response:
        """One HTTP exchange, behind the tenant's circuit breaker, with transport failures mapped
        onto the taxonomy. Transient answers (5xx, 429) are returned, and counted as failures.
        A 401 drops the tenant's cached tokens and the request is sent once more with a fresh
        one; a second 401 is returned (an authorization failure)."""
        response = await self._exchange(tenant, method, path, request_id, **kwargs)
        if response.status_code == 401 and tenant.auth.kind != "none":
            self._auth.forget(tenant)
            response = await self._exchange(tenant, method, path, request_id, **kwargs)
        return response

    @staticmethod
    def _fhir_url(tenant: Tenant, path: str) -> str:
        url = f"{tenant.base_url()}/{path}"
        if params := fhir_query_params(tenant):
            url += ("&" if "?" in path else "?") + urlencode(params)
        return url

    async def _exchange(
        self,
        tenant: Tenant,
        method: str,
        path: str,
        request_id: str,
        url: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``url`` (a vendor's proprietary API) replaces the FHIR URL of ``path``."""
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
        headers = {
            "Accept": FHIR_JSON,
            "X-Request-Id": request_id,
            **kwargs.get("headers", {}),
            **(await self._auth.authorization(tenant, method, path) if url is None else {}),
        }
        arguments = {key: value for key, value in kwargs.items() if key != "headers"}
        # every wait comes before the decision to send, and the request gets only the time
        # its attempt has left (activities/deadline.py)
        if pacer := self._pacers.get(tenant.id):
            await wait_for_turn(pacer.try_acquire, what)
        async with AsyncExitStack() as stack:
            if slot := self._slots.get(tenant.id):
                await acquire_slot(slot.acquire, what)
                stack.callback(slot.release)
            timeout = request_timeout(tenant.timeout_seconds, what)
            with ehr_exchange(tenant, method, path, headers) as call:
                try:
                    async with asyncio.timeout(timeout):  # httpx's timeout is per phase
                        response = await self._http.request(
                            method,
                            url or self._fhir_url(tenant, path),
                            headers=headers,
                            timeout=timeout,
                            **arguments,
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

    def _fail_for(self, response: httpx.Response, what: str, creating: bool = False) -> Exception:
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

    async def _find_existing(
        self, tenant: Tenant, request: CreateRequest, request_id: str
    ) -> list[dict[str, Any]]:
        """The stored resources this command already made (by identifier or by fingerprint),
        from every page of the search."""
        found = await self._search(tenant, request.search_query(), request_id)
        return [resource for resource in found if request.is_ours(resource)]

    async def _search(self, tenant: Tenant, query: str, request_id: str) -> list[dict[str, Any]]:
        """Every resource a dedup search finds; a server may ignore the parameters that only
        narrow it (NARROWING_PARAMETERS: the caller filters what comes back anyway)."""
        return await self._search_pages(
            tenant, query, request_id, "search for this command's resource", NARROWING_PARAMETERS
        )

    async def _search_pages(
        self,
        tenant: Tenant,
        query: str,
        request_id: str,
        what: str,
        optional: frozenset[str] = frozenset(),
    ) -> list[dict[str, Any]]:
        """The matches on every page of ``query``, sent with ``Prefer: handling=strict``. Raises,
        never answers "nothing found", when a page fails, is no searchset Bundle, when the server
        ignored one of our criteria (fhir_http.ignored_criteria), when a next link leads
        elsewhere (_next_page) or after MAX_SEARCH_PAGES pages."""
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
            strict = dict(STRICT_HANDLING)
            response = await self._send(tenant, "GET", path, request_id, headers=strict)
            if response.status_code != 200:
                raise self._fail_for(response, what)
            bundle = json_body(response)
            if bundle is None or bundle.get("resourceType") != "Bundle":
                raise step_failure(
                    ErrorClass.TRANSIENT,
                    f"{what}: HTTP 200 without a searchset Bundle",
                    attempt=activity.info().attempt,
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
            path = _next_page(bundle, tenant.base_url())
        return found

    def _receipt_from_existing(
        self, request: CreateRequest, matches: list[dict[str, Any]], status: int
    ) -> WriteReceipt:
        if len(matches) > 1:
            references = ", ".join(
                f"{request.resource_type}/{match.get('id')}" for match in matches[:10]
            )
            raise step_failure(
                ErrorClass.DUPLICATE,
                f"the EHR already holds {len(matches)} {request.resource_type} resources "
                f"for this command ({references}); a person must choose which one stands "
                "(resolve with confirm and its reference)",
            )
        found = matches[0]
        return WriteReceipt(
            resource_type=request.resource_type,
            id=str(found["id"]),
            version=_version_of(found),
            created=False,
            dedup=request.dedup,
            status_code=status,
        )

    @activity.defn(name="write")
    async def write(self, order: EhrWrite) -> WriteReceipt:
        with attempt_deadline(order.send_by):
            return await self._write(order)

    async def _write(self, order: EhrWrite) -> WriteReceipt:
        tenant = self._tenant(order.tenant)
        request = order.request
        if request.dedup is not DedupStrategy.CONDITIONAL_CREATE:
            existing = await self._find_existing(tenant, request, order.request_id)
            if existing:
                return self._receipt_from_existing(request, existing, 200)
        if request.vendor_call is not None:
            stored_id = await self._vendor_api.write(tenant, request.vendor_call, order.request_id)
            return WriteReceipt(
                resource_type=request.resource_type,
                id=stored_id,
                version=None,
                created=True,
                dedup=request.dedup,
                status_code=200,
            )
        response = await self._send(
            tenant,
            "POST",
            request.resource_type,
            order.request_id,
            headers=request.headers(),
            json=request.body,
        )
        if response.status_code == 412 and request.dedup is DedupStrategy.CONDITIONAL_CREATE:
            raise step_failure(
                ErrorClass.DUPLICATE,
                "conditional create matched several resources for this command (HTTP 412)",
            )
        if response.status_code == 400 and epic.reading_already_exists(json_body(response)):
            return await self._already_filed(tenant, request, order.request_id)
        if response.status_code not in (200, 201):
            raise self._fail_for(response, f"create {request.resource_type}", creating=True)
        body = json_body(response) or {}
        location = parse_location(
            response.headers.get("Content-Location") or response.headers.get("Location") or ""
        )
        resource_id = body.get("id") or (location[1] if location else None)
        if not resource_id:
            # Acknowledged, but we cannot tell which resource: look for it.
            found = await self._find_existing(tenant, request, order.request_id)
            if not found:
                raise step_failure(ErrorClass.AMBIGUOUS, "create acknowledged without a reference")
            return self._receipt_from_existing(request, found, response.status_code)
        return WriteReceipt(
            resource_type=request.resource_type,
            id=str(resource_id),
            version=_version_of(body, response) or (location[2] if location else None),
            created=response.status_code == 201,
            dedup=request.dedup,
            status_code=response.status_code,
        )

    async def _already_filed(
        self, tenant: Tenant, request: CreateRequest, request_id: str
    ) -> WriteReceipt:
        """Epic answered 400 / 59189 "Reading already exists": the reading is on file — ours,
        from an attempt whose answer was lost, or the same reading from another source. Find it
        and take it as written. A different value in that cell is a conflict for a person; nothing
        found yet is the search index lagging: ambiguous, so the next attempt looks again."""
        ours = await self._find_existing(tenant, request, request_id)
        if ours:
            return self._receipt_from_existing(request, ours, 200)
        same = request.model_copy(update={"dedup": DedupStrategy.FINGERPRINT})
        candidates = await self._search(tenant, same.search_query(), request_id)
        if found := [resource for resource in candidates if same.is_ours(resource)]:
            receipt = self._receipt_from_existing(same, found, 200)
            # filed by someone else: it carries their identifier, not ours
            return receipt.model_copy(update={"sent": same.comparable_body()})
        if any(epic.same_reading_slot(request.body, resource) for resource in candidates):
            raise step_failure(
                ErrorClass.CONFLICT,
                "Epic holds a different reading for this patient, code and time (59189): "
                "a person must decide",
            )
        raise step_failure(
            ErrorClass.AMBIGUOUS,
            "Epic reports the reading on file (59189) but search does not show it yet",
            attempt=activity.info().attempt,
        )

    @activity.defn(name="locate")
    async def locate(self, order: EhrLocate) -> WriteReceipt | None:
        """Did an earlier, unacknowledged create land? None when the EHR shows nothing yet."""
        tenant = self._tenant(order.tenant)
        found = await self._find_existing(tenant, order.request, order.request_id)
        return self._receipt_from_existing(order.request, found, 200) if found else None

    @activity.defn(name="copies")
    async def copies(self, order: EhrCopies) -> Copies:
        """Every live copy of this command's resource the EHR's search shows (all pages): the
        one-copy check before a create is called ``verified``."""
        tenant = self._tenant(order.tenant)
        found = await self._find_existing(tenant, order.request, order.request_id)
        live = sorted(
            (resource for resource in found if "id" in resource and not is_withdrawn(resource)),
            key=lambda resource: (
                str((resource.get("meta") or {}).get("lastUpdated", "")),
                str(resource.get("id")),
            ),
        )
        references = [f"{order.request.resource_type}/{resource['id']}" for resource in live]
        return Copies(
            references=references,
            versions={ref: _version_of(res) for ref, res in zip(references, live, strict=True)},
        )

    async def _read(self, tenant: Tenant, path: str, request_id: str) -> dict[str, Any] | None:
        response = await self._send(tenant, "GET", path, request_id)
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            raise self._fail_for(response, f"read {path.split('/')[0]}")
        resource = json_body(response) or {}
        if version := _version_of(resource, response):  # meta.versionId, else the ETag
            resource.setdefault("meta", {})["versionId"] = version
        return resource

    async def search(self, tenant_id: str, query: str, request_id: str) -> list[dict[str, Any]]:
        """The resources a search (``Type?param=…``) finds, for steps other than the write
        (identity crosswalk), through the same breaker, pacer and token as the write: every page,
        every parameter checked as for a dedup search (_search_pages)."""
        tenant = self._tenant(tenant_id)
        return await self._search_pages(tenant, query, request_id, f"search {query.split('?')[0]}")

    @activity.defn(name="update")
    async def update(self, order: EhrUpdate) -> WriteReceipt:
        """Write the user's version over the current one, merging a newer EHR version when the
        changes do not overlap; overlapping changes are a ``conflict`` for a person. An element
        the user's version omits is removed (a removal alone is a change too), and the write is
        guarded against anyone writing between our read and ours (``_write_over``)."""
        with attempt_deadline(order.send_by):
            return await self._update(order)

    async def _update(self, order: EhrUpdate) -> WriteReceipt:
        tenant = self._tenant(order.tenant)
        request = order.request
        for _race in range(_UPDATE_RACES):
            current = await self._read(tenant, request.target, order.request_id)
            if current is None:
                raise step_failure(
                    ErrorClass.NOT_FOUND, f"{request.resource_type} to update is gone"
                )
            desired = {**request.body, "id": current.get("id")}
            if not differences(with_removals(desired, current), current):
                # Already applied (a retry after an ambiguous outcome): write nothing more.
                return self._update_receipt(request.resource_type, current, 200, desired)
            if _version_of(current) == order.base_version or order.override:
                body = desired
            else:
                body = await self._merged(tenant, order, desired, current)
            expected = with_removals(body, current)  # read-back: what we removed must be gone
            if not differences(expected, current):
                # their version already holds ours (our earlier write, since merged with theirs)
                return self._update_receipt(request.resource_type, current, 200, expected)
            response = await self._write_over(
                tenant, request.target, order.request_id, current, body
            )
            if response is None:
                continue  # someone wrote between our read and our write: read again
            if response.status_code not in (200, 201):
                raise self._fail_for(response, f"update {request.resource_type}")
            stored = json_body(response) or {}
            version = _version_of(stored, response)
            return self._update_receipt(
                request.resource_type,
                {**current, "meta": {"versionId": version}},
                response.status_code,
                expected,
            )
        raise step_failure(
            ErrorClass.CONFLICT,
            f"the {request.resource_type} kept changing while we wrote ({_UPDATE_RACES} tries)",
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
        version = _version_of(current)
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
        response = await self._send(
            tenant, method, target, request_id, headers=headers, json=payload
        )
        if response.status_code in (409, 412):
            return None
        if method == "PATCH" and response.status_code in (400, 422):
            now = await self._read(tenant, target, request_id)
            if now is None or _version_of(now) != version or changed_elements(current, now):
                return None
        return response

    async def _merged(
        self, tenant: Tenant, order: EhrUpdate, desired: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        theirs_version = _version_of(current)
        if not tenant.capabilities.vread:
            raise step_failure(
                ErrorClass.CONFLICT,
                f"the EHR holds version {theirs_version}, not {order.base_version}, and cannot "
                "show the version the user saw (no vread): a person must decide",
            )
        path = f"{order.request.target}/_history/{order.base_version}"
        base = await self._read(tenant, path, order.request_id)
        if base is None:
            raise step_failure(ErrorClass.CONFLICT, f"base version {order.base_version} not found")
        result = three_way_merge(base, desired, current)
        if result.merged is None:
            raise step_failure(
                ErrorClass.CONFLICT,
                f"version {theirs_version} changed {', '.join(sorted(result.overlapping))}, which "
                f"this update also changes (base {order.base_version})",
            )
        return result.merged

    @staticmethod
    def _update_receipt(
        resource_type: str, resource: dict[str, Any], status: int, sent: dict[str, Any]
    ) -> WriteReceipt:
        return WriteReceipt(
            resource_type=resource_type,
            id=str(resource.get("id")),
            version=_version_of(resource),
            created=False,
            status_code=status,
            sent=sent,
        )

    @activity.defn(name="verify")
    async def verify(self, order: EhrVerify) -> Verification:
        """Read the resource back and compare it with what we sent (field paths only)."""
        tenant = self._tenant(order.tenant)
        stored = await self._read(tenant, order.receipt.reference, order.request_id)
        if stored is None:
            return Verification(found=False)
        # notes are compared as text: EHRs re-encode them (Cerner stores XHTML as RTF)
        mismatched = differences(comparable(order.expected), comparable(stored))
        return Verification(
            found=True,
            version=_version_of(stored),
            last_updated=(stored.get("meta") or {}).get("lastUpdated"),
            differences=mismatched,
            # a reviewer needs the EHR's version only when it differs from what we sent
            stored=stored if mismatched else None,
        )

    @activity.defn(name="withdraw")
    async def withdraw(self, order: EhrWithdraw) -> WriteReceipt:
        """Saga compensation: withdraw a resource we wrote (entered-in-error, revoked, cancelled)
        as a narrow delta on its latest version, never by DELETE. Idempotent: a resource already
        withdrawn is left as it is, so a retry after an ambiguous answer is safe."""
        tenant = self._tenant(order.tenant)
        resource_type = order.target.split("/", 1)[0]
        for _race in range(_UPDATE_RACES):
            current = await self._read(tenant, order.target, order.request_id)
            if current is None:
                raise step_failure(ErrorClass.NOT_FOUND, f"{resource_type} to withdraw is gone")
            if is_withdrawn(current) or not differences(order.withdrawal, current):
                return self._update_receipt(resource_type, current, 200, order.withdrawal)
            changed = [key for key, value in order.written.items() if current.get(key) != value]
            if changed:
                raise step_failure(
                    ErrorClass.CONFLICT,
                    f"{resource_type} {', '.join(changed)} changed in the EHR since we wrote it: "
                    "a person must decide whether to withdraw it",
                )
            body = {**current, **order.withdrawal}  # whole resource: an omitted element is a delete
            response = await self._write_over(tenant, order.target, order.request_id, current, body)
            if response is None:
                continue  # changed between our read and our write: read again
            if response.status_code not in (200, 201):
                raise self._fail_for(response, f"withdraw {resource_type}")
            version = _version_of(json_body(response) or {}, response)
            return self._update_receipt(
                resource_type,
                {**current, "meta": {"versionId": version}},
                response.status_code,
                order.withdrawal,
            )
        raise step_failure(
            ErrorClass.CONFLICT,
            f"the {resource_type} kept changing while we withdrew it ({_UPDATE_RACES} tries)",
        )

    @activity.defn(name="scan")
    async def scan(self, order: ScanOrder) -> ScanResult:
        """Every resource carrying a command identifier of ours, updated since ``order.since``,
        for each resource type the tenant lets us write (a reconciliation sweep's first step)."""
        tenant = self._tenant(order.tenant)
        if tenant.capabilities.drops_identifiers:
            return ScanResult(resources=[], searchable=False)
        since = quote(order.since.isoformat(timespec="seconds"), safe="")
        found: list[ScannedResource] = []
        for resource_type in sorted(tenant.capabilities.writable):
            parameter = "_tag" if resource_type in TAGGED_TYPES else "identifier"
            path: str | None = (
                f"{resource_type}?{parameter}={quote(COMMAND_IDENTIFIER_SYSTEM, safe='')}%7C"
                f"&_lastUpdated=ge{since}&_count=500"
            )
            while path:
                activity.heartbeat(resource_type, len(found))
                response = await self._send(tenant, "GET", path, order.request_id)
                if response.status_code != 200:
                    raise self._fail_for(response, f"sweep search {resource_type}")
                bundle = json_body(response) or {}
                for entry in bundle.get("entry", []):
                    if scanned := _scanned(entry.get("resource") or {}):
                        found.append(scanned)
                path = _next_page(bundle, tenant.base_url())
        return ScanResult(resources=found, searchable=True)

    @activity.defn(name="examine")
    async def examine(self, order: ExamineOrder) -> list[Finding]:
        """Read each candidate directly: gone or entered-in-error is ``missing``; a version other
        than the one we verified whose content differs from it (vread) is ``drift``."""
        tenant = self._tenant(order.tenant)
        findings: list[Finding] = []
        for candidate in order.candidates:
            activity.heartbeat(len(findings))
            current = await self._read(tenant, candidate.reference, order.request_id)
            write_id = write_id_of(candidate.command)
            if current is None or is_withdrawn(current):
                what = "gone" if current is None else "entered-in-error"
                findings.append(
                    Finding(
                        kind=FindingKind.MISSING,
                        tenant=tenant.id,
                        command=candidate.command,
                        write_id=write_id,
                        resources=[candidate.reference],
                        detail=f"{candidate.reference} was verified, and is now {what}",
                    )
                )
                continue
            version = _version_of(current)
            if version == candidate.version or candidate.version is None:
                continue
            ours = None
            if tenant.capabilities.vread:
                path = f"{candidate.reference}/_history/{candidate.version}"
                ours = await self._read(tenant, path, order.request_id)
            changed = differences(ours, current) if ours else ["(version history unavailable)"]
            if changed:
                findings.append(
                    Finding(
                        kind=FindingKind.DRIFT,
                        tenant=tenant.id,
                        command=candidate.command,
                        write_id=write_id,
                        resources=[candidate.reference],
                        detail=f"{candidate.reference} changed since version {candidate.version} "
                        f"we verified (now {version}) at: {', '.join(changed[:10])}",
                    )
                )
        return findings


def _scanned(resource: dict[str, Any]) -> ScannedResource | None:
    commands = identifier_values(resource, COMMAND_IDENTIFIER_SYSTEM)
    if not commands or "id" not in resource:
        return None
    last_updated = (resource.get("meta") or {}).get("lastUpdated")
    return ScannedResource(
        reference=f"{resource['resourceType']}/{resource['id']}",
        version=_version_of(resource),
        command=commands[0],
        withdrawn=is_withdrawn(resource),
        last_updated=last_updated if isinstance(last_updated, str) else None,
    )


def _next_page(bundle: dict[str, Any], base_url: str) -> str | None:
    """The next page of a searchset as a path under the tenant's base URL (None: last page);
    ``unsupported`` when the link leads elsewhere (fhir_http.next_page_path says why)."""
    try:
        return next_page_path(bundle, base_url)
    except LinkOutsideBase:
        raise step_failure(
            ErrorClass.UNSUPPORTED,
            "the EHR's next-page link leads outside the tenant's FHIR base URL (another host, "
            "scheme or path): not followed, so that the tenant's token goes nowhere else; an "
            "incomplete answer cannot be used",
        ) from None
