"""Temporal servers for tests, from the wheels (never downloaded): the time-skipping test server
for workflow tests, the dev server for integration tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import google.protobuf.empty_pb2
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from workers.settings import venv_binary
from workers.temporal_client import default_data_converter
from workflows import search_attributes as sa


async def time_skipping_environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        data_converter=default_data_converter(),
    )
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
