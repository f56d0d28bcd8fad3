"""Reward entry points for trainers: one verl ``compute_score`` and TRL reward callables.

verl: point ``reward.custom_reward_function.path`` (``custom_reward_function.path`` up to verl
0.7.0) at this file's package and ``name`` at ``compute_score``; rows carry ``data_source`` and
``reward_model.ground_truth`` as written by ``mopps data``. TRL: pass e.g.
``reward_funcs=[countdown_reward]``; TRL hands every dataset column to the function as a keyword
list, which is where the ground truth comes from.

Every result has ``score`` (the shaped reward the reference trains on), ``acc`` (binary success;
selectors and dynamic-sampling filters must read ``acc``), ``verdict`` (how it was reached) and
``has_verdict`` (whether it is evidence; :mod:`mopps.tasks.verdicts`).

Set ``$MOPPS_MATH_VERIFY_PREWARM=1`` to start the math-verify children when this module is imported
(without waiting), so that they are warm by the first batch; otherwise the first grading that needs
math-verify starts them and waits for them (outside every answer's budget).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mopps.tasks.countdown_reward import score_countdown
from mopps.tasks.math_reward import DEFAULT_CPU_BUDGET_S, score_geo3k, score_math
from mopps.tasks.math_verify_worker import shared_pool
from mopps.tasks.verdicts import DEFAULT_TIMEOUT_POLICY, TIMEOUT, check_timeout_policy

COUNTDOWN_SOURCES = frozenset(
    {"countdown", "countdown3to4", "countdown4", "jiayi-pan/countdown-tasks-3to4", "jiayi-pan/countdown-tasks-4"}
)
GEO3K_SOURCES = frozenset({"geo3k", "hiyouga/geometry3k"})
# The reference's DeepScaleR files leave data_source empty (""), so "" means MATH-style grading.
MATH_SOURCES = frozenset(
    {
        "", "math", "digitallearninggmbh/math-lighteval", "lighteval/math", "huggingfaceh4/math-500",
        "deepscaler", "agentica-org/deepscaler-preview-dataset", "aime", "aime24", "amc", "amc23",
        "math500", "minerva", "olympiad_bench", "olympiadbench",
    }
)
ANSWER_ALTERNATIVES_KEY = "answer_alternatives"
PREWARM_ENV = "MOPPS_MATH_VERIFY_PREWARM"
TASKS = ("countdown", "math", "geo3k")
OUTPUTS = ("score", "acc")


def task_of(data_source: str) -> str:
    """``"countdown"``, ``"math"`` or ``"geo3k"`` for a row's ``data_source``; ``ValueError`` if unknown.

    Names are matched case-insensitively; ``deepscaler/<eval set>`` names are MATH-style.
    """
    name = str(data_source).strip().lower()
    if name in COUNTDOWN_SOURCES:
        return "countdown"
    if name in GEO3K_SOURCES:
        return "geo3k"
    if name in MATH_SOURCES or name.startswith("deepscaler/"):
        return "math"
    raise ValueError(
        f"data_source = {data_source!r} is not a known task; use one of 'countdown', 'math', 'geo3k', "
        "'deepscaler/<set>' or an original dataset name such as 'DigitalLearningGmbH/MATH-lighteval'"
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping | None = None,
    *,
    cpu_budget_s: float = DEFAULT_CPU_BUDGET_S,
    timeout_policy: str = DEFAULT_TIMEOUT_POLICY,
    **reward_model_kwargs,
) -> dict:
    """verl's reward-function signature; returns ``{"score", "acc", "formatted", "verdict",
    "has_verdict"}``: floats, and ``verdict`` a string (:mod:`mopps.tasks.verdicts`).

    ``reward_model_kwargs``: verl 0.9 adds ``reward_router_address`` and
    ``reward_model_tokenizer`` when a reward model is configured; rule-based grading ignores them.
    ``cpu_budget_s`` (CPU seconds math-verify may spend on one answer) and ``timeout_policy``
    (``"no_evidence"`` or ``"wrong"``) can be set from verl's
    ``reward.custom_reward_function.reward_kwargs``.

    ``ground_truth``: Countdown ``{"target": int, "numbers": [int, ...]}``; MATH and Geo3k the
    answer string. MATH rows may list further accepted answers in
    ``extra_info["answer_alternatives"]`` (Minerva has several). Never raises because of
    ``solution_str``; raises ``ValueError`` for an unknown ``data_source``, bad ground truth or an
    unknown ``timeout_policy``.
    """
    check_timeout_policy(timeout_policy)
    check_cpu_budget(cpu_budget_s)
    task = task_of(data_source)
    if task == "countdown":
        return score_countdown(solution_str, ground_truth)
    if task == "geo3k":
        return score_geo3k(solution_str, ground_truth, cpu_budget_s, timeout_policy)
    alternatives = answer_alternatives((extra_info or {}).get(ANSWER_ALTERNATIVES_KEY))
    if alternatives:
        ground_truth = [ground_truth, *alternatives]
    return score_math(solution_str, ground_truth, cpu_budget_s, timeout_policy)


def answer_alternatives(value) -> list[str]:
    """The further accepted answers of a row's ``answer_alternatives``: None (none), one str (one
    answer, not its characters), or a list/tuple/1-D array of str (parquet rows read by verl hold
    an object array). Anything else (a dict, a number) is a ``ValueError`` naming the field:
    iterating it would grade against its keys or characters."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(
                    f"{ANSWER_ALTERNATIVES_KEY}[{position}] = {item!r}; {ANSWER_ALTERNATIVES_KEY} must be a str "
                    "or a list of str"
                )
        return list(value)
    raise ValueError(
        f"{ANSWER_ALTERNATIVES_KEY} is a {type(value).__name__}; it must be a str or a list of str"
    )


