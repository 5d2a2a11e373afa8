"""examples/api-client.mjs, the Node client of the README, run with ``node`` against the real
`writeback api` process (the Temporal dev server, a `writeback worker` process, the sandbox EHR):
its write is keyed by its Idempotency-Key, followed to ``verified`` and in the EHR once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
from support.api_process import ROOT, ApiProcess
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess

pytestmark = pytest.mark.integration

NODE = shutil.which("node")
API_CLIENTS = """
[[client]]
id = "node-app"
tenants = ["demo-r4"]
scopes = ["system/Observation.cu"]
"""


@pytest.mark.skipif(NODE is None, reason="node is not on this machine: the Node example not run")
def test_the_node_example_writes_one_observation_and_follows_it_to_verified(
    api: ApiProcess, ehr: SandboxProcess
) -> None:
    assert NODE is not None
    key = f"node-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "WRITEBACK_API_URL": api.url,
        "WRITEBACK_API_TOKEN": api.token("node-app", "system/Observation.cu"),
        "WRITEBACK_TENANT": "demo-r4",
        "WRITEBACK_KEY": key,
    }
    run = subprocess.run(
        [NODE, "examples/api-client.mjs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["workflow_id"] == f"wb:demo-r4:{key}"
    assert outcome["state"] == "verified"
    assert outcome["resource"].startswith("Observation/")
    assert resources_for_command(ehr.db, "demo-r4", f"demo-r4:{key}") == 1
