"""The Countdown verifier: does the last ``<answer>`` use each given number once and hit the target?

Scores follow the MoPPS reference (``recipe/ours/reward_func/countdown_reward.py``): 1.0 for a
correct equation, 0.1 for a response with an ``<answer>`` tag whose content is wrong or
unreadable, 0.0 without an ``<answer>`` tag. ``acc`` is the binary success (1.0 or 0.0) that
selectors and dynamic-sampling filters must use; the 0.1 is a shaping term, not a success.

Unlike the reference, the expression is parsed by :mod:`mopps.tasks.arithmetic` (no ``eval``,
no power operator, bounded size, exact rationals), so hostile output cannot hang the worker.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from mopps.tasks.arithmetic import ExpressionError, evaluate, parse_expression
from mopps.tasks.extract import last_tagged_answer
from mopps.tasks.verdicts import EXACT, NO_ANSWER, record

FORMAT_SCORE = 0.1
CORRECT_SCORE = 1.0


def countdown_ground_truth(ground_truth: Mapping[str, Any]) -> tuple[int, tuple[int, ...]]:
    """Read ``{"target": int, "numbers": [int, ...]}`` (lists may arrive as numpy arrays).

    Raises ``ValueError`` naming the bad field: ground truth is our data, so a bad one is a bug to
    surface, unlike a bad response.
    """
    if not isinstance(ground_truth, Mapping):
        raise ValueError(
            f"countdown ground_truth must be a mapping with 'target' and 'numbers'; got {type(ground_truth).__name__}"
        )
    for field in ("target", "numbers"):
        if field not in ground_truth:
            raise ValueError(f"countdown ground_truth lacks field {field!r}; has {sorted(ground_truth)}")
    numbers = ground_truth["numbers"]
    if hasattr(numbers, "tolist"):
        numbers = numbers.tolist()
    if isinstance(numbers, (str, bytes)) or not isinstance(numbers, Sequence) or not numbers:
        raise ValueError(f"countdown ground_truth['numbers'] must be a non-empty list of ints; got {numbers!r}")
    try:
        return operator.index(ground_truth["target"]), tuple(operator.index(n) for n in numbers)
    except TypeError as error:
        raise ValueError(
            f"countdown ground_truth target and numbers must be ints; got {dict(ground_truth)!r}"
        ) from error


def check_equation(equation: str, target: int, numbers: Sequence[int]) -> bool:
    """True when ``equation`` uses exactly the multiset ``numbers`` and equals ``target`` exactly.

    Never raises on any ``equation`` string: malformed input, division by zero and oversize
    values are all just ``False``.
    """
    try:
        parsed = parse_expression(equation)
    except ExpressionError:
        return False
    if sorted(parsed.literals) != sorted(numbers):
        return False
    try:
        return evaluate(parsed) == Fraction(target)
    except ExpressionError:
        return False


def score_countdown(
    solution_str: str,
    ground_truth: Mapping[str, Any],
    format_score: float = FORMAT_SCORE,
    correct_score: float = CORRECT_SCORE,
) -> dict:
    """Grade one response; returns ``{"score", "acc", "formatted", "verdict", "has_verdict"}``.

    ``solution_str``: the model's response text (any string). ``ground_truth``:
    ``{"target": int, "numbers": [int, ...]}``. ``formatted`` is 1.0 when an ``<answer>`` tag pair
    was found. ``verdict`` is ``"no_answer"`` without one, else ``"exact"``: the check is exact
    arithmetic with bounded work, so it always reaches a verdict (``has_verdict`` is 1.0).
    """
    target, numbers = countdown_ground_truth(ground_truth)
    equation = last_tagged_answer(solution_str) if isinstance(solution_str, str) else None
    if equation is None:
        record(NO_ANSWER)
        return {"score": 0.0, "acc": 0.0, "formatted": 0.0, "verdict": NO_ANSWER, "has_verdict": 1.0}
    record(EXACT)
    if check_equation(equation, target, numbers):
        return {"score": float(correct_score), "acc": 1.0, "formatted": 1.0, "verdict": EXACT, "has_verdict": 1.0}
    return {"score": float(format_score), "acc": 0.0, "formatted": 1.0, "verdict": EXACT, "has_verdict": 1.0}