def check_cpu_budget(cpu_budget_s) -> float:
    """``cpu_budget_s`` as a float: a finite number of CPU seconds > 0, else ``ValueError`` naming it
    (a budget <= 0 would silently grade every math-verify answer as a timeout)."""
    if isinstance(cpu_budget_s, bool) or not isinstance(cpu_budget_s, numbers.Real):
        raise ValueError(f"cpu_budget_s = {cpu_budget_s!r}; cpu_budget_s must be a number of CPU seconds > 0")
    budget = float(cpu_budget_s)
    if not (math.isfinite(budget) and budget > 0.0):
        raise ValueError(f"cpu_budget_s = {cpu_budget_s!r}; cpu_budget_s must be finite and > 0")
    return budget


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or the last message of a conversation.

    Message content may be a string or a list of ``{"type": "text", "text": ...}`` parts.
    Anything unreadable becomes ``""`` (which grades as no answer).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [part.get("text") for part in content if isinstance(part, Mapping)]
            return "".join(text for text in texts if isinstance(text, str))
    return ""


def _column(kwargs: Mapping, names: tuple[str, ...], reward: str, count: int) -> list:
    for name in names:
        if name in kwargs and kwargs[name] is not None:
            values = list(kwargs[name])
            if len(values) != count:
                raise ValueError(f"{reward}: column {name!r} has {len(values)} values for {count} completions")
            return values
    raise ValueError(f"{reward}: the dataset needs a column named one of {names}; got columns {sorted(kwargs)}")


def _countdown_results(completions: list, kwargs: Mapping, name: str) -> list[dict]:
    if "ground_truth" in kwargs and "target" not in kwargs:
        truths = _column(kwargs, ("ground_truth",), name, len(completions))
    else:
        targets = _column(kwargs, ("target",), name, len(completions))
        numbers = _column(kwargs, ("numbers", "nums"), name, len(completions))
        truths = [{"target": t, "numbers": n} for t, n in zip(targets, numbers)]
    return [score_countdown(completion_text(c), truth) for c, truth in zip(completions, truths)]


