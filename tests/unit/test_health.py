"""The worker's probe endpoints answer over real HTTP (workers/health.py)."""

from __future__ import annotations

import asyncio

import httpx

from workers.health import LIVE_PATH, READY_PATH, Health, serving_health


async def test_readiness_follows_the_worker_and_liveness_always_answers() -> None:
    health = Health()
    async with (
        serving_health(health, 0, host="127.0.0.1") as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert (await http.get(LIVE_PATH)).status_code == 200
        assert (await http.get(READY_PATH)).status_code == 503
        health.ready = True
        assert (await http.get(READY_PATH)).status_code == 200
        health.ready = False  # draining after SIGTERM
        assert (await http.get(READY_PATH)).status_code == 503
        assert (await http.get(LIVE_PATH)).status_code == 200


async def test_unknown_paths_and_methods_are_refused_not_crashed() -> None:
    async with (
        serving_health(Health(ready=True), 0, host="127.0.0.1") as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert (await http.get("/metrics/../etc")).status_code == 404
        assert (await http.post(READY_PATH)).status_code == 405
        assert (await http.get(f"{READY_PATH}?verbose=1")).status_code == 200


async def test_a_client_that_sends_nothing_does_not_block_other_probes() -> None:
    async with serving_health(Health(ready=True), 0, host="127.0.0.1") as port:
        _reader, silent = await asyncio.open_connection("127.0.0.1", port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get(READY_PATH)).status_code == 200
        silent.close()
