"""The evidence log: what the loop records, the file round trip, refusal of damaged files, and that a
resumed run or an undone refill round leaves each step logged once."""

from __future__ import annotations

import numpy as np
import pytest

from mopps import MoPPS, Refill, SelectionLoop, SuccessRule
from mopps.loop import EvidenceLog, read_evidence_log


def _run(loop: SelectionLoop, steps: int, rates: np.ndarray, rng: np.random.Generator, k: int = 4) -> None:
    for _ in range(steps):
        batch = loop.next(k)
        rewards = (rng.random(len(batch) * 8) < np.repeat(rates[batch.positions], 8)).astype(float)
        loop.observe(np.repeat(batch.ids, 8), rewards)


def _loop(log, ids=None, seed=0):
    ids = np.arange(40) if ids is None else ids
    return SelectionLoop(MoPPS(discount=0.5, seed=seed), ids, rule=SuccessRule("threshold", 1.0), ts_ratio=3,
                         seed=seed, evidence_log=log)


def test_loop_records_every_selection_and_outcome(tmp_path):
    rates = np.linspace(0.0, 1.0, 40)
    log = EvidenceLog(tmp_path / "log.npz", meta={"source": "test", "group_size": 8})
    loop = _loop(log)
    _run(loop, 5, rates, np.random.default_rng(0))
    log.flush()
    stream = read_evidence_log(tmp_path / "log.npz")
    assert stream.meta == {"source": "test", "group_size": 8}
    candidates, outcomes = stream.tables["candidates"], stream.tables["outcomes"]
    np.testing.assert_array_equal(stream.steps(), np.arange(1, 6))
    assert len(candidates["step"]) == 5 * 12 and candidates["chosen"].sum() == 5 * 4
    assert len(outcomes["step"]) == 5 * 4 and np.all(outcomes["trials"] == 8)
    rows = stream.rows()
    # Exactly the chosen candidates have outcomes, at the step that chose them.
    np.testing.assert_array_equal(rows["trials"] > 0, rows["chosen"])
    assert np.isnan(rows["successes"][~rows["chosen"]]).all() and np.isnan(rows["exact_rate"]).all()
    assert not np.isnan(rows["predicted_rate"]).any()


def test_string_ids_and_exact_rates_round_trip(tmp_path):
    ids = [f"p{i}" for i in range(40)]
    log = EvidenceLog(tmp_path / "log.npz")
    loop = _loop(log, ids=ids)
    batch = loop.next(4)
    log.record_exact(batch.step, loop.ids_at(batch.candidates), np.full(len(batch.candidates), 0.25))
    loop.observe(np.repeat(batch.ids, 2), np.array([1.0, 0.0] * 4))
    log.record_pool(0, ["p0", "p1"], np.array([0.1, 0.2]))
    log.flush()
    stream = read_evidence_log(tmp_path / "log.npz")
    rows = stream.rows()
    assert rows["prompt_id"].dtype.kind == "U" and stream.has_exact()
    np.testing.assert_allclose(rows["exact_rate"], 0.25)
    np.testing.assert_allclose(rows["successes"][rows["chosen"]], 1.0)
    assert list(stream.tables["pool"]["prompt_id"]) == ["p0", "p1"]


