"""The product's code has one home for each idea (issue #16): no block of 10 or more lines repeats
itself in ``workflows/ activities/ adapters/ workers/``, and no module there is over 400 lines.

The copy-paste detector is our own and small (standard library ``tokenize`` only), so anyone can
run it and read what it does:

- each module is cut into *logical* lines (a statement spread over several physical lines is one
  line); comments, blank lines, ``import``/``from … import`` statements and docstrings (any
  statement that is only a string) are dropped;
- in what is left, every identifier becomes ``N`` and every string or number literal ``S`` / ``0``;
  Python's keywords, operators and brackets are kept, so ``if``/``for``/``return`` still tell
  blocks apart. Two blocks alike but for names and literals therefore look the same;
- a window of ``WINDOW`` (10) consecutive logical lines slides over every module, and two places
  whose windows are equal are reported (overlapping windows of one copy are merged into one pair).

What it leaves out, honestly:

- *thin* windows, made of fewer than ``MIN_DISTINCT`` (5) different normalised lines, are not
  compared: a run of pydantic fields or enum members (``N: N = N(…)`` ten times) or of
  ``parser.add_argument(…)`` calls is a declaration list, not logic that could live in one place,
  and would otherwise be all the detector reports. Today this hides exactly one pair in the
  product: the fields of ``ContinuedWrite`` and the state annotations of ``WriteKernel``
  (workflows/write_kernel.py, the same eleven ``name: Type`` lines twice, 4 distinct shapes),
  which the workflow-kernel work of issue #16 owns;
- a copy whose statements were reordered, or that differs by one added or removed line in every
  window of 10, is not found: this is a detector of copy-paste, not of similar ideas;
- tests, bench/ and sandbox/ are not scanned (tests repeat set-ups on purpose; the sandbox is a
  separate program).
"""

from __future__ import annotations

import io
import keyword
import tokenize
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("workflows", "activities", "adapters", "workers")
WINDOW = 10
MIN_DISTINCT = 5
MAX_MODULE_LINES = 400

#: Modules allowed over MAX_MODULE_LINES for now, each with the reason and the work that removes
#: it. An entry whose module is gone or back under the limit fails the test: delete it then.
OVER_THE_LIMIT: dict[str, str] = {}

_SKIPPED = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


@dataclass(frozen=True)
class Line:
    """One logical line: where it starts, and its normalised text."""

    lineno: int
    text: str


def _normalise(token: tokenize.TokenInfo) -> str:
    if token.type == tokenize.NAME:
        return token.string if keyword.iskeyword(token.string) else "N"
    if token.type == tokenize.STRING:
        return "S"
    if token.type == tokenize.NUMBER:
        return "0"
    return token.string


def logical_lines(source: str) -> list[Line]:
    """The module's logical lines, normalised; imports and docstrings left out."""
    lines: list[Line] = []
    current: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _SKIPPED:
            continue
        if token.type != tokenize.NEWLINE:
            current.append(token)
            continue
        if not current:
            continue
        first = current[0].string
        only_strings = all(t.type == tokenize.STRING for t in current)
        if first not in ("import", "from") and not only_strings:
            text = " ".join(_normalise(t) for t in current)
            lines.append(Line(current[0].start[0], text))
        current = []
    return lines


@dataclass(frozen=True)
class Place:
    path: str
    first: int  # line of the window's first logical line
    last: int  # line where the window's last logical line starts

    def __str__(self) -> str:
        return f"{self.path}:{self.first}-{self.last}"


def duplicates(files: dict[str, str], window: int = WINDOW) -> list[tuple[Place, Place]]:
    """Pairs of places whose ``window`` logical lines are equal after normalisation; the windows
    of one longer copy are merged into one pair spanning it."""
    seen: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    lines_of = {path: logical_lines(source) for path, source in files.items()}
    for path, lines in lines_of.items():
        for start in range(len(lines) - window + 1):
            key = tuple(line.text for line in lines[start : start + window])
            if len(set(key)) >= MIN_DISTINCT:
                seen[key].append((path, start))
    # (path a, path b, offset in b - offset in a) -> starting indexes in a of equal windows
    runs: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for places in seen.values():
        for i, (path_a, start_a) in enumerate(places):
            for path_b, start_b in places[i + 1 :]:
                if path_a == path_b and abs(start_a - start_b) < window:
                    continue  # a repetitive stretch overlapping itself is not a copy
                runs[(path_a, path_b, start_b - start_a)].append(start_a)
    pairs = []
    for (path_a, path_b, shift), starts in runs.items():
        starts.sort()
        run_start = previous = starts[0]
        for start in [*starts[1:], None]:
            if start is not None and start == previous + 1:
                previous = start
                continue
            a, b = lines_of[path_a], lines_of[path_b]
            end = previous + window - 1
            pairs.append(
                (
                    Place(path_a, a[run_start].lineno, a[end].lineno),
                    Place(path_b, b[run_start + shift].lineno, b[end + shift].lineno),
                )
            )
            if start is not None:
                run_start = previous = start
    return sorted(pairs, key=lambda pair: (str(pair[0]), str(pair[1])))


