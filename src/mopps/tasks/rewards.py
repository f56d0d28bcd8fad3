"""Reward entry points for trainers: one verl ``compute_score`` and TRL reward callables.

verl: point ``reward.custom_reward_function.path`` (``custom_reward_function.path`` up to verl
0.7.0) at this file's package and ``name`` at ``compute_score``; rows carry ``data_source`` and
``reward_model.ground_truth`` as written by ``mopps data``. TRL: pass e.g.
``reward_funcs=[countdown_reward]``; TRL hands every dataset column to the function as a keyword
list, which is where the ground truth comes from.

Every function returns ``score`` (the shaped reward the reference trains on) and ``acc`` (binary
success); selectors and dynamic-sampling filters must read ``acc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mopps.tasks.countdown_reward import score_countdown
from mopps.tasks.math_reward import score_geo3k, score_math

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
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping | None = None, **reward_model_kwargs
) -> dict:
    """verl's reward-function signature; returns ``{"score", "acc", "formatted"}`` as floats.

    ``reward_model_kwargs``: verl 0.9 adds ``reward_router_address`` and
    ``reward_model_tokenizer`` when a reward model is configured; rule-based grading ignores them.

    ``ground_truth``: Countdown ``{"target": int, "numbers": [int, ...]}``; MATH and Geo3k the
    answer string. MATH rows may list further accepted answers in
    ``extra_info["answer_alternatives"]`` (Minerva has several). Never raises because of
    ``solution_str``; raises ``ValueError`` for an unknown ``data_source`` or bad ground truth.
    """
    task = task_of(data_source)
    if task == "countdown":
        return score_countdown(solution_str, ground_truth)
    if task == "geo3k":
        return score_geo3k(solution_str, ground_truth)
    alternatives = (extra_info or {}).get(ANSWER_ALTERNATIVES_KEY)
    if alternatives is not None and len(alternatives):
        ground_truth = [ground_truth, *list(alternatives)]
    return score_math(solution_str, ground_truth)


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


def _countdown_results(completions: list, kwargs: Mapping) -> list[dict]:
    if "ground_truth" in kwargs and "target" not in kwargs:
        truths = _column(kwargs, ("ground_truth",), "countdown_reward", len(completions))
    else:
        targets = _column(kwargs, ("target",), "countdown_reward", len(completions))
        numbers = _column(kwargs, ("numbers", "nums"), "countdown_reward", len(completions))
        truths = [{"target": t, "numbers": n} for t, n in zip(targets, numbers)]
    return [score_countdown(completion_text(c), truth) for c, truth in zip(completions, truths)]


def _answer_results(scorer: Callable, name: str, completions: list, kwargs: Mapping) -> list[dict]:
    answers = _column(kwargs, ("answer", "ground_truth", "solution"), name, len(completions))
    alternatives = kwargs.get(ANSWER_ALTERNATIVES_KEY) or [None] * len(completions)
    results = []
    for completion, answer, extra in zip(completions, answers, alternatives):
        truth = [answer, *list(extra)] if extra is not None and len(extra) else answer
        results.append(scorer(completion_text(completion), truth))
    return results


def countdown_reward(completions: list, **kwargs) -> list[float]:
    """TRL reward: Countdown ``score`` (1 / 0.1 / 0). Columns ``target`` and ``numbers`` (or ``nums``)."""
    return [r["score"] for r in _countdown_results(completions, kwargs)]


def countdown_accuracy(completions: list, **kwargs) -> list[float]:
    """TRL reward: Countdown binary ``acc``. Same columns as :func:`countdown_reward`."""
    return [r["acc"] for r in _countdown_results(completions, kwargs)]


def math_reward(completions: list, **kwargs) -> list[float]:
    """TRL reward: MATH / DeepScaleR ``score`` (= ``acc``). Column ``answer`` (or ``ground_truth``)."""
    return [r["score"] for r in _answer_results(score_math, "math_reward", completions, kwargs)]


def math_accuracy(completions: list, **kwargs) -> list[float]:
    """TRL reward: MATH / DeepScaleR binary ``acc``; identical to :func:`math_reward`, named for symmetry."""
    return [r["acc"] for r in _answer_results(score_math, "math_accuracy", completions, kwargs)]


def geo3k_reward(completions: list, **kwargs) -> list[float]:
    """TRL reward: Geometry3k ``score`` (1 / 0.1 format / 0). Column ``answer``."""
    return [r["score"] for r in _answer_results(score_geo3k, "geo3k_reward", completions, kwargs)]


def geo3k_accuracy(completions: list, **kwargs) -> list[float]:
    """TRL reward: Geometry3k binary ``acc``. Column ``answer``."""
    return [r["acc"] for r in _answer_results(score_geo3k, "geo3k_accuracy", completions, kwargs)]
