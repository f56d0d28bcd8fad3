"""CandidateStream: epochs drop their tail, a permutation is a function of (seed, epoch), state is ints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mopps.loop import CandidateStream


def test_a_batch_that_would_straddle_an_epoch_starts_the_next_epoch():
    stream = CandidateStream(10, seed=3)
    first, second, third = stream.next(4), stream.next(4), stream.next(4)
    assert len(set(first.tolist()) | set(second.tolist())) == 8  # epoch 0: two disjoint batches
    np.testing.assert_array_equal(np.concatenate([first, second]), stream.permutation(0)[:8])
    np.testing.assert_array_equal(third, stream.permutation(1)[:4])  # the last 2 rows of epoch 0 are dropped
    assert (stream.epoch, stream.offset) == (1, 4)


def test_an_exact_fit_uses_every_row_before_the_next_epoch():
    stream = CandidateStream(6, seed=0)
    rows = np.concatenate([stream.next(3), stream.next(3)])
    assert sorted(rows.tolist()) == list(range(6)) and stream.epoch == 0
    stream.next(3)
    assert stream.epoch == 1


def test_the_permutation_is_a_function_of_seed_epoch_and_key():
    assert CandidateStream(50, 1).permutation(4).tolist() == CandidateStream(50, 1).permutation(4).tolist()
    assert CandidateStream(50, 1).permutation(4).tolist() != CandidateStream(50, 1).permutation(5).tolist()
    assert CandidateStream(50, 1).permutation(4).tolist() != CandidateStream(50, 2).permutation(4).tolist()
    assert CandidateStream(50, 1, 0).permutation(0).tolist() != CandidateStream(50, 1, 1).permutation(0).tolist()
    # Independent of numpy.random.default_rng(seed), which a selector seeded with the same integer uses.
    assert CandidateStream(50, 1).permutation(0).tolist() != np.random.default_rng(1).permutation(50).tolist()


def test_state_is_five_integers_and_resumes_the_same_rows():
    uninterrupted = CandidateStream(17, seed=9)
    reference = [uninterrupted.next(5).tolist() for _ in range(9)]
    stopped = CandidateStream(17, seed=9)
    before = [stopped.next(5).tolist() for _ in range(4)]
    state = json.loads(json.dumps(stopped.state_dict()))
    assert state == {"num_rows": 17, "seed": 9, "stream_key": 0, "epoch": 1, "offset": 5}
    resumed = CandidateStream(17, seed=9)
    resumed.load_state_dict(state)
    assert before + [resumed.next(5).tolist() for _ in range(5)] == reference


@pytest.mark.parametrize("change, field", [
    ({"num_rows": 18}, "num_rows"), ({"seed": 1}, "seed"), ({"stream_key": 1}, "stream_key"),
    ({"epoch": -1}, "epoch"), ({"offset": 99}, "offset"), ({"offset": 2.5}, "offset"),
])
def test_a_state_for_other_rows_or_out_of_range_is_refused_and_nothing_moves(change, field):
    stream = CandidateStream(17, seed=9)
    stream.next(5)
    state = {**stream.state_dict(), **change}
    with pytest.raises(ValueError, match=field):
        stream.load_state_dict(state)
    assert (stream.epoch, stream.offset) == (0, 5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_rows"):
        CandidateStream(0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        CandidateStream(5, seed=-1)
    with pytest.raises(ValueError, match="count = 6 > num_rows = 5"):
        CandidateStream(5, seed=0).next(6)
