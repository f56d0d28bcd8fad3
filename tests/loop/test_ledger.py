"""PredictionLedger: predictions settle by prompt id, oldest first, in any order and grouping."""

from __future__ import annotations

import numpy as np
import pytest

from mopps.loop import PredictionLedger


def test_evidence_in_any_order_and_grouping_settles_the_oldest_prediction_of_each_prompt():
    ledger = PredictionLedger()
    ledger.record("int", np.array([4, 7, 9]), np.array([0.1, 0.2, 0.3]), step=1)
    ledger.record("int", np.array([7, 2]), np.array([0.6, 0.7]), step=2)
    found, predicted, step = ledger.settle("int", np.array([2, 7, 8]))
    assert found.tolist() == [True, True, False]
    np.testing.assert_array_equal(predicted[:2], [0.7, 0.2])  # 7's step-1 prediction goes first
    assert step.tolist() == [2, 1, -1] and np.isnan(predicted[2])
    found, predicted, step = ledger.settle("int", np.array([7]))
    assert predicted.tolist() == [0.6] and step.tolist() == [2]
    assert len(ledger) == 2 and ledger.ids.tolist() == [4, 9]


def test_string_ids_and_a_selector_without_predictions():
    ledger = PredictionLedger()
    ledger.record("str", ["b", "a\0"], None, step=1)
    found, predicted, _ = ledger.settle("str", ["a", "a\0"])
    assert found.tolist() == [False, True] and np.isnan(predicted).all()
    assert ledger.ids == ["b"]


def test_state_round_trips_and_damage_is_refused():
    ledger = PredictionLedger()
    ledger.record("str", ["x", "y"], np.array([0.5, 0.25]), step=3)
    restored = PredictionLedger.checked(ledger.state_dict())
    assert restored.ids == ["x", "y"] and restored.step.tolist() == [3, 3]
    state = ledger.state_dict()
    for change in ({"step": np.array([0, 3])}, {"predicted": np.array([0.5, 1.5])}, {"ids": ["x"]},
                   {"id_kind": "int"}, {"step": np.array([1.0, 2.0])}):
        with pytest.raises(ValueError):
            PredictionLedger.checked({**state, **change})


class CountedId(str):
    """A str id that counts the comparisons made with it (the cost of settling, without a clock)."""

    comparisons = 0

    def _count(self, other, compare):
        CountedId.comparisons += 1
        return compare(str(self), str(other))

    def __eq__(self, other):
        return self._count(other, str.__eq__)

    def __lt__(self, other):
        return self._count(other, str.__lt__)

    def __gt__(self, other):
        return self._count(other, str.__gt__)

    __hash__ = str.__hash__


def test_settling_str_ids_compares_each_evidence_id_about_once_however_many_are_open():
    # np.isin over object arrays compared every open entry with the evidence (sorting them all).
    ledger = PredictionLedger()
    for step in range(1, 101):
        ledger.record("str", [CountedId(f"p{step}-{i}") for i in range(50)], None, step=step)
    query = [CountedId(f"p100-{i}") for i in range(50)] + [CountedId("never")]
    CountedId.comparisons = 0
    found, _, step = ledger.settle("str", query)
    assert found.sum() == 50 and (step[:50] == 100).all()
    assert CountedId.comparisons <= 2 * len(query)
    assert len(ledger) == 4950


def test_repeated_open_ids_round_trip_and_settle_oldest_first():
    ledger = PredictionLedger()
    ledger.record("str", ["a", "b"], np.array([0.1, 0.2]), step=1)
    ledger.record("str", ["b", "a"], np.array([0.3, 0.4]), step=2)
    restored = PredictionLedger.checked(ledger.state_dict())
    for copy in (ledger, restored):
        found, predicted, step = copy.settle("str", ["b"])
        assert found.tolist() == [True] and predicted.tolist() == [0.2] and step.tolist() == [1]
        assert copy.ids == ["a", "b", "a"]
    ints = PredictionLedger.checked({"id_kind": "int", "ids": np.array([9, 4, 9]),
                                     "predicted": np.array([0.1, 0.2, 0.3]), "step": np.array([1, 1, 2])})
    assert ints.settle("int", np.array([9]))[1].tolist() == [0.1] and ints.ids.tolist() == [4, 9]
