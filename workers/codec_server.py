"""Remote codec server for the Temporal Web UI and CLI: ``POST /decode`` and ``POST /encode``.

The protocol is Temporal's: the body is ``{"payloads": [...]}`` in protobuf JSON, the answer the
same shape. Every request needs a token, stored as a SHA-256 hash; each token may see some tenants
only: a request touching a payload sealed under another tenant's key is refused whole (403).

How a token travels, never in a URL by default:

- ``Authorization: Bearer …`` on ``/decode`` and ``/encode``: the ``temporal`` CLI
  (``TEMPORAL_CODEC_AUTH``, an environment variable, so not in its arguments), scripts, a proxy;
- a session cookie for the Web UI, which sends no header of ours: a person signs in once at
  ``/wb-codec/login`` (the token goes in a POST body) and the UI's codec endpoint is
  ``…/wb-codec`` with "include cross-origin credentials" on. The cookie is HttpOnly,
  SameSite=Strict, ``Secure`` with TLS, scoped to ``/wb-codec`` (cookies ignore ports: other
  services on the host never receive it), and holds a random session id, not the token; cookie
  requests must be JSON (so a browser preflights them and CORS decides) from an allowed origin;
- ``/t/{token}/…`` only when started with ``--allow-url-token`` (``writeback dev
  --codec-token-in-url``): the token is then in the UI's configuration, the dev server's
  arguments and request lines. The old way, for when the cookie cannot be used.

Bounds: a request body over ``--max-body-bytes`` is refused (413) before it is read whole; a
compressed payload may inflate to ``workers.codec.MAX_INFLATED_BYTES`` at most, and one answer
holds at most ``MAX_DECODED_BYTES`` (413). ``--tls-cert``/``--tls-key`` serve HTTPS; off the
loopback interface plain HTTP needs ``--allow-plain-http``.

``/encode`` seals for one workflow (``X-Writeback-Workflow-Id``: payloads are bound to their
workflow, workers/codec.py) and only for tokens created with ``--encode``.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import WorkflowSerializationContext

from workers.cli_support import UsageError
from workers.codec import EncryptionCodec, PayloadRefused, is_encrypted, owning_tenant
from workers.codec_tokens import ALL_TENANTS as ALL_TENANTS  # re-exported
from workers.codec_tokens import TOKENS_FILE_ENV, CodecTokens, Grant, tokens_file_path
from workers.codec_tokens import TokenFileError as TokenFileError  # re-exported
from workers.codec_tokens import dev_token as dev_token  # re-exported
from workers.keys import SYSTEM_TENANT, KeyProvider, load_key_provider
from workers.settings import Settings

#: Where the Web UI's endpoint (cookie sessions) lives; the cookie is scoped to it.
UI_PREFIX = "/wb-codec"
SESSION_COOKIE = "wb_codec_session"
SESSION_SECONDS = 12 * 3600
#: A history event's payloads are at most ~2 MB (Temporal's limit), ~2.7 MB as base64 JSON.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Decoded payloads in one answer (each at most workers.codec.MAX_INFLATED_BYTES).
MAX_DECODED_BYTES = 64 * 1024 * 1024
WORKFLOW_HEADER = "x-writeback-workflow-id"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class _TooLarge(Exception):
    pass


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused (``_TooLarge``) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class _Sessions:
    """Web UI sign-ins: random session id -> (grant, expiry), in this process only."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[Grant, float]] = {}

    def open(self, grant: Grant) -> str:
        now = time.monotonic()
        self._by_id = {k: v for k, v in self._by_id.items() if v[1] > now}
        session = secrets.token_urlsafe(32)
        self._by_id[session] = (grant, now + SESSION_SECONDS)
        return session

    def grant(self, session: str | None) -> Grant | None:
        entry = self._by_id.get(session or "")
        return entry[0] if entry and entry[1] > time.monotonic() else None

    def close(self, session: str | None) -> None:
        self._by_id.pop(session or "", None)


_LOGIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>writeback codec server</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>writeback codec server</h1>
<p>{status}</p>
<form method="post" action="{prefix}/login">
<label>Codec token <input type="password" name="token" autocomplete="off" size="40"></label>
<button type="submit">Sign in</button>
</form>
<p>Then, in the Temporal Web UI's codec settings, use the endpoint <code>{endpoint}</code> and turn
on <em>Include cross-origin credentials</em>.</p>
</body></html>
"""


def create_app(
    keys: KeyProvider,
    tokens: CodecTokens,
    ui_origins: list[str],
    *,
    allow_url_token: bool = False,
    secure_cookie: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> Starlette:
    codec = EncryptionCodec(keys)
    sessions = _Sessions()
    allowed_origins = set(ui_origins)

    def credential(request: Request, cookie_allowed: bool) -> Grant | Response:
        if token := request.path_params.get("token"):
            grant = tokens.grant_for(str(token))
        elif token := _bearer(request):
            grant = tokens.grant_for(token)
        elif cookie_allowed and (session := request.cookies.get(SESSION_COOKIE)):
            origin = request.headers.get("origin")
            if origin is not None and origin not in allowed_origins:
                return _problem(403, "origin not allowed")
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type.lower() != "application/json":  # a browser preflights JSON: CORS
                return _problem(415, "a signed-in request must be application/json")
            grant = sessions.grant(session)
        else:
            grant = None
        return grant if grant is not None else _problem(401, "a valid token is required")

    async def read(request: Request, cookie_allowed: bool) -> tuple[Grant, Payloads] | Response:
        grant = credential(request, cookie_allowed)
        if isinstance(grant, Response):
            return grant
        try:
            body = await _bounded_body(request, max_body_bytes)
        except _TooLarge:
            return _problem(413, f"request body over {max_body_bytes} bytes")
        try:
            payloads = json_format.Parse(body, Payloads())
        except json_format.ParseError:
            return _problem(400, 'body must be {"payloads": [...]} in protobuf JSON')
        return grant, payloads

    def answer(payloads: Payloads) -> JSONResponse:
        return JSONResponse(
            json_format.MessageToDict(payloads), headers={"Cache-Control": "no-store"}
        )

    async def decode(request: Request, cookie_allowed: bool = False) -> Response:
        read_result = await read(request, cookie_allowed)
        if isinstance(read_result, Response):
            return read_result
        grant, payloads = read_result
        decoded, size = [], 0
        try:
            for payload in payloads.payloads:
                if is_encrypted(payload) and not grant.may_see(codec.owner(payload)):
                    return _problem(403, f"token '{grant.name}' may not see this tenant's data")
            for payload in payloads.payloads:
                opened = codec.decrypt(payload)
                size += opened.ByteSize()
                if size > max_decoded_bytes:
                    return _problem(413, f"decoded payloads over {max_decoded_bytes} bytes")
                decoded.append(opened)
        except PayloadRefused as exc:
            return _problem(400, str(exc))
        return answer(Payloads(payloads=decoded))

    async def encode(request: Request, cookie_allowed: bool = False) -> Response:
        read_result = await read(request, cookie_allowed)
        if isinstance(read_result, Response):
            return read_result
        grant, payloads = read_result
        workflow_id = request.headers.get(WORKFLOW_HEADER, "")
        if not workflow_id:
            return _problem(
                400, "encode seals for one workflow: name it in X-Writeback-Workflow-Id"
            )
        tenant = owning_tenant(workflow_id) or SYSTEM_TENANT
        if not (grant.encode and grant.may_see(tenant)):
            return _problem(403, f"token '{grant.name}' may not encode for tenant '{tenant}'")
        context = WorkflowSerializationContext(
            namespace=request.headers.get("x-namespace", "default"), workflow_id=workflow_id
        )
        encoded = await codec.with_context(context).encode(payloads.payloads)
        return answer(Payloads(payloads=encoded))

    async def ui_decode(request: Request) -> Response:
        return await decode(request, cookie_allowed=True)

    async def ui_encode(request: Request) -> Response:
        return await encode(request, cookie_allowed=True)

    def login_page(request: Request, status: str, code: int = 200) -> HTMLResponse:
        endpoint = f"{request.base_url.scheme}://{request.base_url.netloc}{UI_PREFIX}"
        text = _LOGIN_PAGE.format(
            status=html.escape(status), prefix=UI_PREFIX, endpoint=html.escape(endpoint)
        )
        return HTMLResponse(text, status_code=code, headers={"Cache-Control": "no-store"})

    async def login_form(request: Request) -> Response:
        signed_in = sessions.grant(request.cookies.get(SESSION_COOKIE))
        status = f"Signed in as '{signed_in.name}'." if signed_in else "Not signed in."
        return login_page(request, status)

    async def login(request: Request) -> Response:
        try:
            body = await _bounded_body(request, 4096)
        except _TooLarge:
            return _problem(413, "request body too large")
        token = (parse_qs(body.decode(errors="replace")).get("token") or [""])[0].strip()
        grant = tokens.grant_for(token) if token else None
        if grant is None:
            return login_page(request, "That token is not valid.", 401)
        tenants = ", ".join(sorted(grant.tenants))
        response = login_page(request, f"Signed in as '{grant.name}' (tenants: {tenants}).")
        response.set_cookie(
            SESSION_COOKIE,
            sessions.open(grant),
            max_age=SESSION_SECONDS,
            path=UI_PREFIX,
            secure=secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = login_page(request, "Signed out.")
        response.delete_cookie(SESSION_COOKIE, path=UI_PREFIX)
        return response

    routes = [
        Route("/decode", decode, methods=["POST"]),
        Route("/encode", encode, methods=["POST"]),
        Route(f"{UI_PREFIX}/decode", ui_decode, methods=["POST"]),
        Route(f"{UI_PREFIX}/encode", ui_encode, methods=["POST"]),
        Route(f"{UI_PREFIX}/login", login_form, methods=["GET"]),
        Route(f"{UI_PREFIX}/login", login, methods=["POST"]),
        Route(f"{UI_PREFIX}/logout", logout, methods=["POST"]),
    ]
    if allow_url_token:
        routes += [
            Route("/t/{token}/decode", decode, methods=["POST"]),
            Route("/t/{token}/encode", encode, methods=["POST"]),
        ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=ui_origins,
            allow_methods=["POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Namespace",
                "X-Writeback-Workflow-Id",
            ],
            allow_credentials=True,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)


def add_codec_server_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = sub.add_parser(
        "codec-server", help="decode payloads for the Temporal Web UI and CLI (token required)"
    )
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8234)
    server.add_argument(
        "--ui-origin", action="append", help="Web UI origin allowed by CORS (repeatable)"
    )
    server.add_argument("--tokens", help=f"token file (default: ${TOKENS_FILE_ENV} or state dir)")
    server.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    server.add_argument("--tls-key", help="the certificate's private key (PEM)")
    server.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="serve plain HTTP on a non-loopback address (tokens and PHI in clear on the network)",
    )
    server.add_argument(
        "--allow-url-token",
        action="store_true",
        help="also accept the token as a path segment, /t/TOKEN/decode (it then shows in URLs)",
    )
    server.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    server.set_defaults(run=cmd_codec_server)
    token = sub.add_parser(
        "codec-token", help="create a codec server token for some tenants (printed once)"
    )
    token.add_argument("name", help="who holds it, e.g. ops-acme")
    token.add_argument("--tenant", action="append", required=True, help="repeatable; * = all")
    token.add_argument(
        "--encode", action="store_true", help="may also seal payloads for a workflow (/encode)"
    )
    token.add_argument("--tokens", help=f"token file (default: ${TOKENS_FILE_ENV} or state dir)")
    token.set_defaults(run=cmd_codec_token)


def cmd_codec_token(args: argparse.Namespace) -> int:
    path = Path(args.tokens) if args.tokens else tokens_file_path(Settings.from_env().state_dir)
    token = CodecTokens.add(path, args.name, args.tenant, encode=args.encode)
    print(token)
    print(f"token '{args.name}' for {', '.join(args.tenant)} added to {path}", file=sys.stderr)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_codec_server(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    tls = bool(args.tls_cert)
    if not tls and not _loopback(args.host) and not args.allow_plain_http:
        raise UsageError(
            f"--host {args.host} is not a loopback address: serve HTTPS (--tls-cert, --tls-key) "
            "or say --allow-plain-http (behind a TLS-terminating proxy)"
        )
    state_dir = Settings.from_env().state_dir
    tokens = CodecTokens.from_file(
        Path(args.tokens) if args.tokens else tokens_file_path(state_dir)
    )
    app = create_app(
        load_key_provider(state_dir),
        tokens,
        args.ui_origin or ["http://127.0.0.1:8233"],
        allow_url_token=args.allow_url_token,
        secure_cookie=tls,
        max_body_bytes=args.max_body_bytes,
    )
    # no access log: request lines would carry a path token (--allow-url-token)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
    )
    return 0
