"""The app factory: ``create_app(config, tenants)`` builds the FastAPI app; its lifespan connects
to Temporal (``$TEMPORAL_ADDRESS``, the payload codec of this deployment, and the API's caller
key to sign with) unless a client is given (tests).

``workers=True`` (``writeback api --workers``) also runs the workers in the API's process, on the
same Temporal connection, and starts writes eagerly: the server hands a new write's first
workflow task straight back to this process instead of queueing it for a worker to poll (one
dispatch fewer, README: Benchmarks). The process then needs what a worker needs (the tenants'
EHR access, the ledger, the caller registry; its metrics and traces are exported as a worker's,
``$WRITEBACK_METRICS_PORT`` / ``$OTEL_EXPORTER_OTLP_ENDPOINT``); ``writeback worker`` processes on
the same task queue share the work and the tenants' rate limits with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from adapters.callers import CallerSigner
from adapters.tenants import TenantRegistry
from workers.api import bundle_routes, fhir_routes, write_routes
from workers.api.auth import TokenVerifier
from workers.api.config import ApiConfig
from workers.api.outcomes import install_handlers
from workers.api.state import ApiState
from workers.client import WritebackClient
from workers.keys import KeyProvider, load_key_provider
from workers.settings import Settings
from workers.telemetry import configure_from_env
from workers.temporal_client import connect
from workers.worker import deployed_workers, require_caller_keys

TITLE = "writeback API"


def create_app(
    config: ApiConfig,
    tenants: TenantRegistry,
    keys: KeyProvider | None = None,
    client: WritebackClient | None = None,
    on_ready: Callable[[], None] | None = None,
    workers: bool = False,
) -> FastAPI:
    settings = Settings.from_env()
    state = ApiState(
        config=config,
        tenants=tenants,
        keys=keys or load_key_provider(settings.state_dir),
        verifier=TokenVerifier(config),
        client=client,
    )
    signer = CallerSigner.from_file(config.caller_key_file)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as running:
            if workers:
                require_caller_keys(tenants)
                # the workers' metrics and traces, as `writeback worker` exports them
                telemetry = configure_from_env(settings, service_name="writeback-api")
                running.callback(telemetry.shutdown)
                temporal = await connect(settings.temporal_address, settings.namespace)
                await running.enter_async_context(deployed_workers(temporal, settings, tenants))
                state.client = WritebackClient(
                    temporal, settings.task_queue, signer, eager_start=True
                )
            elif state.client is None:
                state.client = await WritebackClient.connect(
                    settings.temporal_address, settings.namespace, settings.task_queue, signer
                )
            if on_ready is not None:
                on_ready()
            yield

    app = FastAPI(
        title=TITLE,
        version="1",
        description="Exactly-once, verified clinical writes into EHRs over HTTP (README: HTTP API)",
        lifespan=lifespan,
    )
    app.state.api = state
    install_handlers(app)
    app.include_router(fhir_routes.router)
    app.include_router(bundle_routes.router)
    app.include_router(write_routes.router)

    @app.get("/healthz", tags=["health"], include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
