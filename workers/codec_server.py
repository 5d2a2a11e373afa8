"""Remote codec server for the Temporal Web UI and CLI: ``POST /encode`` and ``POST /decode``.

The protocol is Temporal's: the body is ``{"payloads": [...]}`` in protobuf JSON, the answer the
same shape. Every request needs a bearer token (``Authorization: Bearer …``, or the token as the
first path segment, ``/t/{token}/decode``, for a UI that cannot send headers: the dev server's
``--ui-codec-endpoint``). Each token may see some tenants only: a request touching a payload
sealed under another tenant's key is refused whole (403). Tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from adapters.errors import WritebackError
from workers.codec import EncryptionCodec, PayloadRefused, is_encrypted
from workers.keys import SYSTEM_TENANT, KeyProvider, load_key_provider
from workers.settings import Settings

TOKENS_FILE_ENV = "WRITEBACK_CODEC_TOKENS_FILE"
ALL_TENANTS = "*"


class TokenFileError(WritebackError):
    """The token file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Grant:
    """What one token may see."""

    name: str
    tenants: frozenset[str]

    def may_see(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CodecTokens:
    """``{"tokens": [{"name": …, "sha256": …, "tenants": ["acme", …] or ["*"]}]}``."""

    def __init__(self, grants: dict[str, Grant]) -> None:
        self._by_hash = grants

    def grant_for(self, token: str) -> Grant | None:
        presented = token_hash(token)
        for known, grant in self._by_hash.items():
            if secrets.compare_digest(known, presented):
                return grant
        return None

    @classmethod
    def from_file(cls, path: Path) -> CodecTokens:
        try:
            raw = json.loads(path.read_text())
            grants = {
                str(entry["sha256"]): Grant(str(entry["name"]), frozenset(entry["tenants"]))
                for entry in raw["tokens"]
            }
        except FileNotFoundError:
            raise TokenFileError(f"codec token file not found: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenFileError(
                f'{path}: expected {{"tokens": [{{"name", "sha256", "tenants"}}]}} '
                f"({type(exc).__name__}: {exc})"
            ) from None
        return cls(grants)

    @staticmethod
    def write(path: Path, entries: list[tuple[str, str, list[str]]]) -> None:
        """Write (name, token, tenants) entries, hashing each token (owner-readable only)."""
        body = {
            "tokens": [
                {"name": name, "sha256": token_hash(token), "tenants": tenants}
                for name, token, tenants in entries
            ]
        }
        _write_owner_only(path, json.dumps(body, indent=2))

    @staticmethod
    def add(path: Path, name: str, tenants: list[str]) -> str:
        """A new random token for ``tenants`` (replacing one of the same name); returns it: the
        file keeps only its hash."""
        try:
            entries = json.loads(path.read_text())["tokens"] if path.exists() else []
        except (ValueError, KeyError, TypeError):
            raise TokenFileError(f"{path}: not a token file") from None
        token = secrets.token_urlsafe(24)
        entries = [entry for entry in entries if entry.get("name") != name]
        entries.append({"name": name, "sha256": token_hash(token), "tenants": tenants})
        _write_owner_only(path, json.dumps({"tokens": entries}, indent=2))
        return token


def _write_owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _bearer(request: Request) -> str | None:
    if token := request.path_params.get("token"):
        return str(token)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def create_app(keys: KeyProvider, tokens: CodecTokens, ui_origins: list[str]) -> Starlette:
    codec = EncryptionCodec(keys)

    async def read(request: Request) -> tuple[Grant, Payloads] | Response:
        token = _bearer(request)
        grant = tokens.grant_for(token) if token else None
        if grant is None:
            return _problem(401, "a valid bearer token is required")
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError:
            return _problem(400, 'body must be {"payloads": [...]} in protobuf JSON')
        return grant, payloads

    def answer(payloads: Payloads) -> JSONResponse:
        return JSONResponse(json_format.MessageToDict(payloads))

    async def decode(request: Request) -> Response:
        read_result = await read(request)
        if isinstance(read_result, Response):
            return read_result
        grant, payloads = read_result
        try:
            for payload in payloads.payloads:
                if is_encrypted(payload) and not grant.may_see(codec.owner(payload)):
                    return _problem(403, f"token '{grant.name}' may not see this tenant's data")
            decoded = await codec.decode(payloads.payloads)
        except PayloadRefused as exc:
            return _problem(400, str(exc))
        return answer(Payloads(payloads=decoded))

    async def encode(request: Request) -> Response:
        read_result = await read(request)
        if isinstance(read_result, Response):
            return read_result
        grant, payloads = read_result
        tenant = request.headers.get("x-writeback-tenant", SYSTEM_TENANT)
        if not grant.may_see(tenant):
            return _problem(403, f"token '{grant.name}' may not encode for tenant '{tenant}'")
        encoded = await EncryptionCodec(keys, tenant=tenant).encode(payloads.payloads)
        return answer(Payloads(payloads=encoded))

    routes = [
        Route(path, endpoint, methods=["POST"])
        for prefix in ("", "/t/{token}")
        for path, endpoint in ((f"{prefix}/decode", decode), (f"{prefix}/encode", encode))
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=ui_origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace", "X-Writeback-Tenant"],
            allow_credentials=True,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


def tokens_file_path(state_dir: Path) -> Path:
    return Path(os.environ.get(TOKENS_FILE_ENV) or state_dir / "codec_tokens.json")


def dev_token(state_dir: Path) -> str:
    """The local stack's all-tenant token, kept in ``<state dir>/codec_dev_token`` (owner-only)
    so the UI's codec URL stays the same across runs; its hash goes to the stack's token file
    ``<state dir>/codec_tokens.json``."""
    token_file = state_dir / "codec_dev_token"
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token = secrets.token_urlsafe(24)
        _write_owner_only(token_file, token)
    CodecTokens.write(state_dir / "codec_tokens.json", [("dev", token, [ALL_TENANTS])])
    return token


def add_codec_server_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = sub.add_parser(
        "codec-server", help="decode payloads for the Temporal Web UI and CLI (bearer token)"
    )
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8234)
    server.add_argument(
        "--ui-origin", action="append", help="Web UI origin allowed by CORS (repeatable)"
    )
    server.add_argument("--tokens", help=f"token file (default: ${TOKENS_FILE_ENV} or state dir)")
    server.set_defaults(run=cmd_codec_server)
    token = sub.add_parser(
        "codec-token", help="create a codec server token for some tenants (printed once)"
    )
    token.add_argument("name", help="who holds it, e.g. ops-acme")
    token.add_argument("--tenant", action="append", required=True, help="repeatable; * = all")
    token.add_argument("--tokens", help=f"token file (default: ${TOKENS_FILE_ENV} or state dir)")
    token.set_defaults(run=cmd_codec_token)


def cmd_codec_token(args: argparse.Namespace) -> int:
    path = Path(args.tokens) if args.tokens else tokens_file_path(Settings.from_env().state_dir)
    token = CodecTokens.add(path, args.name, args.tenant)
    print(token)
    print(f"token '{args.name}' for {', '.join(args.tenant)} added to {path}", file=sys.stderr)
    return 0


def cmd_codec_server(args: argparse.Namespace) -> int:
    state_dir = Settings.from_env().state_dir
    tokens = CodecTokens.from_file(
        Path(args.tokens) if args.tokens else tokens_file_path(state_dir)
    )
    app = create_app(
        load_key_provider(state_dir), tokens, args.ui_origin or ["http://127.0.0.1:8233"]
    )
    # no access log: with path tokens, the request line carries the token
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0
