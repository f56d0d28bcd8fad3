"""Tasks for the testbed: procedurally generated prompts, each with exactly one correct completion.

The bench needs from a task only what makes a prompt's success rate *exact* (``Task`` below):
fixed-length token prompts, one correct answer string per prompt, and a verifier that accepts exactly
that string. Then a prompt's success probability at temperature 1 is the product of the answer
tokens' teacher-forced probabilities (``mopps.testbed.policy.exact_success_rate``), whatever the task.

Two built-in families with different sources of difficulty:

- ``AdditionTask`` (``addition``): reversed-digit addition. Difficulty is *local and sequential*:
  answer digit i needs operand digits i and the carry from i - 1, so carry chains make a prompt hard.
- ``SortTask`` (``sort``): sort a list of digits. Difficulty is *global*: every answer token needs a
  comparison against the whole list (which value comes next, how many copies are left), so long lists
  and repeated values make a prompt hard. There are no carries and no position-local rule.

A task's problems are an int64 array (m, w) in the task's own encoding (operand pairs, padded lists);
``sample_unique`` draws distinct prompts for any task. numpy only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Task(Protocol):
    """What the bench needs from a task (implement it, or subclass ``ExactAnswerTask``).

    ``vocab``: the token strings, ids 0..len(vocab) - 1; ``eos``: the end token's id;
    ``prompt_length`` / ``answer_length``: tokens per prompt and per completion (the longest answer
    including its end token). The task's ``repr`` must name its parameters (a dataclass does this): it
    keys the warm-start cache. ``features(problems)`` is optional: ``{name: float or int array (m,)}``
    of per-prompt side information (see ``task_features``).
    """

    vocab: tuple[str, ...]
    eos: int
    prompt_length: int
    answer_length: int

    def sample_problems(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` problems, int64 (count, w), drawn with ``rng`` (duplicates allowed)."""

    def encode_prompts(self, problems: np.ndarray) -> np.ndarray:
        """Token ids int64 (m, prompt_length)."""

    def encode_answers(self, problems: np.ndarray) -> np.ndarray:
        """The one correct completion per problem, int64 (m, answer_length): answer tokens, ``eos``,
        then ``eos`` padding (never scored)."""

    def answer_mask(self, problems: np.ndarray) -> np.ndarray:
        """bool (m, answer_length): the scored tokens, the answer and its first ``eos``."""

    def verify(self, problems: np.ndarray, completions: np.ndarray) -> np.ndarray:
        """Reward float (m,): 1.0 iff ``completions`` int64 (m, answer_length) is the answer up to and
        including its first ``eos``, else 0.0."""


class ExactAnswerTask:
    """Mixin for a ``Task``: the answer mask and the verifier follow from ``encode_answers``."""

    def answer_mask(self, problems: np.ndarray) -> np.ndarray:
        """bool (m, answer_length): True up to and including the first ``eos`` of the answer."""
        is_eos = self.encode_answers(problems) == self.eos
        return (np.cumsum(is_eos, axis=1) - is_eos) == 0

    def verify(self, problems: np.ndarray, completions: np.ndarray) -> np.ndarray:
        """1.0 iff ``completions`` (m, answer_length) equals the answer on every scored token (what
        comes after the first ``eos`` is ignored), else 0.0; float64 (m,)."""
        answers = self.encode_answers(problems)
        return np.all((completions == answers) | ~self.answer_mask(problems), axis=1).astype(np.float64)


def task_features(task: Task, problems: np.ndarray) -> dict[str, np.ndarray]:
    """The task's per-prompt features for ``problems``, or ``{}`` if the task defines none."""
    features = getattr(task, "features", None)
    return {} if features is None else features(problems)


