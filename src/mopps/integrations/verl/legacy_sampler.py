"""MoPPS as a verl curriculum sampler, for verl 0.5 - 0.7.1 (the hook was removed in 0.8, PR #6302).

Set ``data.sampler.class_path=pkg://mopps.integrations.verl.legacy_sampler``,
``data.sampler.class_name=MoPPSCurriculumSampler``, ``data.dataloader_num_workers=0`` and the
settings under ``+data.sampler.mopps.*`` (verl hands samplers only the ``data`` node).

The sampler yields dataset row positions; it maps them to stable prompt keys once (``dataset_keys``)
and selects lazily, one batch at a time: when the dataloader asks for the first position of a batch,
it draws ``ts_ratio * B`` candidate rows (a reshuffled pass over the data, no repeats within one
draw) and the selector keeps B. ``RayPPOTrainer.fit`` calls ``update(batch)`` after each step; rows
are grouped by ``uid``. ``state_dict``/``load_state_dict`` make torchdata's ``StatefulDataLoader``
restore the sampler (selector, candidate stream, position in the epoch) instead of replaying it.

Known limit of verl <= 0.7.1: ``fit`` saves a checkpoint before calling ``update``, so the state in
checkpoint N holds the evidence of steps 1 .. N-1; the DAPO recipe trainer never calls ``update``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mopps.core.validation import generator_from_state
from mopps.integrations.verl.config import MoPPSVerlConfig
from mopps.integrations.verl.evidence import group_evidence, key_of_uid_from_rows
from mopps.integrations.verl.keys import dataset_keys, keys_of_rows
from mopps.integrations.verl.ledger import SelectionLedger

try:
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _SamplerBase
except ModuleNotFoundError:  # verl >= 0.8 has no curriculum hook; the class still works standalone
    from torch.utils.data import Sampler as _SamplerBase

logger = logging.getLogger(__name__)

STATE_FORMAT = "mopps.verl-curriculum-sampler"
SCORE_KEY = "score"


class MoPPSCurriculumSampler(_SamplerBase):
    """verl ``AbstractCurriculumSampler`` that lets MoPPS choose each batch.

    ``data_source``: verl's ``RLHFDataset`` (its ``dataframe`` supplies ``data_source`` and
    ``extra_info.index``); ``data_config``: verl's ``data`` config node; B is ``data.gen_batch_size``
    if set, else ``data.train_batch_size``. ``len(sampler)`` = B * (number of rows // B), so an epoch
    has as many steps as with verl's own sampler.
    """

    def __init__(self, data_source, data_config) -> None:
        sampler_node = data_config.get("sampler") or {}
        self.config = MoPPSVerlConfig.from_mapping(sampler_node.get("mopps"))
        self.batch_size = int(data_config.get("gen_batch_size") or data_config.get("train_batch_size"))
        self.keys = dataset_keys(data_source)  # position -> key, checked unique
        if len(self.keys) < self.batch_size:
            raise ValueError(f"data.train_batch_size = {self.batch_size} exceeds the {len(self.keys)} training prompts")
        self.selector = self.config.build_selector()
        self.config.apply_prior_file(self.selector, self.keys, "data_source/extra_info.index of the training set")
        self.ledger = SelectionLedger()
        self.candidate_rng = np.random.default_rng([self.config.seed_or(0), 1])  # independent of the selector's
        self._permutation = self.candidate_rng.permutation(len(self.keys))
        self._cursor = 0
        self._chunk = np.zeros(0, dtype=np.int64)
        self._chunk_cursor = 0
        self._yielded = 0

    def __len__(self) -> int:
        return (len(self.keys) // self.batch_size) * self.batch_size

    def __iter__(self):
        while self._yielded < len(self):
            if self._chunk_cursor == len(self._chunk):
                self._select_chunk()
            position = int(self._chunk[self._chunk_cursor])
            self._chunk_cursor += 1
            self._yielded += 1
            yield position
        self._yielded = 0

    def _select_chunk(self) -> None:
        """Draw the candidates of the next batch and keep the B the selector picks."""
        candidates = self._draw_candidates(self.config.num_candidates(self.batch_size, len(self.keys)))
        candidate_keys = [self.keys[position] for position in candidates]
        choice = self.selector.select(candidate_keys, self.batch_size)
        self._chunk = candidates[choice.index]
        self._chunk_cursor = 0
        chosen_keys = [candidate_keys[i] for i in choice.index]
        self.ledger.record(
            chosen_keys, chosen_keys, choice.scores[choice.index], choice.predicted_rate[choice.index], len(candidates)
        )

    def _draw_candidates(self, count: int) -> np.ndarray:
        """``count`` distinct row positions, int64 (count,), continuing a reshuffled pass over the data."""
        drawn: list[int] = []
        seen: set[int] = set()
        while len(drawn) < count:
            if self._cursor == len(self._permutation):
                self._permutation = self.candidate_rng.permutation(len(self.keys))
                self._cursor = 0
            position = int(self._permutation[self._cursor])
            self._cursor += 1
            if position not in seen:
                seen.add(position)
                drawn.append(position)
        return np.asarray(drawn, dtype=np.int64)

    def update(self, batch) -> None:
        """Learn from one trained verl ``DataProto``: rows grouped by ``non_tensor_batch['uid']``,
        keyed by ``data_source`` + ``extra_info.index``, judged on ``mopps.reward_key``."""
        rows = batch.non_tensor_batch
        for field in ("uid", "data_source", "extra_info"):
            if field not in rows:
                raise ValueError(f"batch.non_tensor_batch has no {field!r}; it has {sorted(rows)}")
        uids = [str(uid) for uid in rows["uid"]]
        key_of_uid = key_of_uid_from_rows(uids, keys_of_rows(rows["data_source"], rows["extra_info"]))
        evidence = group_evidence(uids, self._rewards(batch), self.config.build_success_rule(), key_of_uid)
        if not self.config.bandit_no_update:
            self.selector.update(evidence.keys, evidence.successes, evidence.trials)
        self.ledger.settle(evidence.keys, evidence.successes, evidence.trials)
        logger.info("MoPPS sampler: %s", self.ledger.pop_metrics())

    def _rewards(self, batch) -> np.ndarray:
        """The judged value per row, float (r,): ``non_tensor_batch[reward_key]`` (reward extras such
        as ``acc``) or, for ``"score"``, ``token_level_scores`` summed over tokens."""
        reward_key = self.config.reward_key
        if reward_key == SCORE_KEY:
            return batch.batch["token_level_scores"].sum(dim=-1).double().cpu().numpy()
        if reward_key not in batch.non_tensor_batch:
            raise ValueError(
                f"batch.non_tensor_batch has no {reward_key!r} (reward extras there: "
                f"{sorted(batch.non_tensor_batch)}); set data.sampler.mopps.reward_key, or 'score'"
            )
        return np.asarray(batch.non_tensor_batch[reward_key], dtype=np.float64)

    # -- torchdata StatefulDataLoader protocol -------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: selector, candidate stream, place in the epoch."""
        return {
            "format": STATE_FORMAT,
            "num_prompts": len(self.keys),
            "batch_size": self.batch_size,
            "selector": self.selector.state_dict(),
            "candidate_rng": self.candidate_rng.bit_generator.state,
            "permutation": self._permutation.tolist(),
            "cursor": self._cursor,
            "chunk": self._chunk.tolist(),
            "chunk_cursor": self._chunk_cursor,
            "yielded": self._yielded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``; raises ``ValueError`` naming the field if the data or batch
        size changed since it was saved."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state['format'] = {state.get('format')!r}; expected {STATE_FORMAT!r}")
        for field, current in (("num_prompts", len(self.keys)), ("batch_size", self.batch_size)):
            if state[field] != current:
                raise ValueError(f"state['{field}'] = {state[field]} but this run has {current}")
        # Read everything that can fail before the selector (the last step) takes its new state, so a
        # rejected state leaves the sampler as it was.
        rng = generator_from_state(state["candidate_rng"], "state['candidate_rng']")
        permutation = np.asarray(state["permutation"], dtype=np.int64)
        chunk = np.asarray(state["chunk"], dtype=np.int64)
        cursor, chunk_cursor, yielded = int(state["cursor"]), int(state["chunk_cursor"]), int(state["yielded"])
        self.selector.load_state_dict(state["selector"])
        self.candidate_rng = rng
        self._permutation, self._cursor = permutation, cursor
        self._chunk, self._chunk_cursor = chunk, chunk_cursor
        self._yielded = yielded
