"""Caller keys for the tests (adapters/callers.py): one test key, registered for every caller id
the tests use, so that every command and decision a test's WritebackClient or CLI sends is signed
and verified — the real path. The test process and every worker and CLI process it starts find
the registry and the key through the environment (``$WRITEBACK_CALLER_KEYS``,
``$WRITEBACK_CALLER_KEY``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)

from adapters.caller_keys import new_private_key, private_pem, registry_entry
from adapters.callers import CallerSigner, decision_binding, saga_binding, write_binding
from adapters.ids import tenant_of_workflow
from workflows.contract import Resolution, WriteCommand
from workflows.saga_contract import SagaCommand

#: calling services the tests name as requested_by (``unknown-service``: proved, but no policy
#: rule names it)
TEST_SERVICES = (
    "cli",
    "nursing-app",
    "batch-import",
    "referrals-svc",
    "contract-test",
    "bench",
    "unknown-service",
)
#: operators the tests name as a decision's by
TEST_OPERATORS = (*(f"op-{n}" for n in range(1, 10)), "op-replay")


def write_test_callers(directory: Path) -> tuple[Path, Path]:
    """(registry file, private key file) in ``directory``."""
    key = new_private_key()
    key_path = directory / "test-caller.pem"
    key_path.write_bytes(private_pem(key))
    key_path.chmod(0o600)
    registry = directory / "callers.toml"
    registry.write_text(
        "# the test caller key, registered for every test caller id\n"
        + "\n".join(
            [registry_entry(caller, key) for caller in TEST_SERVICES]
            + [registry_entry(op, key, ["decisions"]) for op in TEST_OPERATORS]
        )
    )
    return registry, key_path


class SigningInterceptor(Interceptor):
    """Signs, with the test caller key, what a test sends around WritebackClient (a decision sent
    with ``handle.start_update``, a command started with ``start_workflow``) when it carries no
    credential yet: the worker verifies it as it would a real caller's."""

    def __init__(self, clock: Callable[[], Awaitable[datetime]]) -> None:
        self._clock = clock

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Signing(next, self._clock)


class _Signing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, clock: Callable[[], Awaitable[datetime]]) -> None:
        super().__init__(next)
        self._clock = clock

    async def _signed(self, workflow_id: str, arg: Any) -> Any:
        signer = CallerSigner.from_env()
        if signer is None or getattr(arg, "credential", "absent") is not None:
            return arg
        if isinstance(arg, Resolution):
            binding = decision_binding(workflow_id, tenant_of_workflow(workflow_id) or "", arg)
        elif isinstance(arg, WriteCommand):
            binding = write_binding(arg)
        elif isinstance(arg, SagaCommand):
            binding = saga_binding(arg)
        else:
            return arg
        binding.workflow_id = workflow_id
        credential = signer.sign(binding, now=await self._clock())
        return arg.model_copy(update={"credential": credential})

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        if input.args:
            first = input.args[0]
            if input.workflow == "ClinicalWrite" and isinstance(first, dict):
                first = await self._signed_by_hand(input.id, first)
            input.args = [await self._signed(input.id, first), *input.args[1:]]
        return await super().start_workflow(input)

    async def _signed_by_hand(self, workflow_id: str, arg: dict[str, Any]) -> dict[str, Any]:
        """A command written by hand (as for ``temporal workflow start --input``) that is a
        valid command gets its credential field too; anything else goes as it is."""
        try:
            command = WriteCommand.model_validate(arg)
        except ValueError:
            return arg
        signed = await self._signed(workflow_id, command)
        return {**arg, "credential": signed.credential} if signed is not command else arg

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        if input.update == "resolve" and input.args:
            input.args = [await self._signed(input.id, input.args[0]), *input.args[1:]]
        return await super().start_workflow_update(input)
