"""How each reward was reached, what a missing verdict means, and a process-wide count.

Every grader's result carries ``verdict`` (how the answer was judged) and ``has_verdict`` (1.0 when
the result is evidence about the answer, 0.0 when it is not). A grader that cannot reach a
verdict never passes that off as "wrong": it says ``"timeout"``, counts it here, logs it, and the
timeout policy decides what the selector makes of it.

Verdicts:

- ``"no_answer"``: no final answer could be read (no ``\\boxed{}``, no ``<answer>`` pair): wrong;
- ``"exact"``: Countdown's equation checked in exact rational arithmetic;
- ``"normalized"``: equal after string normalisation or as exact plain numbers (no sympy);
- ``"screened"``: kept away from sympy by the static screen (too long, too deep, explosive);
  normalisation said "not equal", which is the verdict;
- ``"math_verify"``: math-verify's verdict, reached within the answer's CPU budget;
- ``"timeout"``: math-verify reached no verdict (the answer used up its CPU budget, its process was
  lost, or none could be started). The score is the grader's documented fallback (what
  normalisation alone says: not equal); ``has_verdict`` follows the timeout policy.

Timeout policies (``timeout_policy=``):

- ``"no_evidence"`` (default): ``has_verdict = 0.0``; a selector leaves the rollout out of its
  evidence (``mopps.aggregate_rollouts(..., has_verdict=...)``), the trainer gets the fallback score;
- ``"wrong"``: ``has_verdict = 1.0``; the fallback counts as a failure everywhere (still counted
  and logged as a timeout).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

logger = logging.getLogger(__name__)

NO_ANSWER = "no_answer"
EXACT = "exact"
NORMALIZED = "normalized"
SCREENED = "screened"
MATH_VERIFY = "math_verify"
TIMEOUT = "timeout"
VERDICTS = (NO_ANSWER, EXACT, NORMALIZED, SCREENED, MATH_VERIFY, TIMEOUT)

NO_EVIDENCE = "no_evidence"
WRONG = "wrong"
TIMEOUT_POLICIES = (NO_EVIDENCE, WRONG)
DEFAULT_TIMEOUT_POLICY = NO_EVIDENCE

_counts: Counter = Counter()
_counts_lock = threading.Lock()


def check_timeout_policy(timeout_policy: str) -> str:
    """``timeout_policy`` itself, or ``ValueError`` naming the allowed values."""
    if timeout_policy not in TIMEOUT_POLICIES:
        raise ValueError(f"timeout_policy = {timeout_policy!r}; must be one of {TIMEOUT_POLICIES}")
    return timeout_policy


def has_verdict(verdict: str, timeout_policy: str) -> float:
    """1.0 when a result with ``verdict`` is evidence under ``timeout_policy``, else 0.0."""
    return 0.0 if verdict == TIMEOUT and timeout_policy == NO_EVIDENCE else 1.0


def record(verdict: str, cause: str = "") -> None:
    """Count one verdict; for ``"timeout"`` also ``"timeout:<cause>"``."""
    with _counts_lock:
        _counts[verdict] += 1
        if verdict == TIMEOUT:
            _counts[f"{TIMEOUT}:{cause}"] += 1


def verdict_counts() -> dict[str, int]:
    """How many answers this process has judged, by verdict (every name of :data:`VERDICTS`,
    zeros included), plus ``"timeout:<cause>"`` for each timeout cause seen (``cpu_budget``,
    ``cpu_limit``, ``died``, ``wall_limit``, ``unavailable``; see
    :mod:`mopps.tasks.math_verify_worker`). A snapshot: later grading does not change it."""
    with _counts_lock:
        return {**dict.fromkeys(VERDICTS, 0), **_counts}
