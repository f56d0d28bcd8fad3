"""Shared by the adapter tests: the tiny models run on one torch thread."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: one thread is faster than two fighting over a shared CI machine."""
    try:
        import torch
    except ImportError:  # the adapter tests skip themselves without their extras
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
