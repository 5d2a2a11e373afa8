"""Issue #17, finding 8 (the codec server), as attacks: the dev token read from URLs and process
arguments, a request body that exhausts memory, a compressed payload that inflates in the
server, and tokens and PHI in clear on the network (no TLS to offer).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format
from support.cli import ROOT, WRITEBACK, run_cli
from support.ports import free_port
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import WorkflowSerializationContext

from workers import devstack
from workers.codec import EncryptionCodec
from workers.codec_server import CodecTokens, create_app
from workers.devstack import StackConfig, running_stack, wait_for_port
from workers.keys import LocalKeyProvider

TOKEN = "acme-token-9f3c"


@pytest.fixture
def keys() -> LocalKeyProvider:
    return LocalKeyProvider.generate()


@pytest.fixture
async def server(keys: LocalKeyProvider, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    tokens = tmp_path / "tokens.json"
    CodecTokens.write(tokens, [("acme-ops", TOKEN, ["acme"])])
    app = create_app(keys, CodecTokens.from_file(tokens), ["http://127.0.0.1:8233"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


async def sealed(keys: LocalKeyProvider, payload: Payload) -> dict[str, Any]:
    context = WorkflowSerializationContext(namespace="default", workflow_id="wb:acme:k1")
    encoded = await EncryptionCodec(keys).with_context(context).encode([payload])
    return json_format.MessageToDict(Payloads(payloads=encoded))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- the token in a URL and in process arguments ---------------------------------------------


async def test_a_token_in_the_url_is_not_accepted(
    server: httpx.AsyncClient, keys: LocalKeyProvider
) -> None:
    """A path token ends up in the UI's settings, browser history, proxies' request logs."""
    body = await sealed(keys, Payload(metadata={"encoding": b"json/plain"}, data=b"{}"))
    assert (await server.post(f"/t/{TOKEN}/decode", json=body)).status_code != 200
    assert (await server.post(f"/decode?token={TOKEN}", json=body)).status_code == 401
    assert (await server.post("/decode", json=body, headers=AUTH)).status_code == 200


class _Recorded:
    """Stands in for a child process of the stack: records its command line and environment."""

    def __init__(self, commands: list[tuple[list[str], dict[str, str]]]) -> None:
        self._commands = commands

    def __call__(self, command: list[str], **kwargs: Any) -> _Recorded:
        self._commands.append((list(command), dict(kwargs.get("env") or {})))
        return self

    def poll(self) -> None:
        return None

    def terminate(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return 0


@pytest.fixture
def stack_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[tuple[list[str], dict[str, str]]], str]]:
    """Start `writeback dev`'s stack with its children recorded instead of run: their command
    lines and environments, and the dev token."""
    commands: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(devstack.subprocess, "Popen", _Recorded(commands))
    for waiter in ("wait_for_port", "wait_for_http", "wait_for_line"):
        monkeypatch.setattr(devstack, waiter, lambda *args, **kwargs: None)
    config = StackConfig(
        state_dir=tmp_path / "state",
        tenants_path=tmp_path / "tenants.toml",
        start_worker=False,
    )
    with running_stack(config):
        pass
    yield commands, (tmp_path / "state" / "codec_dev_token").read_text().strip()


def test_the_dev_token_is_in_no_process_argument_or_environment(
    stack_commands: tuple[list[tuple[list[str], dict[str, str]]], str],
) -> None:
    """`ps` shows every user's process arguments; the dev server passes its codec endpoint to
    the Web UI, which hands it to every browser that loads the UI."""
    commands, token = stack_commands
    names = [" ".join(command[:5]) for command, _ in commands]
    assert any("start-dev" in name for name in names) and any("codec-server" in n for n in names)
    for command, env in commands:
        assert not any(token in arg for arg in command), command
        assert not any(token in value for value in env.values())
    [temporal] = [command for command, _ in commands if "start-dev" in command]
    endpoint = temporal[temporal.index("--ui-codec-endpoint") + 1]
    assert endpoint.endswith("/wb-codec")  # the Web UI signs in there (a cookie, not a URL)


# --- unbounded bodies and inflation --------------------------------------------------------------


async def test_an_oversized_request_body_is_refused_before_it_is_read(
    server: httpx.AsyncClient,
) -> None:
    big = b'{"payloads": [{"data": "' + b"A" * (20 << 20) + b'"}]}'
    declared = await server.post("/decode", content=big, headers=AUTH)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until the limit
        for _ in range(20):
            yield b" " * (1 << 20)

    streamed = await server.post("/decode", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413


async def test_a_zlib_bomb_does_not_inflate_in_the_codec_server(
    server: httpx.AsyncClient, keys: LocalKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sealed payload (made by someone holding the key) whose compressed data inflates to
    256 MiB: the answer would hold it all, per payload, per request."""
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(b"\0" * (1 << 20)) for _ in range(256)) + packer.flush()
    monkeypatch.setattr("workers.codec.deflate", lambda data: bomb)
    body = await sealed(
        keys, Payload(metadata={"encoding": b"json/plain"}, data=os.urandom(2 * len(bomb)))
    )
    monkeypatch.undo()
    answer = await server.post("/decode", json=body, headers=AUTH)
    assert answer.status_code in (400, 413)
    assert len(answer.content) < 4096


# --- TLS ----------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "codec.crt", directory / "codec.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_codec_server_serves_https_and_refuses_plain_http_off_loopback(
    tmp_path: Path,
) -> None:
    """Bearer tokens and decoded PHI cross the network: HTTPS must be on offer, and plain HTTP
    on a non-loopback address must be asked for, not the default."""
    tokens = tmp_path / "tokens.json"
    CodecTokens.write(tokens, [("acme-ops", TOKEN, ["acme"])])
    plain = run_cli("codec-server", "--host", "0.0.0.0", "--tokens", str(tokens), timeout=30)
    assert plain.returncode == 2 and "--tls-cert" in plain.stderr

    cert, key = self_signed(tmp_path)
    port = free_port()
    log = (tmp_path / "codec.log").open("wb")
    process = subprocess.Popen(
        [
            *(*WRITEBACK, "codec-server", "--port", str(port), "--tokens", str(tokens)),
            *("--tls-cert", str(cert), "--tls-key", str(key)),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 30, process)
        url = f"https://127.0.0.1:{port}/decode"
        body = json.dumps({"payloads": []})
        trusted = ssl.create_default_context(cafile=str(cert))
        answer = httpx.post(url, content=body, headers=AUTH, verify=trusted, timeout=10)
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.post(url.replace("https", "http"), content=body, headers=AUTH, timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