def sample_unique(task: Task, count: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """``count`` problems (count, w) with distinct prompts, none of whose prompts is a prompt of
    ``exclude`` (problems (m, w)). Oversamples in bulk and keeps first occurrences."""
    seen = set() if exclude is None else {row.tobytes() for row in task.encode_prompts(exclude)}
    chosen: list[np.ndarray] = []
    for _ in range(1000):  # a handful of rounds for sane sizes; the cap turns an impossible ask into an error
        problems = task.sample_problems(2 * (count - len(chosen)) + 16, rng)
        for problem, prompt in zip(problems, task.encode_prompts(problems)):
            key = prompt.tobytes()
            if key not in seen:
                seen.add(key)
                chosen.append(problem)
                if len(chosen) == count:
                    return np.stack(chosen).astype(np.int64)
    raise ValueError(f"count = {count}; {task!r} has too few distinct prompts outside exclude")


def task_key(task: Task) -> str:
    """A stable text naming the task's class and parameters (the warm-start cache keys on it)."""
    text = f"{type(task).__module__}.{type(task).__qualname__}:{task!r}"
    if " at 0x" in text:
        raise ValueError(f"task = {task!r}; its repr is not stable across runs: make the task a dataclass "
                         "or give it a __repr__ that names its parameters")
    return text


# ---------------------------------------------------------------------------------------------------
# Reversed-digit addition

DIGITS = "0123456789"
PLUS, EQUALS, EOS = 10, 11, 12
VOCAB = tuple(DIGITS) + ("+", "=", "<eos>")
VOCAB_SIZE = len(VOCAB)


@dataclass(frozen=True)
class AdditionTask(ExactAnswerTask):
    """Reversed-digit addition. ``digits``: width of each operand (operands have 1..digits digits).

    A prompt is two ``digits``-wide, zero-padded operands written least-significant digit first,
    ``"a+b="``; the answer is the sum written least-significant digit first without leading zeros,
    then the end token. Example with ``digits = 4``: 127 + 95 is the prompt ``"7210+5900="`` and the
    answer ``"222"`` + EOS. Writing numbers backwards makes the algorithm local, so a small transformer
    can learn it, a half-trained one knows part of it (no-carry digits) and RL can extend that part to
    held-out prompts. Problems are operand pairs, int64 (m, 2).
    """

    digits: int = 5
    vocab = VOCAB
    eos = EOS

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= 9:
            raise ValueError(f"digits = {self.digits}; digits must be in 1..9")

    @property
    def prompt_length(self) -> int:
        """Tokens per prompt: two operands, '+' and '='."""
        return 2 * self.digits + 2

    @property
    def answer_length(self) -> int:
        """Longest answer in tokens including EOS: the sum has at most digits + 1 digits."""
        return self.digits + 2

    def sample_problems(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` operand pairs, int64 (count, 2); each operand's digit count is uniform in
        1..digits, then its value uniform among numbers with that many digits (0 counts as 1 digit)."""
        lengths = rng.integers(1, self.digits + 1, size=(count, 2))
        low = np.where(lengths == 1, 0, 10 ** (lengths - 1))
        high = 10**lengths
        return (low + np.floor(rng.random((count, 2)) * (high - low))).astype(np.int64)

    def encode_prompts(self, problems: np.ndarray) -> np.ndarray:
        """Token ids int64 (m, prompt_length) of the prompts for operand pairs ``problems`` (m, 2)."""
        m = len(problems)
        return np.concatenate(
            [
                reversed_digits(problems[:, 0], self.digits),
                np.full((m, 1), PLUS),
                reversed_digits(problems[:, 1], self.digits),
                np.full((m, 1), EQUALS),
            ],
            axis=1,
        )

    def encode_answers(self, problems: np.ndarray) -> np.ndarray:
        """The reversed sum's digits, then EOS, then EOS padding: int64 (m, answer_length)."""
        total = problems.sum(axis=1)
        n_digits = answer_digit_count(total)
        digits = reversed_digits(total, self.answer_length)
        positions = np.arange(self.answer_length)[None, :]
        return np.where(positions < n_digits[:, None], digits, EOS)

    def features(self, problems: np.ndarray) -> dict[str, np.ndarray]:
        """Per-prompt side information, each int64 (m,): operand digit counts, answer digit count and
        number of carries (the main source of difficulty)."""
        a_digits = reversed_digits(problems[:, 0], self.digits)
        b_digits = reversed_digits(problems[:, 1], self.digits)
        carry = np.zeros(len(problems), dtype=np.int64)
        carries = np.zeros(len(problems), dtype=np.int64)
        for position in range(self.digits):  # over digit positions, vectorized over prompts
            carry = (a_digits[:, position] + b_digits[:, position] + carry) >= 10
            carries += carry
            carry = carry.astype(np.int64)
        return {
            "a_digits": answer_digit_count(problems[:, 0]),
            "b_digits": answer_digit_count(problems[:, 1]),
            "answer_digits": answer_digit_count(problems.sum(axis=1)),
            "carries": carries,
        }


def reversed_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Digits of ``values`` (m,), least significant first, zero-padded: int64 (m, width)."""
    powers = 10 ** np.arange(width, dtype=np.int64)
    return (values[:, None] // powers[None, :]) % 10


def answer_digit_count(values: np.ndarray) -> np.ndarray:
    """Number of decimal digits of each non-negative int (0 has one digit), int64 (m,)."""
    values = np.asarray(values, dtype=np.int64)
    count = np.ones(len(values), dtype=np.int64)
    remaining = values // 10
    while np.any(remaining > 0):
        count += remaining > 0
        remaining //= 10
    return count


# ---------------------------------------------------------------------------------------------------
# Sorting a list of digits

SORT_PAD, SORT_EQUALS, SORT_EOS = 10, 11, 12
SORT_VOCAB = tuple(DIGITS) + ("_", "=", "<eos>")


@dataclass(frozen=True)
class SortTask(ExactAnswerTask):
    """Sort a list of ``min_length..max_length`` digits ascending. Example: the prompt ``"__3171="``
    (``max_length = 6``, left-padded with ``_``) has the answer ``"1137"`` + EOS.

    The list length is uniform in ``min_length..max_length`` and every digit uniform in 0..9, so a
    list may repeat values. Lists shorter than 4 are off by default: there are only 10**k of them, so
    a large pool of distinct prompts would exhaust them and skew its lengths. Problems are the lists
    left-padded with -1, int64 (m, max_length).
    """

    max_length: int = 8
    min_length: int = 4
    vocab = SORT_VOCAB
    eos = SORT_EOS

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length <= 16:
            raise ValueError(f"min_length = {self.min_length}, max_length = {self.max_length}; "
                             "they must satisfy 1 <= min_length <= max_length <= 16")

    @property
    def prompt_length(self) -> int:
        """Tokens per prompt: the padded list and '='."""
        return self.max_length + 1

    @property
    def answer_length(self) -> int:
        """The sorted list and EOS."""
        return self.max_length + 1

    def sample_problems(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` lists, int64 (count, max_length), left-padded with -1."""
        lengths = rng.integers(self.min_length, self.max_length + 1, size=count)
        values = rng.integers(0, 10, size=(count, self.max_length))
        present = np.arange(self.max_length)[None, :] >= (self.max_length - lengths)[:, None]
        return np.where(present, values, -1).astype(np.int64)

    def encode_prompts(self, problems: np.ndarray) -> np.ndarray:
        """Token ids int64 (m, prompt_length): the list with ``_`` for padding, then '='."""
        listed = np.where(problems < 0, SORT_PAD, problems)
        return np.concatenate([listed, np.full((len(problems), 1), SORT_EQUALS)], axis=1)

    def encode_answers(self, problems: np.ndarray) -> np.ndarray:
        """The sorted digits, then EOS, then EOS padding: int64 (m, answer_length)."""
        # Padding sorts last as 10 and reads as EOS; the extra column is the EOS after a full list.
        padded = np.where(problems < 0, SORT_EOS, problems)
        ordered = np.sort(padded, axis=1)
        return np.concatenate([ordered, np.full((len(problems), 1), SORT_EOS)], axis=1)

    def features(self, problems: np.ndarray) -> dict[str, np.ndarray]:
        """Per-prompt side information, each int64 (m,): list length, distinct values, the largest
        count of one value (repeats), and inversions (pairs out of order: how unsorted the list is)."""
        present = problems >= 0
        counts = np.stack([(problems == value).sum(axis=1) for value in range(10)], axis=1)
        before = problems[:, :, None]
        after = problems[:, None, :]
        upper = np.triu(np.ones((self.max_length, self.max_length), dtype=bool), k=1)[None]
        valid = present[:, :, None] & present[:, None, :] & upper
        return {
            "length": present.sum(axis=1),
            "distinct": (counts > 0).sum(axis=1),
            "max_repeat": counts.max(axis=1),
            "inversions": (valid & (before > after)).sum(axis=(1, 2)),
        }


# ---------------------------------------------------------------------------------------------------
# Naming tasks on the command line

BUILTIN_TASKS = {"addition": AdditionTask, "sort": SortTask}


def load_task(spec: str) -> Task:
    """The task named ``spec``: a built-in name (``addition``, ``sort``) with its default parameters,
    or ``"package.module:ClassName"``, a class importable from the current environment whose no-argument
    construction gives a ``Task``."""
    if spec in BUILTIN_TASKS:
        return BUILTIN_TASKS[spec]()
    if ":" not in spec:
        raise ValueError(f"task = {spec!r}; use a built-in ({', '.join(BUILTIN_TASKS)}) or module:Class")
    module_name, _, class_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"task = {spec!r}; cannot import it: {error}") from None
    task = factory()
    missing = [name for name in ("vocab", "eos", "prompt_length", "answer_length", "sample_problems",
                                 "encode_prompts", "encode_answers", "answer_mask", "verify")
               if not hasattr(task, name)]
    if missing:
        raise ValueError(f"task = {spec!r}; {class_name}() lacks {', '.join(missing)} of the Task protocol")
    return task


def render(tokens: np.ndarray, vocab: tuple[str, ...] = VOCAB) -> str:
    """Human-readable string of one token sequence (1-D int array)."""
    return "".join(vocab[int(token)] for token in tokens)
