"""math-verify in child processes, with a per-answer limit on the answer's own CPU time.

Why a process: math-verify's own ``timeout_seconds`` uses ``signal.alarm``, which (a) only works
in the main thread — in a worker thread (Ray actors with threads, thread-pool reward loops)
math-verify 0.9's ``parse`` raises ``ValueError``, and a reward function that catches it grades
*every* answer wrong — and (b) on expiry makes math-verify return "not equal", which is a wrong
verdict, not a missing one. A child process works from any thread and can always be killed. The
parent talks to it over pipes, one JSON line per request.

Why CPU time: a verdict must not depend on how busy the machine is. The limit that protects
against hostile answers measures what the *answer* costs: CPU seconds the child spends on that
one request, counted by the kernel. Process start-up, waiting for a free child and waiting for the
scheduler on a loaded machine count against no answer. The child enforces each request's
``cpu_budget_s`` twice:

- soft: ``ITIMER_PROF`` sends ``SIGPROF`` once the request has used its budget; the handler raises
  :class:`_CpuBudgetExceeded` (a ``BaseException``: math-verify catches ``Exception`` everywhere
  and would turn it into "not equal"), the child answers ``"cpu_budget"`` and lives on;
- hard: ``RLIMIT_CPU`` just above the budget, so that the kernel kills the child (``SIGXCPU``)
  when it is stuck inside one C call where no Python handler runs (sympy building a gigantic
  integer). The parent replaces a killed child at once.

The parent keeps only a generous wall-clock safety net per request (:func:`wall_limit_s`), for a
child wedged without using CPU; its expiry kills the child and is reported as ``"wall_limit"``.
Every outcome other than ``"ok"`` means *no verdict*; callers must not read it as "not equal".

verl 0.9 runs reward functions in a thread pool, so the graders share a :class:`MathVerifyPool`
of children: on first use it starts all of them, each call borrows an idle one (waiting in line
when all are busy; a warm one first), waits for it to be ready if it is still starting, and returns
it afterwards.

Run as a script (``python -m mopps.tasks.math_verify_worker`` or by path) it is the child's request
loop (POSIX only).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# The child runs this file by path: importing the mopps package would import numpy, which the
# child does not need (a quarter of a CPU second per start).
_CHILD_COMMAND = f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"

DEFAULT_STARTUP_TIMEOUT_S = 300.0
WALL_SAFETY_FLOOR_S = 60.0
WALL_SAFETY_FACTOR = 30.0
# The hard limit sits this many CPU seconds above the budget (then rounded up to whole seconds,
# RLIMIT_CPU's unit), so the soft limit always fires first when Python code is running.
HARD_LIMIT_MARGIN_S = 0.5

# Outcomes of one request. "ok" carries math-verify's verdict; all others carry none.
OK = "ok"
CPU_BUDGET = "cpu_budget"  # the child stopped the work at the budget and lives on
CPU_LIMIT = "cpu_limit"  # the kernel killed the child just above the budget (stuck in C code)
DIED = "died"  # the child exited for another reason (crash, killed from outside)
WALL_LIMIT = "wall_limit"  # the wall-clock safety net expired; the parent killed the child
UNAVAILABLE = "unavailable"  # no child could be started, or none became ready in time
NO_VERDICT_CAUSES = (CPU_BUDGET, CPU_LIMIT, DIED, WALL_LIMIT, UNAVAILABLE)

# Answers that touch the sympy code paths math-verify loads lazily (simplification, polynomials,
# intervals, matrices, trigonometry, sets, equations): graded once before the child announces
# readiness, so no answer's budget pays for an import.
_WARM_UP = (
    (["1/2"], "0.5"),
    (["2\\sqrt{2}"], "\\sqrt{8}"),
    (["x^2-1"], "(x-1)(x+1)"),
    (["(x+1)^3"], "x^3+3x^2+3x+1"),
    (["(1,2)"], "(1, 2]"),
    (["\\begin{pmatrix}1\\\\2\\end{pmatrix}"], "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    (["1"], "\\sin^2 x + \\cos^2 x"),
    (["\\{1, 2\\}"], "2, 1"),
    (["3"], "x = 3"),
    (["\\frac{\\pi}{4}"], "45^\\circ"),
    (["10\\%"], "0.1"),
    (["\\frac{1}{\\sqrt{3}}"], "\\sqrt{3}/3"),
)


def wall_limit_s(cpu_budget_s: float) -> float:
    """The parent's wall-clock safety net for one request, in seconds: 60 + 30 × the CPU budget.

    It is no deadline on the answer (the CPU limits are): it only ends a child that is wedged
    without using CPU, and it is long enough that a child which gets a thirtieth of a CPU on a
    saturated machine still reaches its own CPU limit first.
    """
    return WALL_SAFETY_FLOOR_S + WALL_SAFETY_FACTOR * cpu_budget_s


@dataclass(frozen=True)
class Reply:
    """The outcome of one request.

    ``equal``: math-verify's verdict when ``status == "ok"``, else ``None`` (no verdict).
    ``status``: ``"ok"`` or one of :data:`NO_VERDICT_CAUSES`.
    ``cpu_s``: CPU seconds the child spent on the request (for a killed child: from the request
    to its death); ``nan`` when no child worked on it.
    """

    equal: bool | None
    status: str
    cpu_s: float


# -- the child ---------------------------------------------------------------------------------


class _CpuBudgetExceeded(BaseException):
    """Raised in the child by ``SIGPROF`` when a request has used its CPU budget."""


_budget_armed = False
_budget_hit = False


def _on_cpu_budget(signum, frame) -> None:
    # Raises at most once per request, so the exception can never surface outside the request's
    # try block. Should library code swallow it, the request ends at the hard limit instead, and
    # _budget_hit still turns a late verdict into "cpu_budget".
    global _budget_armed, _budget_hit
    if _budget_armed:
        _budget_armed = False
        _budget_hit = True
        raise _CpuBudgetExceeded


def _verdict(golds: list[str], predicted: str) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    parsed_prediction = parse(f"\\boxed{{{predicted}}}", extraction_config=configs, parsing_timeout=None)
    if not parsed_prediction:
        return False
    for gold in golds:
        parsed_gold = parse(f"\\boxed{{{gold}}}", extraction_config=configs, parsing_timeout=None)
        if parsed_gold and verify(parsed_gold, parsed_prediction, timeout_seconds=None):
            return True
    return False


def _cpu_total_s() -> float:
    """CPU seconds (user + system) this process has used, as ``RLIMIT_CPU`` counts them."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set_cpu_limit(soft_s: int | None) -> None:
    """Move ``RLIMIT_CPU``'s soft limit (``None``: back to the hard limit, usually unlimited)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if soft_s is None or (hard != resource.RLIM_INFINITY and soft_s > hard):
        soft_s = hard
    resource.setrlimit(resource.RLIMIT_CPU, (soft_s, hard))


def install_cpu_limits() -> None:
    """Prepare this process for :func:`grade_within_budget`: the ``SIGPROF`` handler of the soft
    limit, and a kernel kill at the hard limit that is neither ignored (a parent may ignore
    ``SIGXCPU``, and exec keeps that) nor writes a core file."""
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPROF, _on_cpu_budget)


def grade_within_budget(golds: list[str], predicted: str, cpu_budget_s: float) -> dict:
    """The child's work on one request: ``{"equal", "status", "cpu_s", "cpu_total_s"}``.

    ``status`` is ``"ok"`` with math-verify's verdict (an exception inside math-verify is "not
    equal", as math-verify itself treats it), or ``"cpu_budget"`` with ``equal = None``.
    """
    global _budget_armed, _budget_hit
    start = time.process_time()
    _set_cpu_limit(math.ceil(_cpu_total_s() + cpu_budget_s + HARD_LIMIT_MARGIN_S))
    equal: bool | None = None
    _budget_hit = False
    try:
        _budget_armed = True
        signal.setitimer(signal.ITIMER_PROF, cpu_budget_s)
        try:
            equal = bool(_verdict(golds, predicted))
        except Exception:  # noqa: BLE001 - math-verify's own policy: an error is "not equal"
            equal = False
        finally:
            _budget_armed = False
            signal.setitimer(signal.ITIMER_PROF, 0.0)
    except _CpuBudgetExceeded:
        equal = None
    finally:
        _set_cpu_limit(None)
    if _budget_hit:
        equal = None  # the work went past its budget, even if a library swallowed the exception
    return {
        "equal": equal,
        "status": CPU_BUDGET if _budget_hit else OK,
        "cpu_s": time.process_time() - start,
        "cpu_total_s": _cpu_total_s(),
    }


def serve() -> None:
    """The child's loop: read ``{"golds": [...], "pred": str, "cpu_budget_s": float}`` lines and
    answer each with :func:`grade_within_budget`'s dict; the first line out is
    ``{"ready": true, "cpu_total_s": ...}`` once math-verify is imported and warm."""
    logging.disable(logging.WARNING)  # math-verify warns on every call with timeouts disabled
    # Keep the protocol channel private: anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    install_cpu_limits()
    for golds, predicted in _WARM_UP:
        _verdict(golds, predicted)
    replies.write(json.dumps({"ready": True, "cpu_total_s": _cpu_total_s()}) + "\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply = grade_within_budget(list(request["golds"]), str(request["pred"]), float(request["cpu_budget_s"]))
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


# -- the parent --------------------------------------------------------------------------------


class MathVerifyProcess:
    """Client for one child process; thread-safe, fork-aware, never raises from :meth:`equal`.

    ``startup_timeout_s``: how long a call may wait for a starting child to import math-verify
    and warm up (seconds of wall time, outside any answer's budget); a child not ready by then
    is killed and the call gets ``"unavailable"``.
    """

    def __init__(self, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._buffer = b""
        self._ready = False
        self._cpu_total_s = 0.0
        self._unavailable = False
        self.kills = 0

    @property
    def started(self) -> bool:
        """Whether a child process exists (starting or ready)."""
        return self._process is not None

    @property
    def ready(self) -> bool:
        """Whether the child has announced readiness and not been stopped since."""
        return self._ready and self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the child if there is none (it warms up in the background); never blocks."""
        with self._lock:
            self._start_if_needed()

    def close(self) -> None:
        """Stop the child and close its pipes (a later call starts a new one). An object dropped
        without ``close`` leaves its child running and its pipes open until the interpreter exits."""
        with self._lock:
            if self._process is not None and os.getpid() == self._owner_pid:  # a forked copy's child is not ours
                self._collect(kill=True)
            self._process, self._ready = None, False

    def __enter__(self) -> "MathVerifyProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def wait_ready(self) -> bool:
        """Start the child if needed and wait until it is ready; False if it cannot be."""
        with self._lock:
            return self._ensure_ready()

    def _start_if_needed(self) -> None:
        if os.getpid() != self._owner_pid:
            # Forked: the inherited pipes belong to the parent's child; start our own.
            self._owner_pid, self._process, self._ready = os.getpid(), None, False
        if self._unavailable or (self._process is not None and self._process.poll() is None):
            return
        if self._process is not None:
            self._collect(kill=False)  # it died while idle: close its pipes
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
        except OSError as error:
            logger.warning("cannot start the math-verify process (%s); math answers get no verdict", error)
            self._unavailable = True
            self._process = None
        self._buffer = b""
        self._ready = False

    def _collect(self, kill: bool) -> tuple[str, float]:
        """Wait for the child to end (killing it first with ``kill``), forget it, and return why it
        ended and its total CPU seconds (``nan`` if unknown).

        ``os.wait4`` rather than ``Popen.wait``: it also returns the child's resource usage. The
        signal goes through ``os.kill`` because ``Popen.kill`` polls first, which would reap the
        child and lose that usage; an unreaped child's pid cannot be reused, so this is safe.
        """
        process, self._process, self._ready, self._buffer = self._process, None, False, b""
        assert process is not None
        cpu_total = math.nan
        if process.returncode is None:
            if kill:
                os.kill(process.pid, signal.SIGKILL)
            try:
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                cpu_total = usage.ru_utime + usage.ru_stime
            except ChildProcessError:
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        if kill:
            return WALL_LIMIT, cpu_total
        return (CPU_LIMIT if process.returncode == -signal.SIGXCPU else DIED), cpu_total

    def _read_line(self, deadline: float) -> tuple[str | None, bool]:
        """``(line, False)``, or ``(None, ended)`` at the deadline or when the child closed its
        output (``ended``: it is exiting)."""
        assert self._process is not None and self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, False
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                return None, False
            chunk = os.read(descriptor, 65536)
            if not chunk:
                return None, True
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace"), False

    def _ensure_ready(self) -> bool:
        self._start_if_needed()
        if self._process is None:
            return False
        if self._ready:
            return True
        line, ended = self._read_line(time.monotonic() + self.startup_timeout_s)
        try:
            announcement = json.loads(line) if line is not None else None
        except json.JSONDecodeError:
            announcement = None
        if not isinstance(announcement, dict) or announcement.get("ready") is not True:
            timed_out = line is None and not ended
            self._collect(kill=True)
            logger.warning(
                "the math-verify process did not become ready (%s); math answers get no verdict until one does",
                f"not ready after {self.startup_timeout_s:.0f} s" if timed_out else "it exited or wrote no readiness line",
            )
            return False
        self._ready = True
        self._cpu_total_s = float(announcement.get("cpu_total_s", 0.0))
        return True

    def equal(self, predicted: str, golds: list[str], cpu_budget_s: float) -> Reply:
        """math-verify's verdict on ``predicted`` against any of ``golds``, within
        ``cpu_budget_s`` CPU seconds of the child's work on this request (see :class:`Reply`).

        Waits for a starting child to be ready first (up to ``startup_timeout_s``, outside the
        budget). A child lost on the request is replaced at once, warming up in the background.
        """
        with self._lock:
            if not self._ensure_ready():
                return Reply(None, UNAVAILABLE, math.nan)
            assert self._process is not None and self._process.stdin is not None
            request = {"golds": golds, "pred": predicted, "cpu_budget_s": cpu_budget_s}
            try:
                self._process.stdin.write((json.dumps(request) + "\n").encode())
            except OSError:
                return self._lost(*self._collect(kill=False))
            line, ended = self._read_line(time.monotonic() + wall_limit_s(cpu_budget_s))
            if line is None:
                return self._lost(*self._collect(kill=not ended))
            try:
                reply = json.loads(line)
                result = Reply(reply["equal"], str(reply["status"]), float(reply["cpu_s"]))
                self._cpu_total_s = float(reply["cpu_total_s"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.warning("unreadable reply from the math-verify process: %r", line[:200])
                return self._lost(DIED, self._collect(kill=True)[1])
            return result

    def _lost(self, cause: str, cpu_total_s: float) -> Reply:
        """Count the lost child, start its replacement; the request's CPU is the child's total
        at its end less its total before the request."""
        self.kills += 1
        self._start_if_needed()
        return Reply(None, cause, cpu_total_s - self._cpu_total_s)


class MathVerifyPool:
    """Up to ``size`` :class:`MathVerifyProcess` children shared by all threads of a process.

    The first :meth:`equal` (or :meth:`warm_up`) starts all children. :meth:`equal` waits without
    a deadline for an idle child, preferring a ready one: queueing is throughput, not a hang, and
    it counts against no answer's budget.
    """

    def __init__(self, size: int, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        if size < 1:
            raise ValueError(f"size = {size}; must be >= 1")
        self._processes = [MathVerifyProcess(startup_timeout_s) for _ in range(size)]
        self._idle = list(self._processes)
        self._available = threading.Condition()
        self._started = False

    @property
    def size(self) -> int:
        """Number of children."""
        return len(self._processes)

    @property
    def kills(self) -> int:
        """How many children were lost (killed at a limit, or died) so far."""
        with self._available:
            return sum(process.kills for process in self._processes)

    def warm_up(self, wait: bool = True) -> bool:
        """Start every child; with ``wait``, block until all are ready (True if all are)."""
        with self._available:
            self._started = True
        for process in self._processes:
            process.start()
        return all(process.wait_ready() for process in self._processes) if wait else True

    def close(self) -> None:
        """Stop every child and close its pipes (a later call starts them again)."""
        for process in self._processes:
            process.close()
        with self._available:
            self._started = False

    def __enter__(self) -> "MathVerifyPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _borrow(self) -> MathVerifyProcess:
        with self._available:
            self._available.wait_for(lambda: self._idle)
            # Warm first, then one already starting, and only then a child never started.
            rank = [2 * process.ready + process.started for process in self._idle]
            return self._idle.pop(rank.index(max(rank)))

    def equal(self, predicted: str, golds: list[str], cpu_budget_s: float) -> Reply:
        """:meth:`MathVerifyProcess.equal` on a borrowed child."""
        if not self._started:
            self.warm_up(wait=False)
        process = self._borrow()
        try:
            return process.equal(predicted, golds, cpu_budget_s)
        finally:
            with self._available:
                self._idle.append(process)
                self._available.notify()


_shared: MathVerifyPool | None = None
_shared_lock = threading.Lock()
POOL_SIZE_ENV = "MOPPS_MATH_VERIFY_PROCESSES"


def shared_pool() -> MathVerifyPool:
    """The process-wide pool the graders use; its size is ``$MOPPS_MATH_VERIFY_PROCESSES``
    (default: the number of CPUs, at most 4)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            size = int(os.environ.get(POOL_SIZE_ENV, min(4, os.cpu_count() or 1)))
            _shared = MathVerifyPool(size)
            # Children and pipes end with the process that uses them, not in its garbage collection.
            atexit.register(_shared.close)
        return _shared


if __name__ == "__main__":
    serve()
