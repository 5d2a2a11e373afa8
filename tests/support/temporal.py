"""Temporal servers for tests, from the wheels (never downloaded): the time-skipping test server
for workflow tests, the dev server for integration tests."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import google.protobuf.empty_pb2
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, ServiceClient
from temporalio.testing import WorkflowEnvironment

from workers.settings import venv_binary
from workers.temporal_client import default_data_converter
from workflows import search_attributes as sa


class _SharedClockUnlock:
    """The time-skipping server's clock unlocked while at least one caller waits on it.

    The SDK unlocks the test server's clock when a ``handle.result()`` starts and locks it when
    that result arrives. The server keeps no count of overlapping unlocks: with several results
    awaited at once, the first to arrive locked the clock again and it stayed locked for the
    rest of the session (every later timer ran in real time). Here the first waiter unlocks, the
    last one locks, and the two RPCs never overtake each other."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._waiters = 0
        self._transition = asyncio.Lock()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        async with self._transition:
            if self._waiters == 0:  # counted only once the unlock is through: a failed one
                await self._client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
            self._waiters += 1  # (an RPC deadline on a loaded machine) leaves no phantom
        try:
            yield
        finally:
            async with self._transition:
                self._waiters -= 1
                if self._waiters == 0:
                    await self._client.test_service.lock_time_skipping(LockTimeSkippingRequest())


#: Each time-skipping server's clock unlock, by the connection its clients share. The SDK unlocks
#: the clock only in ``result()`` of a handle that ``start_workflow`` returned; a handle made with
#: ``get_workflow_handle`` (as a test does after ``WritebackClient.submit``) waits with the clock
#: locked, and the server starts locked: every timer then ran in real time (a 66 s quiet period
#: took 66 s). ``clock_unlocked`` gives those waits the same shared unlock.
_CLOCKS: weakref.WeakKeyDictionary[ServiceClient, _SharedClockUnlock] = weakref.WeakKeyDictionary()


def clock_unlocked(client: Client) -> AbstractAsyncContextManager[None]:
    """The time-skipping server's clock unlocked for the block; nothing on any other server."""
    unlock = _CLOCKS.get(client.service_client)
    return unlock() if unlock is not None else nullcontext()


def skips_time(client: Client) -> bool:
    """Whether ``client`` talks to a time-skipping test server (one this module started)."""
    return client.service_client in _CLOCKS


def client_of(handle: WorkflowHandle[Any, Any]) -> Client:
    """The client a handle talks through (the SDK keeps it private and offers no accessor)."""
    client: Client = handle._client
    return client


async def time_skipping_environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        data_converter=default_data_converter(),
    )
    unlock = _SharedClockUnlock(env.client)
    setattr(env, "time_skipping_unlocked", unlock)  # noqa: B010 (SDK hook)
    _CLOCKS[env.client.service_client] = unlock
    # The test server knows no custom search attributes until told (docs/toolchain.md).
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in sa.ALL
            },
        )
    )
    return env


async def dev_server_environment() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        data_converter=default_data_converter(),
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    )


def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def server_clock(client: Client) -> Callable[[], Awaitable[datetime]]:
    """The Temporal server's clock, for the credentials a test client issues: the time-skipping
    server's virtual time (workflows judge a credential against it), else this machine's."""
    virtual = True

    async def now() -> datetime:
        nonlocal virtual
        if virtual:
            try:
                answer = await client.test_service.get_current_time(
                    google.protobuf.empty_pb2.Empty()
                )
                return answer.time.ToDatetime().replace(tzinfo=UTC)
            except RPCError:  # a dev server has no test service
                virtual = False
        return datetime.now(UTC)

    return now
