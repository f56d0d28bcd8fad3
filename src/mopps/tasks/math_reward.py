"""Graders for boxed final answers: MATH, the DeepScaleR evaluation sets and Geometry3k.

Pipeline for one response, each step bounded so any string returns in well under a second:

1. the last ``\\boxed{…}`` (:func:`mopps.tasks.extract.last_boxed_answer`); none → wrong;
2. fast path: equal after normalisation or as exact plain numbers
   (:mod:`mopps.tasks.math_normalize`) → right, no sympy involved;
3. a static screen (:func:`sympy_safe`) keeps sympy away from answers that are too long, too
   deeply nested, or could make it build a gigantic integer in C (power towers, huge exponents,
   factorials of groups); screened-out answers keep the fast path's verdict;
4. math-verify in a killable child process (:mod:`mopps.tasks.math_verify_worker`) with a hard
   deadline; no verdict in time → the fast path's verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mopps.tasks.extract import last_boxed_answer
from mopps.tasks.math_normalize import answers_match_without_sympy
from mopps.tasks.math_verify_worker import shared_pool

DEFAULT_TIMEOUT_S = 0.7
MAX_SYMPY_CHARS = 512
MAX_GROUP_DEPTH = 6
GEO3K_FORMAT_SCORE = 0.1

_LONG_NUMBER = re.compile(r"\d{5,}")
_GROWTH = ("^", "!", "\\binom", "\\choose", "\\prod", "\\sum")
_COMBINATORIAL = ("!", "\\binom", "\\choose", "\\prod")
_STACKED_POWER = re.compile(r"\^\s*(?:\{[^{}]*\}|\\?\w)\s*\^")


def reference_answers(ground_truth) -> list[str]:
    """The accepted answers as strings.

    ``ground_truth``: a string (MATH, Geo3k), a number (the AMC file stores ``142.0``), or a list
    of alternative answers (Minerva stores ``["6630.65", "6630"]``; numpy arrays from parquet are
    accepted). Surrounding ``$`` and whitespace are removed. Raises ``ValueError`` on anything else.
    """
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()
    if isinstance(ground_truth, bool):
        raise ValueError(f"math ground_truth must be a string, number or list of strings; got {ground_truth!r}")
    if isinstance(ground_truth, (int, float)):
        ground_truth = str(int(ground_truth)) if float(ground_truth).is_integer() else repr(ground_truth)
    if isinstance(ground_truth, str):
        candidates = [ground_truth]
    elif isinstance(ground_truth, Sequence) and all(isinstance(a, (str, int, float)) for a in ground_truth):
        candidates = [a for answer in ground_truth for a in reference_answers(answer)]
    else:
        raise ValueError(f"math ground_truth must be a string, number or list of strings; got {ground_truth!r}")
    answers = [answer.strip().strip("$").strip() for answer in candidates]
    if not answers or not all(answers):
        raise ValueError(f"math ground_truth has an empty answer: {ground_truth!r}")
    return answers


def _max_group_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def _exponents(text: str):
    """The text of each superscript: a balanced ``{…}`` group or the next token."""
    position = text.find("^")
    while position >= 0:
        start = position + 1
        if text.startswith("{", start):
            depth, end = 0, start
            while end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            yield text[start + 1 : end]
        else:
            yield text[start : start + 1]
        position = text.find("^", start)


def sympy_safe(answer: str) -> bool:
    """False for answers math-verify must not see: long, deeply nested, or able to explode.

    Measured on math-verify 0.9: LaTeX parsing time grows exponentially with brace nesting
    (15 levels: seconds), and ``9^{9^{9}}``, ``10^{-10^{10}}``, ``(10^{100})!`` or
    ``\\binom{10^{9}}{5 \\cdot 10^{8}}`` never return, stuck in one big-integer C call.
    """
    if len(answer) > MAX_SYMPY_CHARS or _max_group_depth(answer) > MAX_GROUP_DEPTH:
        return False
    if any(token in answer for token in _GROWTH) and _LONG_NUMBER.search(answer):
        return False
    if "^" in answer:
        if _STACKED_POWER.search(answer) or any(c in answer for c in _COMBINATORIAL):
            return False
        if any("^" in exponent or "!" in exponent for exponent in _exponents(answer)):
            return False
    return not re.search(r"[)}\]]\s*!", answer)


def grade_answer(predicted: str, ground_truth, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``predicted`` (a final answer, e.g. a boxed content) equals the reference.

    ``ground_truth``: see :func:`reference_answers`. ``timeout_s``: the most seconds spent in
    math-verify. Never raises on any ``predicted``.
    """
    references = reference_answers(ground_truth)
    if not isinstance(predicted, str) or not predicted.strip():
        return False
    if any(answers_match_without_sympy(predicted, reference) for reference in references):
        return True
    safe_references = [reference for reference in references if sympy_safe(reference)]
    if not safe_references or not sympy_safe(predicted):
        return False
    return bool(shared_pool().equal(predicted, safe_references, timeout_s))


def score_math(solution_str: str, ground_truth, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """Grade a MATH / DeepScaleR response: ``{"score", "acc", "formatted"}``, score = acc ∈ {0, 1}.

    ``formatted`` is 1.0 when a readable ``\\boxed{}`` was found. Never raises on any
    ``solution_str``; raises ``ValueError`` on a malformed ``ground_truth``.
    """
    reference_answers(ground_truth)
    answer = last_boxed_answer(solution_str) if isinstance(solution_str, str) else None
    if answer is None:
        return {"score": 0.0, "acc": 0.0, "formatted": 0.0}
    acc = 1.0 if grade_answer(answer, ground_truth, timeout_s) else 0.0
    return {"score": acc, "acc": acc, "formatted": 1.0}


def geo3k_formatted(solution_str: str) -> bool:
    """The reference's format check, ``<think>.*</think>.*\\boxed{.*}.*`` as a full match, in linear time."""
    if not solution_str.startswith("<think>"):
        return False
    think_end = solution_str.find("</think>", len("<think>"))
    if think_end < 0:
        return False
    box = solution_str.find("\\boxed{", think_end)
    return box >= 0 and solution_str.find("}", box) >= 0


def score_geo3k(solution_str: str, ground_truth, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """Grade a Geometry3k response with the reference's shape.

    ``score`` is 1.0 when correct, else 0.1 if the response follows the
    ``<think>…</think>…\\boxed{…}`` format, else 0.0; ``acc`` is binary; ``formatted`` is the
    format check as 1.0/0.0. Never raises on any ``solution_str``.
    """
    result = score_math(solution_str, ground_truth, timeout_s)
    formatted = isinstance(solution_str, str) and geo3k_formatted(solution_str)
    score = 1.0 if result["acc"] == 1.0 else GEO3K_FORMAT_SCORE * formatted
    return {"score": score, "acc": result["acc"], "formatted": float(formatted)}
