"""Temporal servers for tests, from the wheels (never downloaded): the time-skipping test server
for workflow tests, the dev server for integration tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
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
