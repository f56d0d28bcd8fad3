"""The task protocol and the two built-in tasks: encoding, the unique answer, the verifier, features,
distinct sampling, loading a task by name, and the key that names a task in the warm-start cache."""

from dataclasses import dataclass

import numpy as np
import pytest

from mopps.testbed.task import (EOS, SORT_EOS, SORT_VOCAB, AdditionTask, ExactAnswerTask, SortTask, Task, load_task,
                                render, sample_unique, task_features, task_key)


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


def test_sort_prompt_answer_and_verifier():
    task = SortTask(max_length=6, min_length=1)
    problems = np.array([[-1, -1, 3, 1, 7, 1], [9, 9, 0, 5, 5, 2]])
    assert render(task.encode_prompts(problems)[0], SORT_VOCAB) == "__3171="
    answers = task.encode_answers(problems)
    assert render(answers[0], SORT_VOCAB) == "1137<eos><eos><eos>"
    assert render(answers[1], SORT_VOCAB) == "025599<eos>"
    assert task.answer_mask(problems).sum(axis=1).tolist() == [5, 7]
    assert task.verify(problems, answers).tolist() == [1.0, 1.0]
    swapped = answers.copy()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]  # "1317": a permutation, not sorted
    early_end = answers.copy()
    early_end[1, 5] = SORT_EOS  # drops the last 9
    assert task.verify(problems, swapped)[0] == 0.0 and task.verify(problems, early_end)[1] == 0.0


def test_sort_features_measure_length_repeats_and_disorder():
    task = SortTask(max_length=6, min_length=1)
    features = task.features(np.array([[-1, -1, 3, 1, 7, 1], [9, 9, 0, 5, 5, 2], [-1, -1, -1, -1, -1, 4]]))
    assert features["length"].tolist() == [4, 6, 1]
    assert features["distinct"].tolist() == [3, 4, 1]
    assert features["max_repeat"].tolist() == [2, 2, 1]
    # [3,1,7,1]: (3,1) (3,1) (7,1) -> 3; [9,9,0,5,5,2]: 9 and 9 over 4 later each, 5 and 5 over 2 -> 10.
    assert features["inversions"].tolist() == [3, 10, 0]


def test_sort_samples_lengths_in_range_and_digits():
    task = SortTask(max_length=8, min_length=4)
    problems = task.sample_problems(2000, np.random.default_rng(0))
    lengths = (problems >= 0).sum(axis=1)
    assert lengths.min() == 4 and lengths.max() == 8
    # Left-padded: once a list starts, it runs to the end.
    starts = problems.shape[1] - lengths
    assert all((row[:start] == -1).all() and (row[start:] >= 0).all() for row, start in zip(problems, starts))
    assert problems.max() == 9


@pytest.mark.parametrize("task", [AdditionTask(3), SortTask(max_length=5)], ids=repr)
def test_builtins_follow_the_protocol_and_accept_their_answers(task):
    assert isinstance(task, Task)
    problems = task.sample_problems(200, np.random.default_rng(1))
    prompts, answers = task.encode_prompts(problems), task.encode_answers(problems)
    assert prompts.shape == (200, task.prompt_length) and answers.shape == (200, task.answer_length)
    assert prompts.max() < len(task.vocab) and answers.max() < len(task.vocab)
    assert task.verify(problems, answers).tolist() == [1.0] * 200
    assert all(len(values) == 200 for values in task_features(task, problems).values())


@pytest.mark.parametrize("task", [AdditionTask(3), SortTask(max_length=5)], ids=repr)
def test_sampling_is_unique_and_disjoint(task):
    rng = np.random.default_rng(0)
    train = sample_unique(task, 300, rng)
    test = sample_unique(task, 200, rng, exclude=train)
    train_prompts = {row.tobytes() for row in task.encode_prompts(train)}
    assert len(train_prompts) == 300
    assert not train_prompts & {row.tobytes() for row in task.encode_prompts(test)}


def test_sampling_more_prompts_than_exist_is_refused():
    with pytest.raises(ValueError, match="count"):
        sample_unique(AdditionTask(1), 101, np.random.default_rng(0))  # 10 x 10 operand pairs


def test_parameters_out_of_range_are_rejected_by_name():
    with pytest.raises(ValueError, match="digits"):
        AdditionTask(0)
    with pytest.raises(ValueError, match="min_length"):
        SortTask(max_length=3, min_length=4)


@dataclass(frozen=True)
class _EchoTask(ExactAnswerTask):
    """Answer = the prompt's one digit: the smallest task the protocol allows."""

    vocab = tuple("0123456789") + ("<eos>",)
    eos = 10
    prompt_length = 1
    answer_length = 2

    def sample_problems(self, count, rng):
        return rng.integers(0, 10, size=(count, 1))

    def encode_prompts(self, problems):
        return problems

    def encode_answers(self, problems):
        return np.concatenate([problems, np.full((len(problems), 1), self.eos)], axis=1)


class _NoReprTask(ExactAnswerTask):
    """Neither the protocol's attributes nor a repr that names parameters."""


def test_load_task_by_name_and_by_module_path():
    assert load_task("sort") == SortTask()
    assert load_task("addition") == AdditionTask()
    assert load_task("test_task:_EchoTask") == _EchoTask()
    assert task_features(_EchoTask(), np.zeros((3, 1), dtype=np.int64)) == {}
    for bad, message in (("nonsense", "built-in"), ("no_such_module_xyz:Task", "cannot import"),
                         ("test_task:Missing", "cannot import"), ("test_task:_NoReprTask", "lacks")):
        with pytest.raises(ValueError, match=message):
            load_task(bad)


def test_task_key_names_class_and_parameters_and_refuses_unstable_reprs():
    assert task_key(SortTask(max_length=8)) != task_key(SortTask(max_length=9))
    assert task_key(AdditionTask(5)) != task_key(SortTask())
    assert task_key(SortTask()) == task_key(SortTask())
    with pytest.raises(ValueError, match="repr"):
        task_key(_NoReprTask())
