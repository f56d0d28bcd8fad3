import pytest

from mopps.tasks.math_verify_worker import shared_pool


@pytest.fixture
def warm_math_verify():
    """A ready math-verify child, so per-call time bounds exclude its start-up.

    Function-scoped on purpose: a test that makes the grader kill the child leaves a fresh one
    starting, and the next test must not race it.
    """
    assert shared_pool().equal("0.5", ["1/2"], timeout_s=30.0) is True
    return shared_pool()
