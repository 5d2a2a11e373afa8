"""Workflow code must replay the same way every time. The worker runs it without Temporal's
workflow sandbox (workers/worker.py ``workflow_runner``: the sandbox checked only modules it
re-imports per run, and re-importing workflows/ cost two fifths of a write's worker CPU), so this
checks every module of workflows/ for what the sandbox would refuse: clocks, randomness, I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MODULES = sorted(path for path in WORKFLOWS.glob("*.py") if path.name != "__init__.py")

#: Modules whose import alone gives workflow code a clock, randomness or I/O.
FORBIDDEN_IMPORTS = frozenset(
    {"time", "random", "uuid", "os", "secrets", "socket", "subprocess", "threading", "sqlite3"}
)
#: Calls that read the wall clock or sleep outside Temporal's timers.
FORBIDDEN_CALLS = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("asyncio", "sleep"),
    }
)
FORBIDDEN_BUILTINS = frozenset({"open", "input", "print"})


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_IMPORTS:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"{func.id}()")
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in FORBIDDEN_CALLS
            ):
                found.append(f"{func.value.id}.{func.attr}()")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_workflow_code_has_no_clock_randomness_or_io(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "from random import random\n",
        "import uuid\n",
        "from datetime import datetime\nx = datetime.now()\n",
        "import asyncio\nasyncio.sleep(1)\n",
        "open('f')\n",
    ],
)
def test_the_check_finds_each_kind(source: str) -> None:
    assert violations(source)
