from fractions import Fraction

import pytest

from mopps.tasks.arithmetic import MAX_CHARS, MAX_DEPTH, ExpressionError, evaluate, parse_expression


def value(text):
    return evaluate(parse_expression(text))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("8 / 3 - 2", Fraction(2, 3)),
        ("10 - 4 - 3", 3),
        ("64 / 4 / 2", 8),
        ("-3 + 5", 2),
        ("2 * -3", -6),
        ("--4", 4),
        ("7 \u2212 2 \u00d7 3 \u00f7 6", 6),
        ("((((5))))", 5),
        (" 12\n+\t3 ", 15),
    ],
)
def test_evaluates_exactly_with_usual_precedence(text, expected):
    assert value(text) == Fraction(expected)


def test_literals_are_recorded_in_written_order():
    assert parse_expression("(44 - 19) * 3 + 44").literals == (44, 19, 3, 44)


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "9**9", "2^3", "3!", "1.5 + 2", "1e3", "nan", "inf", "abs(3)", "1 + ", "(1 + 2",
        "1 + 2)", "()", "1 2", "* 3", "3 (4)", "\u0663 + 1", "\uff13 + 1", "2\u00b2", "1 \u2013 2",
        "1 = 1", "1_000", "0x10", "1" * 13,
    ],
)
def test_rejects_everything_outside_the_grammar(text):
    with pytest.raises(ExpressionError):
        value(text)


def test_division_by_zero_is_an_expression_error():
    with pytest.raises(ExpressionError, match="division by zero"):
        value("5 / (3 - 3)")


def test_bounds_length_depth_and_magnitude():
    with pytest.raises(ExpressionError, match="characters"):
        parse_expression("1" + " " * MAX_CHARS)
    with pytest.raises(ExpressionError, match="nest deeper"):
        parse_expression("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="unary"):
        parse_expression("-" * (MAX_DEPTH + 1) + "1")
    huge = " * ".join(["999999999999"] * 30)
    with pytest.raises(ExpressionError, match="bits"):
        value(huge)
