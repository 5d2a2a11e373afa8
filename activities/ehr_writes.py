"""The EHR steps of a write: send a create or an update, find what a create left behind, count
its copies, read back what the EHR stored, and withdraw a resource (saga compensation).

Every create is idempotent at the EHR, so a retry after an ambiguous outcome cannot duplicate:
a conditional create (``If-None-Exist`` on the command identifier), a search for the command
identifier before creating (Epic, Oracle Health), or — where the EHR drops our identifier — a
search for the same clinical content (fingerprint). An update checks the current version just
before writing and sends ``If-Match`` where the tenant supports it (EhrClient.update_latest).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.deadline import attempt_deadline
from activities.ehr_client import EhrClient, Revision
from activities.errors import ErrorClass, step_failure
from activities.fhir_http import id_of, json_body, meta_of, parse_location, version_of
from activities.models import (
    Confirmation,
    Copies,
    EhrCopies,
    EhrLocate,
    EhrUpdate,
    EhrVerify,
    EhrWithdraw,
    EhrWrite,
    Verification,
    WriteReceipt,
)
from activities.vendor_api import VendorApi
from adapters.clinical_notes import comparable
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import (
    COMMAND_IDENTIFIER_SYSTEM,
    NARROWING_PARAMETERS,
    CreateRequest,
    DedupStrategy,
    differences,
    identifier_values,
    with_removals,
)
from adapters.merge import three_way_merge
from adapters.tenants import Tenant


class EhrWrites:
    def __init__(self, client: EhrClient) -> None:
        self._ehr = client
        self._vendor_api = VendorApi(client)

    async def _find_existing(
        self, tenant: Tenant, request: CreateRequest, request_id: str
    ) -> list[dict[str, Any]]:
        """The stored resources this command already made (by identifier or by fingerprint),
        from every page of the search."""
        found = await self._dedup_search(tenant, request, request_id)
        return [resource for resource in found if request.is_ours(resource)]

    async def _dedup_search(
        self, tenant: Tenant, request: CreateRequest, request_id: str
    ) -> list[dict[str, Any]]:
        """Every resource the request's dedup search finds; a server may ignore the parameters
        that only narrow it (NARROWING_PARAMETERS: the caller filters what comes back anyway)."""
        query = request.search_query()
        what = "search for this command's resource"
        return await self._ehr.search(tenant, query, request_id, what, NARROWING_PARAMETERS)

    @staticmethod
    def _receipt_from_existing(
        request: CreateRequest, matches: list[dict[str, Any]], status: int
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
            version=version_of(found),
            created=False,
            dedup=request.dedup,
            status_code=status,
        )

    @activity.defn(name="write")
    async def write(self, order: EhrWrite) -> WriteReceipt:
        with attempt_deadline(order.send_by):
            receipt = await self._write(order)
            if order.confirm:
                confirmation = await self._confirm(order, receipt)
                receipt = receipt.model_copy(update={"confirmation": confirmation})
            return receipt

    async def _confirm(self, order: EhrWrite, receipt: WriteReceipt) -> Confirmation | None:
        """The acknowledged create's copies and read-back, in the attempt that made it: one
        search, whose copy of ours serves as the read-back when it holds what we sent (else one
        read by id, which is the EHR's word). Nothing may fail an acknowledged attempt (it would
        be sent again), so any failure here answers None: the workflow then confirms in steps of
        its own, as it does after any attempt."""
        tenant = self._ehr.tenant(order.tenant)
        expected = receipt.sent or order.request.comparable_body()
        try:
            found = await self._find_existing(tenant, order.request, order.request_id)
            copies, live = _live_copies(order.request.resource_type, found)
            shown = live.get(receipt.reference)
            verification = _compared(expected, shown) if shown is not None else None
            if verification is None or not verification.matches:
                verification = await self._read_back(tenant, receipt, expected, order.request_id)
        except Exception as exc:  # acknowledged: nothing may fail the attempt now
            activity.logger.info("confirming in the attempt failed: %s", type(exc).__name__)
            return None
        return Confirmation(verification=verification, copies=copies)

    async def _write(self, order: EhrWrite) -> WriteReceipt:
        tenant = self._ehr.tenant(order.tenant)
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
        response = await self._ehr.create(
            tenant, request.resource_type, request.body, request.headers(), order.request_id
        )
        if response.status_code == 412 and request.dedup is DedupStrategy.CONDITIONAL_CREATE:
            raise step_failure(
                ErrorClass.DUPLICATE,
                "conditional create matched several resources for this command (HTTP 412)",
            )
        if response.status_code == 400 and tenant.adapter().refused_as_on_file(json_body(response)):
            return await self._already_filed(tenant, request, order.request_id)
        if response.status_code not in (200, 201):
            raise self._ehr.failure(response, f"create {request.resource_type}", creating=True)
        body = json_body(response) or {}
        location = parse_location(
            response.headers.get("Content-Location") or response.headers.get("Location") or ""
        )
        resource_id = id_of(body) or (location[1] if location else None)
        if not resource_id:
            # Acknowledged, but we cannot tell which resource: look for it.
            found = await self._find_existing(tenant, request, order.request_id)
            if not found:
                raise step_failure(ErrorClass.AMBIGUOUS, "create acknowledged without a reference")
            return self._receipt_from_existing(request, found, response.status_code)
        return WriteReceipt(
            resource_type=request.resource_type,
            id=str(resource_id),
            version=version_of(body, response) or (location[2] if location else None),
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
        candidates = await self._dedup_search(tenant, same, request_id)
        if found := [resource for resource in candidates if same.is_ours(resource)]:
            receipt = self._receipt_from_existing(same, found, 200)
            # filed by someone else: it carries their identifier, not ours
            return receipt.model_copy(update={"sent": same.comparable_body()})
        if any(tenant.adapter().same_reading_slot(request.body, r) for r in candidates):
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
        tenant = self._ehr.tenant(order.tenant)
        found = await self._find_existing(tenant, order.request, order.request_id)
        return self._receipt_from_existing(order.request, found, 200) if found else None

    @activity.defn(name="copies")
    async def copies(self, order: EhrCopies) -> Copies:
        """Every live copy of this command's resource the EHR's search shows (all pages): the
        one-copy check before a create is called ``verified``."""
        tenant = self._ehr.tenant(order.tenant)
        found = await self._find_existing(tenant, order.request, order.request_id)
        return _live_copies(order.request.resource_type, found)[0]

    @activity.defn(name="update")
    async def update(self, order: EhrUpdate) -> WriteReceipt:
        """Write the user's version over the current one, merging a newer EHR version when the
        changes do not overlap; overlapping changes are a ``conflict`` for a person. An element
        the user's version omits is removed (a removal alone is a change too), and the write is
        guarded against anyone writing between our read and ours (EhrClient.update_latest)."""
        with attempt_deadline(order.send_by):
            tenant = self._ehr.tenant(order.tenant)

            async def change(current: dict[str, Any]) -> Revision:
                desired = {**order.request.body, "id": current.get("id")}
                if not differences(with_removals(desired, current), current):
                    # already applied (a retry after an ambiguous outcome): write nothing more
                    return Revision(None, desired)
                if version_of(current) == order.base_version or order.override:
                    body = desired
                else:
                    body = await self._merged(tenant, order, desired, current)
                expected = with_removals(body, current)  # read-back: what we removed must be gone
                if not differences(expected, current):
                    # their version already holds ours (our earlier write, since merged with theirs)
                    return Revision(None, expected)
                return Revision(body, expected)

            return await self._ehr.update_latest(
                tenant, order.request.target, order.request_id, change, "update"
            )

    async def _merged(
        self, tenant: Tenant, order: EhrUpdate, desired: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        theirs_version = version_of(current)
        if not tenant.capabilities.vread:
            raise step_failure(
                ErrorClass.CONFLICT,
                f"the EHR holds version {theirs_version}, not {order.base_version}, and cannot "
                "show the version the user saw (no vread): a person must decide",
            )
        base = await self._ehr.vread(
            tenant, order.request.target, order.base_version, order.request_id
        )
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

    @activity.defn(name="verify")
    async def verify(self, order: EhrVerify) -> Verification:
        """Read the resource back and compare it with what we sent (field paths only)."""
        tenant = self._ehr.tenant(order.tenant)
        return await self._read_back(tenant, order.receipt, order.expected, order.request_id)

    async def _read_back(
        self, tenant: Tenant, receipt: WriteReceipt, expected: dict[str, Any], request_id: str
    ) -> Verification:
        stored = await self._ehr.read(tenant, receipt.reference, request_id)
        return Verification(found=False) if stored is None else _compared(expected, stored)

    @activity.defn(name="withdraw")
    async def withdraw(self, order: EhrWithdraw) -> WriteReceipt:
        """Saga compensation: withdraw a resource we wrote (entered-in-error, revoked, cancelled)
        as a narrow delta on its latest version, never by DELETE. Idempotent: a resource already
        withdrawn is left as it is, so a retry after an ambiguous answer is safe."""
        tenant = self._ehr.tenant(order.tenant)
        resource_type = order.target.split("/", 1)[0]
        if order.by_tenant_policy and not tenant.reconcile.auto_remediate_duplicates:
            raise step_failure(
                ErrorClass.AUTHORIZATION, "this tenant does not auto-remediate duplicates"
            )
        kept = None
        if order.extra_copy_of is not None:
            kept = await self._check_the_copy_that_stays(tenant, order, order.extra_copy_of)

        async def change(current: dict[str, Any]) -> Revision:
            if order.extra_copy_of is not None and not _carries(current, order.extra_copy_of):
                raise step_failure(
                    ErrorClass.CONFLICT,
                    f"{resource_type} does not carry the finding's command identifier: "
                    "not an extra copy of it",
                )
            if kept is not None and not is_withdrawn(current) and _edited(current, kept):
                raise step_failure(
                    ErrorClass.CONFLICT,
                    f"{resource_type} differs from the copy that stays (someone changed it): "
                    "a person must decide whether to withdraw it",
                )
            if is_withdrawn(current) or not differences(order.withdrawal, current):
                return Revision(None, order.withdrawal)
            changed = [key for key, value in order.written.items() if current.get(key) != value]
            if changed:
                raise step_failure(
                    ErrorClass.CONFLICT,
                    f"{resource_type} {', '.join(changed)} changed in the EHR since we wrote it: "
                    "a person must decide whether to withdraw it",
                )
            # the whole resource: an element omitted from a PUT is deleted, and one the
            # withdrawn form sets to None is to be removed (adapters/compensation.py)
            withdrawn = {**current, **order.withdrawal}
            body = {key: value for key, value in withdrawn.items() if value is not None}
            return Revision(body, order.withdrawal)

        return await self._ehr.update_latest(
            tenant, order.target, order.request_id, change, "withdraw"
        )

    async def _check_the_copy_that_stays(
        self, tenant: Tenant, order: EhrWithdraw, command: str
    ) -> dict[str, Any]:
        """A finding's extra copy goes only while another copy of the same command stays in the
        chart: ``keep`` is read first, and must be live and carry the command identifier (a
        finding, which anyone with the payload key could start, cannot empty a write)."""
        kept = None
        if order.keep and order.keep != order.target:
            kept = await self._ehr.read(tenant, order.keep, order.request_id)
        if kept is None or is_withdrawn(kept) or not _carries(kept, command):
            raise step_failure(
                ErrorClass.CONFLICT,
                "the copy that stays is not a live copy of the finding's command: "
                "nothing withdrawn",
            )
        return kept


def _compared(expected: dict[str, Any], stored: dict[str, Any]) -> Verification:
    # notes are compared as text: EHRs re-encode them (Cerner stores XHTML as RTF)
    mismatched = differences(comparable(expected), comparable(stored))
    return Verification(
        found=True,
        version=version_of(stored),
        last_updated=_text(meta_of(stored).get("lastUpdated")),
        differences=mismatched,
        # a reviewer needs the EHR's version only when it differs from what we sent
        stored=stored if mismatched else None,
    )


def _live_copies(
    resource_type: str, found: list[dict[str, Any]]
) -> tuple[Copies, dict[str, dict[str, Any]]]:
    """The live (not withdrawn) copies among ``found``, oldest first, and each by reference."""
    live = sorted(
        (resource for resource in found if "id" in resource and not is_withdrawn(resource)),
        key=lambda resource: (
            str(meta_of(resource).get("lastUpdated", "")),
            str(resource.get("id")),
        ),
    )
    by_reference = {f"{resource_type}/{resource['id']}": resource for resource in live}
    copies = Copies(
        references=list(by_reference),
        versions={ref: version_of(res) for ref, res in by_reference.items()},
    )
    return copies, by_reference


def _edited(copy: dict[str, Any], kept: dict[str, Any]) -> bool:
    """Whether an extra copy's content differs from the copy that stays, either way (an element
    changed, added or removed). Copies one command made are the same content; a difference is
    someone's edit, which only a person may throw away. Server-managed elements do not count."""
    return bool(differences(kept, copy) or differences(copy, kept))


def _carries(resource: dict[str, Any], command: str) -> bool:
    return command in identifier_values(resource, COMMAND_IDENTIFIER_SYSTEM)


def _text(value: object) -> str | None:
    """A string element of an EHR's answer, or None when it holds something else."""
    return value if isinstance(value, str) else None
