"""Worker versioning in tests: make a deployment's build the current one."""

from __future__ import annotations

from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client


async def set_current_version(client: Client, deployment_name: str, build_id: str) -> None:
    """What ``temporal worker deployment set-current-version`` does (operators run that)."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment_name,
            build_id=build_id,
            identity=client.identity,
        )
    )
