"""Checking a write in the EHR: read-back, the one-copy check that makes a create ``verified``,
and finding what an unanswered create left behind (README: "States", docs/write-safety.md)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from activities.ehr_writes import EhrWrites
from activities.errors import (
    ErrorClass,
)
from activities.models import (
    Copies,
    EhrCopies,
    EhrLocate,
    EhrVerify,
    EhrWithdraw,
    Verification,
    WriteReceipt,
)
from adapters.fhir_r4 import CreateRequest
from adapters.schema_drift import dropped_extensions
from workflows.audit_trail import hand_over, withdrawal_event
from workflows.budgets import BUDGETS
from workflows.contract import WriteState
from workflows.kernel import READ_RETRY, StepFailed
from workflows.write_kernel import COPY_SEARCH_WAIT, COPY_SEARCHES, WriteKernel


class WriteChecks(WriteKernel):
    async def _verification_failure(self, made: Verification | None = None) -> StepFailed | None:
        """Read back (or take the read-back ``made`` in the attempt); None when the EHR holds
        what we sent."""
        assert self._record.receipt is not None
        try:
            verification = (
                made
                if made is not None
                else await self._ehr(
                    EhrWrites.verify,
                    EhrVerify(
                        tenant=self._command.tenant,
                        request_id=self._request_id("verify"),
                        receipt=self._record.receipt,
                        expected=self._expected(),
                    ),
                    self._record.ehr_timeout + timedelta(seconds=5),
                    READ_RETRY,
                )
            )
        except ActivityError as err:
            return self._read_failed("verify", err)
        self._record.ehr_state = verification.stored
        self._record.differences = verification.differences
        if verification.matches:
            self._log("verify", 1, f"matches (version {verification.version})")
            self._status.version = verification.version or self._status.version
            return None
        if not verification.found:
            self._log("verify", 1, "not found")
            return StepFailed(ErrorClass.NOT_FOUND.value, "read-back did not find the resource")
        differing = ", ".join(verification.differences[:10])
        self._log("verify", 1, f"differs at {differing}")
        if dropped_extensions(verification.differences):
            return StepFailed(
                ErrorClass.SCHEMA_DRIFT.value,
                f"schema drift at {differing}: the EHR stored {self._status.resource} without "
                "these extensions (no longer accepted); a person must review the stored resource",
            )
        return StepFailed(ErrorClass.MISMATCH.value, f"read-back differs at {differing}")

    async def _check(self) -> None:
        """Read back, count the copies: end ``verified``, or wait for a person saying why."""
        failure = await self._confirmation_failure()
        if failure is None:
            detail = "read-back matches what was sent"
            if self._status.copies == 1:
                detail += "; the only copy the EHR's search shows"
            self._move(WriteState.VERIFIED, detail)
        elif (
            failure.error_class == ErrorClass.SCHEMA_DRIFT
            and not self._v2  # the resource is in the chart: rejected would say it is not
            and workflow.patched("schema-drift-rejects")
        ):
            self._fail(WriteState.REJECTED, failure)
        else:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)

    async def _confirmation_failure(self) -> StepFailed | None:
        """None when read-back matches and, for a create, it is the only copy. The attempt's
        own read-back and count (Confirmation), if it made them, serve once, right after it."""
        made, self._in_attempt = self._in_attempt, None
        failure = await self._verification_failure(made.verification if made else None)
        if failure is None and self._v2:
            failure = await self._copies_failure(made.copies if made else None)
        return failure

    async def _copies_failure(self, counted: Copies | None = None) -> StepFailed | None:
        """The one-copy check: once every unanswered attempt's quiet period has passed and the
        tenant's index can show our copy, a complete search must find exactly this copy.
        Extra copies are withdrawn where the tenant can (never deleted), else a person decides."""
        plan, receipt = self._record.plan, self._record.receipt
        if plan is None or plan.create is None or receipt is None or receipt.sent is not None:
            return None  # updates make no copy; a reading another source filed is not ours
        check_at = (self._record.acknowledged_at or workflow.now()) + self._record.search_lag
        if self._record.landing.until is not None:
            check_at = max(check_at, self._record.landing.until)
        if workflow.now() < check_at:
            self._note(
                f"read-back matches; copies counted at {check_at:%H:%M:%S} UTC, "
                "when the EHR's search can show every attempt"
            )
            await self._sleep(check_at - workflow.now())
            counted = None  # counted before the wait: stale now
        withdrawn: set[str] = set()  # extra copies withdrawn here: their index may lag too
        for look in range(COPY_SEARCHES):
            try:
                copies = (
                    self._logged(counted)
                    if counted is not None
                    else await self._copies(plan.create)
                )
            except StepFailed as search_failed:
                return search_failed
            counted = None
            mine = receipt.reference
            live = [reference for reference in copies.references if reference not in withdrawn]
            others = [reference for reference in live if reference != mine]
            self._status.copies = len(live)
            if others:
                if failure := await self._withdraw_copies(mine, others):
                    return failure
                withdrawn.update(others)
                self._status.copies = len(live) - len(others)
                continue
            if mine in copies.references:
                return None
            if not self._record.landing.searchable:
                self._status.copies = None
                self._log("copies", look + 1, "search cannot show this type yet (held for review)")
                return None
            await self._sleep(max(self._record.search_lag, COPY_SEARCH_WAIT) * 2**look)
        return StepFailed(
            ErrorClass.NOT_FOUND.value,
            f"the EHR's search still does not show {receipt.reference} after {COPY_SEARCHES} "
            "searches (a read by id does): its copies cannot be counted yet",
        )

    async def _copies(self, request: CreateRequest) -> Copies:
        try:
            copies = await self._ehr(
                EhrWrites.copies,
                EhrCopies(
                    tenant=self._command.tenant,
                    request_id=self._request_id("copies"),
                    request=request,
                ),
                self._record.ehr_timeout * 4 + timedelta(seconds=5),
                READ_RETRY,
            )
        except ActivityError as err:
            raise self._read_failed("copies", err) from None
        return self._logged(copies)

    def _logged(self, copies: Copies) -> Copies:
        shown = ", ".join(copies.references[:10]) or "none"
        self._log("copies", 1, f"{len(copies.references)} live: {shown}")
        return copies

    def _duplicates(self, mine: str, others: list[str], why: str) -> StepFailed:
        return StepFailed(
            ErrorClass.DUPLICATE.value,
            f"the EHR holds {1 + len(others)} copies of this write: {mine} (this write's) and "
            f"{', '.join(others[:10])}; {why}: mark the others entered-in-error in the EHR, then "
            "resolve with reverify",
        )

    async def _withdraw_copies(self, mine: str, others: list[str]) -> StepFailed | None:
        """Withdraw extra copies clinically (entered-in-error, never DELETE), each only if it
        still holds what we wrote; None when all were withdrawn."""
        withdrawal = self._record.withdrawal
        if withdrawal is None:
            return self._duplicates(mine, others, "this tenant cannot withdraw them")
        assert self._record.plan is not None and self._record.plan.create is not None
        body = self._record.plan.create.body
        for reference in others:
            try:
                await self._ehr(
                    EhrWrites.withdraw,
                    EhrWithdraw(
                        tenant=self._command.tenant,
                        request_id=self._request_id("withdraw"),
                        target=reference,
                        withdrawal=withdrawal,
                        written={key: body.get(key) for key in withdrawal},
                    ),
                    self._record.ehr_timeout * 3 + timedelta(seconds=5),
                    BUDGETS[self._command.urgency].policy(),
                )
            except ActivityError as err:
                failure = self._read_failed("withdraw", err)
                await self._audit_withdrawal(reference, "failed", failure.error_class)
                why = f"withdrawing {reference} failed ({failure.error_class}: {failure.reason})"
                return self._duplicates(mine, others, why)
            self._log("withdraw", 1, f"extra copy {reference}: {', '.join(sorted(withdrawal))} set")
            await self._audit_withdrawal(reference, "withdrawn")
        return None

    async def _audit_withdrawal(
        self, reference: str, outcome: str, error_class: str | None = None
    ) -> None:
        """The exchange just logged, as a withdrawal in the audit ledger (keyed by its place)."""
        key, by = str(len(self._status.ehr_log) - 1), self._command.requested_by
        await hand_over([withdrawal_event(self._status, key, by, reference, outcome, error_class)])

    async def _look(self) -> WriteReceipt | None:
        """Search for what an unacknowledged create may have left: its receipt, or None when
        the EHR shows nothing. A search that fails raises StepFailed: it is not "nothing"."""
        assert self._record.plan is not None and self._record.plan.create is not None
        try:
            found = await self._ehr(
                EhrWrites.locate,
                EhrLocate(
                    tenant=self._command.tenant,
                    request_id=self._request_id("locate"),
                    request=self._record.plan.create,
                ),
                self._record.ehr_timeout * 4 + timedelta(seconds=5),
                READ_RETRY,
            )
        except ActivityError as err:
            failure = self._read_failed("locate", err)
            if failure.error_class != ErrorClass.DUPLICATE or not self._v2:
                raise failure from None
            found = await self._oldest_copy()
            if found is None:
                raise failure from None
        self._log("locate", 1, "nothing found" if found is None else f"found {found.reference}")
        return found

    async def _oldest_copy(self) -> WriteReceipt | None:
        """Several live copies carry this command (a 412 to If-None-Exist, or a search that
        found more than one): the oldest stands; the one-copy check that follows withdraws the
        others where the tenant can, or names them all for a person."""
        assert self._record.plan is not None and self._record.plan.create is not None
        copies = await self._copies(self._record.plan.create)
        if not copies.references:
            return None
        oldest = copies.references[0]
        resource_type, resource_id = oldest.split("/", 1)
        return WriteReceipt(
            resource_type=resource_type,
            id=resource_id,
            version=copies.versions.get(oldest),
            created=False,
            dedup=self._record.plan.create.dedup,
            status_code=200,
        )

    async def _locate(self) -> bool:
        """Look for what an unacknowledged create may have left; acknowledge it if found (a
        failed search is logged and counts as not found: callers keep waiting)."""
        if self._record.plan is None or self._record.plan.create is None:
            return False
        try:
            found = await self._look()
        except StepFailed:
            return False
        if found is None:
            return False
        self._acknowledge(found, "found in the EHR")
        return True
