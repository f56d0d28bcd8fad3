"""The paper's tasks: Countdown, MATH with the DeepScaleR evaluation sets, and Geometry3k.

Data preparation (``mopps data <task>``), verifiers that any model output cannot break, and
reward entry points for verl (:func:`compute_score`) and TRL (the ``*_reward`` / ``*_accuracy``
callables). Importing this package is cheap: math-verify, datasets and pyarrow are imported only
inside the functions that need them. Nothing here imports the rest of mopps.
"""

from mopps.tasks.rewards import (
    compute_score,
    countdown_accuracy,
    countdown_reward,
    geo3k_accuracy,
    geo3k_reward,
    math_accuracy,
    math_reward,
    task_of,
)

__all__ = [
    "compute_score",
    "countdown_accuracy",
    "countdown_reward",
    "geo3k_accuracy",
    "geo3k_reward",
    "math_accuracy",
    "math_reward",
    "task_of",
]
