"""Countdown instances: an exact solver and a fast, seeded generator of solvable instances.

A Countdown instance gives numbers and a target; the answer is an arithmetic expression using
each number exactly once with ``+ - * /`` and parentheses. The public sets the paper trains on,
``Jiayi-Pan/Countdown-Tasks-3to4`` (3 or 4 numbers) and ``Jiayi-Pan/Countdown-Tasks-4``, use
numbers in 1..100 and targets up to 100; :func:`generate_countdown` draws from the same ranges
and builds each instance forwards from a random expression tree, so it is solvable by
construction and carries its reference solution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

VARIANTS = {"3to4": (3, 4), "4": (4,)}

# Operator codes of the vectorised generator: b-a and b/a are the swapped forms, so a left-deep
# chain plus the balanced 4-number tree covers every expression shape up to operand order.
_ADD, _SUB, _RSUB, _MUL, _DIV, _RDIV = range(6)


@dataclass(frozen=True)
class CountdownInstance:
    """One Countdown problem.

    ``numbers``: the given numbers in display order. ``target``: the value to reach.
    ``solution``: one expression (ASCII operators) that uses each number once and equals
    ``target``; ``None`` for instances loaded from elsewhere and not solved.
    """

    numbers: tuple[int, ...]
    target: int
    solution: str | None = None

    def ground_truth(self) -> dict:
        """The reference's ground-truth dict: ``{"target": int, "numbers": [int, ...]}``."""
        return {"target": self.target, "numbers": list(self.numbers)}


def solve_countdown(numbers: Sequence[int], target: int) -> str | None:
    """An expression using every number exactly once that equals ``target``, or ``None``.

    Exhaustive search over rationals (exact :class:`~fractions.Fraction` arithmetic, so solutions
    through non-integer intermediates such as ``(1 + 2 / 4) * 2`` are found), memoised on the
    multiset of remaining values. Meant for up to about 5 numbers.
    """
    goal = Fraction(target)
    seen: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == goal else None
        key = tuple(sorted(value for value, _ in items))
        if key in seen:
            return None
        seen.add(key)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = items[i], items[j]
                rest = [items[k] for k in range(len(items)) if k not in (i, j)]
                candidates = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})"),
                              (a - b, f"({ea} - {eb})"), (b - a, f"({eb} - {ea})")]
                if b != 0:
                    candidates.append((a / b, f"({ea} / {eb})"))
                if a != 0:
                    candidates.append((b / a, f"({eb} / {ea})"))
                for value, expression in candidates:
                    found = search(rest + [(value, expression)])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(n), str(n)) for n in numbers])
    return found[1:-1] if found is not None and found.startswith("(") else found


