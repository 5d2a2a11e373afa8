"""Connecting to Temporal with the data converter every writeback process must share, over
mutual TLS where the deployment gives this process a certificate (deploy/: README, "Temporal
over mutual TLS").

TLS settings use the names Temporal's own CLI and SDKs read (environment configuration):

- ``TEMPORAL_TLS_CLIENT_CERT_PATH`` / ``TEMPORAL_TLS_CLIENT_KEY_PATH``: this process's certificate
  and key (both or neither): the server admits only certificates its client CA signed;
- ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``: the CA that signed the server's certificate (default: the
  system's trust store);
- ``TEMPORAL_TLS_SERVER_NAME``: the name the server's certificate must carry (default: the host
  of ``TEMPORAL_ADDRESS``);
- ``TEMPORAL_TLS=true`` turns TLS on without a client certificate; any of the paths turns it on.

None of them set: plain gRPC, as for the local dev stack (``writeback dev``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from workers.codec import writeback_data_converter
from workers.keys import load_key_provider
from workers.settings import Settings, SettingsError
from workers.telemetry import tracing_interceptors


def default_data_converter() -> DataConverter:
    """Encrypting converter with the keys of this environment (see workers/keys.py)."""
    return writeback_data_converter(load_key_provider(Settings.from_env().state_dir))


CLIENT_CERT_ENV = "TEMPORAL_TLS_CLIENT_CERT_PATH"
CLIENT_KEY_ENV = "TEMPORAL_TLS_CLIENT_KEY_PATH"
SERVER_CA_ENV = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
SERVER_NAME_ENV = "TEMPORAL_TLS_SERVER_NAME"
TLS_ENV = "TEMPORAL_TLS"


def tls_from_env() -> TLSConfig | bool:
    """The TLS settings of this process (module docstring); False: plain gRPC."""
    cert, key = os.environ.get(CLIENT_CERT_ENV), os.environ.get(CLIENT_KEY_ENV)
    ca, name = os.environ.get(SERVER_CA_ENV), os.environ.get(SERVER_NAME_ENV)
    enabled = os.environ.get(TLS_ENV, "").strip().lower() in ("1", "true", "yes")
    if bool(cert) != bool(key):
        raise SettingsError(f"${CLIENT_CERT_ENV} and ${CLIENT_KEY_ENV} go together: set both")
    if not (cert or ca or enabled):
        return False
    return TLSConfig(
        server_root_ca_cert=_read(SERVER_CA_ENV, ca),
        client_cert=_read(CLIENT_CERT_ENV, cert),
        client_private_key=_read(CLIENT_KEY_ENV, key),
        domain=name or None,
    )


def _read(variable: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"${variable}: cannot read {path}: {exc.strerror}") from None


async def connect(
    address: str,
    namespace: str = "default",
    wait_seconds: float = 0,
    data_converter: DataConverter | None = None,
) -> Client:
    """Connect; with ``wait_seconds``, keep trying while a just-started server comes up."""
    converter = data_converter or default_data_converter()
    tls = tls_from_env()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=converter,
                interceptors=tracing_interceptors(),
                tls=tls,
            )
        except RuntimeError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
