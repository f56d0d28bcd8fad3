"""String normalisation and exact plain-number reading for final math answers.

This is the grader's fast path and its fallback when math-verify cannot give a verdict: it
needs no sympy, runs in time linear in the (bounded) answer length, and never raises. It
follows the Hendrycks-MATH normaliser the MoPPS reference uses (``\\dfrac`` → ``\\frac``, no
``\\left``/``\\right``, degrees, dollars, percent and trailing text units removed, ``x = 3`` → ``3``)
and adds thousands separators and exact reading of integers, decimals, ``a/b``, ``\\frac{a}{b}``
and ``a \\times 10^{n}``.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_NORMALIZE_CHARS = 4096
_MAX_NUMBER_DIGITS = 40
_MAX_EXPONENT = 40

_REMOVED = (
    "\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "^{\\circ}", "^\\circ",
    "\u00b0", "\\$", "$", "\\%", "%", "\\textstyle",
)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox|mathbf)\{([^{}]*)\}")
_UNIT_COMMANDS = ("\\text{", "\\mbox{", "\\mathrm{")
_UNIT = re.compile(r"\s*[a-zA-Z][a-zA-Z .^0-9]*")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SHORT_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w\}?)?\s*=\s*(.+)$")
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d*)\.(\d+)")
_SLASH = re.compile(r"([+-]?\d+)/([+-]?\d+)")
_FRAC = re.compile(r"(-?)\\frac(?:\{([+-]?\d+)\}|(\d))(?:\{([+-]?\d+)\}|(\d))")
_SCIENTIFIC = re.compile(r"([+-]?\d*\.?\d+)\s*(?:\\times|\\cdot|\*)\s*10\^\{?([+-]?\d+)\}?")


def _strip_trailing_units(text: str) -> str:
    """``10\\text{ cm}`` → ``10``: a final text command of letters after a number or group."""
    if not text.endswith("}"):
        return text
    start = max(text.rfind(command) for command in _UNIT_COMMANDS)
    if start <= 0:
        return text
    content = text[text.index("{", start) + 1 : -1]
    before = text[:start].rstrip()
    if _UNIT.fullmatch(content) and before and (before[-1].isdigit() or before[-1] == "}"):
        return before
    return text


def normalize_answer(answer: str) -> str:
    """A canonical string for comparing final answers; ``""`` for input that is not a string.

    Answers longer than :data:`MAX_NORMALIZE_CHARS` are returned unchanged (no model answer
    that long is equal to a reference answer by normalisation alone).
    """
    if not isinstance(answer, str):
        return ""
    text = answer.strip()
    if len(text) > MAX_NORMALIZE_CHARS:
        return text
    text = text.replace("\n", " ").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _strip_trailing_units(text)
    for token in _REMOVED:
        text = text.replace(token, "")
    text = _TEXT_COMMAND.sub(r"\1", text)
    text = text.replace("{,}", ",").strip().rstrip(".").strip()
    lhs = _SHORT_LHS.match(text)
    if lhs and "=" not in lhs.group(1):
        text = lhs.group(1)
    text = text.replace(" ", "")
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if text.startswith("."):
        text = "0" + text
    return text


def _bounded_int(digits: str) -> int | None:
    return int(digits) if len(digits.lstrip("+-")) <= _MAX_NUMBER_DIGITS else None


def parse_plain_number(answer: str) -> Fraction | None:
    """The exact value of a normalised plain number, or ``None`` for anything else.

    Reads ``42``, ``-0.25``, ``3/4``, ``\\frac{3}{4}``, ``\\frac34``, ``-\\frac{1}{2}`` and
    ``8.7\\times10^{8}``; literals over 40 digits and exponents over 40 are ``None``, so no input
    makes big-integer arithmetic slow.
    """
    text = normalize_answer(answer)
    if len(text) > 2 * _MAX_NUMBER_DIGITS + 16:
        return None
    if _INTEGER.fullmatch(text):
        value = _bounded_int(text)
        return None if value is None else Fraction(value)
    decimal = _DECIMAL.fullmatch(text)
    if decimal:
        if len(decimal.group(1)) + len(decimal.group(2)) > _MAX_NUMBER_DIGITS:
            return None
        return Fraction(text)
    slash, frac = _SLASH.fullmatch(text), _FRAC.fullmatch(text)
    if slash or frac:
        if slash:
            sign, numerator, denominator = 1, slash.group(1), slash.group(2)
        else:
            sign = -1 if frac.group(1) else 1
            numerator, denominator = frac.group(2) or frac.group(3), frac.group(4) or frac.group(5)
        top, bottom = _bounded_int(numerator), _bounded_int(denominator)
        if top is None or bottom is None or bottom == 0:
            return None
        return sign * Fraction(top, bottom)
    scientific = _SCIENTIFIC.fullmatch(text)
    if scientific:
        mantissa, exponent = scientific.groups()
        if len(mantissa) > _MAX_NUMBER_DIGITS or abs(int(exponent)) > _MAX_EXPONENT:
            return None
        return Fraction(mantissa) * Fraction(10) ** int(exponent)
    return None


def answers_match_without_sympy(predicted: str, reference: str) -> bool:
    """Equal after :func:`normalize_answer`, or equal as exact plain numbers."""
    left, right = normalize_answer(predicted), normalize_answer(reference)
    if not left or not right:
        return False
    if left == right:
        return True
    left_value, right_value = parse_plain_number(left), parse_plain_number(right)
    return left_value is not None and left_value == right_value
