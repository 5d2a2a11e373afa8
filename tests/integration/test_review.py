"""The review queue on the dev server (visibility): a write whose urgency budget runs out shows up
in `writeback review list` with its context, `review show` tells its whole story, and a decision
through `review resolve` settles it (issue 4, acceptance 6)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support.cli import run_cli
from support.sandbox_process import SandboxProcess

from workers import samples

pytestmark = pytest.mark.integration


def listed(cli_env: dict[str, str], workflow_id: str, within: float = 60) -> list[dict[str, str]]:
    """`review list --json` until the write appears (visibility is eventually consistent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = run_cli("review", "list", "--tenant", "demo-cerner", "--json", env=cli_env)
        assert result.returncode == 0, result.stderr
        entries = json.loads(result.stdout)
        if any(entry["workflow_id"] == workflow_id for entry in entries):
            return list(entries)
        time.sleep(0.5)
    raise AssertionError(f"{workflow_id} never appeared in the review queue")


def test_spent_budget_is_queued_with_context_and_settled_by_a_decision(
    cli_env: dict[str, str], ehr: SandboxProcess, tmp_path: Path
) -> None:
    path = tmp_path / "hr.json"
    path.write_text(json.dumps(samples.heart_rate(f"rv-{uuid.uuid4().hex[:6]}", 90)))
    key = f"rv-{uuid.uuid4().hex[:10]}"
    # an EHR down for longer than the stat budget: every attempt fails (its reads are sent
    # again within the attempt, then the tenant's breaker opens), whatever the timing
    with httpx.Client(base_url=ehr.url) as admin:
        unavailable = {"kind": "status", "status": 503}
        every_request = {"random": {"seed": 1, "rate": 1.0, "kinds": [unavailable]}}
        admin.post("/_admin/faults/demo-cerner", json=every_request)
        try:
            submitted = run_cli(
                "submit",
                str(path),
                "--tenant",
                "demo-cerner",
                "--key",
                key,
                "--urgency",
                "stat",
                "--wait",
                "--json",
                env=cli_env,
            )
        finally:
            admin.delete("/_admin/faults/demo-cerner")
    assert submitted.returncode == 3, submitted.stderr  # waiting for a person
    workflow_id = json.loads(submitted.stdout)["workflow_id"]

    (entry,) = [e for e in listed(cli_env, workflow_id) if e["workflow_id"] == workflow_id]
    assert entry["state"] == "pending_confirmation"
    assert entry["error_class"] == "transient"
    assert entry["urgency"] == "stat"
    assert entry["waiting_since"]
    assert "retry budget (stat) spent after 5 attempts" in entry["reason"]

    shown = run_cli("review", "show", workflow_id, env=cli_env)
    assert shown.returncode == 3
    attempts = re.findall(r" write +#\d+ +(\S+)", shown.stdout)
    assert attempts == ["transient:"] * 5
    assert "search for this command's resource: HTTP 503" in shown.stdout
    assert '"resourceType": "Observation"' in shown.stdout  # the payload sent
    assert f'"idempotency_key": "{key}"' in shown.stdout  # the command

    refused = run_cli(
        "review",
        "resolve",
        workflow_id,
        "--action",
        "override",
        "--by",
        "op-1",
        "--reason",
        "not a conflict",
        env=cli_env,
    )
    assert refused.returncode == 2
    assert "override is only for a write in conflict" in refused.stderr

    decided = run_cli(
        "review",
        "resolve",
        workflow_id,
        "--action",
        "abandon",
        "--by",
        "op-1",
        "--reason",
        "re-entered by the nurse",
        "--decision-id",
        f"{key}-1",
        "--json",
        env=cli_env,
    )
    assert decided.returncode == 1, decided.stderr
    assert json.loads(decided.stdout)["state"] == "abandoned"
    again = run_cli(  # the same decision resent: deduplicated by its id, not applied twice
        "review",
        "resolve",
        workflow_id,
        "--action",
        "abandon",
        "--by",
        "op-1",
        "--reason",
        "re-entered by the nurse",
        "--decision-id",
        f"{key}-1",
        env=cli_env,
    )
    assert again.returncode in (1, 2)
    status = json.loads(run_cli("status", workflow_id, "--json", env=cli_env).stdout)
    assert [t["state"] for t in status["transitions"]].count("abandoned") == 1
