"""The gain-curve instruments: each passes the conformance suite (int ids: they index the pool), sees
the exact rate through noise of the kind it names, and the bench names parse."""

from __future__ import annotations

import numpy as np
import pytest

from mopps.core.selection import informative_draw, mixed_group_probability
from mopps.testbed.instruments import InformativeOracle, NoisyOracle, PilotOracle
from mopps.testbed.methods import GAIN_CURVE, build_method, is_method, parse_instrument
from mopps.testing import check_selector

POOL = 400  # check_selector uses ids up to 3 * 120 + 5


def rates(ids) -> np.ndarray:
    return (np.asarray(ids) % 11) / 10.0


@pytest.mark.parametrize("kind", ["fresh", "persistent", "visit"])
def test_noisy_oracles_pass_the_conformance_suite(kind):
    check_selector(lambda seed: NoisyOracle(rates, kind, 1.0, POOL, seed=seed), {"success_rate": rates},
                   id_kinds=("int",))


def test_pilot_and_informative_oracles_pass_the_conformance_suite():
    check_selector(lambda seed: PilotOracle(rates, 8, seed=seed), {"success_rate": rates}, id_kinds=("int",))
    check_selector(lambda seed: InformativeOracle(rates, 8, seed=seed), {"success_rate": rates}, id_kinds=("int",))


def _seen(selector, ids):
    return selector.select(ids, 1).predicted_rate


def test_noise_kinds_differ_in_when_the_noise_is_drawn():
    ids = np.arange(50)
    fresh, persistent, visit = (NoisyOracle(rates, kind, 1.0, POOL, seed=3) for kind in ("fresh", "persistent", "visit"))
    # fresh: a new error at every selection; persistent and visit: the same error until a rollout.
    assert not np.allclose(_seen(fresh, ids), _seen(fresh, ids))
    first = _seen(persistent, ids)
    persistent.update(ids[:10], np.ones(10), np.full(10, 8.0))
    np.testing.assert_allclose(_seen(persistent, ids), first)
    before = _seen(visit, ids)
    np.testing.assert_allclose(_seen(visit, ids), before)
    visit.update(ids[:10], np.ones(10), np.full(10, 8.0))
    after = _seen(visit, ids)
    assert not np.allclose(after[:10], before[:10])  # rolled out: redrawn
    np.testing.assert_allclose(after[10:], before[10:])  # not rolled out: kept


def test_noise_size_sets_the_logit_error():
    ids = np.arange(POOL)
    exact = np.clip(rates(ids), 0.05, 0.95)  # away from 0 and 1, where the clipped logit is extreme
    oracle = NoisyOracle(lambda i: np.clip(rates(i), 0.05, 0.95), "persistent", 0.7, POOL, seed=0)
    seen = _seen(oracle, ids)
    error = np.log(seen / (1 - seen)) - np.log(exact / (1 - exact))
    assert error.std() == pytest.approx(0.7, rel=0.2)
    exact_oracle = NoisyOracle(rates, "fresh", 0.0, POOL, seed=0)
    np.testing.assert_allclose(_seen(exact_oracle, ids), np.clip(rates(ids), 1e-6, 1 - 1e-6), atol=1e-9)


def test_pilot_estimates_are_binomial_means():
    oracle = PilotOracle(rates, 4, seed=0)
    seen = np.stack([_seen(oracle, np.arange(POOL)) for _ in range(200)])
    assert set(np.unique(seen * 4)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    np.testing.assert_allclose(seen.mean(0), rates(np.arange(POOL)), atol=0.12)


def test_informative_draw_follows_mixed_group_probability():
    rng = np.random.default_rng(0)
    candidate_rates = np.array([0.0, 1.0, 0.5, 0.1, 0.9, 0.3])
    counts = np.zeros(len(candidate_rates))
    for _ in range(4000):
        index, _ = informative_draw(candidate_rates, 1, 8, rng)
        counts[index] += 1
    weights = mixed_group_probability(candidate_rates, 8)
    np.testing.assert_allclose(counts / counts.sum(), weights / weights.sum(), atol=0.02)
    # Rates of exactly 0 or 1 come only after every candidate that can give a mixed group.
    index, _ = informative_draw(candidate_rates, 4, 8, rng)
    assert set(index.tolist()) == {2, 3, 4, 5}
    assert len(set(informative_draw(candidate_rates, 6, 8, rng)[0].tolist())) == 6


def test_bench_names_parse_and_build():
    assert len(GAIN_CURVE) == 11
    for name in GAIN_CURVE:
        assert is_method(name)
        method = build_method(name, 0, 8, 10, rates, num_prompts=POOL, group_size=8)
        assert method.candidates == 8
    assert build_method("oracle_pilot:8", 0, 8, 10, rates, num_prompts=POOL).screening_rollouts == 8
    assert parse_instrument("oracle_noise:visit:0.25") == ("oracle_noise", ("visit", 0.25))
    for bad in ("oracle_noise:sticky:1", "oracle_noise:fresh:-1", "oracle_noise:fresh", "oracle_pilot:0",
                "oracle_pilot:x", "oracle_noise:fresh:nan", "nope"):
        assert not is_method(bad), bad
        with pytest.raises(ValueError, match="method"):
            parse_instrument(bad)
