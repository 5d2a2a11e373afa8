"""A person's decisions on a waiting workflow (a write, a saga, a reconciliation finding), taken
one at a time: the ``resolve`` update hands one in and returns once the workflow has acted on it.
Temporal deduplicates a resent decision by its update id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.contract import Resolution


class DecisionInbox:
    def __init__(self) -> None:
        self._pending: Resolution | None = None
        self._received = 0
        self._applied = 0
        self._refused: dict[int, str] = {}

    @property
    def busy(self) -> bool:
        """A decision has been handed in and not yet acted on (validators refuse another)."""
        return self._received != self._applied

    async def deliver(self, resolution: Resolution) -> None:
        """From the update handler: returns once the workflow has acted on ``resolution``."""
        self._pending = resolution
        self._received += 1
        mine = self._received
        await workflow.wait_condition(lambda: self._applied >= mine)
        if reason := self._refused.pop(mine, None):
            raise ApplicationError(reason, type="DecisionRefused", non_retryable=True)

    def refuse_pending(self, reason: str) -> None:
        """Answer a decision that was handed in but will not be acted on (the workflow moved on
        by itself): its update fails with ``reason`` instead of waiting forever."""
        if self._pending is not None:
            self._pending = None
            self._applied += 1
            self._refused[self._applied] = reason

    @asynccontextmanager
    async def next(self, wait_at_most: timedelta | None = None) -> AsyncIterator[Resolution]:
        """The next decision, to act on inside the block (TimeoutError if none comes within
        ``wait_at_most``); leaving the block, however, releases the update that delivered it."""
        await workflow.wait_condition(lambda: self._pending is not None, timeout=wait_at_most)
        resolution, self._pending = self._pending, None
        assert resolution is not None
        try:
            yield resolution
        finally:
            self._applied += 1
