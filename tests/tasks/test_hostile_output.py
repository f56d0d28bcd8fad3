"""Model output is untrusted: every verifier returns a valid result with bounded work and never raises.

Bounded work is measured in CPU seconds (the caller's thread, and the math-verify child's own
account of the request), never in wall time: a loaded machine is slow, not wrong.
"""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mopps.tasks import VERDICTS, compute_score, verdict_counts
from mopps.tasks.extract import last_boxed_answer
from mopps.tasks.math_reward import DEFAULT_CPU_BUDGET_S, grade_answer
from mopps.tasks.math_verify_worker import HARD_LIMIT_MARGIN_S

CALLER_CPU_BOUND_S = 1.0
# The child's kill at the hard limit comes at the next whole CPU second above budget + margin.
CHILD_CPU_BOUND_S = DEFAULT_CPU_BUDGET_S + HARD_LIMIT_MARGIN_S + 1.0
GROUND_TRUTH = {"countdown": {"target": 24, "numbers": [3, 3, 8, 8]}, "math": "7", "geo3k": "7"}
SCORES = {"countdown": {0.0, 0.1, 1.0}, "math": {0.0, 1.0}, "geo3k": {0.0, 0.1, 1.0}}
MEGA = 10**6
DEEP = 10**4

HOSTILE = {
    "power tower": "<answer>9**9**9**9</answer> \\boxed{9^{9^{9^{9}}}}",
    "caret power": "<answer>9^9^9^9</answer> \\boxed{10^{10^{10}}}",
    "negative tower": "\\boxed{10^{-10^{10}}}",
    "factorial of a group": "<answer>(3+3)!</answer> \\boxed{(10^{100})!}",
    "big factorial": "\\boxed{100000000!}",
    "binomial": "\\boxed{\\binom{10^{9}}{5 \\cdot 10^{8}}}",
    "big product": "\\boxed{\\prod_{n=1}^{1000000} n}",
    "megabyte answer": "<answer>" + "1+" * (MEGA // 2) + "1</answer>",
    "megabyte box": "\\boxed{" + "1" * MEGA + "}",
    "megabyte box of operators": "\\boxed{" + "(x+1)^{2}" * (MEGA // 9) + "}",
    "deep parentheses": "<answer>" + "(" * DEEP + "8/(3-8/3)" + ")" * DEEP + "</answer>",
    "deep box": "\\boxed{" + "(" * DEEP + "7" + ")" * DEEP + "}",
    "deep braces": "\\boxed{" + "{" * DEEP + "7" + "}" * DEEP + "}",
    "deep unary": "<answer>" + "-" * DEEP + "24</answer>",
    "arabic-indic digits": "<answer>\u0668/(\u0663-\u0668/\u0663)</answer> \\boxed{\u0667}",
    "fullwidth digits": "<answer>\uff18/(\uff13-\uff18/\uff13)</answer> \\boxed{\uff17}",
    "superscripts": "<answer>3\u00b2 + 8 + 8 - 3</answer> \\boxed{7\u00b2}",
    "look-alike operators": "<answer>8 \u2215 (3 \u2013 8 \u2215 3)</answer> \\boxed{7\u20441}",
    "division by zero": "<answer>3 / (8 - 8) * 3</answer> \\boxed{\\frac{7}{0}}",
    "nan and inf": "<answer>nan</answer> <answer>inf</answer> \\boxed{nan} \\boxed{\\infty}",
    "float literals": "<answer>1e309 * 3 - 3 + 8 - 8</answer> \\boxed{1e999999}",
    "nested tags": "<answer><answer>8/(3-8/3)</answer></answer> \\boxed{\\boxed{\\boxed{7}}}",
    "unclosed tags": "<answer>" * (MEGA // 8) + "\\boxed{" * (MEGA // 7),
    "closing tags only": "</answer>" * (MEGA // 9) + "}" * MEGA,
    "several answers": "<answer>1</answer>" * 1000 + "\\boxed{1}" * 1000,
    "slow sympy": "\\boxed{(x+1)^{9999} - (x-1)^{9999}}",
    "slow sympy sum": "\\boxed{\\sum_{n=1}^{9999} n^{9999}}",
    "null bytes and controls": "<answer>\x00\x1b[31m8/(3-8/3)\x00</answer> \\boxed{\x00}",
    "surrogate-ish": "<answer>\ud800</answer> \\boxed{\udfff}",
    "empty": "",
}


def _checked_scores(response):
    for task in ("countdown", "math", "geo3k"):
        timeouts_before = verdict_counts()["timeout"]
        cut_off_before = _cut_off_count()
        start = time.thread_time()
        result = compute_score(task, response, GROUND_TRUTH[task])
        caller_cpu_s = time.thread_time() - start
        assert caller_cpu_s < CALLER_CPU_BOUND_S, f"{task} used {caller_cpu_s:.2f} CPU s in the caller"
        assert result["score"] in SCORES[task] and result["acc"] in (0.0, 1.0)
        assert result["verdict"] in VERDICTS
        if result["verdict"] == "timeout":
            # No verdict only because the answer used up its CPU budget: never a lost or missing child.
            assert verdict_counts()["timeout"] == timeouts_before + 1
            assert _cut_off_count() == cut_off_before + 1
            assert result["has_verdict"] == 0.0 and result["acc"] == 0.0
        yield task, result


def _cut_off_count():
    counts = verdict_counts()
    return counts.get("timeout:cpu_budget", 0) + counts.get("timeout:cpu_limit", 0)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_output_is_graded_with_bounded_work_and_never_raises(name):
    dict(_checked_scores(HOSTILE[name]))


@pytest.mark.parametrize("name", ["slow sympy", "slow sympy sum"])
def test_hostile_answers_past_the_screen_are_cut_off_at_their_cpu_budget(name):
    grade = grade_answer(last_boxed_answer(HOSTILE[name]), "7")
    assert (grade.correct, grade.verdict, grade.cause) == (None, "timeout", "cpu_budget")
    # Lower bound 0.8: the profiling timer samples CPU per scheduler tick, the reported CPU is exact.
    assert 0.8 * DEFAULT_CPU_BUDGET_S <= grade.cpu_s < CHILD_CPU_BOUND_S


def test_hostile_forms_that_still_carry_a_right_answer_are_graded_right():
    scores = dict(_checked_scores("<answer> 8 \u00f7 (3 \u2212 8 \u00f7 3) </answer> so \\boxed{7}"))
    assert scores["countdown"]["acc"] == 1.0 and scores["math"]["acc"] == 1.0


def test_nested_tags_are_not_rewarded():
    assert compute_score("countdown", HOSTILE["nested tags"], GROUND_TRUTH["countdown"])["acc"] == 0.0


TOKENS = st.sampled_from(
    ["<answer>", "</answer>", "\\boxed{", "{", "}", "(", ")", "^", "!", "**", "/", "*", "+", "-", "\u2212", "\u00d7",
     "\u00f7", "3", "8", "24", "7", "99999", "\\frac", "\\sqrt", "\\left(", "\\right)", "\\infty", "nan", " ", "\n",
     "<think>", "</think>", "x", ".", ",", "=", "\\binom", "\\sum", "_", "$"]
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(TOKENS, max_size=60).map("".join))
def test_fuzzed_token_soup(response):
    dict(_checked_scores(response))


@FUZZ
@given(st.text(max_size=300))
def test_fuzzed_arbitrary_unicode(response):
    dict(_checked_scores(response))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/()\u2212\u00d7\u00f7 ", max_size=40))
def test_fuzzed_countdown_equations_agree_with_exact_arithmetic(equation):
    from fractions import Fraction

    from mopps.tasks.arithmetic import ExpressionError, evaluate, parse_expression

    result = compute_score("countdown", f"<answer>{equation}</answer>", GROUND_TRUTH["countdown"])
    try:
        parsed = parse_expression(equation)
        correct = sorted(parsed.literals) == [3, 3, 8, 8] and evaluate(parsed) == Fraction(24)
    except ExpressionError:
        correct = False
    assert result == {"score": 1.0 if correct else 0.1, "acc": float(correct), "formatted": 1.0, "verdict": "exact",
                      "has_verdict": 1.0}
