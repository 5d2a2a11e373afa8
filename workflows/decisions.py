"""A person's decisions on a waiting workflow (a write, a saga, a reconciliation finding), taken
one at a time: the ``resolve`` update hands one in and returns once the workflow has acted on it.
Temporal deduplicates a resent decision by its update id.

A workflow that does other work while a person may decide (re-checks, compensation) can accept a
decision it will never take, or take it in a state it was not validated for. Two guards, for the
workflows that use them (the others behave as before): a validator that accepts a decision only
while ``waiting`` (the workflow is parked in ``next()`` at this moment), and ``refuse_pending``
when the workflow leaves its decision loop, which fails the update of a decision handed in but
not taken instead of leaving it to hang.

A decision is also proved before it is taken: ``check`` (the workflow's, PersonWaits
``_prove_decision``) verifies its operator's credential in an activity — validators cannot — and
a decision it refuses fails its update with the reason, changes nothing, and the workflow goes on
waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.contract import Resolution

#: Why a decision may not be taken (None: it may): the operator's credential, verified.
DecisionCheck = Callable[[Resolution], Awaitable[str | None]]


class DecisionInbox:
    def __init__(self, check: DecisionCheck | None = None) -> None:
        self._check = check
        #: ids of the credentials of decisions taken: a credential proves one decision
        self.used_credentials: set[str] = set()
        self._pending: Resolution | None = None
        self._received = 0
        self._applied = 0
        self._parked = False  # inside next(), waiting for a decision
        self._refused: dict[int, str] = {}  # decision number -> why it was not applied

    @property
    def received(self) -> int:
        """Decisions handed in so far in this run (the one being checked included)."""
        return self._received

    @property
    def busy(self) -> bool:
        """A decision has been handed in and not yet acted on (validators refuse another)."""
        return self._received != self._applied

    @property
    def waiting(self) -> bool:
        """The workflow waits in ``next()`` right now and no decision is in hand: one handed in
        now is taken at once, in the state the validator saw."""
        return self._parked and not self.busy

    async def deliver(self, resolution: Resolution) -> None:
        """From the update handler: returns once the workflow has acted on ``resolution``."""
        self._pending = resolution
        self._received += 1
        mine = self._received
        await workflow.wait_condition(lambda: self._applied >= mine)
        if why := self._refused.pop(mine, None):
            raise ApplicationError(why, type="decision_not_applied", non_retryable=True)

    @asynccontextmanager
    async def next(self, wait_at_most: timedelta | None = None) -> AsyncIterator[Resolution]:
        """The next decision, to act on inside the block (TimeoutError if none comes within
        ``wait_at_most``); leaving the block, however, releases the update that delivered it.
        A decision ``check`` refuses is released at once, failing with the reason, and the wait
        goes on until ``wait_at_most`` after it began."""
        deadline = None if wait_at_most is None else workflow.now() + wait_at_most
        while True:
            self._parked = True
            try:
                left = None if deadline is None else deadline - workflow.now()
                if left is not None and left <= timedelta(0):
                    raise TimeoutError("no decision was taken in time")
                await workflow.wait_condition(lambda: self._pending is not None, timeout=left)
            finally:
                self._parked = False
            resolution, self._pending = self._pending, None
            assert resolution is not None
            why = await self._check(resolution) if self._check else None
            if why is None:
                break
            self._refused[self._received] = why
            self._applied += 1
        try:
            yield resolution
        finally:
            self._applied += 1

    def refuse_pending(self, why: str) -> None:
        """The workflow leaves its decision loop: a decision handed in but not taken is released,
        its update failing with ``why`` (type ``decision_not_applied``), rather than waiting for
        a turn that will not come."""
        if self._pending is not None:
            self._pending = None
            self._refused[self._received] = why
            self._applied += 1
