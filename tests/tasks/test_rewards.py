import pickle

import numpy as np
import pytest

from mopps.tasks import (
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
from mopps.tasks.rewards import completion_text

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


def test_compute_score_per_task_says_how_each_verdict_was_reached():
    assert compute_score("countdown", "<answer>8/(3-8/3)</answer>", CD_GT) == {
        "score": 1.0, "acc": 1.0, "formatted": 1.0, "verdict": "exact", "has_verdict": 1.0
    }
    assert compute_score("countdown", "<answer>3*8</answer>", CD_GT)["score"] == 0.1
    half = compute_score("DigitalLearningGmbH/MATH-lighteval", "\\boxed{\\dfrac{1}{2}}", "0.5")
    assert (half["acc"], half["verdict"]) == (1.0, "normalized")
    root = compute_score("math", "\\boxed{\\sqrt{8}}", "2\\sqrt{2}")
    assert (root["acc"], root["verdict"]) == (1.0, "math_verify")
    assert compute_score("geo3k", "<think>t</think>\\boxed{5}", "6") == {
        "score": 0.1, "acc": 0.0, "formatted": 1.0, "verdict": "math_verify", "has_verdict": 1.0
    }


def test_every_task_returns_the_same_keys_as_verl_stacks_them_per_key():
    # verl's reward loop builds one array per key of the first result, across data sources.
    results = [compute_score("countdown", "x", CD_GT), compute_score("math", "x", "1"), compute_score("geo3k", "x", "1")]
    assert {tuple(result) for result in results} == {("score", "acc", "formatted", "verdict", "has_verdict")}


def test_compute_score_takes_the_timeout_policy_and_budget_from_verl_reward_kwargs():
    slow = "\\boxed{(x+1)^{9999}}"
    result = compute_score("math", slow, "(x+1)^{9998}", cpu_budget_s=0.2, timeout_policy="wrong")
    assert (result["score"], result["verdict"], result["has_verdict"]) == (0.0, "timeout", 1.0)
    assert compute_score("math", slow, "(x+1)^{9998}", cpu_budget_s=0.2)["has_verdict"] == 0.0
    with pytest.raises(ValueError, match="timeout_policy"):
        compute_score("countdown", "x", CD_GT, timeout_policy="ignore")


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


class TrlLog:
    """TRL's ``log_extra`` / ``log_metric`` callbacks, recording what they are given."""

    def __init__(self):
        self.extra, self.metrics = {}, {}

    def kwargs(self):
        return {"log_extra": self.extra.__setitem__, "log_metric": self.metrics.__setitem__,
                "trainer_state": object(), "prompts": ["p", "p", "p"], "completion_ids": [[1], [2], [3]]}


def test_trl_callables_log_each_verdict_and_the_share_of_timeouts():
    log = TrlLog()
    completions = ["\\boxed{1/2}", "\\boxed{\\sqrt{8}}", "no box"]
    answers = ["0.5", "2\\sqrt{2}", "1"]
    assert math_reward(completions, answer=answers, **log.kwargs()) == [1.0, 1.0, 0.0]
    assert log.extra == {"math_reward/verdict": ["normalized", "math_verify", "no_answer"]}
    assert log.metrics == {"math_reward/timeout_frac": 0.0}


def test_an_accuracy_callable_returns_none_for_a_completion_without_a_verdict():
    # None is TRL's "no reward": NaN in rewards_per_func, which the MoPPS adapter leaves out of the evidence.
    accuracy = TaskReward("math", "acc", cpu_budget_s=0.2)
    reward = TaskReward("geo3k", "score", cpu_budget_s=0.2)
    wrong = TaskReward("math", "acc", "strict_accuracy", cpu_budget_s=0.2, timeout_policy="wrong")
    slow = "<think>t</think> \\boxed{(x+1)^{9999}}"
    completions, answers = [slow, "\\boxed{\\sqrt{8}}"], ["(x+1)^{9998}", "2\\sqrt{2}"]
    log = TrlLog()
    assert accuracy(completions, answer=answers, **log.kwargs()) == [None, 1.0]
    assert log.metrics == {"math_accuracy/timeout_frac": 0.5}
    assert reward(completions, answer=answers) == [0.1, 1.0]  # the trainer gets the fallback score
    assert wrong(completions, answer=answers) == [0.0, 1.0]
    assert [r["verdict"] for r in accuracy.results(completions, answer=answers)] == ["timeout", "math_verify"]


def test_task_rewards_are_named_picklable_and_checked():
    assert [f.__name__ for f in (countdown_reward, countdown_accuracy, math_reward, math_accuracy, geo3k_reward,
                                 geo3k_accuracy)] == ["countdown_reward", "countdown_accuracy", "math_reward",
                                                      "math_accuracy", "geo3k_reward", "geo3k_accuracy"]
    assert pickle.loads(pickle.dumps(math_accuracy)).__name__ == "math_accuracy"
    with pytest.raises(ValueError, match="task = 'gsm8k'"):
        TaskReward("gsm8k", "score")
    with pytest.raises(ValueError, match="output = 'formatted'"):
        TaskReward("math", "formatted")
    with pytest.raises(ValueError, match="timeout_policy"):
        TaskReward("math", "acc", timeout_policy="none")


def test_answer_alternatives_is_one_answer_or_a_list_never_its_characters_or_keys():
    # A str used to be split into characters: '25' accepted the wrong answer 5.
    assert compute_score("math", r"\boxed{5}", "100", {"answer_alternatives": "25"})["acc"] == 0.0
    assert compute_score("math", r"\boxed{25}", "100", {"answer_alternatives": "25"})["acc"] == 1.0
    assert compute_score("math", r"\boxed{7}", "100", {"answer_alternatives": ("25", "7")})["acc"] == 1.0
    with pytest.raises(ValueError, match="answer_alternatives is a dict"):
        compute_score("math", r"\boxed{5}", "100", {"answer_alternatives": {"5": 1}})
    with pytest.raises(ValueError, match=r"answer_alternatives\[1\]"):
        compute_score("math", r"\boxed{5}", "100", {"answer_alternatives": ["7", 5]})
    assert math_reward([r"\boxed{5}"], answer=["100"], answer_alternatives=["25"]) == [0.0]
    with pytest.raises(ValueError, match="answer_alternatives"):
        math_reward([r"\boxed{5}"], answer=["100"], answer_alternatives=[{"5": 1}])


@pytest.mark.parametrize("budget", [-1, 0, float("nan"), float("inf"), "1", None, True])
def test_cpu_budget_must_be_a_positive_finite_number(budget):
    with pytest.raises(ValueError, match="cpu_budget_s"):
        compute_score("math", r"\boxed{5}", "5", cpu_budget_s=budget)
    with pytest.raises(ValueError, match="cpu_budget_s"):
        TaskReward("math", "acc", cpu_budget_s=budget)
