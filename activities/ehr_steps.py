"""The EHR I/O steps of a write: send the create, then read back what the EHR stored.

Every create is idempotent at the EHR, so a retry after an ambiguous outcome cannot duplicate:
either a conditional create (``If-None-Exist`` on the command identifier) or, for tenants without
it (Epic, Oracle Health), a search for the command identifier before creating.
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio import activity

from activities.errors import ErrorClass, step_failure
from activities.fhir_http import (
    error_class_for_status,
    etag_version,
    json_body,
    outcome_summary,
    parse_location,
    retry_after,
)
from activities.models import EhrVerify, EhrWrite, Verification, WriteReceipt
from adapters.fhir_r4 import FHIR_JSON, CreateRequest, DedupStrategy, differences
from adapters.tenants import Tenant, TenantRegistry

#: Exceptions raised after the request may have reached the EHR: the outcome is unknown.
_AMBIGUOUS = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError)
#: Exceptions raised before anything was sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class EhrSteps:
    def __init__(self, tenants: TenantRegistry, http: httpx.AsyncClient) -> None:
        self._tenants = tenants
        self._http = http

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise step_failure(ErrorClass.VALIDATION, f"unknown tenant '{tenant_id}'")
        return tenant

    async def _send(
        self, tenant: Tenant, method: str, path: str, request_id: str, **kwargs: Any
    ) -> httpx.Response:
        """One HTTP exchange, with transport failures mapped onto the taxonomy."""
        attempt = activity.info().attempt
        headers = {"Accept": FHIR_JSON, "X-Request-Id": request_id, **kwargs.pop("headers", {})}
        try:
            return await self._http.request(
                method,
                f"{tenant.base_url()}/{path}",
                headers=headers,
                timeout=tenant.timeout_seconds,
                **kwargs,
            )
        except _NOT_SENT as exc:
            raise step_failure(
                ErrorClass.TRANSPORT,
                f"{method} {path.split('?')[0]}: {type(exc).__name__}",
                attempt=attempt,
            ) from None
        except _AMBIGUOUS as exc:
            raise step_failure(
                ErrorClass.AMBIGUOUS,
                f"{method} {path.split('?')[0]}: {type(exc).__name__} after sending",
                attempt=attempt,
            ) from None

    def _fail_for(self, response: httpx.Response, what: str) -> Exception:
        return step_failure(
            error_class_for_status(response.status_code),
            f"{what}: {outcome_summary(response)}",
            attempt=activity.info().attempt,
            retry_after=retry_after(response),
        )

    async def _find_by_identifier(
        self, tenant: Tenant, request: CreateRequest, request_id: str
    ) -> list[dict[str, Any]]:
        path = f"{request.resource_type}?identifier={request.identifier_token}"
        response = await self._send(tenant, "GET", path, request_id)
        if response.status_code != 200:
            raise self._fail_for(response, "search by command identifier")
        bundle = json_body(response) or {}
        return [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]

    def _receipt_from_existing(
        self, request: CreateRequest, matches: list[dict[str, Any]], status: int
    ) -> WriteReceipt:
        if len(matches) > 1:
            raise step_failure(
                ErrorClass.DUPLICATE,
                f"the EHR already holds {len(matches)} {request.resource_type} resources "
                "for this command; a person must choose which one stands",
            )
        found = matches[0]
        return WriteReceipt(
            resource_type=request.resource_type,
            id=str(found["id"]),
            version=(found.get("meta") or {}).get("versionId"),
            created=False,
            dedup=request.dedup,
            status_code=status,
            attempt=activity.info().attempt,
        )

    @activity.defn(name="write")
    async def write(self, order: EhrWrite) -> WriteReceipt:
        tenant = self._tenant(order.tenant)
        request = order.request
        if request.dedup is DedupStrategy.SEARCH_BEFORE_CREATE:
            existing = await self._find_by_identifier(tenant, request, order.request_id)
            if existing:
                return self._receipt_from_existing(request, existing, 200)
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
        if response.status_code not in (200, 201):
            raise self._fail_for(response, f"create {request.resource_type}")
        body = json_body(response)
        location = parse_location(
            response.headers.get("Content-Location") or response.headers.get("Location") or ""
        )
        resource_id = (body or {}).get("id") or (location[1] if location else None)
        if not resource_id:
            # Acknowledged, but we cannot tell which resource: read-back by identifier decides.
            found = await self._find_by_identifier(tenant, request, order.request_id)
            if not found:
                raise step_failure(ErrorClass.AMBIGUOUS, "create acknowledged without a reference")
            return self._receipt_from_existing(request, found, response.status_code)
        version = (
            ((body or {}).get("meta") or {}).get("versionId")
            or etag_version(response.headers.get("ETag"))
            or (location[2] if location else None)
        )
        return WriteReceipt(
            resource_type=request.resource_type,
            id=str(resource_id),
            version=version,
            created=response.status_code == 201,
            dedup=request.dedup,
            status_code=response.status_code,
            attempt=activity.info().attempt,
        )

    @activity.defn(name="verify")
    async def verify(self, order: EhrVerify) -> Verification:
        """Read the resource back and compare it with what we sent (field paths only)."""
        tenant = self._tenant(order.tenant)
        response = await self._send(tenant, "GET", order.receipt.reference, order.request_id)
        if response.status_code in (404, 410):
            return Verification(found=False)
        if response.status_code != 200:
            raise self._fail_for(response, f"read back {order.receipt.resource_type}")
        stored = json_body(response) or {}
        meta = stored.get("meta") or {}
        return Verification(
            found=True,
            version=meta.get("versionId") or etag_version(response.headers.get("ETag")),
            last_updated=meta.get("lastUpdated"),
            differences=differences(order.sent.body, stored),
        )
