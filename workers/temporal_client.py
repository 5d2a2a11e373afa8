"""Connecting to Temporal with the data converter every writeback process must share."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.converter import DataConverter

from workers.codec import writeback_data_converter
from workers.keys import load_key_provider
from workers.settings import Settings
from workers.telemetry import tracing_interceptors


def default_data_converter() -> DataConverter:
    """Encrypting converter with the keys of this environment (see workers/keys.py)."""
    return writeback_data_converter(load_key_provider(Settings.from_env().state_dir))


async def connect(
    address: str,
    namespace: str = "default",
    wait_seconds: float = 0,
    data_converter: DataConverter | None = None,
) -> Client:
    """Connect; with ``wait_seconds``, keep trying while a just-started server comes up."""
    converter = data_converter or default_data_converter()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=converter,
                interceptors=tracing_interceptors(),
            )
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
