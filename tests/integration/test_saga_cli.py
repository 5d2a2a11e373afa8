"""`writeback saga`: a saga file from examples/ written as one unit from the command line,
idempotent on resubmission, and a malformed saga refused with a reason before anything starts."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from support.audit import current_resources_for_command
from support.cli import ROOT, run_cli
from support.sandbox_process import SandboxProcess

pytestmark = pytest.mark.integration


def test_a_referral_file_is_written_once_however_often_it_is_sent(
    cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    key = f"cli-saga-{uuid.uuid4().hex[:10]}"
    args = ("saga", str(ROOT / "examples/saga-referral.json"), "--tenant", "demo-cerner")
    first = run_cli(*args, "--key", key, "--wait", "--json", env=cli_env)
    again = run_cli(*args, "--key", key, "--wait", "--json", env=cli_env)

    assert first.returncode == 0, first.stderr
    saga = json.loads(first.stdout)
    assert saga["state"] == "verified"
    assert [step["state"] for step in saga["steps"]] == ["verified"] * 3
    assert json.loads(again.stdout)["workflow_id"] == saga["workflow_id"]
    for step in ("request", "task", "notify"):
        identifier = f"demo-cerner:saga.{key}.{step}"
        assert len(current_resources_for_command(ehr.db, "demo-cerner", identifier)) == 1


def test_a_saga_whose_steps_refer_to_a_missing_step_is_refused_with_the_reason(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    saga = json.loads((ROOT / "examples/saga-referral.json").read_text())
    saga["steps"] = saga["steps"][1:]  # the task now refers to a request that is not there
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(saga))

    result = run_cli("saga", str(path), "--tenant", "demo-r4", env=cli_env)
    assert result.returncode == 2
    assert "refers to unknown step(s) ['request']" in result.stderr


@pytest.mark.parametrize(
    ("example", "steps"),
    [
        ("saga-lab-panel.json", ["glucose", "sodium", "potassium", "report"]),
        ("saga-care-plan.json", ["goal", "plan"]),
    ],
)
def test_the_lab_panel_and_care_plan_examples_are_written_as_sagas(
    cli_env: dict[str, str], ehr: SandboxProcess, example: str, steps: list[str]
) -> None:
    key = f"cli-saga-{uuid.uuid4().hex[:10]}"
    args = ("saga", str(ROOT / "examples" / example), "--tenant", "families-r4", "--key", key)
    result = run_cli(*args, "--wait", "--json", env=cli_env)

    assert result.returncode == 0, result.stderr
    saga = json.loads(result.stdout)
    assert saga["state"] == "verified"
    assert [step["name"] for step in saga["steps"]] == steps
    for step in steps:
        identifier = f"families-r4:saga.{key}.{step}"
        assert len(current_resources_for_command(ehr.db, "families-r4", identifier)) == 1
