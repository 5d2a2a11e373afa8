"""What a worker does per write must not import: a failed import is not cached, so an optional
module that is missing is searched for on sys.path (a stat per entry) every time it is asked for.
httpcore asks for ``sniffio`` on each lock it sets up for the EHR's connection pool (the worker's
profile showed those searches at 3% of its busy time before sniffio was a dependency)."""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

import httpcore._synchronization as synchronization


class _Searches:
    """A finder that records every module Python had to search the path for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, name: str, path: object = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.names.append(name)
        return None


async def test_httpcore_learns_the_async_library_without_searching_for_a_module() -> None:
    synchronization.current_async_library()  # anything imported once is cached from here on
    searches = _Searches()
    sys.meta_path.insert(0, searches)
    try:
        for _ in range(3):
            assert synchronization.current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(searches)
    assert searches.names == []
