"""Proprietary write calls: athenaOne's chart API (form POSTs) and Veradigm Unity (``GetToken``,
then ``MagicJson``). The adapters (adapters/athena.py, veradigm.py) build each call and read each
answer; this module only sends them, through the same per-tenant breaker, pacing and concurrency
slots as FHIR calls, and keeps the Unity token per tenant until Unity refuses it."""

from __future__ import annotations

import os
from typing import Any

from activities.ehr_client import EhrClient
from activities.errors import ErrorClass, step_failure
from adapters import veradigm
from adapters.proprietary import VendorCall, VendorRefused
from adapters.tenants import Tenant, VendorApiSettings


class VendorApi:
    def __init__(self, client: EhrClient) -> None:
        self._ehr = client
        self._unity_tokens: dict[str, str] = {}

    @staticmethod
    def _settings(tenant: Tenant) -> VendorApiSettings:
        if tenant.vendor_api is None:
            raise step_failure(ErrorClass.VALIDATION, f"tenant '{tenant.id}' has no vendor_api")
        return tenant.vendor_api

    async def write(self, tenant: Tenant, call: VendorCall, request_id: str) -> str:
        """Send a proprietary write and return the FHIR id of what it stored. Unity gets a new
        token once when it refuses the cached one."""
        url = f"{self._settings(tenant).base_url.rstrip('/')}/{call.path}"
        parse = tenant.adapter().vendor_id
        for fresh in (False, True):
            if call.message is not None:
                token = await self._unity_token(tenant, request_id, fresh=fresh)
                payload: dict[str, Any] = {"json": {**call.message, "Token": token}}
            else:
                payload = {"data": call.form}
            response = await self._ehr.send(
                tenant,
                "POST",
                call.path,
                request_id,
                url=url,
                headers={"Accept": "application/json"},
                **payload,
            )
            if response.status_code != 200:
                what = f"{tenant.vendor.value} {call.action}"
                raise self._ehr.failure(response, what, creating=True)
            try:
                return call.id_prefix + parse(call, response.json())
            except ValueError:
                raise step_failure(
                    ErrorClass.EHR_REJECTED, f"{call.action}: the answer is not JSON"
                ) from None
            except VendorRefused as refused:
                if refused.token_expired and not fresh and call.message is not None:
                    continue
                raise step_failure(ErrorClass.EHR_REJECTED, str(refused)) from None
        raise step_failure(ErrorClass.AUTHORIZATION, f"{call.action}: Unity refused a new token")

    async def _unity_token(self, tenant: Tenant, request_id: str, *, fresh: bool) -> str:
        if not fresh and tenant.id in self._unity_tokens:
            return self._unity_tokens[tenant.id]
        api = veradigm.unity_settings(tenant)
        if api is None:
            raise step_failure(
                ErrorClass.VALIDATION, f"tenant '{tenant.id}' has no Unity vendor_api"
            )
        credentials = {
            "Username": api.username or "",
            "Password": os.environ.get(api.password_env or "", ""),
        }
        response = await self._ehr.send(
            tenant,
            "POST",
            veradigm.GET_TOKEN,
            request_id,
            url=f"{api.base_url.rstrip('/')}/{veradigm.GET_TOKEN}",
            headers={"Accept": "text/plain"},
            json=credentials,
        )
        if response.status_code != 200:
            raise self._ehr.failure(response, "Unity GetToken")
        if not response.text or response.text.lower().startswith("error"):
            raise step_failure(
                ErrorClass.AUTHORIZATION,
                f"Unity GetToken refused the credentials of tenant '{tenant.id}' "
                "(vendor_api.username / password_env)",
            )
        self._unity_tokens[tenant.id] = response.text.strip()
        return self._unity_tokens[tenant.id]
