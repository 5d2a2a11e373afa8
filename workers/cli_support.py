"""What every CLI command shares: the usage error, a state's exit code, the Temporal connection.

The exit codes themselves, and the root of the errors the CLI reports, are in adapters/errors.py.
"""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from adapters.callers import CALLER_KEY_ENV, CallerSigner
from adapters.errors import EXIT_FAILED, EXIT_OK, EXIT_WAITING, WritebackError
from adapters.reasons import element_path, field_names
from workers.client import WritebackClient
from workers.settings import Settings
from workflows.contract import WriteState


class UsageError(WritebackError):
    """Bad input from the person at the terminal, or nothing to talk to: print, exit 2."""


def problems(error: ValidationError, *models: type) -> str:
    """Field paths and messages of a validation error of ``models``, without the submitted values
    and without keys the input made up (``?``: adapters/reasons.py)."""
    known = field_names(*models)
    return "; ".join(
        f"{element_path(err['loc'], '(input)', known)}: {err['msg']}"
        for err in error.errors(include_input=False, include_url=False)
    )


def exit_code_for(state: WriteState) -> int:
    if state in (WriteState.REJECTED, WriteState.COMPENSATED, WriteState.ABANDONED):
        return EXIT_FAILED
    if state.is_waiting_for_human:
        return EXIT_WAITING
    return EXIT_OK


def add_caller_key(parser: argparse.ArgumentParser) -> None:
    """``--caller-key PEM``: sign what the command sends (README: Security, Callers)."""
    parser.add_argument(
        "--caller-key",
        metavar="PEM",
        help=f"private key to sign with, as --requested-by / --by (default: ${CALLER_KEY_ENV}); "
        "tenants that take only proved callers reject what is not signed",
    )


async def connect_client(caller_key: str | None = None) -> WritebackClient:
    settings = Settings.from_env()
    signer = CallerSigner.from_file(caller_key) if caller_key else None
    try:
        return await WritebackClient.connect(
            settings.temporal_address, settings.namespace, settings.task_queue, signer
        )
    except RuntimeError as exc:
        raise UsageError(
            f"cannot reach Temporal at {settings.temporal_address} ({exc}); "
            "start the stack with `writeback dev` or set TEMPORAL_ADDRESS"
        ) from None
