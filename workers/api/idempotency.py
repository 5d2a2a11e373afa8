"""The ``Idempotency-Key`` header (IETF httpapi idempotency-key draft) on writes.

- A key is an opaque token (``[A-Za-z0-9._-]``, at most 128 characters, as the CLI's ``--key``):
  it becomes the workflow id ``wb:{tenant}:{key}``, which Temporal stores in plain text, so it
  must never carry patient data.
- Without one, the key is made from the request as the CLI makes it from a file
  (adapters/ids.py ``content_key``): an HMAC under the tenant's id secret, so the same request
  from the same client is the same write, and the key reveals nothing of the content.
- Same key + same request: the same write (the start joins the running or finished workflow) and
  the same answer. Same key + another request: 422. "The request" is what the command's
  credential binds but the key (``REQUEST_FIELDS``): the resource, the interaction, the target
  and base version, the caller, the user; its keyed digest (the same HMAC) is recorded with the
  workflow when it starts, in its memo (sealed by the payload codec like every payload), and
  compared by whichever API process receives the key again. A write started elsewhere (the CLI,
  the Python client) has no memo: its recorded command (query ``details``) is compared instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from adapters.callers import WRITE_FIELDS, signed_content
from adapters.ids import TOKEN, content_key
from workers.api.outcomes import ApiError, invalid
from workers.client import Submission, WritebackClient
from workers.keys import KeyProvider
from workflows.contract import WriteCommand, WriteDetails

HEADER = "Idempotency-Key"
#: the memo field holding the request's keyed digest
MEMO_FIELD = "writeback-api-request"
REQUEST_FIELDS = tuple(name for name in WRITE_FIELDS if name != "idempotency_key")


def header_key(request: Request) -> str | None:
    """The client's key, or None; 400 for one that cannot be a workflow id's part."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    value = value.strip().strip('"')  # the draft's form is a quoted string
    if TOKEN.fullmatch(value) is None:
        raise invalid(f"{HEADER} must be 1-128 of A-Z a-z 0-9 . _ - (and never patient data)")
    return value


def request_digest(keys: KeyProvider, command: WriteCommand) -> str:
    """The keyed digest of everything the request asks but its key (the same whatever key)."""
    content: dict[str, Any] = signed_content(command, REQUEST_FIELDS)
    return content_key(keys.id_secret(command.tenant), command.tenant, content)


def reused_with_another_request() -> ApiError:
    return ApiError(
        422,
        "conflict",
        f"{HEADER} was already used for a different request (another body, target, version, "
        "client or user): send a new key for a new write",
    )


async def check_same_request(
    client: WritebackClient, keys: KeyProvider, submission: Submission, digest: str
) -> None:
    """422 unless the write was started for the request of ``digest``. A submission that
    started it recorded ``digest`` itself: only a joined one is compared (one read of the
    workflow fewer per new write)."""
    if not submission.joined:
        return
    workflow_id = submission.workflow_id
    handle = client.temporal.get_workflow_handle(workflow_id)
    description = await handle.describe()
    recorded = await description.memo_value(MEMO_FIELD, None)
    if recorded is None:  # started elsewhere: compare its command
        details = await client.details(workflow_id)
        command = details.command if isinstance(details, WriteDetails) else None
        recorded = request_digest(keys, command) if command is not None else None
    if recorded != digest:
        raise reused_with_another_request()
