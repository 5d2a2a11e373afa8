"""One error root (adapters/errors.py): every error the CLI reports is a WritebackError, which says
what to print and which exit code to end with; the CLI handles them all in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.capability_discovery import DiscoveryFailed
from adapters.errors import EXIT_FAILED, EXIT_USAGE, WritebackError
from adapters.tenants import TenantConfigError
from workers.cli import main
from workers.cli_support import UsageError
from workers.client import DecisionRefused, NoWorker, WriteEndedAbnormally, WriteNotFound
from workers.codec import PayloadRefused
from workers.codec_server import TokenFileError
from workers.keys import KeyFileError, UnknownKey
from workers.settings import SettingsError
from workflows.input_limits import CommandRefused, LimitExceeded

REPORTED = [
    UsageError,
    TenantConfigError,
    SettingsError,
    KeyFileError,
    UnknownKey,
    TokenFileError,
    PayloadRefused,
    CommandRefused,
    LimitExceeded,
    WriteNotFound,
    DecisionRefused,
    NoWorker,
    WriteEndedAbnormally,
    DiscoveryFailed,
]


@pytest.mark.parametrize("error", REPORTED, ids=lambda e: e.__name__)
def test_every_reported_error_derives_from_the_root(error: type[Exception]) -> None:
    assert issubclass(error, WritebackError)


def test_exit_codes_and_messages_are_the_errors_own() -> None:
    assert WriteEndedAbnormally("wb:t:k: workflow terminated").exit_code == EXIT_FAILED
    assert NoWorker("no worker").exit_code == EXIT_USAGE
    refused = CommandRefused("resource.note[0].text", "too_long")
    assert refused.for_terminal() == "invalid command: resource.note[0].text: too_long"
    assert isinstance(refused, ValueError)  # still one for callers that catch ValueError


def test_the_cli_prints_a_writeback_error_and_exits_with_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-tenants.toml"
    code = main(["reconcile", "schedule", "--tenants", str(missing)])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err == f"error: tenant file not found: {missing}\n"
