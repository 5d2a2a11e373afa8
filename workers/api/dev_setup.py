"""The API's keys and config for the local stack (``writeback dev``, ``./run demo``), made once in
``state/api/`` and kept:

- ``issuer.pem`` / ``jwks.json``: the dev token issuer's key pair (ES256); ``writeback api-token``
  signs with the private half, the API checks with the JWKS (in production: your IdP's JWKS URL);
- ``api-caller.pem``: the API's caller key: it signs each command (as the token's client) and
  each decision (as the operator client) for the worker (adapters/callers.py);
- ``api.toml``: the API's config, with two dev clients: ``dev-app`` (writes to every tenant) and
  ``dev-operator`` (the review queue and decisions);
- ``callers.toml``: the worker's caller registry, remade at each start from ``api.toml``: the
  API's public key registered for each client id there (``registry``), which is what a
  deployment does for its own clients (``writeback api-callers`` prints it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from adapters.caller_keys import (
    Capability,
    new_private_key,
    private_pem,
    registry_entry,
    thumbprint,
)
from adapters.callers import CallerSigner
from workers.api.auth import OPERATOR_SCOPE
from workers.api.config import ApiConfig, load_api_config

DEV_ISSUER = "writeback-dev"
DEV_AUDIENCE = "writeback-api"
DEV_APP = "dev-app"
DEV_OPERATOR = "dev-operator"
ISSUER_ALGORITHM = "ES256"

DEV_CONFIG = f"""# The HTTP API's config for the local stack (README: HTTP API). Made once; edit
# freely: the worker's caller registry (callers.toml) is remade from the clients below at each
# start.
issuer = "{DEV_ISSUER}"
audience = "{DEV_AUDIENCE}"
jwks_file = "jwks.json"            # production: jwks_url = "https://<idp>/.../certs"
caller_key_file = "api-caller.pem"
user_claim = "fhirUser"
max_wait_seconds = 30

[[client]]
id = "{DEV_APP}"
tenants = ["*"]
scopes = ["system/*.cu"]
requests_per_second = 20
burst = 40

[[client]]
id = "{DEV_OPERATOR}"
tenants = ["*"]
scopes = ["{OPERATOR_SCOPE}"]
requests_per_second = 5
burst = 10
"""


def _write_private(path: Path, pem: bytes) -> None:
    path.write_bytes(pem)
    path.chmod(0o600)


def issuer_jwks(private_key: ec.EllipticCurvePrivateKey) -> dict[str, object]:
    public = private_key.public_key()
    jwk = json.loads(ECAlgorithm.to_jwk(public))
    jwk.update(kid=thumbprint(public), alg=ISSUER_ALGORITHM, use="sig")
    return {"keys": [jwk]}


def new_issuer(directory: Path) -> None:
    """``issuer.pem`` and ``jwks.json`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(directory / "issuer.pem", private_pem(key))
    (directory / "jwks.json").write_text(json.dumps(issuer_jwks(key), indent=2) + "\n")


def registry(config: ApiConfig, signer_key: object) -> str:
    """The worker's ``[[caller]]`` tables: the API's key for each of its clients (decisions too
    for a client whose entry allows the operator scope)."""
    tables = []
    for client in config.clients:
        signs: Iterable[Capability] = ("commands",)
        if OPERATOR_SCOPE in client.scopes or "*" in client.scopes:
            signs = ("commands", "decisions")
        tables.append(registry_entry(client.id, signer_key, signs))
    header = "# the HTTP API's caller key, registered for each of its clients (api-callers)\n"
    return header + "\n".join(tables)


def load_private(path: Path) -> object:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def ensure_dev_api(state_dir: Path) -> Path:
    """Make what is missing in ``state_dir/api``; remake its ``callers.toml``. Returns the
    config's path."""
    directory = state_dir / "api"
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "issuer.pem").exists():
        new_issuer(directory)
    caller_key = directory / "api-caller.pem"
    if not caller_key.exists():
        _write_private(caller_key, private_pem(new_private_key()))
    config_path = directory / "api.toml"
    if not config_path.exists():
        config_path.write_text(DEV_CONFIG)
    config = load_api_config(config_path)
    CallerSigner.from_file(config.caller_key_file)  # a readable key, or a clear error now
    (directory / "callers.toml").write_text(registry(config, load_private(config.caller_key_file)))
    return config_path


def mint_token(
    issuer_key: Path,
    config: ApiConfig,
    client: str,
    scopes: Iterable[str],
    tenants: Iterable[str] | None = None,
    user: str | None = None,
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> str:
    """A bearer token as an IdP's client-credentials grant would issue it (dev and tests)."""
    key = load_private(issuer_key)
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": config.issuer,
        "aud": config.audience,
        "sub": client,
        "client_id": client,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if tenants is not None:
        claims[config.tenants_claim] = list(tenants)
    if user:
        claims[config.user_claim] = user
    kid = thumbprint(key.public_key())  # type: ignore[attr-defined]
    return jwt.encode(claims, key, algorithm=ISSUER_ALGORITHM, headers={"kid": kid})  # type: ignore[arg-type]
