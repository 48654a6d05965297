"""UCUM unit expressions (The Unified Code for Units of Measure): is a unit code valid?

``quantreport check`` and every export refuse measurement units that are not
UCUM (PS3.16 requires UCUM for the units of NUM content items).  The grammar
is UCUM's (section 2); the atoms are those QuantReport and the tools it reads
write, so a unit built from another UCUM atom is reported invalid until that
atom is added here.
"""

from __future__ import annotations

import re

# UCUM prefixes (UCUM section 2.2, table 1); "da" before "d" so that the longer one is tried first.
_UCUM_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z", "y")
# Metric atoms (they take prefixes): SI base and derived units and the metric units of UCUM tables 2-6
# that imaging measurements use.
_UCUM_METRIC_ATOMS = frozenset({
    "m", "g", "s", "rad", "K", "C", "cd", "mol", "sr", "Hz", "N", "Pa", "J", "W", "A", "V", "F", "Ohm", "S", "Wb",
    "Cel", "T", "H", "lm", "lx", "Bq", "Gy", "Sv", "l", "L", "ar", "t", "bar", "u", "eV", "Ci", "R", "RAD", "REM",
    "eq", "osm", "U", "[iU]", "[IU]", "B", "G", "b",
})
# Non-metric atoms (no prefix): time, angle, ratios and the arbitrary units of UCUM tables 7-21 in use.
_UCUM_OTHER_ATOMS = frozenset({
    "min", "h", "d", "wk", "mo", "a", "deg", "'", "''", "%", "[ppth]", "[ppm]", "[ppb]", "[pptr]", "[hnsf'U]",
    "mm[Hg]", "cm[H2O]", "[in_i]", "[ft_i]", "[lb_av]", "[pi]", "[degF]", "10*", "10^", "[arb'U]", "[pH]",
    "[drp]", "[HPF]", "[LPF]", "[mi_i]", "[yd_i]",
})
_UCUM_ATOM = re.compile(r"(\[[^\[\]]*\]|[^.\/(){}\[\]0-9+\-]+(?:\[[^\[\]]*\])?|'{1,2})")
_UCUM_ANNOTATION = re.compile(r"\{[\x21-\x7a\x7c\x7e ]*\}")


def isValidUcum(expression: str) -> bool:
    """Whether ``expression`` is a valid UCUM unit over the atoms this module knows (see the module notes).

    Parameters
    ----------
    expression:
        A Code Value of a UCUM unit, e.g. ``"mm3"``, ``"g/ml{SUVbw}"``, ``"[hnsf'U]"``, ``"{voxels}"``, ``"1"``.
    """
    if not isinstance(expression, str) or not expression or not expression.isascii() or " " in expression:
        return False
    parser = _UcumParser(expression)
    try:
        parser.mainTerm()
    except ValueError:
        return False
    return parser.position == len(expression)


class _UcumParser:
    """Recursive descent over the UCUM grammar (UCUM specification section 2.1, "Syntax rules")."""

    def __init__(self, text: str):
        self.text = text
        self.position = 0

    def _peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def mainTerm(self) -> None:
        if self._peek() == "/":
            self.position += 1
        self.term()

    def term(self) -> None:
        self.component()
        while self._peek() in (".", "/") and self._peek():
            self.position += 1
            self.component()

    def component(self) -> None:
        character = self._peek()
        if character == "(":
            self.position += 1
            self.term()
            if self._peek() != ")":
                raise ValueError("unbalanced parenthesis")
            self.position += 1
        elif character == "{":
            self.annotation()
            return
        elif character.isdigit():
            match = re.compile(r"[0-9]+").match(self.text, self.position)
            assert match is not None  # the character is a digit
            self.position = match.end()
            # "10*" and "10^" are atoms (powers of ten) that take an exponent.
            if self._peek() in ("*", "^") and match.group() == "10":
                self.position += 1
                self.exponent(required=True)
        else:
            self.simpleUnit()
            self.exponent(required=False)
        if self._peek() == "{":
            self.annotation()

    def annotation(self) -> None:
        match = _UCUM_ANNOTATION.match(self.text, self.position)
        if match is None:
            raise ValueError("bad annotation")
        self.position = match.end()

    def exponent(self, required: bool) -> None:
        match = re.compile(r"[+-]?[0-9]+").match(self.text, self.position)
        if match is None:
            if required:
                raise ValueError("exponent expected")
            return
        self.position = match.end()

    def simpleUnit(self) -> None:
        match = _UCUM_ATOM.match(self.text, self.position)
        if match is None:
            raise ValueError("unit expected")
        symbol = match.group()
        # The longest known atom (with or without a prefix) that the symbol starts with.
        for end in range(len(symbol), 0, -1):
            candidate = symbol[:end]
            if _isUcumAtom(candidate):
                self.position += end
                return
        raise ValueError(f"unknown unit {symbol!r}")


def _isUcumAtom(symbol: str) -> bool:
    if symbol in _UCUM_METRIC_ATOMS or symbol in _UCUM_OTHER_ATOMS:
        return True
    return any(symbol.startswith(prefix) and symbol[len(prefix):] in _UCUM_METRIC_ATOMS
               for prefix in _UCUM_PREFIXES)
