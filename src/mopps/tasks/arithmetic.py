"""A safe parser and exact evaluator for the arithmetic that Countdown answers use.

Model output is untrusted: this module never calls ``eval``. It accepts non-negative integer
literals (ASCII digits only), the binary operators ``+ - * /`` and their typographic forms
``− × ÷``, unary ``+``/``-``, and parentheses. There is no power, no factorial, no decimals and
no names, so ``9**9**9`` is a syntax error rather than a hung worker. Every dimension of the work
is bounded: characters, tokens, parenthesis depth, digits per literal and bits per intermediate
numerator/denominator. Parsing is iterative (shunting-yard), so deep nesting cannot exhaust the
Python stack. Arithmetic is exact (:class:`fractions.Fraction`): ``(1 + 2) / 3`` is exactly 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 512
MAX_TOKENS = 128
MAX_DEPTH = 32
MAX_LITERAL_DIGITS = 12
MAX_BITS = 256

_BINARY = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "\u00d7": "*", "/": "/", "\u00f7": "/"}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "pos": 3}
_WHITESPACE = frozenset(" \t\r\n")


class ExpressionError(ValueError):
    """The expression is not valid Countdown arithmetic; the message says why and where."""


@dataclass(frozen=True)
class ParsedExpression:
    """An arithmetic expression in reverse Polish order, ready for exact evaluation.

    ``literals``: the integer literals in the order written (each given number must appear once).
    ``rpn``: tokens in postfix order; ints are literals, strings are operators
    (``+ - * /`` binary, ``neg``/``pos`` unary).
    """

    literals: tuple[int, ...]
    rpn: tuple[int | str, ...]


def _tokenize(text: str) -> list[int | str]:
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"expression has {len(text)} characters; at most {MAX_CHARS}")
    tokens: list[int | str] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in _WHITESPACE:
            position += 1
            continue
        if "0" <= char <= "9":
            end = position
            while end < len(text) and "0" <= text[end] <= "9":
                end += 1
            if end - position > MAX_LITERAL_DIGITS:
                raise ExpressionError(
                    f"literal at {position} has {end - position} digits; at most {MAX_LITERAL_DIGITS}"
                )
            tokens.append(int(text[position:end]))
            position = end
        elif char in _BINARY:
            tokens.append(_BINARY[char])
            position += 1
        elif char in "()":
            tokens.append(char)
            position += 1
        else:
            raise ExpressionError(f"character {char!r} at {position} is not allowed")
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"expression has more than {MAX_TOKENS} tokens")
    if not tokens:
        raise ExpressionError("expression is empty")
    return tokens


def parse_expression(text: str) -> ParsedExpression:
    """Parse ``text`` into postfix form; raises :class:`ExpressionError` on anything else.

    Binary operators are left-associative with the usual precedence; unary signs bind tightest.
    """
    tokens = _tokenize(text)
    output: list[int | str] = []
    operators: list[str] = []
    literals: list[int] = []
    depth = 0
    expect_operand = True
    for index, token in enumerate(tokens):
        if isinstance(token, int):
            if not expect_operand:
                raise ExpressionError(f"token {index}: number {token} follows an operand")
            output.append(token)
            literals.append(token)
            expect_operand = False
        elif token == "(":
            if not expect_operand:
                raise ExpressionError(f"token {index}: '(' follows an operand")
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionError(f"parentheses nest deeper than {MAX_DEPTH}")
            operators.append(token)
        elif token == ")":
            if expect_operand:
                raise ExpressionError(f"token {index}: ')' where an operand is expected")
            while operators and operators[-1] != "(":
                output.append(operators.pop())
            if not operators:
                raise ExpressionError(f"token {index}: unbalanced ')'")
            operators.pop()
            depth -= 1
        elif expect_operand:
            if token not in "+-":
                raise ExpressionError(f"token {index}: operator {token!r} where an operand is expected")
            unary = "neg" if token == "-" else "pos"
            if sum(1 for op in operators if op in ("neg", "pos")) >= MAX_DEPTH:
                raise ExpressionError(f"more than {MAX_DEPTH} unary signs in a row")
            operators.append(unary)
        else:
            while (
                operators
                and operators[-1] != "("
                and _PRECEDENCE[operators[-1]] >= _PRECEDENCE[token]
            ):
                output.append(operators.pop())
            operators.append(token)
            expect_operand = True
    if expect_operand:
        raise ExpressionError("expression ends where an operand is expected")
    while operators:
        operator = operators.pop()
        if operator == "(":
            raise ExpressionError("unbalanced '('")
        output.append(operator)
    return ParsedExpression(literals=tuple(literals), rpn=tuple(output))


def _check_size(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise ExpressionError(f"an intermediate value exceeds {MAX_BITS} bits")
    return value


def evaluate(expression: ParsedExpression) -> Fraction:
    """Evaluate exactly; raises :class:`ExpressionError` on division by zero or overflow."""
    stack: list[Fraction] = []
    for token in expression.rpn:
        if isinstance(token, int):
            stack.append(Fraction(token))
        elif token == "neg":
            stack.append(-stack.pop())
        elif token == "pos":
            continue
        else:
            right = stack.pop()
            left = stack.pop()
            if token == "+":
                result = left + right
            elif token == "-":
                result = left - right
            elif token == "*":
                result = left * right
            elif right == 0:
                raise ExpressionError("division by zero")
            else:
                result = left / right
            stack.append(_check_size(result))
    return stack[0]
