"""The paper's tasks: Countdown, MATH with the DeepScaleR evaluation sets, and Geometry3k.

Data preparation (``mopps data <task>``), verifiers that any model output cannot break, and
reward entry points for verl (:func:`compute_score`) and TRL (the ``*_reward`` / ``*_accuracy``
callables, :class:`TaskReward` for other settings). Every result says how it was reached
(``verdict``) and whether it is evidence (``has_verdict``); :func:`verdict_counts` counts them per
process (:mod:`mopps.tasks.verdicts`). Importing this package is cheap: math-verify, datasets and
pyarrow are imported only inside the functions (and child processes) that need them. Nothing here
imports the rest of mopps.
"""

from mopps.tasks.rewards import (
    TaskReward,
    compute_score,
    countdown_accuracy,
    countdown_reward,
    geo3k_accuracy,
    geo3k_reward,
    math_accuracy,
    math_reward,
    task_of,
)
from mopps.tasks.verdicts import TIMEOUT_POLICIES, VERDICTS, verdict_counts

__all__ = [
    "TIMEOUT_POLICIES",
    "VERDICTS",
    "TaskReward",
    "compute_score",
    "countdown_accuracy",
    "countdown_reward",
    "geo3k_accuracy",
    "geo3k_reward",
    "math_accuracy",
    "math_reward",
    "task_of",
    "verdict_counts",
]
