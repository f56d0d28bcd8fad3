"""The math-verify child: limits count the answer's own CPU time; a lost child is a missing verdict."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from mopps.tasks import math_verify_worker
from mopps.tasks.math_verify_worker import HARD_LIMIT_MARGIN_S, MathVerifyPool, MathVerifyProcess

# A child or a pipe left to the garbage collector is a failure here, not a line at the end of the run.
pytestmark = [pytest.mark.filterwarnings("error::ResourceWarning"),
              pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")]

SRC = str(Path(__file__).resolve().parents[2] / "src")
SLOW_ANSWER = "(x+1)^{9999}"  # sympy expands it for many seconds in Python code
STUCK_IN_C = """
import hashlib, json, sys
from mopps.tasks import math_verify_worker as worker
worker.install_cpu_limits()
# One C call that never checks for signals: the soft limit's handler cannot run until it returns.
worker._verdict = lambda golds, predicted: hashlib.pbkdf2_hmac("sha256", b"x", b"y", 2**31 - 1)
print(json.dumps({"cpu_before_s": worker._cpu_total_s()}), flush=True)
print(json.dumps(worker.grade_within_budget(["1"], "1", cpu_budget_s=0.3)), flush=True)
"""


@pytest.fixture
def closing():
    """``closing(grader)`` returns ``grader`` and closes it when the test ends."""
    with ExitStack() as stack:
        yield stack.enter_context


def test_the_kernel_kills_a_child_stuck_in_c_code_just_above_its_budget():
    child = subprocess.Popen([sys.executable, "-c", STUCK_IN_C], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": SRC})
    with child.stdout:
        lines = child.stdout.read().splitlines()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    assert os.waitstatus_to_exitcode(status) == -signal.SIGXCPU
    assert len(lines) == 1, "the stuck call must not have returned"
    spent = usage.ru_utime + usage.ru_stime - json.loads(lines[0])["cpu_before_s"]
    # RLIMIT_CPU counts whole seconds: the kill comes at ceil(cpu so far + budget + margin). The kernel
    # samples CPU time at scheduler ticks, so on a busy machine the child's own reading and the
    # kernel's can differ by a few ticks (seen: 0.78 s against 0.8 with two other jobs running).
    tick_tolerance_s = 0.05
    assert 0.3 + HARD_LIMIT_MARGIN_S - tick_tolerance_s <= spent < 0.3 + HARD_LIMIT_MARGIN_S + 1.0 + 0.2


def test_start_up_and_queueing_count_against_no_answer(closing):
    # One cold child, eight threads, a budget far below the child's start-up CPU (about 2 s) and
    # far below what a caller waits in line: every answer still gets its verdict.
    pool = closing(MathVerifyPool(1))
    with ThreadPoolExecutor(max_workers=8) as threads:
        replies = list(threads.map(lambda _: pool.equal("\\sqrt{8}", ["2\\sqrt{2}"], cpu_budget_s=0.2), range(16)))
    assert {(reply.equal, reply.status) for reply in replies} == {(True, "ok")}
    assert max(reply.cpu_s for reply in replies) < 0.2


@pytest.mark.slow
def test_a_child_lost_during_a_request_is_no_verdict_and_is_replaced(monkeypatch, closing):
    process = closing(MathVerifyProcess())
    assert process.wait_ready()

    def lose_child_during_request(signal_number):
        assert process.wait_ready()
        pid = process._process.pid
        replies = []
        worker = threading.Thread(target=lambda: replies.append(process.equal(SLOW_ANSWER, ["(x+1)^{9998}"], 60.0)))
        worker.start()
        time.sleep(0.5)
        os.kill(pid, signal_number)
        worker.join()
        assert process._process.pid != pid, "the replacement starts at once"
        return replies[0]

    # The kernel's kill at the hard CPU limit, and any other death.
    for signal_number, cause, kills in [(signal.SIGXCPU, "cpu_limit", 1), (signal.SIGKILL, "died", 2)]:
        reply = lose_child_during_request(signal_number)
        assert (reply.equal, reply.status, process.kills) == (None, cause, kills)
        assert reply.cpu_s >= 0.0
    # A child wedged without using CPU: no CPU limit fires; the wall-clock safety net does.
    monkeypatch.setattr(math_verify_worker, "wall_limit_s", lambda cpu_budget_s: 1.0)
    assert process.wait_ready()
    os.kill(process._process.pid, signal.SIGSTOP)
    reply = process.equal("\\sqrt{8}", ["2\\sqrt{2}"], 1.0)
    assert (reply.equal, reply.status, process.kills) == (None, "wall_limit", 3)
    reply = process.equal("\\sqrt{8}", ["2\\sqrt{2}"], 1.0)
    assert (reply.equal, reply.status) == (True, "ok")


def test_a_child_that_never_becomes_ready_is_unavailable_not_wrong(closing):
    reply = closing(MathVerifyProcess(startup_timeout_s=0.01)).equal("\\sqrt{8}", ["2\\sqrt{2}"], 1.0)
    assert (reply.equal, reply.status) == (None, "unavailable")


def test_close_ends_the_children_and_closes_their_pipes():
    pool = MathVerifyPool(2)
    assert pool.warm_up()
    children = [process._process for process in pool._processes]
    pool.close()
    assert all(child.returncode is not None and child.stdin.closed and child.stdout.closed for child in children)
    assert not any(process.started for process in pool._processes)
    pool.close()  # closing twice is fine


def test_the_safety_net_scales_with_the_budget():
    assert math_verify_worker.wall_limit_s(1.0) == 90.0
    assert math_verify_worker.wall_limit_s(4.0) == 180.0


def test_pool_size_must_be_positive():
    with pytest.raises(ValueError, match="size = 0"):
        MathVerifyPool(0)


def test_the_shared_pool_leaves_no_child_or_pipe_to_the_end_of_the_interpreter():
    # Its children and pipes used to be found by the garbage collector at exit: a screen of
    # "ResourceWarning: unclosed file" after every test run that graded a math answer.
    code = "from mopps.tasks.math_verify_worker import shared_pool; assert shared_pool().warm_up()"
    env = {**os.environ, "PYTHONPATH": SRC, "MOPPS_MATH_VERIFY_PROCESSES": "1"}
    completed = subprocess.run([sys.executable, "-X", "dev", "-c", code], env=env, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr
    assert "ResourceWarning" not in completed.stderr, completed.stderr
