"""Prompt wording of the MoPPS reference (thu-rllab/MoPPS ``recipe/ours/data_preprocess``).

Each builder returns chat messages (``[{"role": ..., "content": ...}]``), the form verl parquet
rows and TRL conversational datasets both read. Keeping the wording identical to the reference
matters: the paper's success rates, and so the difficulty a selector sees, depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence

MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
GEO3K_INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the "
    "final answer. The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE put in \\boxed{}."
)
COUNTDOWN_TEMPLATES = ("base", "chat")

_COUNTDOWN_SYSTEM = (
    "You are a helpful assistant. You first thinks about the reasoning process in the mind and "
    "then provides the user with the answer."
)


def _countdown_request(numbers: Sequence[int], target: int) -> str:
    return (
        f"Using the numbers {list(numbers)}, create an equation that equals {target}. "
        "You can use basic arithmetic operations (+, -, *, /) and each number can only be used once. "
        "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> "
        "tags, for example <answer> (1 + 2) / 3 </answer>."
    )


def countdown_messages(numbers: Sequence[int], target: int, template: str = "base") -> list[dict]:
    """The Countdown prompt as chat messages.

    ``template="base"``: the reference's base-model text (a User/Assistant transcript ending in
    ``<think>`` for the model to continue) as one user message, as the reference stores it.
    ``template="chat"``: the reference's instruct wording as a system and a user message, for
    trainers that apply the model's own chat template (the reference pre-renders Qwen tokens
    instead, which only fits Qwen models).
    """
    if template == "base":
        text = (
            "A conversation between User and Assistant. The user asks a question, and the Assistant "
            "solves it. The assistant first thinks about the reasoning process in the mind and then "
            "provides the user with the answer.\n"
            f"User: {_countdown_request(numbers, target)}\n"
            "Assistant: Let me solve this step by step.\n<think>"
        )
        return [{"role": "user", "content": text}]
    if template == "chat":
        return [
            {"role": "system", "content": _COUNTDOWN_SYSTEM},
            {"role": "user", "content": _countdown_request(numbers, target)},
        ]
    raise ValueError(f"template = {template!r}; must be one of {COUNTDOWN_TEMPLATES}")


def math_messages(problem: str) -> list[dict]:
    """The MATH / DeepScaleR prompt: the problem, a space, then :data:`MATH_INSTRUCTION`."""
    return [{"role": "user", "content": f"{problem} {MATH_INSTRUCTION}"}]


def geo3k_messages(problem: str, num_images: int, image_placeholders: bool) -> list[dict]:
    """The Geometry3k prompt with :data:`GEO3K_INSTRUCTION`.

    ``image_placeholders=True`` (verl): the text keeps one ``<image>`` marker per image (added
    at the front when the problem has fewer), which verl's dataset replaces by the images.
    ``False`` (TRL): markers are removed, because TRL inserts the images itself before the
    first user message.
    """
    if image_placeholders:
        missing = max(0, num_images - problem.count("<image>"))
        text = "<image>" * missing + problem
    else:
        text = problem.replace("<image>", "").strip()
    return [{"role": "user", "content": f"{text} {GEO3K_INSTRUCTION}"}]
