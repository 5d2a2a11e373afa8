"""The README's family x vendor table ("What it writes") is the one the adapters make."""

from __future__ import annotations

from pathlib import Path

from workers.family_matrix import Support, family_matrix, matrix_table

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- family-matrix: generated"
END = "<!-- family-matrix: end -->"


def readme_table() -> str:
    text = README.read_text()
    after_start = text[text.index(START) :].split("\n", 1)[1]
    return after_start[: after_start.index(END)].strip()


def test_the_readme_table_is_the_adapters_matrix() -> None:
    assert readme_table() == matrix_table()


def test_proprietary_vendors_take_their_families_through_their_own_api() -> None:
    matrix = family_matrix()
    assert matrix[next(iter(matrix))]["athena"] is Support.VENDOR_API  # vital signs
    assert {row["veradigm"] for row in matrix.values()} == {
        Support.VENDOR_API,
        Support.UNSUPPORTED,
    }
    assert {row["generic_r4"] for row in matrix.values()} == {Support.FHIR}