def _apply(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised integer ``a op b``; returns (value, valid) where valid means integer-exact."""
    safe_b = np.where(b == 0, 1, b)
    safe_a = np.where(a == 0, 1, a)
    value = np.select(
        [codes == _ADD, codes == _SUB, codes == _RSUB, codes == _MUL, codes == _DIV],
        [a + b, a - b, b - a, a * b, a // safe_b],
        default=b // safe_a,
    )
    valid = np.ones(a.shape, dtype=bool)
    valid &= ~((codes == _DIV) & ((b == 0) | (a % safe_b != 0)))
    valid &= ~((codes == _RDIV) & ((a == 0) | (b % safe_a != 0)))
    return value, valid


_SYMBOL = {_ADD: "+", _SUB: "-", _RSUB: "-", _MUL: "*", _DIV: "/", _RDIV: "/"}


def _format(code: int, left: str, right: str) -> str:
    if code in (_RSUB, _RDIV):
        left, right = right, left
    return f"({left} {_SYMBOL[code]} {right})"


def _candidates(rng: np.random.Generator, size: int, count: int, number_range: tuple[int, int]):
    """``count`` random expression trees over ``size`` numbers, evaluated in integers."""
    values = rng.integers(number_range[0], number_range[1] + 1, size=(count, size), dtype=np.int64)
    codes = rng.integers(0, 6, size=(count, size - 1))
    balanced = rng.random(count) < 0.5 if size == 4 else np.zeros(count, dtype=bool)
    chain, valid = values[:, 0], np.ones(count, dtype=bool)
    for position in range(1, size):
        chain, ok = _apply(codes[:, position - 1], chain, values[:, position])
        valid &= ok
    if size == 4:
        left, ok_left = _apply(codes[:, 0], values[:, 0], values[:, 1])
        right, ok_right = _apply(codes[:, 1], values[:, 2], values[:, 3])
        pair, ok_pair = _apply(codes[:, 2], left, right)
        chain = np.where(balanced, pair, chain)
        valid = np.where(balanced, ok_left & ok_right & ok_pair, valid)
    return values, codes, balanced, chain, valid


def _solution(values: Sequence[int], codes: Sequence[int], balanced: bool) -> str:
    text = [str(v) for v in values]
    if balanced:
        expression = _format(codes[2], _format(codes[0], text[0], text[1]), _format(codes[1], text[2], text[3]))
    else:
        expression = text[0]
        for position in range(1, len(text)):
            expression = _format(codes[position - 1], expression, text[position])
    return expression[1:-1]


def generate_countdown(
    num_instances: int,
    seed: int,
    sizes: Sequence[int] = VARIANTS["3to4"],
    number_range: tuple[int, int] = (1, 100),
    target_range: tuple[int, int] = (1, 100),
) -> list[CountdownInstance]:
    """``num_instances`` distinct solvable instances, deterministic in ``seed``.

    ``sizes``: how many numbers an instance may have, drawn uniformly per instance (``(3, 4)`` for
    the 3to4 variant, ``(4,)`` for the 4-number one). ``number_range`` / ``target_range``:
    inclusive bounds. Intermediate results are integers (classic Countdown); the displayed order
    of the numbers is shuffled so it does not reveal the solution. Instances are distinct as
    (sorted numbers, target). Vectorised with numpy: about 100k instances per second.
    """
    if num_instances < 0:
        raise ValueError(f"num_instances = {num_instances}; must be >= 0")
    if not sizes or any(size not in (2, 3, 4) for size in sizes):
        raise ValueError(f"sizes = {tuple(sizes)}; each size must be 2, 3 or 4")
    for name, (low, high) in (("number_range", number_range), ("target_range", target_range)):
        if not 0 <= low <= high:
            raise ValueError(f"{name} = {(low, high)}; need 0 <= low <= high")
    if number_range[1] > 10_000:
        # int64 products of four numbers must not overflow.
        raise ValueError(f"number_range = {number_range}; the upper bound must be <= 10000")
    rng = np.random.default_rng(seed)
    size_of = rng.choice(np.asarray(sizes), size=num_instances)
    by_size: dict[int, list[CountdownInstance]] = {}
    seen: set[tuple[tuple[int, ...], int]] = set()
    for size in sorted(set(size_of.tolist())):
        wanted = int(np.sum(size_of == size))
        found: list[CountdownInstance] = []
        stalled_rounds = 0
        while len(found) < wanted:
            batch = max(1024, 4 * (wanted - len(found)))
            values, codes, balanced, target, valid = _candidates(rng, size, batch, number_range)
            valid &= (target >= target_range[0]) & (target <= target_range[1])
            shown = rng.permuted(values, axis=1)
            before = len(found)
            for row in np.flatnonzero(valid):
                key = (tuple(sorted(shown[row].tolist())), int(target[row]))
                if key in seen:
                    continue
                seen.add(key)
                solution = _solution(values[row].tolist(), codes[row].tolist(), bool(balanced[row]))
                found.append(CountdownInstance(tuple(shown[row].tolist()), int(target[row]), solution))
                if len(found) == wanted:
                    break
            stalled_rounds = stalled_rounds + 1 if len(found) == before else 0
            if stalled_rounds >= 8:
                raise ValueError(
                    f"could not find {wanted} distinct solvable instances with {size} numbers in "
                    f"number_range={number_range}, target_range={target_range}; found {len(found)}"
                )
        by_size[size] = found
    cursors = {size: iter(instances) for size, instances in by_size.items()}
    return [next(cursors[int(size)]) for size in size_of]
