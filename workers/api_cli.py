"""``writeback api`` (the HTTP front door, README: HTTP API), ``writeback api-token`` (a dev
bearer token, signed by the dev issuer key) and ``writeback api-callers`` (the worker's caller
registry tables for the API's clients)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from adapters.errors import EXIT_OK
from adapters.tenants import load_tenants, resolve_tenants_path
from workers.api.config import API_CONFIG_ENV, ApiConfig, load_api_config
from workers.settings import Settings

DEFAULT_PORT = 8235
API_READY = "api ready on"


def _config_path(args: argparse.Namespace) -> Path:
    given = args.config or os.environ.get(API_CONFIG_ENV)
    return Path(given) if given else Settings.from_env().state_dir / "api" / "api.toml"


def _config(args: argparse.Namespace) -> ApiConfig:
    return load_api_config(_config_path(args))


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from workers.api.app import create_app

    url = f"http://{args.host}:{args.port}"
    app = create_app(
        _config(args),
        load_tenants(resolve_tenants_path(args.tenants)),
        on_ready=lambda: print(f"{API_READY} {url}", flush=True),
        workers=args.workers,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def cmd_api_token(args: argparse.Namespace) -> int:
    from workers.api.dev_setup import mint_token

    config_path = _config_path(args)
    config = load_api_config(config_path)
    issuer_key = Path(args.issuer_key) if args.issuer_key else config_path.parent / "issuer.pem"
    scopes = [scope for given in args.scope for scope in given.split()]
    tenants = [tenant for given in args.tenant or [] for tenant in given.split(",")] or None
    print(mint_token(issuer_key, config, args.client, scopes, tenants, args.user, args.ttl))
    return EXIT_OK


def cmd_api_callers(args: argparse.Namespace) -> int:
    from workers.api.dev_setup import load_private, registry

    config = _config(args)
    sys.stdout.write(registry(config, load_private(config.caller_key_file)))
    return EXIT_OK


def add_api_commands(sub: Any) -> None:
    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", help=f"API config (default ${API_CONFIG_ENV}, else state/api/api.toml)"
        )

    api = sub.add_parser("api", help="run the HTTP API (Temporal at $TEMPORAL_ADDRESS)")
    with_config(api)
    api.add_argument("--tenants", help="tenant file (default: $WRITEBACK_TENANTS or the demo)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=DEFAULT_PORT)
    api.add_argument("--log-level", default="warning", help="uvicorn's (access lines at info)")
    api.add_argument(
        "--workers",
        action="store_true",
        help="also run the workers in this process and start writes eagerly (one dispatch "
        "fewer per write; the process then needs a worker's configuration)",
    )
    api.set_defaults(run=cmd_api)

    token = sub.add_parser("api-token", help="mint a dev bearer token for the HTTP API")
    with_config(token)
    token.add_argument("--client", required=True, help="client id (an entry of the config)")
    token.add_argument(
        "--scope", action="append", required=True, help="e.g. system/Observation.cu, repeatable"
    )
    token.add_argument("--tenant", action="append", help="narrow to these tenants, repeatable")
    token.add_argument("--user", help="the user claim (on_behalf_of), e.g. Practitioner/123")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--issuer-key", help="default: issuer.pem beside the config")
    token.set_defaults(run=cmd_api_token)

    callers = sub.add_parser(
        "api-callers", help="the worker's [[caller]] tables for the API's clients"
    )
    with_config(callers)
    callers.set_defaults(run=cmd_api_callers)
