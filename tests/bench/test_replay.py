"""``mopps replay``: a selector replayed on a log of its own run predicts exactly what it predicted in
the run; scores against exact rates and against observed outcomes; the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mopps.bench.replay import REPLAY_SELECTORS, build_replay_selector, replay
from mopps.cli import main
from mopps.core.metrics import spearman
from mopps.loop import EvidenceLog, SelectionLoop, read_evidence_log
from mopps.core.evidence import SuccessRule

POOL, K, N, STEPS = 60, 5, 8, 30


def _logged_run(path, name="mopps_lambda0.5", seed=7, exact=True, drift=0.02):
    """A run of the bench selector ``name`` on prompts whose rates drift upward when trained."""
    rng = np.random.default_rng(seed + 100)
    rates = rng.uniform(0.0, 1.0, POOL)
    log = EvidenceLog(path, meta={"source": "test", "group_size": N, "seed": seed})
    loop = SelectionLoop(build_replay_selector(name, seed, N), np.arange(POOL), rule=SuccessRule("threshold", 1.0),
                         ts_ratio=4, seed=seed, evidence_log=log)
    for _ in range(STEPS):
        batch = loop.next(K)
        if exact:
            log.record_exact(batch.step, batch.candidates, rates[batch.candidates])
        rewards = (rng.random(K * N) < np.repeat(rates[batch.positions], N)).astype(float)
        loop.observe(np.repeat(batch.ids, N), rewards)
        rates[batch.positions] = np.minimum(rates[batch.positions] + drift, 1.0)
    log.flush()
    return read_evidence_log(path)


@pytest.mark.parametrize("name", ["mopps_lambda0.5", "mopps_auto", "contextual"])
def test_replaying_a_selector_on_its_own_run_reproduces_its_predictions(tmp_path, name):
    # ContextualMoPPS and MoPPS(discount="auto") age with the policy ticks the log carries.
    stream = _logged_run(tmp_path / "run.npz", name=name)
    result = replay(stream, build_replay_selector(name, 7, N))
    candidates, exact = stream.tables["candidates"], stream.tables["exact"]
    logged = [spearman(candidates["predicted_rate"][candidates["step"] == step],
                       exact["exact_rate"][exact["step"] == step]) for step in stream.steps()]
    np.testing.assert_allclose(result["per_step"]["spearman"], logged, equal_nan=True)
    assert np.isfinite(result["per_step"]["spearman"]).sum() >= STEPS - 3  # early steps: all at the prior
    assert result["exact"] and result["steps"] == STEPS


def test_scores_rank_a_learning_selector_above_its_prior(tmp_path):
    stream = _logged_run(tmp_path / "run.npz", name="uniform", drift=0.0)
    learned = replay(stream, build_replay_selector("mopps", 0, N))["scores"]
    fixed = replay(stream, build_replay_selector("contextual", 0, N))["scores"]
    assert learned["spearman"] > 0.3
    for score in ("brier", "logloss", "zero_variance"):
        assert np.isfinite(learned[score]) and np.isfinite(fixed[score])
    # A selector aiming at 0.5 chooses fewer zero-variance groups than the run's uniform choice.
    rows = stream.rows()
    exact = rows["exact_rate"][rows["chosen"]].astype(float)
    uniform_zero_variance = np.mean(exact**N + (1 - exact) ** N)
    assert learned["zero_variance"] < uniform_zero_variance


def test_without_exact_rates_predictions_are_scored_on_the_next_visit(tmp_path):
    stream = _logged_run(tmp_path / "run.npz", name="uniform", exact=False, drift=0.0)
    result = replay(stream, build_replay_selector("mopps", 0, N))
    assert not result["exact"]
    assert 0.0 < result["scores"]["brier"] < 0.5 and result["scores"]["spearman"] > 0.2
    assert 0.0 <= result["scores"]["zero_variance"] <= 1.0


def test_command_line_scores_every_selector_and_refuses_bad_input(tmp_path, capsys):
    _logged_run(tmp_path / "run.npz")
    assert main(["replay", str(tmp_path / "run.npz"), "--json", str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out
    for name in REPLAY_SELECTORS:
        assert name in printed
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores[str(tmp_path / "run.npz")]) == set(REPLAY_SELECTORS)
    with pytest.raises(SystemExit, match="unknown"):
        main(["replay", str(tmp_path / "run.npz"), "--selectors", "oracle"])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match="bad.npz"):
        main(["replay", str(tmp_path / "bad.npz")])