def test_damaged_or_foreign_files_are_refused_naming_the_file(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    _run(_loop(log), 3, np.full(40, 0.5), np.random.default_rng(0))
    log.flush()
    data = (tmp_path / "log.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        read_evidence_log(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz"):
        read_evidence_log(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="evidence_log"):
        SelectionLoop(MoPPS(), np.arange(5), evidence_log=str(tmp_path / "log.npz"))


def test_a_resumed_run_logs_each_step_once_and_equals_the_uninterrupted_log(tmp_path):
    rates = np.linspace(0.05, 0.95, 40)
    whole = EvidenceLog(tmp_path / "whole.npz")
    _run(_loop(whole), 8, rates, np.random.default_rng(1))
    whole.flush()

    first = EvidenceLog(tmp_path / "resumed.npz")
    loop = _loop(first)
    rng = np.random.default_rng(1)
    _run(loop, 5, rates, rng)
    checkpoint, rng_at_checkpoint = loop.state_dict(), rng.bit_generator.state
    _run(loop, 2, rates, rng)  # steps 6-7 are logged, then the run dies before its next checkpoint
    first.flush()

    reopened = EvidenceLog(tmp_path / "resumed.npz")  # the restarted process continues the file
    resumed = _loop(reopened)
    resumed.load_state_dict(checkpoint)
    rng.bit_generator.state = rng_at_checkpoint
    _run(resumed, 3, rates, rng)
    reopened.flush()
    expected, got = read_evidence_log(tmp_path / "whole.npz"), read_evidence_log(tmp_path / "resumed.npz")
    for table in ("candidates", "outcomes"):
        order = np.lexsort((got.tables[table]["prompt_id"], got.tables[table]["step"]))
        reference = np.lexsort((expected.tables[table]["prompt_id"], expected.tables[table]["step"]))
        for column, values in expected.tables[table].items():
            np.testing.assert_array_equal(got.tables[table][column][order], values[reference], err_msg=column)


def test_an_undone_refill_round_leaves_no_row(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    loop = _loop(log)

    def failing(batch):
        raise RuntimeError("rollout workers died")

    with pytest.raises(RuntimeError):
        Refill(loop, 3).fill(4, failing)
    assert len(log.tables()["candidates"]["step"]) == 0
    _run(loop, 1, np.full(40, 0.5), np.random.default_rng(0))
    np.testing.assert_array_equal(np.unique(log.tables()["candidates"]["step"]), [1])


def test_a_new_run_never_overwrites_another_runs_log(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    _run(_loop(log), 3, np.full(40, 0.5), np.random.default_rng(0))
    log.flush()
    before = (tmp_path / "log.npz").read_bytes()
    loop = _loop(EvidenceLog(tmp_path / "log.npz"))
    with pytest.raises(ValueError, match="another run's log"):
        loop.next(4)
    assert loop.step == 0 and (tmp_path / "log.npz").read_bytes() == before


def test_an_undone_block_that_restored_a_checkpoint_gives_back_the_rows_it_dropped(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    loop = _loop(log)
    rng = np.random.default_rng(0)
    _run(loop, 1, np.full(40, 0.5), rng)
    early = loop.state_dict()
    _run(loop, 2, np.full(40, 0.5), rng)
    before = log.tables()
    with pytest.raises(RuntimeError):
        with loop.atomic():
            loop.load_state_dict(early)
            raise RuntimeError("the host's own restore failed after the loop's")
    assert loop.step == 3
    for table, columns in before.items():
        for name, values in columns.items():
            np.testing.assert_array_equal(log.tables()[table][name], values, err_msg=f"{table}/{name}")


def test_a_group_observed_in_two_calls_counts_whole_and_evidence_arrives_when_observed(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    loop = _loop(log)
    first = loop.next(4)
    second = loop.next(4)  # chosen before the first batch's evidence arrives, as verl's refills are
    ids = np.concatenate([first.ids, second.ids])
    loop.observe(np.repeat(ids, 2), np.tile([1.0, 0.0], len(ids)))
    loop.observe(np.repeat(first.ids, 2), np.ones(8))  # the rest of the first batch's groups
    log.flush()
    stream = read_evidence_log(tmp_path / "log.npz")
    rows = stream.rows()
    at_first = rows["chosen"] & (rows["step"] == 1)
    np.testing.assert_array_equal(rows["successes"][at_first], 3.0)
    np.testing.assert_array_equal(rows["trials"][at_first], 4.0)
    np.testing.assert_array_equal(np.unique(stream.tables["outcomes"]["observed_step"]), [2])


def test_opening_another_runs_log_changes_nothing_in_it(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz", meta={"seed": 1})
    _run(_loop(log), 2, np.full(40, 0.5), np.random.default_rng(0))
    log.flush()
    before = (tmp_path / "log.npz").read_bytes()
    stranger = EvidenceLog(tmp_path / "log.npz", meta={"seed": 99})
    loop = _loop(stranger)
    with pytest.raises(ValueError, match="another run's log"):
        loop.next(4)
    stranger.flush()  # a host flushing at the end of a failed run
    assert (tmp_path / "log.npz").read_bytes() == before
    assert read_evidence_log(tmp_path / "log.npz").meta == {"seed": 1}


def test_columns_of_different_lengths_are_refused_before_anything_is_recorded(tmp_path):
    log = EvidenceLog(tmp_path / "log.npz")
    with pytest.raises(ValueError, match="different lengths"):
        log.record_exact(1, np.arange(4), np.zeros(2))
    with pytest.raises(ValueError, match="chosen_index"):
        log.record_selection(1, np.arange(4), np.array([5]), None)
    assert log.rows_per_table() == dict.fromkeys(("candidates", "outcomes", "exact", "pool"), 0)
