"""``SelectionLoop.add_features`` checks the features whether or not its selector takes them."""

import numpy as np
import pytest

from mopps import ContextualMoPPS, MoPPS
from mopps.loop import SelectionLoop


@pytest.mark.parametrize("selector", [MoPPS, ContextualMoPPS])
@pytest.mark.parametrize("features, message", [
    ([[0.0, 1.0], [np.nan, 1.0]], r"features\[1, 0\] = nan; features must be finite"),
    ([[0.0, np.inf], [0.0, 1.0]], r"features\[0, 1\] = inf"),
    ([0.0, 1.0], "features must be two-dimensional"),
    ([[0.0, 1.0]], r"len\(ids\) = 2, len\(features\) = 1"),
    ([["a", "b"], ["c", "d"]], "features must be numbers"),
])
def test_bad_features_are_refused_even_by_a_selector_that_ignores_them(selector, features, message):
    loop = SelectionLoop(selector(seed=0), np.arange(10))
    before = loop.selector.state_dict()
    with pytest.raises(ValueError, match=message):
        loop.add_features([3, 4], features)
    assert len(loop.selector) == 0 and loop.selector.state_dict()["step"] == before["step"]


def test_good_features_go_to_a_selector_that_takes_them_only():
    features = np.random.default_rng(0).standard_normal((10, 3))
    assert SelectionLoop(MoPPS(seed=0), np.arange(10)).add_features(np.arange(10), features) is False
    loop = SelectionLoop(ContextualMoPPS(seed=0), np.arange(10))
    assert loop.add_features(np.arange(10), features) is True
    assert len(loop.selector) == 10