def _answer_results(scorer: Callable, completions: list, kwargs: Mapping, name: str, **options) -> list[dict]:
    answers = _column(kwargs, ("answer", "ground_truth", "solution"), name, len(completions))
    alternatives = kwargs.get(ANSWER_ALTERNATIVES_KEY) or [None] * len(completions)
    results = []
    for completion, answer, extra in zip(completions, answers, alternatives):
        extra = answer_alternatives(extra)
        truth = [answer, *extra] if extra else answer
        results.append(scorer(completion_text(completion), truth, **options))
    return results


class TaskReward:
    """A TRL reward function for one task: ``reward(completions, **columns) -> list[float | None]``.

    ``task``: ``"countdown"`` (columns ``target`` and ``numbers``/``nums``, or ``ground_truth``),
    ``"math"`` or ``"geo3k"`` (column ``answer``, ``ground_truth`` or ``solution``; optional
    ``answer_alternatives``). ``output``: ``"score"`` (the shaped reward; a completion without a
    verdict gets the fallback score) or ``"acc"`` (binary success; a completion without a verdict
    gets ``None`` under ``timeout_policy="no_evidence"``, which TRL turns into NaN: left out of
    this function's mean, and the MoPPS adapter with ``success_reward=<name>`` leaves that rollout
    out of the selector's evidence). ``name``: what TRL logs it as (``rewards/<name>/mean``).

    When TRL passes its ``log_extra`` and ``log_metric`` callbacks (trl >= 1.x), every call also
    logs the column ``<name>/verdict`` (each completion's verdict string, in completion order) to
    the completions table and the metric ``<name>/timeout_frac`` (share of completions whose
    verdict is ``"timeout"``, whatever the policy). :meth:`results` returns the full result dicts instead of the rewards.
    """

    def __init__(
        self,
        task: str,
        output: str,
        name: str | None = None,
        *,
        cpu_budget_s: float = DEFAULT_CPU_BUDGET_S,
        timeout_policy: str = DEFAULT_TIMEOUT_POLICY,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task = {task!r}; must be one of {TASKS}")
        if output not in OUTPUTS:
            raise ValueError(f"output = {output!r}; must be one of {OUTPUTS}")
        self.task = task
        self.output = output
        self.cpu_budget_s = check_cpu_budget(cpu_budget_s)
        self.timeout_policy = check_timeout_policy(timeout_policy)
        self.__name__ = name or f"{task}_{'reward' if output == 'score' else 'accuracy'}"

    def __repr__(self) -> str:
        return (
            f"TaskReward({self.task!r}, {self.output!r}, name={self.__name__!r}, "
            f"cpu_budget_s={self.cpu_budget_s}, timeout_policy={self.timeout_policy!r})"
        )

    def results(self, completions: list, **kwargs) -> list[dict]:
        """One :func:`compute_score`-shaped dict per completion."""
        if self.task == "countdown":
            return _countdown_results(completions, kwargs, self.__name__)
        scorer = score_math if self.task == "math" else score_geo3k
        options = {"cpu_budget_s": self.cpu_budget_s, "timeout_policy": self.timeout_policy}
        return _answer_results(scorer, completions, kwargs, self.__name__, **options)

    def __call__(self, completions: list, **kwargs) -> list[float | None]:
        results = self.results(completions, **kwargs)
        log_extra, log_metric = kwargs.get("log_extra"), kwargs.get("log_metric")
        if callable(log_extra):
            log_extra(f"{self.__name__}/verdict", [r["verdict"] for r in results])
        if callable(log_metric) and results:
            timeouts = sum(r["verdict"] == TIMEOUT for r in results)
            log_metric(f"{self.__name__}/timeout_frac", timeouts / len(results))
        if self.output == "score":
            return [r["score"] for r in results]
        return [r["acc"] if r["has_verdict"] else None for r in results]


countdown_reward = TaskReward("countdown", "score")
countdown_accuracy = TaskReward("countdown", "acc")
math_reward = TaskReward("math", "score")
math_accuracy = TaskReward("math", "acc")
geo3k_reward = TaskReward("geo3k", "score")
geo3k_accuracy = TaskReward("geo3k", "acc")

if os.environ.get(PREWARM_ENV) == "1":
    shared_pool().warm_up(wait=False)
