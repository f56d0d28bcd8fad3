"""Graders for boxed final answers: MATH, the DeepScaleR evaluation sets and Geometry3k.

Pipeline for one response; every step's work is bounded, and no step's verdict depends on how
busy the machine is:

1. the last ``\\boxed{…}`` (:func:`mopps.tasks.extract.last_boxed_answer`); none → wrong
   (verdict ``"no_answer"``);
2. fast path: equal after normalisation or as exact plain numbers
   (:mod:`mopps.tasks.math_normalize`) → right, no sympy involved (``"normalized"``);
3. a static screen (:func:`sympy_safe`) keeps sympy away from answers that are too long, too
   deeply nested, or could make it build a gigantic integer (power towers, huge exponents,
   factorials of groups); screened-out answers keep the fast path's verdict (``"screened"``);
4. math-verify in a child process (:mod:`mopps.tasks.math_verify_worker`) with a budget of CPU
   seconds spent on this answer (``"math_verify"``); no verdict within it → ``"timeout"``: the
   fast path's "not equal" as the fallback score, and no evidence under the default timeout policy
   (:mod:`mopps.tasks.verdicts`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mopps.tasks.extract import last_boxed_answer
from mopps.tasks.math_normalize import answers_match_without_sympy
from mopps.tasks.math_verify_worker import OK, shared_pool
from mopps.tasks.verdicts import (
    DEFAULT_TIMEOUT_POLICY,
    MATH_VERIFY,
    NO_ANSWER,
    NORMALIZED,
    SCREENED,
    TIMEOUT,
    check_timeout_policy,
    has_verdict,
    record,
)

logger = logging.getLogger(__name__)

# CPU seconds math-verify may spend on one answer. Ordinary answers take 0.001 - 0.1 s once the
# child is warm; the hostile ones the static screen misses are cut off here.
DEFAULT_CPU_BUDGET_S = 1.0
MAX_SYMPY_CHARS = 512
MAX_GROUP_DEPTH = 6
GEO3K_FORMAT_SCORE = 0.1

_LONG_NUMBER = re.compile(r"\d{5,}")
_GROWTH = ("^", "!", "\\binom", "\\choose", "\\prod", "\\sum")
_COMBINATORIAL = ("!", "\\binom", "\\choose", "\\prod")
_STACKED_POWER = re.compile(r"\^\s*(?:\{[^{}]*\}|\\?\w)\s*\^")


@dataclass(frozen=True)
class Grade:
    """How one final answer was judged.

    ``correct``: whether it equals a reference answer; ``None`` when no verdict was reached.
    ``verdict``: one of :data:`mopps.tasks.verdicts.VERDICTS` (``"normalized"``, ``"screened"``,
    ``"math_verify"``, ``"timeout"``, or ``"no_answer"`` for an empty answer).
    ``cause``: for ``"timeout"``, why (``mopps.tasks.math_verify_worker.NO_VERDICT_CAUSES``); else ``""``.
    ``cpu_s``: CPU seconds math-verify spent on the answer; ``nan`` when it was not asked.
    """

    correct: bool | None
    verdict: str
    cause: str = ""
    cpu_s: float = math.nan


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
    ``\\binom{10^{9}}{5 \\cdot 10^{8}}`` make sympy compute gigantic integers for hours. The child's
    CPU budget would cut them off too, but each would cost a budget of CPU and a timeout instead
    of a verdict; the screen answers them at once.
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


def grade_answer(predicted: str, ground_truth, cpu_budget_s: float = DEFAULT_CPU_BUDGET_S) -> Grade:
    """Judge ``predicted`` (a final answer, e.g. a boxed content) against the reference.

    ``ground_truth``: see :func:`reference_answers`. ``cpu_budget_s``: the most CPU seconds
    math-verify may spend on this answer (start-up and queueing for a free child excluded). Never
    raises on any ``predicted``; counts every verdict (:func:`mopps.tasks.verdicts.verdict_counts`).
    """
    references = reference_answers(ground_truth)
    grade = _grade(predicted, references, cpu_budget_s)
    record(grade.verdict, grade.cause)
    if grade.verdict == TIMEOUT:
        logger.warning(
            "math-verify reached no verdict on %r against %r (%s, %.2f CPU s); scored by normalisation, marked timeout",
            predicted[:80], references[0][:80], grade.cause, grade.cpu_s,
        )
    return grade


def _grade(predicted, references: list[str], cpu_budget_s: float) -> Grade:
    if not isinstance(predicted, str) or not predicted.strip():
        return Grade(False, NO_ANSWER)
    if any(answers_match_without_sympy(predicted, reference) for reference in references):
        return Grade(True, NORMALIZED)
    safe_references = [reference for reference in references if sympy_safe(reference)]
    if not safe_references or not sympy_safe(predicted):
        return Grade(False, SCREENED)
    reply = shared_pool().equal(predicted, safe_references, cpu_budget_s)
    if reply.status == OK:
        return Grade(bool(reply.equal), MATH_VERIFY, cpu_s=reply.cpu_s)
    return Grade(None, TIMEOUT, reply.status, reply.cpu_s)


def score_math(
    solution_str: str,
    ground_truth,
    cpu_budget_s: float = DEFAULT_CPU_BUDGET_S,
    timeout_policy: str = DEFAULT_TIMEOUT_POLICY,
) -> dict:
    """Grade a MATH / DeepScaleR response: ``{"score", "acc", "formatted", "verdict", "has_verdict"}``.

    ``score`` = ``acc`` ∈ {0.0, 1.0}; ``formatted`` is 1.0 when a readable ``\\boxed{}`` was found;
    ``verdict`` says how the answer was judged and ``has_verdict`` whether the result is evidence
    under ``timeout_policy`` (:mod:`mopps.tasks.verdicts`); on ``"timeout"`` score and acc are the
    fallback 0.0. Never raises on any ``solution_str``; raises ``ValueError`` on a malformed
    ``ground_truth`` or an unknown ``timeout_policy``.
    """
    check_timeout_policy(timeout_policy)
    reference_answers(ground_truth)
    answer = last_boxed_answer(solution_str) if isinstance(solution_str, str) else None
    if answer is None:
        record(NO_ANSWER)
        return {"score": 0.0, "acc": 0.0, "formatted": 0.0, "verdict": NO_ANSWER, "has_verdict": 1.0}
    grade = grade_answer(answer, ground_truth, cpu_budget_s)
    acc = 1.0 if grade.correct else 0.0
    return {
        "score": acc,
        "acc": acc,
        "formatted": 1.0,
        "verdict": grade.verdict,
        "has_verdict": has_verdict(grade.verdict, timeout_policy),
    }


def geo3k_formatted(solution_str: str) -> bool:
    """The reference's format check, ``<think>.*</think>.*\\boxed{.*}.*`` as a full match, in linear time."""
    if not solution_str.startswith("<think>"):
        return False
    think_end = solution_str.find("</think>", len("<think>"))
    if think_end < 0:
        return False
    box = solution_str.find("\\boxed{", think_end)
    return box >= 0 and solution_str.find("}", box) >= 0


def score_geo3k(
    solution_str: str,
    ground_truth,
    cpu_budget_s: float = DEFAULT_CPU_BUDGET_S,
    timeout_policy: str = DEFAULT_TIMEOUT_POLICY,
) -> dict:
    """Grade a Geometry3k response with the reference's shape.

    ``score`` is 1.0 when correct, else 0.1 if the response follows the
    ``<think>…</think>…\\boxed{…}`` format, else 0.0 (a ``"timeout"`` scores as not correct);
    ``acc`` is binary; ``formatted`` is the format check as 1.0/0.0; ``verdict`` and
    ``has_verdict`` as in :func:`score_math`. Never raises on any ``solution_str``.
    """
    result = score_math(solution_str, ground_truth, cpu_budget_s, timeout_policy)
    formatted = isinstance(solution_str, str) and geo3k_formatted(solution_str)
    score = 1.0 if result["acc"] == 1.0 else GEO3K_FORMAT_SCORE * formatted
    return {**result, "score": score, "formatted": float(formatted)}
