"""``rollout_rows``: rows of several generation rounds, each padded to its own width, reassembled.

End-to-end runs rarely produce rounds of different widths (a tiny model's completions all reach the
length cap), so the padding of every key is checked here on hand-made rounds.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from mopps.integrations.trl.rollout_rows import assemble_rollouts, count_loss_tokens, gather_rollouts  # noqa: E402

PAD = 0


def left_padded(rows: list[list[int]], value=PAD) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([[value] * (width - len(row)) + row for row in rows])


def right_padded(rows: list[list], value=PAD) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def round_of(prompts: list[list[int]], completions: list[list[int]], advantages: list[float]) -> dict:
    """One gathered round as TRL pads it: prompts left, completions and per-token values right."""
    logps = [[-0.5 - 0.1 * token for token in row] for row in completions]
    return {
        "prompt_ids": left_padded(prompts),
        "prompt_mask": left_padded([[1] * len(row) for row in prompts]),
        "completion_ids": right_padded(completions),
        "completion_mask": right_padded([[1] * len(row) for row in completions]),
        "tool_mask": right_padded([[1] * (len(row) - 1) + [0] for row in completions], value=1),
        "old_per_token_logps": right_padded(logps, value=0.0),
        "ref_per_token_logps": right_padded(logps, value=0.0),
        "importance_sampling_ratio": torch.ones(len(prompts), 1),
        "advantages": torch.tensor(advantages),
    }


ROUND_A = round_of([[5, 6], [7, 8, 9]], [[11], [12, 13]], [0.5, -0.5])  # widths 3 and 2
ROUND_B = round_of([[21], [22, 23, 24, 25]], [[31, 32, 33], [34]], [1.0, -1.0])  # widths 4 and 3


def test_rows_of_several_rounds_keep_their_tokens_masks_and_values_under_a_common_padding():
    rows = np.array([[1, 1], [0, 0], [1, 0]])  # B's 2nd row, A's 1st, B's 1st
    batch = assemble_rollouts([ROUND_A, ROUND_B], rows, PAD)
    assert batch["prompt_ids"].tolist() == [[22, 23, 24, 25], [0, 0, 5, 6], [0, 0, 0, 21]]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert batch["completion_ids"].tolist() == [[34, 0, 0], [11, 0, 0], [31, 32, 33]]
    assert batch["completion_mask"].tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 1]]
    assert batch["tool_mask"].tolist() == [[0, 1, 1], [0, 1, 1], [1, 1, 0]]
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        np.testing.assert_allclose(batch[key].numpy(), [[-3.9, 0, 0], [-1.6, 0, 0], [-3.6, -3.7, -3.8]], atol=1e-6)
    assert batch["importance_sampling_ratio"].shape == (3, 1)
    assert batch["advantages"].tolist() == [-1.0, 0.5, 1.0]
    # The loss counts completion tokens the tool mask leaves in: 0 + 0 + 2.
    assert int(count_loss_tokens(batch)) == 2


def test_a_row_may_be_taken_twice_and_rounds_must_agree_on_their_keys():
    batch = assemble_rollouts([ROUND_A, ROUND_B], np.array([[0, 1], [0, 1]]), PAD)
    assert batch["prompt_ids"].tolist() == [[0, 7, 8, 9], [0, 7, 8, 9]]  # padded to the widest round
    without_tools = {key: value for key, value in ROUND_B.items() if key != "tool_mask"}
    with pytest.raises(ValueError, match="different keys"):
        assemble_rollouts([ROUND_A, without_tools], np.array([[0, 0]]), PAD)


def test_one_process_gathers_its_own_rows_and_drops_the_batch_total():
    accelerator = Accelerator(cpu=True)
    gathered = gather_rollouts({**ROUND_A, "num_items_in_batch": torch.tensor(3)}, accelerator, PAD)
    assert "num_items_in_batch" not in gathered
    for key, value in ROUND_A.items():
        assert torch.equal(gathered[key], value), key


def test_outputs_it_cannot_move_are_named():
    with pytest.raises(ValueError, match="'pixel_values'"):
        gather_rollouts({**ROUND_A, "pixel_values": torch.zeros(2, 3)}, Accelerator(cpu=True), PAD)
