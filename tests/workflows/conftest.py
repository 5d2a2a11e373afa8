"""Workflow tests: the time-skipping test server, the real worker, the real sandbox EHR."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.workers import running_worker
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers.client import WritebackClient


@pytest.fixture
async def writeback(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(time_skipping.client, tenants) as client:
        yield client
