"""Reading a workflow's history as the Temporal server stores it: with a client that has no
codec, so what a person with UI or database access would see."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory


async def raw_client(address: str, namespace: str = "default") -> Client:
    """A client with the SDK's default converter: no keys, payloads stay as stored."""
    return await Client.connect(address, namespace=namespace)


async def raw_history(client: Client, workflow_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id).fetch_history()


#: Search attributes are payloads the codec never sees (the server indexes them): PHI-free.
SEARCH_ATTRIBUTES = "search_attributes"


def payloads_in(
    message: Message, skip: tuple[str, ...] = (SEARCH_ATTRIBUTES,)
) -> Iterator[Payload]:
    """Every Payload inside a protobuf message (inputs, results, failures...), except under the
    fields named in ``skip``."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skip:
            continue
        if isinstance(value, Message):
            values = [value]
        elif field.message_type.GetOptions().map_entry:
            values = list(value.values())
        else:
            values = list(value)
        for item in values:
            if isinstance(item, Message):
                yield from payloads_in(item, skip)


def key_ids(history: WorkflowHistory) -> set[str]:
    """The encryption key ids named by the history's encrypted payloads."""
    return {
        payload.metadata["encryption-key-id"].decode()
        for event in history.events
        for payload in payloads_in(event)
        if "encryption-key-id" in payload.metadata
    }


def unencrypted_payload_events(history: WorkflowHistory) -> set[str]:
    """Names of the event types holding a payload the codec did not seal (expected: only the
    SDK's local-activity marker bookkeeping: sequence numbers, activity type, times)."""
    return {
        EventType.Name(event.event_type)
        for event in history.events
        for payload in payloads_in(event)
        if "encryption-key-id" not in payload.metadata
    }
