"""Worker Deployment Versioning: safe rollouts of new worker code.

With ``WRITEBACK_DEPLOYMENT`` and ``WRITEBACK_BUILD_ID`` set, a worker polls as version
``{deployment}.{build_id}`` and Temporal sends tasks only to the deployment's *current* version,
which an operator moves when the new version's workers are up::

    temporal worker deployment set-current-version --deployment-name writeback --build-id v2

Writes are ``AUTO_UPGRADE``: a write waiting for a person (hours, days) moves to the current
version at its next task rather than pinning old workers alive, so workflow changes must stay
replay-compatible (``workflow.patched``), as for any long-running workflow. Rolling back is setting
the previous version current again.
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from workers.settings import Settings, SettingsError


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    if not settings.deployment_name and not settings.build_id:
        return None
    if not settings.deployment_name or not settings.build_id:
        raise SettingsError("set both $WRITEBACK_DEPLOYMENT and $WRITEBACK_BUILD_ID, or neither")
    if "." in settings.deployment_name:
        raise SettingsError("$WRITEBACK_DEPLOYMENT must not contain '.'")
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name, settings.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )
