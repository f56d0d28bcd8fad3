"""Grade from a cold start in a thread pool, as a reward worker does on its first batch.

Run in a fresh process (``python tests/tasks/_cold_start_grading.py``, with ``src`` importable): 8
threads grade equivalent-but-different correct answers through verl's ``compute_score`` and the TRL
callables, and hostile answers that pass the static screen (alternately through the grader, which
reports their CPU cost, and a TRL callable); prints one JSON object with every result. ``test_grading_under_load.py`` runs it while other processes saturate the CPUs.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

from mopps.tasks import compute_score, geo3k_reward, math_accuracy, math_reward, verdict_counts
from mopps.tasks.math_reward import grade_answer

THREADS = 8
# (reference, a correct answer written differently): normalisation cannot match most of them, so
# math-verify must, from a cold child, under load.
EQUIVALENT = [
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("x^2-1", "(x-1)(x+1)"),
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("p-q", "-q+p"),
    ("\\frac{\\pi}{4}", "\\pi/4"),
    ("1024", "2^{10}"),
    ("\\frac{1}{\\sqrt{3}}", "\\sqrt{3}/3"),
    ("(x+1)^3", "x^3+3x^2+3x+1"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\frac{3}{2}", "1.5"),
]
# Past the static screen, but hours of sympy work: each must be cut off at its CPU budget.
HOSTILE = ["(x+1)^{9999} - (x-1)^{9999}", "\\sum_{n=1}^{9999} n^{9999}"]


def grade_correct(position: int) -> dict:
    """One equivalent answer through one entry point; every one must come back 1.0."""
    reference, answer = EQUIVALENT[position % len(EQUIVALENT)]
    entry_point = ("compute_score", "math_reward", "math_accuracy", "geo3k_reward")[position % 4]
    if entry_point == "compute_score":
        result = compute_score("math", f"The answer is $\\boxed{{{answer}}}$.", reference)
        value, verdict = result["acc"], result["verdict"]
    else:
        callable_ = {"math_reward": math_reward, "math_accuracy": math_accuracy, "geo3k_reward": geo3k_reward}
        logged = {}
        completion = [{"role": "assistant", "content": f"<think>t</think> \\boxed{{{answer}}}"}]
        value = callable_[entry_point]([completion], answer=[reference], log_extra=logged.__setitem__)[0]
        verdict = logged[f"{entry_point}/verdict"][0]
    return {"entry_point": entry_point, "reference": reference, "answer": answer, "value": value, "verdict": verdict}


def grade_hostile(position: int) -> dict:
    """A hostile answer through the grader (which reports the CPU it cost) or a TRL callable."""
    answer = HOSTILE[position % len(HOSTILE)]
    if position % 2 == 0:
        grade = grade_answer(answer, "7")
        return {"answer": answer, "entry_point": "grade_answer", "verdict": grade.verdict, "cause": grade.cause,
                "cpu_s": grade.cpu_s}
    logged = {}
    value = math_accuracy([f"\\boxed{{{answer}}}"], answer=["7"], log_extra=logged.__setitem__)[0]
    return {"answer": answer, "entry_point": "math_accuracy", "value": value,
            "verdict": logged["math_accuracy/verdict"][0]}


def main() -> None:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as threads:
        hostile = [threads.submit(grade_hostile, position) for position in range(len(HOSTILE))]
        correct = [threads.submit(grade_correct, position) for position in range(3 * THREADS)]
        hostile, correct = [f.result() for f in hostile], [f.result() for f in correct]
    print(json.dumps({"correct": correct, "hostile": hostile, "verdict_counts": verdict_counts(),
                      "wall_s": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
