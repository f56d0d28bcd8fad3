"""Reversed-digit addition: procedurally generated prompts with one exact answer string each.

A prompt is two ``digits``-wide, zero-padded operands written least-significant digit first,
``"a+b="``; the answer is the sum written least-significant digit first without leading zeros,
followed by the end token. Example with ``digits = 4``: 127 + 95 is the prompt ``"7210+5900="`` and
the answer ``"222"`` + EOS (222 reversed is 222). Writing numbers backwards makes the algorithm
local (answer digit i needs operand digits i and the carry from i - 1), so a small transformer can
learn it, a half-trained one knows part of it (no-carry digits) and RL can extend that part to
held-out prompts. Difficulty varies per prompt with operand length and carry chains, which
``features`` exposes to selectors that want side information.

numpy only; token ids are small ints, see ``VOCAB``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS = "0123456789"
PLUS, EQUALS, EOS = 10, 11, 12
VOCAB = list(DIGITS) + ["+", "=", "<eos>"]
VOCAB_SIZE = len(VOCAB)


@dataclass(frozen=True)
class AdditionTask:
    """The task family. ``digits``: width of each operand (operands have 1..digits digits)."""

    digits: int = 5

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

    def sample_operands(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` operand pairs, int64 (count, 2); each operand's digit count is uniform in
        1..digits, then its value uniform among numbers with that many digits (0 counts as 1 digit)."""
        lengths = rng.integers(1, self.digits + 1, size=(count, 2))
        low = np.where(lengths == 1, 0, 10 ** (lengths - 1))
        high = 10**lengths
        return (low + np.floor(rng.random((count, 2)) * (high - low))).astype(np.int64)

    def sample_unique(self, count: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
        """``count`` distinct operand pairs (count, 2), none of them in ``exclude`` (m, 2)."""
        taken = set() if exclude is None else set(map(tuple, exclude.tolist()))
        chosen: list[tuple[int, int]] = []
        seen = set(taken)
        while len(chosen) < count:
            # Oversample in bulk and deduplicate; a handful of rounds at most for sane sizes.
            for pair in map(tuple, self.sample_operands(2 * (count - len(chosen)) + 16, rng).tolist()):
                if pair not in seen:
                    seen.add(pair)
                    chosen.append(pair)
                    if len(chosen) == count:
                        break
        return np.asarray(chosen, dtype=np.int64).reshape(count, 2)

    def reversed_digits(self, values: np.ndarray, width: int) -> np.ndarray:
        """Digits of ``values`` (m,), least significant first, zero-padded: int64 (m, width)."""
        powers = 10 ** np.arange(width, dtype=np.int64)
        return (values[:, None] // powers[None, :]) % 10

    def encode_prompts(self, operands: np.ndarray) -> np.ndarray:
        """Token ids int64 (m, prompt_length) of the prompts for ``operands`` (m, 2)."""
        m = len(operands)
        return np.concatenate(
            [
                self.reversed_digits(operands[:, 0], self.digits),
                np.full((m, 1), PLUS),
                self.reversed_digits(operands[:, 1], self.digits),
                np.full((m, 1), EQUALS),
            ],
            axis=1,
        )

    def encode_answers(self, operands: np.ndarray) -> np.ndarray:
        """The one correct completion per prompt, int64 (m, answer_length): the reversed sum's digits,
        then EOS, then EOS padding (the padding is never scored)."""
        total = operands.sum(axis=1)
        n_digits = answer_digit_count(total)
        digits = self.reversed_digits(total, self.answer_length)
        positions = np.arange(self.answer_length)[None, :]
        return np.where(positions < n_digits[:, None], digits, EOS)

    def answer_mask(self, operands: np.ndarray) -> np.ndarray:
        """bool (m, answer_length): the scored answer tokens (the digits and the first EOS)."""
        n_digits = answer_digit_count(operands.sum(axis=1))
        return np.arange(self.answer_length)[None, :] <= n_digits[:, None]

    def verify(self, operands: np.ndarray, completions: np.ndarray) -> np.ndarray:
        """Binary reward float (m,): 1.0 iff ``completions`` (m, answer_length) starts with the exact
        answer followed by EOS (what comes after the first EOS is ignored)."""
        answers = self.encode_answers(operands)
        mask = self.answer_mask(operands)
        return np.all((completions == answers) | ~mask, axis=1).astype(np.float64)

    def features(self, operands: np.ndarray) -> dict[str, np.ndarray]:
        """Per-prompt side information, each int64 (m,): operand digit counts, answer digit count and
        number of carries (the main source of difficulty)."""
        a_digits = self.reversed_digits(operands[:, 0], self.digits)
        b_digits = self.reversed_digits(operands[:, 1], self.digits)
        carry = np.zeros(len(operands), dtype=np.int64)
        carries = np.zeros(len(operands), dtype=np.int64)
        for position in range(self.digits):  # over digit positions, vectorized over prompts
            carry = (a_digits[:, position] + b_digits[:, position] + carry) >= 10
            carries += carry
            carry = carry.astype(np.int64)
        return {
            "a_digits": answer_digit_count(operands[:, 0]),
            "b_digits": answer_digit_count(operands[:, 1]),
            "answer_digits": answer_digit_count(operands.sum(axis=1)),
            "carries": carries,
        }


def answer_digit_count(values: np.ndarray) -> np.ndarray:
    """Number of decimal digits of each non-negative int (0 has one digit), int64 (m,)."""
    values = np.asarray(values, dtype=np.int64)
    count = np.ones(len(values), dtype=np.int64)
    remaining = values // 10
    while np.any(remaining > 0):
        count += remaining > 0
        remaining //= 10
    return count


def render(tokens: np.ndarray) -> str:
    """Human-readable string of one token sequence (1-D int array)."""
    return "".join(VOCAB[int(token)] for token in tokens)
