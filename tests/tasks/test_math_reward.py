import threading

import numpy as np
import pytest

from mopps.tasks.extract import last_boxed_answer, last_tagged_answer
from mopps.tasks.math_normalize import answers_match_without_sympy, normalize_answer, parse_plain_number
from mopps.tasks.math_reward import grade_answer, reference_answers, score_geo3k, score_math, sympy_safe
from mopps.tasks.math_verify_worker import shared_pool
from mopps.tasks.verdicts import VERDICTS, verdict_counts

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("0.5", "\\dfrac{1}{2}"),
    ("\\frac12", "\\tfrac{1}{2}"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("30^\\circ", "30"),
    ("30", "30^{\\circ}"),
    ("10\\text{ cm}", "10"),
    ("\\$5", "5"),
    ("5\\%", "5"),
    ("[1,3)", "[1, 3)"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("1, 2", "2, 1"),
    ("\\{3, 5\\}", "3, 5"),
    ("3", "x = 3"),
    ("1000", "1,000"),
    ("1000000", "1{,}000{,}000"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("p - q", "-q + p"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("8.7 \\times 10^{8}", "870000000"),
    ("142", "142.0"),
    ("\\text{(A)}", "A"),
]
DIFFERENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("2", "3"),
    ("[1,3)", "[1,3]"),
    ("p - q", "q - p"),
    ("1, 2", "1, 2, 3"),
    ("1000", "100"),
    ("50\\%", "0.5"),
]


@pytest.mark.parametrize("reference, predicted", EQUIVALENT)
def test_equivalent_answer_forms_are_accepted(reference, predicted):
    grade = grade_answer(predicted, reference)
    assert grade.correct is True and grade.verdict in ("normalized", "math_verify")
    result = score_math(f"so the answer is $\\boxed{{{predicted}}}$.", reference)
    assert result == {"score": 1.0, "acc": 1.0, "formatted": 1.0, "verdict": grade.verdict, "has_verdict": 1.0}


@pytest.mark.parametrize("reference, predicted", DIFFERENT)
def test_different_answers_are_rejected(reference, predicted):
    grade = grade_answer(predicted, reference)
    assert grade.correct is False and grade.verdict == "math_verify"


def test_fast_path_needs_no_sympy():
    assert answers_match_without_sympy("\\dfrac{3}{4}", "0.75")
    assert answers_match_without_sympy("-\\frac34", "-3/4")
    assert not answers_match_without_sympy("", "")
    assert parse_plain_number("1" * 41) is None
    assert parse_plain_number("2\\times10^{999}") is None
    assert normalize_answer("\\left[ 2, 5 \\right)") == "[2,5)"
    assert normalize_answer(None) == ""


def test_last_boxed_handles_nesting_spaces_fbox_and_unclosed():
    assert last_boxed_answer("\\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed_answer("\\fbox{7}") == "7"
    assert last_boxed_answer("$\\boxed 12$ done") == "12"
    assert last_boxed_answer("\\boxed {4}") == "4"
    assert last_boxed_answer("\\boxed{3} and \\boxed{4") is None
    assert last_boxed_answer("no box") is None
    assert last_boxed_answer("\\boxed{" + "1" * 5000 + "}") is None


def test_last_tagged_answer_takes_the_last_complete_pair():
    assert last_tagged_answer("<answer>1</answer> <answer> 2 </answer>") == "2"
    assert last_tagged_answer("<answer>1") is None
    assert last_tagged_answer("1</answer>") is None


def test_reference_answer_forms_of_the_eval_files():
    assert reference_answers(142.0) == ["142"]
    assert reference_answers(["9.6\n"]) == ["9.6"]
    assert reference_answers(np.array(["6630.65\n", "6630\n"], dtype=object)) == ["6630.65", "6630"]
    assert reference_answers("$\\frac{1}{2 n+2}$") == ["\\frac{1}{2 n+2}"]
    for bad in (None, True, {"a": 1}, "", [""]):
        with pytest.raises(ValueError, match="ground_truth"):
            reference_answers(bad)


def test_any_alternative_answer_is_accepted():
    assert score_math("\\boxed{6630}", ["6630.65", "6630"])["acc"] == 1.0
    assert score_math("\\boxed{\\frac{1}{2n+2}}", "$\\frac{1}{2 n+2}$")["acc"] == 1.0


def test_math_score_shape():
    assert score_math("no box here: 7", "7") == {
        "score": 0.0, "acc": 0.0, "formatted": 0.0, "verdict": "no_answer", "has_verdict": 1.0
    }
    assert score_math("\\boxed{8}", "7") == {"score": 0.0, "acc": 0.0, "formatted": 1.0, "verdict": "math_verify", "has_verdict": 1.0}
    assert score_math("\\boxed{8} \\boxed{7}", "7")["acc"] == 1.0
    assert score_math("\\boxed{7} \\boxed{8}", "7")["acc"] == 0.0


def test_geo3k_score_shape_matches_reference():
    good = "<think>angles sum</think> The answer is \\boxed{60}."
    shape = ("score", "acc", "formatted")
    assert [score_geo3k(good, "60")[key] for key in shape] == [1.0, 1.0, 1.0]
    assert [score_geo3k(good, "30")[key] for key in shape] == [0.1, 0.0, 1.0]
    assert [score_geo3k("The answer is \\boxed{60}.", "60")[key] for key in shape] == [1.0, 1.0, 0.0]
    assert [score_geo3k("The answer is \\boxed{61}.", "60")[key] for key in shape] == [0.0, 0.0, 0.0]
    assert score_geo3k("<think>x</think> 3\\sqrt{3}", "3\\sqrt{3}")["score"] == 0.0


@pytest.mark.parametrize(
    "answer",
    ["9^{9^{9}}", "10^{-10^{10}}", "(10^{100})!", "10^{6}!", "\\binom{10^{9}}{5 \\cdot 10^{8}}", "2^{99999999}",
     "2^9^9", "{" * 8 + "1" + "}" * 8, "x" * 600],
)
def test_static_screen_keeps_explosive_latex_from_sympy(answer):
    assert not sympy_safe(answer)


@pytest.mark.parametrize("answer", ["2^{1009}", "\\frac{1}{2 n+2}", "\\left( 3, \\frac{\\pi}{2} \\right)", "100!", "x^{2}+1"])
def test_static_screen_lets_ordinary_answers_through(answer):
    assert sympy_safe(answer)


def test_grading_works_outside_the_main_thread():
    # math-verify's signal-based timeout makes its parse raise in a worker thread; the child
    # process does not care which thread asks.
    results = []
    thread = threading.Thread(target=lambda: results.append(grade_answer("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}")))
    thread.start()
    thread.join()
    assert [grade.correct for grade in results] == [True]


def test_each_verdict_says_how_it_was_reached_and_is_counted():
    before = verdict_counts()
    assert grade_answer("1/2", "0.5").verdict == "normalized"
    assert grade_answer("\\sqrt{8}", "2\\sqrt{2}").verdict == "math_verify"
    assert grade_answer("9^{9^{9}}", "7").verdict == "screened"
    assert grade_answer("", "7").verdict == "no_answer"
    assert score_math("no box", "7")["verdict"] == "no_answer"
    after = verdict_counts()
    assert {name: after[name] - before[name] for name in VERDICTS} == {
        "no_answer": 2, "exact": 0, "normalized": 1, "screened": 1, "math_verify": 1, "timeout": 0
    }


SLOW_ANSWER = "(x+1)^{9999}"  # passes the screen; expanding it costs sympy seconds of Python-level work


def test_an_answer_over_its_cpu_budget_gets_no_verdict_and_the_child_lives_on():
    pool = shared_pool()
    kills, before = pool.kills, verdict_counts()
    grade = grade_answer(SLOW_ANSWER, "(x+1)^{9998}", cpu_budget_s=0.3)
    assert (grade.correct, grade.verdict, grade.cause) == (None, "timeout", "cpu_budget")
    # Cut off by the child's own CPU timer: bounded work, whatever the wall clock says.
    assert 0.8 * 0.3 <= grade.cpu_s < 0.3 + 0.5
    assert pool.kills == kills
    assert verdict_counts()["timeout:cpu_budget"] == before.get("timeout:cpu_budget", 0) + 1
    assert grade_answer("\\sqrt{8}", "2\\sqrt{2}").correct is True


@pytest.mark.parametrize("policy, has_verdict", [("no_evidence", 0.0), ("wrong", 1.0)])
def test_a_timeout_scores_the_fallback_and_the_policy_decides_if_it_is_evidence(policy, has_verdict):
    response = f"<think>t</think> \\boxed{{{SLOW_ANSWER}}}"
    expected = {"acc": 0.0, "formatted": 1.0, "verdict": "timeout", "has_verdict": has_verdict}
    assert score_math(response, "(x+1)^{9998}", cpu_budget_s=0.2, timeout_policy=policy) == {"score": 0.0, **expected}
    assert score_geo3k(response, "(x+1)^{9998}", cpu_budget_s=0.2, timeout_policy=policy) == {"score": 0.1, **expected}


def test_an_unknown_timeout_policy_is_refused():
    with pytest.raises(ValueError, match="timeout_policy = 'skip'"):
        score_math("\\boxed{1}", "1", timeout_policy="skip")
