"""Field conditions: a cold reward worker grading from 8 threads while other processes saturate the CPUs.

Every correct answer must be graded 1 and every hostile one cut off at its CPU budget, in each of
three fresh processes. Nothing here is timed: a loaded machine may be slow, never wrong.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mopps.tasks.math_reward import DEFAULT_CPU_BUDGET_S
from mopps.tasks.math_verify_worker import HARD_LIMIT_MARGIN_S

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")
FRESH_PROCESSES = 3

pytestmark = pytest.mark.slow  # three cold graders while busy loops saturate every CPU


def test_cold_start_thread_pool_grading_with_saturated_cpus_is_never_wrong():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        # The fresh processes run at the same time: more load, and the test takes less wall time.
        graders = [
            subprocess.Popen([sys.executable, str(HERE / "_cold_start_grading.py")], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": SRC})
            for _ in range(FRESH_PROCESSES)
        ]
        outputs = [grader.communicate()[0] for grader in graders]
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert [grader.returncode for grader in graders] == [0] * FRESH_PROCESSES
    for run in map(json.loads, outputs):
        wrong = [result for result in run["correct"] if result["value"] != 1.0]
        assert not wrong, f"correct answers graded wrong under load: {wrong}"
        assert {result["entry_point"] for result in run["correct"]} == {
            "compute_score", "math_reward", "math_accuracy", "geo3k_reward"
        }
        assert run["verdict_counts"]["timeout"] == run["verdict_counts"]["timeout:cpu_budget"] == len(run["hostile"])
        for result in run["hostile"]:
            assert result["verdict"] == "timeout", result
            if result["entry_point"] == "grade_answer":
                assert result["cause"] == "cpu_budget"
                # The kernel's profiling timer samples CPU per scheduler tick: it may fire a little
                # before the precise clock the child reports with reaches the budget.
                assert 0.8 * DEFAULT_CPU_BUDGET_S <= result["cpu_s"] < DEFAULT_CPU_BUDGET_S + HARD_LIMIT_MARGIN_S + 1.0
            else:
                assert result["value"] is None  # no verdict: no evidence for the selector
