"""``mopps.testing.check_selector`` fails, naming the property, for selectors that break the protocol."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from mopps import MoPPS
from mopps.testing import check_selector


class ForgetsGeneratorOnLoad(MoPPS):
    """Restores the posteriors but keeps its own generator."""

    def load_state_dict(self, state):
        generator = self.rng
        super().load_state_dict(state)
        self.rng = generator


class HalfAppliesRefusedUpdates(MoPPS):
    """Applies evidence row by row, so a bad row is refused after the rows before it were applied."""

    def update(self, ids, successes, trials):
        ids, successes, trials = list(ids), list(successes), list(trials)
        if not (len(ids) == len(successes) == len(trials)):
            return super().update(ids, successes, trials)
        for row in range(len(ids)):
            super().update(ids[row:row + 1], successes[row:row + 1], trials[row:row + 1])


class IgnoresItsSeed(MoPPS):
    def __init__(self, seed=0, **kwargs):
        super().__init__(seed=0, **kwargs)


class DrawsFromTheGlobalGenerator(MoPPS):
    """Thompson draws from numpy's global generator, which is neither seeded nor saved."""

    def _choose(self, state, kind, ids, k, rng):
        return super()._choose(state, kind, ids, k, np.random.default_rng(np.random.randint(2**31)))


class AcceptsAnySeed(MoPPS):
    def __init__(self, seed=0, **kwargs):
        super().__init__(seed=seed if isinstance(seed, int) and seed >= 0 else 0, **kwargs)


class RefusesNothingInItsState(MoPPS):
    def _restore(self, arrays):
        try:
            return super()._restore(arrays)
        except (KeyError, TypeError, ValueError):
            return self.state


@pytest.mark.parametrize("broken, property_name", [
    (ForgetsGeneratorOnLoad, "round_trip_memory"),
    (HalfAppliesRefusedUpdates, "bad_input"),
    (IgnoresItsSeed, "seed"),
    (DrawsFromTheGlobalGenerator, "determinism"),
    (AcceptsAnySeed, "seed_type"),
    (RefusesNothingInItsState, "corrupt_state"),
])
def test_a_broken_selector_fails_on_the_property_it_breaks(broken, property_name):
    with pytest.raises(AssertionError, match=rf"\[{property_name}\]"):
        check_selector(broken)


def test_the_message_says_what_differs():
    with pytest.raises(AssertionError) as raised:
        check_selector(HalfAppliesRefusedUpdates)
    assert "changed the selector's step, arrays" in str(raised.value)


def test_an_exception_inside_a_property_is_reported_under_its_name():
    class CannotBeLoaded(MoPPS):
        def __init__(self, seed=0):  # no config arguments: load cannot rebuild it
            super().__init__(seed=seed)

    with pytest.raises(AssertionError, match=r"\[round_trip_file\] with int ids: raised ValueError"):
        check_selector(CannotBeLoaded)


def test_a_selector_that_keeps_the_protocol_passes():
    check_selector(MoPPS)
    check_selector(lambda seed: MoPPS(strategy="greedy_mean", seed=seed))  # deterministic: the seed may not matter


def test_the_custom_selector_example_passes():
    example = Path(__file__).resolve().parents[1] / "examples" / "custom_selector.py"
    namespace = runpy.run_path(str(example))
    check_selector(namespace["MostWins"], id_kinds=("int",))


class SharesArraysWithItsStateDict(MoPPS):
    """Restores the posteriors without copying them, so its in-place updates reach the state dict."""

    def _restore(self, arrays):
        restored = super()._restore(arrays)
        return restored._replace(alpha=arrays["alpha"], beta=arrays["beta"])


def test_a_selector_sharing_arrays_with_its_state_dict_fails():
    with pytest.raises(AssertionError, match=r"\[independent_loads\] with int ids: using a selector changed the "
                                             r"state dict it was loaded from, in arrays"):
        check_selector(SharesArraysWithItsStateDict)
