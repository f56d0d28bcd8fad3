"""MoPPSGRPOTrainer on two processes (torchrun, gloo on CPU): both ranks must hold the same posterior,
built from the rewards of both, and roll out the same prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # two-process torchrun launches
pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")

from _tiny_trl import rescore  # noqa: E402

HERE = Path(__file__).resolve().parent


def run_two_ranks(out_dir: Path, seeding: str) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "_trl_two_ranks.py"), str(out_dir), seeding]
    # A guard against a hung rank, not a speed bound: generous enough for a saturated machine.
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_two_ranks_choose_identically_from_gathered_rewards(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, "same-seed")
    assert (rank0["world"], rank1["world"]) == (2, 2)
    assert "error" not in rank0 and "error" not in rank1
    assert len(rank0["choices"]) == 3
    assert rank0["choices"] == rank1["choices"]
    assert rank0["steps"] == rank1["steps"] == [0, 1, 2]  # each choice saw all earlier rewards
    assert rank0["arrays"] == rank1["arrays"]
    # Each rank scored its own slice; together they are the chosen prompts in TRL's layout, and the
    # posterior on each rank holds the evidence of both slices.
    for generation, choice in enumerate(rank0["choices"]):
        layout = [prompt for prompt in choice for _ in range(4)]
        assert rank0["scored_prompt_ids"][6 * generation:6 * generation + 6] == layout[:6]
        assert rank1["scored_prompt_ids"][6 * generation:6 * generation + 6] == layout[6:]
    assert rank0["rollouts"] == rank1["rollouts"] == 3 * 12
    arrays = rank0["arrays"]
    assert sum(arrays["alpha"]) + sum(arrays["beta"]) - 2 * len(arrays["ids"]) == pytest.approx(36)


def test_ranks_that_disagree_stop_with_an_error(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, "rank-seed")
    for record in (rank0, rank1):
        assert "processes chose different prompts" in record.get("error", "")


@pytest.mark.parametrize("mode, round_prompts", [("dynamic-sampling", 3), ("dynamic-sampling-wide", 5)])
def test_two_ranks_refill_identically_and_train_the_kept_groups(tmp_path, mode, round_prompts):
    rank0, rank1 = run_two_ranks(tmp_path, mode)
    assert "error" not in rank0 and "error" not in rank1
    assert rank0["choices"] == rank1["choices"] and rank0["arrays"] == rank1["arrays"]
    assert {len(choice) for choice in rank0["choices"]} == {round_prompts}
    assert rank0["generation_batches"] == rank1["generation_batches"]
    assert sum(rank0["generation_batches"]) == len(rank0["choices"]) >= 3  # decided alike, every round
    if mode == "dynamic-sampling":
        assert len(rank0["choices"]) > 3  # refills happened
    assert rank0["rollouts"] == rank1["rollouts"] == 4 * round_prompts * len(rank0["choices"])
    for mine, theirs in zip(rank0["trained"], rank1["trained"], strict=True):
        assert mine["positions"] == theirs["positions"]
        # Rank 0 holds the first 6 rows of the generation batch, rank 1 the last 6; the middle group
        # straddles the two, and its rows may have been generated on either rank in any round.
        prompts = mine["prompts"] + theirs["prompts"]
        assert prompts == [f"{a} + {b} =" for position in mine["positions"]
                           for a, b in [((position % 10), (position * 7 + 3) % 10)] for _ in range(4)]
        outcomes = np.array(rescore(prompts, mine["completions"] + theirs["completions"])).reshape(3, 4)
        assert ((outcomes.min(axis=1) == 0) & (outcomes.max(axis=1) == 1)).all()
        assert mine["num_items_in_batch"] == theirs["num_items_in_batch"] == mine["loss_tokens"] + theirs["loss_tokens"]


def test_two_ranks_allocate_identically_and_train_pilot_plus_commit_groups(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, "allocation")
    assert "error" not in rank0 and "error" not in rank1
    assert rank0["choices"] == rank1["choices"] and rank0["arrays"] == rank1["arrays"]
    assert rank0["pilot_rollouts"] == rank1["pilot_rollouts"] and len(rank0["pilot_rollouts"]) >= 1
    assert rank0["rollouts"] == rank1["rollouts"] > 0
    for mine, theirs in zip(rank0["trained"], rank1["trained"], strict=True):
        assert mine["positions"] == theirs["positions"] and len(mine["positions"]) == 2
        # 16 rows: each trained prompt's group of 8 (its 4 pilot and 4 commit rollouts); rank 0 holds
        # the first prompt's group, rank 1 the second's.
        prompts = mine["prompts"] + theirs["prompts"]
        assert prompts == [f"{a} + {b} =" for position in mine["positions"]
                           for a, b in [((position % 10), (position * 7 + 3) % 10)] for _ in range(8)]
        assert mine["num_items_in_batch"] == theirs["num_items_in_batch"] == mine["loss_tokens"] + theirs["loss_tokens"]