def product_modules() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for folder in PRODUCT
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


# --- the product -----------------------------------------------------------------------------


def test_no_block_of_ten_lines_repeats_itself_in_the_product() -> None:
    found = duplicates(product_modules())
    assert not found, "blocks alike but for names and literals:\n" + "\n".join(
        f"  {a}  ~  {b}" for a, b in found
    )


def test_no_module_in_the_product_is_over_400_lines() -> None:
    sizes = {path: len(source.splitlines()) for path, source in product_modules().items()}
    over = {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES}
    unexplained = {path: n for path, n in over.items() if path not in OVER_THE_LIMIT}
    assert not unexplained, f"modules over {MAX_MODULE_LINES} lines: {unexplained}"
    stale = sorted(set(OVER_THE_LIMIT) - set(over))
    assert not stale, f"no longer over the limit (or gone): remove from OVER_THE_LIMIT: {stale}"


# --- the detector itself ---------------------------------------------------------------------

_ORIGINAL = '''
"""A module."""
import json
from pathlib import Path


def load_orders(path: Path, limit: int) -> list[dict]:
    """Read orders."""
    # the file may be missing
    if not path.exists():
        return []
    orders = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item.get("status") == "open":
            orders.append(item)
        if len(orders) >= limit:
            break
    orders.sort(key=lambda o: o["id"])
    return orders
'''

#: The same function, every name and literal changed, comments and docstring different.
_RENAMED = """
import json
from pathlib import Path

VERSION = 3


def read_claims(source: Path, cap: int) -> list[dict]:
    # a different comment, and no docstring
    if not source.exists():
        return []
    claims = []
    for row in source.read_text().splitlines():
        claim = json.loads(row)
        if claim.get("state") == "filed":
            claims.append(claim)
        if len(claims) >= cap:
            break
    claims.sort(key=lambda c: c["number"])
    return claims
"""

#: Alike in its first lines, then different logic: not a copy of 10 lines.
_DIFFERENT = """
import json
from pathlib import Path


def read_claims(source: Path, cap: int) -> list[dict]:
    if not source.exists():
        return []
    claims = []
    for row in source.read_text().splitlines():
        claim = json.loads(row)
        while claim.get("state") == "filed":
            claim = claim["next"]
        claims.append(claim)
    raise ValueError(cap)
"""


def _write(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    return {name: (tmp_path / name).read_text() for name in files}


def test_the_detector_finds_a_block_copied_with_other_names_and_literals(tmp_path: Path) -> None:
    found = duplicates(_write(tmp_path, {"a.py": _ORIGINAL, "b.py": _RENAMED}))
    assert [(str(a), str(b)) for a, b in found] == [("a.py:7-20", "b.py:8-20")]


def test_the_detector_finds_a_copy_inside_one_module(tmp_path: Path) -> None:
    body = _ORIGINAL.split("\n", 4)[4]  # without the module docstring and imports
    found = duplicates(_write(tmp_path, {"a.py": _ORIGINAL + "\n\n" + body}))
    assert len(found) == 1
    assert found[0][0].path == found[0][1].path == "a.py"


def test_the_detector_ignores_blocks_that_differ_in_logic(tmp_path: Path) -> None:
    assert duplicates(_write(tmp_path, {"a.py": _ORIGINAL, "b.py": _DIFFERENT})) == []


def test_thin_windows_are_not_compared(tmp_path: Path) -> None:
    fields = "class A:\n" + "".join(f"    f{i}: int = {i}\n" for i in range(12))
    assert duplicates(_write(tmp_path, {"a.py": fields, "b.py": fields.replace("A", "B")})) == []


def test_imports_comments_and_docstrings_are_not_lines() -> None:
    lines = logical_lines(_ORIGINAL)
    assert lines[0] == Line(7, "def N ( N : N , N : N ) -> N [ N ] :")
    assert all("import" not in line.text and line.text != "S" for line in lines)
    assert len(lines) == 12
