"""Connecting to Temporal with the data converter every writeback process must share."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from workers.telemetry import tracing_interceptors


async def connect(address: str, namespace: str = "default", wait_seconds: float = 0) -> Client:
    """Connect; with ``wait_seconds``, keep trying while a just-started server comes up."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=pydantic_data_converter,
                interceptors=tracing_interceptors(),
            )
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
