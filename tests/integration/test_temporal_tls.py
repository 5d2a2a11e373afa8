"""Workers and clients reach Temporal over mutual TLS when the deployment gives them a certificate
(workers/temporal_client.py, deploy/: README "Temporal over mutual TLS"): the certificates
deploy/tls/make_certs.py makes, a TLS front requiring a client certificate signed by their CA (a
stand-in for the server's own ``requireClientAuth``, which the dev server lacks), and the real
``connect``. Without a certificate, or with one from another CA, there is no connection."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from support.temporal import temporal_address
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from workers.temporal_client import (
    CLIENT_CERT_ENV,
    CLIENT_KEY_ENV,
    SERVER_CA_ENV,
    SERVER_NAME_ENV,
    connect,
)

ROOT = Path(__file__).resolve().parents[2]


def make_certs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_certs", ROOT / "deploy/tls/make_certs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def issue_all(out: Path) -> None:
    certs = make_certs()
    ca, ca_key = certs.make_ca(out)
    for identity, dns in certs.IDENTITIES.items():
        certs.issue(out, identity, dns, ca, ca_key)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def mtls_front(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """(address, certificates directory): TLS in front of the dev server, client certificate
    required, the server certificate of identity ``temporal``."""
    issue_all(tmp_path / "tls")
    tls = tmp_path / "tls"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls / "ca/ca.pem"))
    context.load_cert_chain(tls / "temporal/tls.crt", tls / "temporal/tls.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    host, port = temporal_address(dev_server).rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield address, tls


def use_identity(monkeypatch: pytest.MonkeyPatch, tls: Path, identity: str | None) -> None:
    monkeypatch.setenv(SERVER_CA_ENV, str(tls / "ca/ca.pem"))
    monkeypatch.setenv(SERVER_NAME_ENV, "temporal")
    if identity:
        monkeypatch.setenv(CLIENT_CERT_ENV, str(tls / identity / "tls.crt"))
        monkeypatch.setenv(CLIENT_KEY_ENV, str(tls / identity / "tls.key"))


@pytest.mark.parametrize("identity", ["worker", "caller", "operator"])
async def test_a_process_with_its_certificate_reaches_temporal_over_mutual_tls(
    mtls_front: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, identity: str
) -> None:
    address, tls = mtls_front
    use_identity(monkeypatch, tls, identity)
    client = await connect(address)
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


async def test_without_a_client_certificate_there_is_no_connection(
    mtls_front: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, tls = mtls_front
    use_identity(monkeypatch, tls, None)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(address), 30)


async def test_a_certificate_from_another_ca_is_refused(
    mtls_front: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    address, tls = mtls_front
    issue_all(tmp_path / "other")
    use_identity(monkeypatch, tls, None)
    monkeypatch.setenv(CLIENT_CERT_ENV, str(tmp_path / "other/worker/tls.crt"))
    monkeypatch.setenv(CLIENT_KEY_ENV, str(tmp_path / "other/worker/tls.key"))
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(address), 30)
