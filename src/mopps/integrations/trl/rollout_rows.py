"""TRL's per-rollout tensors gathered across processes and reassembled, for dynamic sampling.

``GRPOTrainer._generate_and_score_completions`` (trl 1.16) returns, on each process, a dict with one
row per local rollout; 2-D tensors are padded to that process's longest row: prompts on the left,
completions (and everything per completion token) on the right. Dynamic sampling trains on groups
from several generation rounds, each round's rollouts spread over all processes, so this module

1. ``gather_rollouts``: turns one round's per-process dict into the whole round's rows on every
   process (padded across processes, then ``accelerator.gather``; rows in generation-batch order);
2. ``assemble_rollouts``: builds the trained batch from chosen rows of several rounds, re-padding
   every tensor to a common width with its own side and value;
3. ``count_loss_tokens``: recomputes ``num_items_in_batch`` (TRL's loss normaliser) for that batch.

What is trained is decided elsewhere (``mopps.Refill``); this only moves rows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# key -> (padding side, padding value; None = the tokenizer's pad token id) of the 2-D per-rollout
# tensors of trl 1.16's output. Token-level importance ratios and log-probs are right-padded like the
# completion they belong to; the sequence-level ratio is (rows, 1) and never needs padding.
PADDING = {
    "prompt_ids": ("left", None),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "tool_mask": ("right", 1),
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 0.0),
}
PER_ROLLOUT = ("advantages",)  # 1-D, one value per rollout
RECOMPUTED = ("num_items_in_batch",)  # a batch total, recomputed by count_loss_tokens


def gather_rollouts(output: dict, accelerator, pad_token_id: int) -> dict[str, torch.Tensor]:
    """One generation round's rows from every process, in generation-batch order.

    ``output``: this process's ``_generate_and_score_completions`` dict (local rows r). Returns a
    dict of the same per-rollout keys with P * r rows (P processes), 2-D tensors padded to the widest
    process. Raises ``ValueError`` naming a key it cannot move (e.g. images: multimodal batches are
    not supported with dynamic sampling).
    """
    unknown = sorted(set(output) - set(PADDING) - set(PER_ROLLOUT) - set(RECOMPUTED))
    if unknown:
        raise ValueError(f"dynamic sampling cannot move the generation output {unknown[0]!r} between rounds and "
                         f"processes (it moves {sorted(PADDING) + list(PER_ROLLOUT)}); multimodal and other "
                         "extra inputs are not supported with max_num_gen_batches >= 1")
    gathered = {}
    for key, value in output.items():
        if key in RECOMPUTED:
            continue
        if key in PADDING:
            side, pad = _padding(key, pad_token_id)
            value = accelerator.pad_across_processes(value, dim=1, pad_index=pad, pad_first=side == "left")
        gathered[key] = accelerator.gather(value)
    return gathered


def assemble_rollouts(rounds: list[dict[str, torch.Tensor]], rows: np.ndarray, pad_token_id: int) -> dict[str, torch.Tensor]:
    """The rows ``rows`` (int (n, 2): round index, row in that round's gathered batch), in order,
    as one dict of n rows per key; 2-D tensors are padded to the widest round."""
    keys = rounds[0].keys()
    if any(round_.keys() != keys for round_ in rounds):
        raise ValueError(f"generation rounds returned different keys: {[sorted(round_) for round_ in rounds]}")
    offsets = np.cumsum([0] + [len(round_["advantages"]) for round_ in rounds])[:-1]
    flat = torch.as_tensor(offsets[rows[:, 0]] + rows[:, 1], dtype=torch.long)
    assembled = {}
    for key in keys:
        tensors = [round_[key] for round_ in rounds]
        if key in PADDING:
            width = max(tensor.shape[1] for tensor in tensors)
            side, pad = _padding(key, pad_token_id)
            tensors = [F.pad(tensor, (width - tensor.shape[1], 0) if side == "left" else (0, width - tensor.shape[1]),
                             value=pad) for tensor in tensors]
        stacked = torch.cat(tensors)
        assembled[key] = stacked.index_select(0, flat.to(stacked.device))
    return assembled


def count_loss_tokens(rollouts: dict[str, torch.Tensor]) -> torch.Tensor:
    """``num_items_in_batch`` of a batch: the completion tokens the loss counts (completion mask
    times tool mask), a 0-d tensor, as TRL computes it over all processes."""
    mask = rollouts["completion_mask"]
    if "tool_mask" in rollouts:
        mask = mask * rollouts["tool_mask"]
    return mask.sum()


def _padding(key: str, pad_token_id: int):
    side, value = PADDING[key]
    return side, pad_token_id if value is None else value
