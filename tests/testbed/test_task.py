"""The addition task: encoding, the unique answer, the verifier and the features."""

import numpy as np
import pytest

from mopps.testbed.task import EOS, AdditionTask, render


def test_prompt_and_answer_are_reversed_digits():
    task = AdditionTask(4)
    operands = np.array([[127, 95]])
    assert render(task.encode_prompts(operands)[0]) == "7210+5900="
    answer = task.encode_answers(operands)[0]
    assert render(answer[:4]) == "222<eos>"
    assert task.answer_mask(operands)[0].tolist() == [True, True, True, True, False, False]


def test_verifier_accepts_exactly_the_answer_and_ignores_tokens_after_eos():
    task = AdditionTask(3)
    operands = np.array([[999, 1], [5, 5]])
    answers = task.encode_answers(operands)
    assert task.verify(operands, answers).tolist() == [1.0, 1.0]
    after_eos = answers.copy()
    after_eos[1, 3:] = 7  # "01" + EOS, then junk: still correct
    assert task.verify(operands, after_eos).tolist() == [1.0, 1.0]
    no_eos = answers.copy()
    no_eos[1, 2] = 3  # "013..." instead of "01" + EOS
    wrong_digit = answers.copy()
    wrong_digit[0, 0] = 1
    assert task.verify(operands, no_eos)[1] == 0.0
    assert task.verify(operands, wrong_digit)[0] == 0.0
    assert answers[0].tolist()[:5] == [0, 0, 0, 1, EOS]


def test_features_count_carries():
    task = AdditionTask(4)
    features = task.features(np.array([[999, 1], [123, 456], [5, 5]]))
    assert features["carries"].tolist() == [3, 0, 1]
    assert features["answer_digits"].tolist() == [4, 3, 2]
    assert features["a_digits"].tolist() == [3, 3, 1]


def test_sampling_is_unique_disjoint_and_in_range():
    task = AdditionTask(3)
    rng = np.random.default_rng(0)
    train = task.sample_unique(300, rng)
    test = task.sample_unique(200, rng, exclude=train)
    pairs = set(map(tuple, train.tolist()))
    assert len(pairs) == 300
    assert not pairs & set(map(tuple, test.tolist()))
    assert train.min() >= 0 and train.max() < 1000


def test_digits_out_of_range_is_rejected_by_name():
    with pytest.raises(ValueError, match="digits"):
        AdditionTask(0)
