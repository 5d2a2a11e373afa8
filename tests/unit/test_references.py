"""The repository explains itself (issue #16): every file a comment, a docstring or the
documentation names exists in the repository, and nothing points outside it.

What counts as a reference to a file: a path with at least one folder that ends in a file extension
(``workflows/contract.py``, ``docs/write-safety.md``, ``tests/unit/test_ids.py::test_x``), and any
bare ``NAME.md``. Bare module names without a folder (``cli.py`` in a list under ``workers/``) are
not checked: they are read relative to the text around them. URLs are left out.

Where they are looked for: comments and docstrings (every statement that is only a string) of the
product's modules (``workflows/ activities/ adapters/ workers/``), the README and ``docs/*.md``.
A reference resolves from the repository's root, or, for Markdown links, from the document's
own folder; it must stay inside the repository either way. Two kinds are not files of the
repository and are not checked: files the product writes at run time, under the folders
``.gitignore`` lists (``state/keys.json``, ``bench/results/latest.md``), and templates whose
folder or name is a capitalised placeholder (``DIR/capabilities/T.json``). The files of the
development machine that this project once pointed to (a sibling folder's ``VENDORS.md``,
``TOOLCHAIN.md``, ``DESIGN.md``) must not be named anywhere in the repository's text: what the
code relies on from them is in ``docs/``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("workflows", "activities", "adapters", "workers")
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_EXTENSIONS = r"(?:py|md|toml|json|ya?ml|txt|sh|cfg|ini|lock)"
_PATH = re.compile(
    r"(?<![\w./*{}$-])"  # not the tail of a longer word, glob or template
    rf"((?:\.\./|\./)*(?:[\w.-]+/)+[\w.-]+\.{_EXTENSIONS}|[\w-]+\.md)"
    r"(?![\w/*{}-])"
)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|\b[\w-]+(?:\.[\w-]+)+\.(?:com|org|io)/\S*")
#: Names of files outside the repository that the code used to cite.
FOREIGN = re.compile(r"\.\./shared|/work/|\b(?:VENDORS|TOOLCHAIN|DESIGN)\.md\b")


def comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and every string-only statement of a module."""
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.append((node.lineno, node.value.value))
    return found


def references(text: str) -> list[str]:
    return [match.group(1) for match in _PATH.finditer(_URL.sub(" ", text))]


#: Folders the product and its tools write at run time (ignored by git).
GENERATED = tuple(
    line.strip()
    for line in (ROOT / ".gitignore").read_text().splitlines()
    if line.strip().endswith("/") and not line.startswith("#")
)
#: A capitalised folder (``DIR/``) or a one-letter capital name (``T.json``) stands for any.
_PLACEHOLDER = re.compile(r"(?:^|/)(?:[A-Z]+/|[A-Z]\.)")


def _checked(reference: str) -> bool:
    return not reference.startswith(GENERATED) and not _PLACEHOLDER.search(reference)


def _resolves(reference: str, document: Path) -> bool:
    path = reference.split("::", 1)[0]
    for base in (ROOT, document.parent):
        target = (base / path).resolve()
        if target.is_relative_to(ROOT) and target.exists():
            return True
    return False


def _texts() -> list[tuple[Path, int, str]]:
    texts = []
    for folder in PRODUCT:
        for module in sorted((ROOT / folder).rglob("*.py")):
            for line, text in comments_and_docstrings(module.read_text()):
                texts.append((module, line, text))
    for document in DOCUMENTS:
        for line, text in enumerate(document.read_text().splitlines(), start=1):
            texts.append((document, line, text))
    return texts


def test_every_file_a_comment_or_a_document_names_exists() -> None:
    missing = [
        f"{where.relative_to(ROOT)}:{line}: {reference}"
        for where, line, text in _texts()
        for reference in references(text)
        if _checked(reference) and not _resolves(reference, where)
    ]
    assert not missing, "references to files that are not in the repository:\n" + "\n".join(missing)


def _repository_text_files() -> list[Path]:
    skipped = {".venv", ".git", "state", "node_modules", "writeback.egg-info"}
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".sh", ".cfg", ".ini"}
    return [
        path
        for path in sorted(ROOT.rglob("*"))
        if path.is_file()
        and path.suffix in suffixes
        and not skipped & set(path.relative_to(ROOT).parts)
        and not any(part.startswith(".") and part != ".ci" for part in path.relative_to(ROOT).parts)
    ] + [ROOT / "run", *sorted((ROOT / ".ci").glob("*"))]


def test_nothing_points_outside_the_repository() -> None:
    """Recorded workflow histories (tests/replay/*.json) are data, not text we write, and keep
    the stack traces of the machine that recorded them: they are not .py/.md files, so not read."""
    this = Path(__file__).resolve()
    outside = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _repository_text_files()
        if path.resolve() != this  # this test names them, to forbid them
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if FOREIGN.search(line)
    ]
    assert not outside, "references to files outside the repository:\n" + "\n".join(outside)


# --- the finder itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "see workflows/contract.py and docs/write-safety.md",
            ["workflows/contract.py", "docs/write-safety.md"],
        ),
        ("(README.md, ``bench/README.md``)", ["README.md", "bench/README.md"]),
        ("`tests/unit/test_ids.py::test_x`", ["tests/unit/test_ids.py::test_x"]),
        ("[vendors](../docs/vendors.md)", ["../docs/vendors.md"]),
        ("https://fhir.cerner.com/millennium/r4/x.md and fhir.epic.com/a/b.md", []),
        ("CLI (cli.py and *_cli.py), reconcile_*.py, /v1/{practiceid}/chart.json", []),
    ],
)
def test_the_finder_reads_paths_not_urls_or_globs(text: str, expected: list[str]) -> None:
    assert [r.split("::")[0] for r in references(text)] == [e.split("::")[0] for e in expected]


def test_a_missing_or_outside_file_does_not_resolve(tmp_path: Path) -> None:
    readme = ROOT / "README.md"
    assert _resolves("docs/vendors.md", readme)
    assert _resolves("write-safety.md", ROOT / "docs" / "architecture.md")
    assert not _resolves("docs/no-such-page.md", readme)
    assert not _resolves("../shared/VENDORS.md", readme)
    assert FOREIGN.search("facts from ../shared/VENDORS.md") and FOREIGN.search("(TOOLCHAIN.md)")
    assert not _checked("state/keys.json") and not _checked("DIR/capabilities/T.json")
    assert _checked("docs/no-such-page.md") and _checked("README.md")


def test_comments_and_docstrings_are_read_and_code_is_not() -> None:
    source = (
        '"""Module: see a/b.py."""\nX = "c/d.py"  # and e/f.py\n\n\ndef g():\n    """h/i.md"""\n'
    )
    texts = [text for _, text in comments_and_docstrings(source)]
    assert sorted(ref for text in texts for ref in references(text)) == [
        "a/b.py",
        "e/f.py",
        "h/i.md",
    ]
