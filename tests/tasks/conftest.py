import pytest

from mopps.tasks.math_verify_worker import shared_process


@pytest.fixture(scope="session")
def warm_math_verify():
    """Start the math-verify child once, so per-call time bounds exclude its one-off start-up."""
    assert shared_process().equal("0.5", ["1/2"], timeout_s=30.0) is True
    return shared_process()
