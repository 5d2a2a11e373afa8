"""The codec server (the real Starlette app over ASGI): 401 without a token, 403 for another
tenant's payloads, decode and encode for the caller's own tenants, CORS for the UI origin only,
the Web UI's cookie sign-in. (The attacks of issue #17 are in tests/security/.)"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import WorkflowSerializationContext

from workers.codec import EncryptionCodec
from workers.codec_server import CodecTokens, create_app
from workers.keys import LocalKeyProvider

UI = "http://127.0.0.1:8233"
CANARY = "CANARY-codec-server-41d2"


@pytest.fixture
def keys() -> LocalKeyProvider:
    return LocalKeyProvider.generate()


@pytest.fixture
async def server(keys: LocalKeyProvider, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    tokens_file = tmp_path / "tokens.json"
    CodecTokens.write(
        tokens_file, [("acme-ops", "acme-token", ["acme"]), ("all", "root-token", ["*"])]
    )
    encoder = CodecTokens.add(tokens_file, "acme-encoder", ["acme"], encode=True)
    (tmp_path / "encoder").write_text(encoder)
    app = create_app(keys, CodecTokens.from_file(tokens_file), [UI])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


def plain() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CANARY).encode())


async def sealed(keys: LocalKeyProvider, tenant: str) -> dict[str, object]:
    context = WorkflowSerializationContext(namespace="default", workflow_id=f"wb:{tenant}:k")
    encoded = await EncryptionCodec(keys).with_context(context).encode([plain()])
    return json_format.MessageToDict(Payloads(payloads=encoded))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_decode_without_or_with_a_wrong_token_is_401(
    server: httpx.AsyncClient, keys: LocalKeyProvider
) -> None:
    body = await sealed(keys, "acme")
    assert (await server.post("/decode", json=body)).status_code == 401
    assert (await server.post("/decode", json=body, headers=bearer("guess"))).status_code == 401
    # a token in the URL is not a credential (only with --allow-url-token)
    assert (await server.post("/t/acme-token/decode", json=body)).status_code == 404
    basic = {"Authorization": "Basic YWNtZS10b2tlbg=="}
    assert (await server.post("/decode", json=body, headers=basic)).status_code == 401


async def test_another_tenants_payloads_are_403(
    server: httpx.AsyncClient, keys: LocalKeyProvider
) -> None:
    body = await sealed(keys, "beta")
    answer = await server.post("/decode", json=body, headers=bearer("acme-token"))
    assert answer.status_code == 403
    assert CANARY not in answer.text
    # one foreign payload among permitted ones refuses the whole request
    mixed = await sealed(keys, "acme")
    mixed["payloads"] += body["payloads"]  # type: ignore[operator]
    assert (
        await server.post("/decode", json=mixed, headers=bearer("acme-token"))
    ).status_code == 403


async def test_decode_works_for_the_tokens_tenants(
    server: httpx.AsyncClient, keys: LocalKeyProvider
) -> None:
    body = await sealed(keys, "acme")
    for request in (
        server.post("/decode", json=body, headers=bearer("acme-token")),
        server.post("/wb-codec/decode", json=body, headers=bearer("acme-token")),
        server.post("/decode", json=await sealed(keys, "beta"), headers=bearer("root-token")),
    ):
        answer = await request
        assert answer.status_code == 200
        [payload] = answer.json()["payloads"]
        assert base64.b64decode(payload["data"]) == json.dumps(CANARY).encode()


async def test_encode_seals_for_one_workflow_of_an_encoding_tokens_tenant(
    server: httpx.AsyncClient, keys: LocalKeyProvider, tmp_path: Path
) -> None:
    encoder = (tmp_path / "encoder").read_text()
    body = json_format.MessageToDict(Payloads(payloads=[plain()]))
    headers = {**bearer(encoder), "X-Writeback-Workflow-Id": "wb:acme:k9"}
    answer = await server.post("/encode", json=body, headers=headers)
    assert answer.status_code == 200
    payload = json_format.ParseDict(answer.json(), Payloads()).payloads[0]
    assert payload.metadata["encryption-key-id"] == b"acme.r1"
    assert payload.metadata["encryption-workflow-id"] == b"wb:acme:k9"
    assert CANARY.encode() not in payload.data
    context = WorkflowSerializationContext(namespace="default", workflow_id="wb:acme:k9")
    assert EncryptionCodec(keys).with_context(context).decrypt(payload) == plain()
    refusals = [
        {**bearer(encoder), "X-Writeback-Workflow-Id": "wb:beta:k9"},  # another tenant
        {**bearer(encoder), "X-Writeback-Workflow-Id": "elsewhere"},  # the system key
        {**bearer("acme-token"), "X-Writeback-Workflow-Id": "wb:acme:k9"},  # decode-only
    ]
    for headers in refusals:
        assert (await server.post("/encode", json=body, headers=headers)).status_code == 403
    # sealed for which workflow: it must be said
    assert (await server.post("/encode", json=body, headers=bearer(encoder))).status_code == 400


async def test_the_web_ui_signs_in_once_and_decodes_with_a_session_cookie(
    server: httpx.AsyncClient, keys: LocalKeyProvider
) -> None:
    body = await sealed(keys, "acme")
    json_headers = {"Origin": UI, "Content-Type": "application/json"}
    assert (await server.post("/wb-codec/decode", json=body)).status_code == 401
    page = await server.get("/wb-codec/login")
    assert page.status_code == 200 and "Include cross-origin credentials" in page.text
    wrong = await server.post("/wb-codec/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "wb_codec_session" not in server.cookies
    signed_in = await server.post("/wb-codec/login", data={"token": "acme-token"})
    assert signed_in.status_code == 200 and "acme-token" not in signed_in.text
    cookie = signed_in.headers["set-cookie"]
    assert all(part in cookie for part in ("HttpOnly", "SameSite=strict", "Path=/wb-codec"))
    assert "acme-token" not in cookie  # a session id, not the token
    answer = await server.post("/wb-codec/decode", json=body, headers=json_headers)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    # the cookie works on the UI's endpoint only, as JSON (preflighted), from the UI's origin
    assert (await server.post("/decode", json=body)).status_code == 401
    text = {"Origin": UI, "Content-Type": "text/plain"}
    raw = json.dumps(body)
    assert (await server.post("/wb-codec/decode", content=raw, headers=text)).status_code == 415
    evil = {"Origin": "http://evil.test", "Content-Type": "application/json"}
    assert (await server.post("/wb-codec/decode", json=body, headers=evil)).status_code == 403
    # and sees its own tenants only
    beta = await sealed(keys, "beta")
    assert (
        await server.post("/wb-codec/decode", json=beta, headers=json_headers)
    ).status_code == 403
    await server.post("/wb-codec/logout")
    assert (
        await server.post("/wb-codec/decode", json=body, headers=json_headers)
    ).status_code == 401


async def test_a_malformed_body_is_400(server: httpx.AsyncClient) -> None:
    answer = await server.post("/decode", content=b"{nope", headers=bearer("root-token"))
    assert answer.status_code == 400
    assert "payloads" in answer.json()["message"]


async def test_cors_allows_the_ui_origin_only(server: httpx.AsyncClient) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    allowed = await server.options("/decode", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    foreign = await server.options("/decode", headers={**preflight, "Origin": "http://evil.test"})
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers


def test_codec_token_prints_a_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    from support.cli import run_cli

    path = tmp_path / "tokens.json"
    first = run_cli("codec-token", "ops-acme", "--tenant", "acme", "--tokens", str(path))
    second = run_cli("codec-token", "ops-all", "--tenant", "*", "--tokens", str(path))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    token = first.stdout.strip()
    assert token not in path.read_text()  # only its hash is kept
    tokens = CodecTokens.from_file(path)
    grant = tokens.grant_for(token)
    assert grant is not None and grant.name == "ops-acme" and grant.may_see("acme")
    assert not grant.may_see("beta")
    everything = tokens.grant_for(second.stdout.strip())
    assert everything is not None and everything.may_see("beta")
    renewed = run_cli("codec-token", "ops-acme", "--tenant", "acme", "--tokens", str(path))
    assert CodecTokens.from_file(path).grant_for(token) is None  # the old token is replaced
    assert CodecTokens.from_file(path).grant_for(renewed.stdout.strip()) is not None


async def test_the_token_in_the_url_works_only_when_asked_for(
    keys: LocalKeyProvider, tmp_path: Path
) -> None:
    """`writeback dev --codec-token-in-url`: the old UI endpoint, `/t/{token}`, opted into."""
    from workers.devstack import StackConfig, codec_server_command

    tokens_file = tmp_path / "tokens.json"
    CodecTokens.write(tokens_file, [("acme-ops", "acme-token", ["acme"])])
    app = create_app(keys, CodecTokens.from_file(tokens_file), [UI], allow_url_token=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        body = await sealed(keys, "acme")
        assert (await client.post("/t/acme-token/decode", json=body)).status_code == 200
        assert (await client.post("/t/guess/decode", json=body)).status_code == 401
    config = StackConfig(tmp_path, tmp_path / "tenants.toml", codec_token_in_url=True)
    assert "--allow-url-token" in codec_server_command(config)
    assert config.ui_codec_endpoint("tok") == f"{config.codec_url}/t/tok"
    assert "--allow-url-token" not in codec_server_command(StackConfig(tmp_path, tmp_path))
