import numpy as np
import pytest

from mopps.tasks.countdown import CountdownInstance, generate_countdown, solve_countdown
from mopps.tasks.countdown_reward import check_equation, countdown_ground_truth, score_countdown
from mopps.tasks.prompts import countdown_messages

GT = {"target": 24, "numbers": [3, 3, 8, 8]}


def test_generator_is_deterministic_and_seed_sensitive():
    first = generate_countdown(500, seed=7)
    assert first == generate_countdown(500, seed=7)
    assert first != generate_countdown(500, seed=8)


def test_generated_instances_are_distinct_in_range_and_solved_by_solver_and_verifier():
    instances = generate_countdown(400, seed=1)
    assert len(instances) == 400
    assert {len(i.numbers) for i in instances} == {3, 4}
    assert len({(tuple(sorted(i.numbers)), i.target) for i in instances}) == 400
    for instance in instances:
        assert all(1 <= n <= 100 for n in instance.numbers)
        assert 1 <= instance.target <= 100
        assert check_equation(instance.solution, instance.target, instance.numbers)
        assert solve_countdown(instance.numbers, instance.target) is not None
        response = f"<think>...</think><answer>{instance.solution}</answer>"
        assert score_countdown(response, instance.ground_truth()) == {
            "score": 1.0, "acc": 1.0, "formatted": 1.0, "verdict": "exact", "has_verdict": 1.0
        }


def test_four_number_variant_and_custom_ranges():
    instances = generate_countdown(200, seed=3, sizes=(4,), number_range=(1, 10), target_range=(50, 60))
    assert all(len(i.numbers) == 4 and all(1 <= n <= 10 for n in i.numbers) for i in instances)
    assert all(50 <= i.target <= 60 for i in instances)


def test_generator_rejects_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="sizes"):
        generate_countdown(5, seed=0, sizes=(7,))
    with pytest.raises(ValueError, match="target_range"):
        generate_countdown(5, seed=0, target_range=(10, 1))
    with pytest.raises(ValueError, match="num_instances"):
        generate_countdown(-1, seed=0)


def test_generator_reports_impossible_requests():
    with pytest.raises(ValueError, match="distinct solvable"):
        generate_countdown(50, seed=0, sizes=(2,), number_range=(1, 2), target_range=(1, 4))


def test_solver_finds_rational_intermediates_and_proves_unsolvable():
    solution = solve_countdown([3, 3, 8, 8], 24)
    assert solution is not None and check_equation(solution, 24, [3, 3, 8, 8])
    assert solve_countdown([1, 1, 1], 100) is None


@pytest.mark.parametrize(
    "response, score, acc",
    [
        ("<answer>8 / (3 - 8 / 3)</answer>", 1.0, 1.0),
        ("<think>x</think>\n<answer> 8 \u00f7 (3 \u2212 8 \u00f7 3) </answer>", 1.0, 1.0),
        ("<answer>1 + 2</answer> then <answer>8 / (3 - 8 / 3)</answer>", 1.0, 1.0),
        ("<answer>8 / (3 - 8 / 3)</answer> then <answer>1 + 2</answer>", 0.1, 0.0),
        ("<answer>3 * 8</answer>", 0.1, 0.0),
        ("<answer>3 * 8 + 3 - 3 + 8 - 8</answer>", 0.1, 0.0),
        ("<answer>(8 / (3 - 8 / 3)) = 24</answer>", 0.1, 0.0),
        ("<answer></answer>", 0.1, 0.0),
        ("<answer>3 * 8 / (8 - 8) + 3</answer>", 0.1, 0.0),
        ("no tags at all: 8 / (3 - 8 / 3)", 0.0, 0.0),
        ("<answer>8 / (3 - 8 / 3)", 0.0, 0.0),
    ],
)
def test_score_shape_matches_reference(response, score, acc):
    result = score_countdown(response, GT)
    assert (result["score"], result["acc"]) == (score, acc)
    # Exact arithmetic always reaches a verdict; only a missing tag pair is "no_answer".
    assert result["verdict"] == ("no_answer" if result["formatted"] == 0.0 else "exact")
    assert result["has_verdict"] == 1.0


def test_ground_truth_from_parquet_numpy_arrays_is_accepted():
    gt = {"target": np.int64(24), "numbers": np.array([3, 3, 8, 8])}
    assert countdown_ground_truth(gt) == (24, (3, 3, 8, 8))
    assert score_countdown("<answer>8/(3-8/3)</answer>", gt)["acc"] == 1.0


@pytest.mark.parametrize(
    "bad, field",
    [({"target": 3}, "numbers"), ({"numbers": [1]}, "target"), ({"target": 1.5, "numbers": [1]}, "ints"),
     ({"target": 1, "numbers": "12"}, "numbers"), ([1, 2], "mapping")],
)
def test_bad_ground_truth_raises_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        score_countdown("<answer>1</answer>", bad)


def test_instance_ground_truth_and_prompts():
    instance = CountdownInstance((1, 2, 3), 6, "1 + 2 + 3")
    assert instance.ground_truth() == {"target": 6, "numbers": [1, 2, 3]}
    base = countdown_messages(instance.numbers, instance.target, "base")
    assert base[0]["role"] == "user" and "Using the numbers [1, 2, 3], create an equation that equals 6" in base[0]["content"]
    assert base[0]["content"].endswith("Assistant: Let me solve this step by step.\n<think>")
    chat = countdown_messages(instance.numbers, instance.target, "chat")
    assert [m["role"] for m in chat] == ["system", "user"]
    with pytest.raises(ValueError, match="template"):
        countdown_messages([1], 1, "qwen")
