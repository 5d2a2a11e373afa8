"""Whether a unit code is well-formed UCUM (unitsofmeasure.org, "The Unified Code for Units of
Measure", section 6: the grammar), offline.

It checks the *grammar*, not that every atom exists: ``mg/dL``, ``10*3/uL``, ``mm[Hg]``,
``{cells}/uL``, ``kg/m2``, ``/min``, ``%`` pass; ``mg per dL``, ``mg//dL``, ``<b>``, an empty code
do not. Which units a test may use is said per LOINC code elsewhere (adapters/us_core_lab.py).
A code longer than ``MAX_UNIT_CHARS`` is not looked at: no lab unit is that long, and the
patterns below then never see a long input.
"""

from __future__ import annotations

import re

MAX_UNIT_CHARS = 64

_SQUARE = r"\[[!-Z\\^-z|~]{1,30}\]"  # [lb_av], [degF], [Hg] (printable, no brackets/braces)
_SIMPLE = rf"(?:[A-Za-z%']{{1,20}}(?:{_SQUARE})?|{_SQUARE}|10[*^])"
_EXPONENT = r"(?:[+-]?\d{1,3})?"
_ANNOTATION = r"\{[!-z|~]{0,40}\}"  # {cells}: printable ASCII, no braces
_FACTOR = r"\d{1,10}"
_COMPONENT = rf"(?:{_SIMPLE}{_EXPONENT}(?:{_ANNOTATION})?|{_ANNOTATION}|{_FACTOR})"
_TERM = rf"/?{_COMPONENT}(?:[./]{_COMPONENT}){{0,10}}"
_WITH_GROUP = rf"(?:{_COMPONENT}|\({_TERM}\){_EXPONENT})"
_UNIT = re.compile(rf"/?{_WITH_GROUP}(?:[./]{_WITH_GROUP}){{0,10}}")


def well_formed_ucum(code: object) -> bool:
    """Whether ``code`` is a UCUM unit expression (grammar only)."""
    return (
        isinstance(code, str)
        and 0 < len(code) <= MAX_UNIT_CHARS
        and _UNIT.fullmatch(code) is not None
    )
