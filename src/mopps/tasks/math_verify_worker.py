"""math-verify in a child process that a hard deadline can kill.

Why a process: math-verify's own ``timeout_seconds`` uses ``signal.alarm``, which (a) only works
in the main thread — in a worker thread (Ray actors with threads, thread-pool reward loops)
math-verify 0.9's ``parse`` raises ``ValueError``, and a reward function that catches it grades
*every* answer wrong; turning the timeout off there removes all protection — and (b) cannot
interrupt C code: ``9^{9^{9}}`` or ``(10^{100})!`` make sympy compute
a gigantic integer inside one C call, which no Python-level timeout stops. A child process can
always be killed. The parent talks to it over pipes, one JSON line per request.

A child is started on first use (about half a second, paid once) and replaced at once after it
is killed. verl 0.9 runs reward functions in a thread pool, so the graders share a
:class:`MathVerifyPool` of children: each call borrows an idle one (waiting in line when all are
busy), preferring one that is already warm, and returns it afterwards. A call that cannot get a
verdict before its deadline gets ``None`` and the caller falls back to string normalisation.

Run as ``python -m mopps.tasks.math_verify_worker`` it is the child's request loop.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_READY = "ready"
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


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


def serve() -> None:
    """The child's loop: read ``{"golds": [...], "pred": str}`` lines, answer ``{"equal": bool}``."""
    logging.disable(logging.WARNING)  # math-verify warns on every call with timeouts disabled
    # Keep the protocol channel private: anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _verdict(["1/2"], "0.5")  # import and warm the LaTeX grammar before announcing readiness
    replies.write(_READY + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"equal": bool(_verdict(list(request["golds"]), str(request["pred"])))}
        except Exception as error:  # noqa: BLE001 - any failure is "no verdict", reported upstream
            reply = {"equal": None, "error": f"{type(error).__name__}: {error}"[:500]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class MathVerifyProcess:
    """Client for one child process; thread-safe, fork-aware, never raises from :meth:`equal`.

    ``startup_timeout_s``: how long the very first call may wait for the child to import
    math-verify (later restarts count against each call's own deadline).
    """

    def __init__(self, startup_timeout_s: float = 30.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._buffer = b""
        self._ready = False
        self._ever_ready = False
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

    def _start(self) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (_SOURCE_ROOT, environment.get("PYTHONPATH", "")) if p
        )
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mopps.tasks.math_verify_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                env=environment,
            )
        except OSError as error:
            logger.warning("cannot start the math-verify process (%s); grading falls back to normalisation", error)
            self._unavailable = True
            self._process = None
        self._buffer = b""
        self._ready = False

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        self._ready = False

    def _read_line(self, deadline: float) -> str | None:
        """One line from the child, or ``None`` at the deadline or end of output."""
        assert self._process is not None and self._process.stdout is not None
        descriptor = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(descriptor, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")

    def _ensure_ready(self, deadline: float) -> bool:
        if os.getpid() != self._owner_pid:
            # Forked: the inherited pipes belong to the parent's child; start our own.
            self._owner_pid, self._process = os.getpid(), None
        if self._process is None or self._process.poll() is not None:
            self._start()
        if self._process is None:
            return False
        if not self._ready:
            if not self._ever_ready:
                deadline = max(deadline, time.monotonic() + self.startup_timeout_s)
            if self._read_line(deadline) != _READY:
                if self._process.poll() is not None:
                    logger.warning("the math-verify process exited at start-up (code %s)", self._process.returncode)
                    self._stop()
                return False
            self._ready = self._ever_ready = True
        return True

    def equal(self, predicted: str, golds: list[str], timeout_s: float) -> bool | None:
        """math-verify's verdict on ``predicted`` against any of ``golds``; ``None`` if none in time."""
        deadline = time.monotonic() + timeout_s
        if self._unavailable or not self._lock.acquire(timeout=max(0.0, timeout_s)):
            return None
        try:
            if not self._ensure_ready(deadline):
                return None
            request = (json.dumps({"golds": golds, "pred": predicted}) + "\n").encode()
            try:
                assert self._process is not None and self._process.stdin is not None
                self._process.stdin.write(request)
            except (BrokenPipeError, OSError):
                self._stop()
                return None
            line = self._read_line(deadline)
            if line is None:
                # Stuck (or dead): kill it and start the replacement now, so it warms up while
                # the caller continues.
                self.kills += 1
                self._stop()
                self._start()
                return None
            try:
                return json.loads(line).get("equal")
            except (json.JSONDecodeError, AttributeError):
                logger.warning("unreadable reply from the math-verify process: %r", line[:200])
                self._stop()
                return None
        finally:
            self._lock.release()


class MathVerifyPool:
    """Up to ``size`` :class:`MathVerifyProcess` children shared by all threads of a process.

    :meth:`equal` waits (without a deadline: queueing is throughput, not a hang) for an idle
    child, preferring a warm one, so a single busy grader never turns its neighbours' calls into
    fallbacks. Children start lazily, only as many as concurrent calls need.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size = {size}; must be >= 1")
        self._processes = [MathVerifyProcess() for _ in range(size)]
        self._idle = list(self._processes)
        self._available = threading.Condition()

    @property
    def kills(self) -> int:
        """How many children were killed at a deadline so far."""
        with self._available:
            return sum(process.kills for process in self._processes)

    def _borrow(self) -> MathVerifyProcess:
        with self._available:
            self._available.wait_for(lambda: self._idle)
            # Warm first, then one already starting, and only then a child never started.
            rank = [2 * process.ready + process.started for process in self._idle]
            return self._idle.pop(rank.index(max(rank)))

    def equal(self, predicted: str, golds: list[str], timeout_s: float) -> bool | None:
        """:meth:`MathVerifyProcess.equal` on a borrowed child."""
        process = self._borrow()
        try:
            return process.equal(predicted, golds, timeout_s)
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
        return _shared


if __name__ == "__main__":
    serve()
