import numpy as np
import pytest

from mopps.tasks import (
    compute_score,
    countdown_accuracy,
    countdown_reward,
    geo3k_accuracy,
    geo3k_reward,
    math_accuracy,
    math_reward,
    task_of,
)
from mopps.tasks.rewards import completion_text

pytestmark = pytest.mark.usefixtures("warm_math_verify")
CD_GT = {"target": 24, "numbers": [3, 3, 8, 8]}


@pytest.mark.parametrize(
    "source, task",
    [("countdown", "countdown"), ("Jiayi-Pan/Countdown-Tasks-3to4", "countdown"), ("Jiayi-Pan/Countdown-Tasks-4", "countdown"),
     ("math", "math"), ("DigitalLearningGmbH/MATH-lighteval", "math"), ("lighteval/MATH", "math"),
     ("deepscaler", "math"), ("deepscaler/aime24", "math"), ("", "math"), ("geo3k", "geo3k"), ("hiyouga/geometry3k", "geo3k")],
)
def test_dispatch_accepts_our_names_and_the_original_dataset_names(source, task):
    assert task_of(source) == task


def test_unknown_data_source_is_named_in_the_error():
    with pytest.raises(ValueError, match="openai/gsm8k"):
        compute_score("openai/gsm8k", "\\boxed{1}", "1")


def test_compute_score_per_task():
    assert compute_score("countdown", "<answer>8/(3-8/3)</answer>", CD_GT) == {"score": 1.0, "acc": 1.0, "formatted": 1.0}
    assert compute_score("countdown", "<answer>3*8</answer>", CD_GT)["score"] == 0.1
    assert compute_score("DigitalLearningGmbH/MATH-lighteval", "\\boxed{\\dfrac{1}{2}}", "0.5")["acc"] == 1.0
    assert compute_score("geo3k", "<think>t</think>\\boxed{5}", "6") == {"score": 0.1, "acc": 0.0, "formatted": 1.0}


def test_compute_score_reads_answer_alternatives_from_extra_info():
    extra = {"split": "test", "index": 3, "answer_alternatives": np.array(["6630"], dtype=object)}
    assert compute_score("deepscaler/minerva", "\\boxed{6630}", "6630.65", extra)["acc"] == 1.0
    assert compute_score("deepscaler/minerva", "\\boxed{6630}", "6630.65", {"index": 3})["acc"] == 0.0


def test_completion_text_reads_strings_and_conversations():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) == "ab"
    assert completion_text(None) == ""
    assert completion_text([]) == ""


def test_trl_countdown_callables_with_both_completion_forms():
    completions = ["<answer>8/(3-8/3)</answer>", [{"role": "assistant", "content": "<answer>3*8</answer>"}], "nothing"]
    columns = {"target": [24, 24, 24], "numbers": [[3, 3, 8, 8]] * 3, "prompt_id": ["a", "b", "c"]}
    assert countdown_reward(completions, **columns) == [1.0, 0.1, 0.0]
    assert countdown_accuracy(completions, **columns) == [1.0, 0.0, 0.0]
    assert countdown_reward(completions[:1], target=[24], nums=[[3, 3, 8, 8]]) == [1.0]
    assert countdown_reward(completions[:1], ground_truth=[CD_GT]) == [1.0]


def test_trl_math_and_geo3k_callables():
    completions = [[{"role": "assistant", "content": "\\boxed{1/2}"}], "\\boxed{3}"]
    assert math_reward(completions, answer=["\\frac{1}{2}", "4"]) == [1.0, 0.0]
    assert math_accuracy(completions, answer=["\\frac{1}{2}", "4"]) == [1.0, 0.0]
    assert math_reward(["\\boxed{6630}"], answer=["6630.65"], answer_alternatives=[["6630"]]) == [1.0]
    geo = ["<think>x</think>\\boxed{60}", "<think>x</think>\\boxed{50}"]
    assert geo3k_reward(geo, answer=["60", "60"]) == [1.0, 0.1]
    assert geo3k_accuracy(geo, answer=["60", "60"]) == [1.0, 0.0]


def test_trl_callables_name_missing_or_misaligned_columns():
    with pytest.raises(ValueError, match="target"):
        countdown_reward(["x"], prompt=["p"])
    with pytest.raises(ValueError, match="answer"):
        math_reward(["x"], prompt=["p"])
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        math_reward(["x"], answer=["1", "2"])


def test_compute_score_accepts_verl_reward_model_kwargs():
    result = compute_score("math", "\\boxed{2}", "2", {"index": 0}, reward_router_address=None, reward_model_tokenizer=None)
    assert result["acc"] == 1.0


def test_concurrent_grading_from_a_thread_pool_like_verl_reward_loop():
    # verl 0.9's reward loop calls compute_score through run_in_executor (a thread pool).
    from concurrent.futures import ThreadPoolExecutor

    cases = [("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", 1.0), ("p - q", "-q + p", 1.0), ("(1, 2]", "(1,2)", 0.0)] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda c: compute_score("math", f"\\boxed{{{c[0]}}}", c[1])["acc"], cases))
    assert results == [expected for _, _, expected in cases]
