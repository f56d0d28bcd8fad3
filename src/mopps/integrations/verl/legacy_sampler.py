"""MoPPS as a verl curriculum sampler, for verl 0.5 - 0.7.1 (the hook was removed in 0.8, PR #6302).

Set ``data.sampler.class_path=pkg://mopps.integrations.verl.legacy_sampler``,
``data.sampler.class_name=MoPPSCurriculumSampler``, ``data.dataloader_num_workers=0`` and the
settings under ``+data.sampler.mopps.*`` (verl hands samplers only the ``data`` node).

The sampler translates between verl's dataloader and one ``mopps.SelectionLoop`` over the dataset's
prompt keys (``dataset_keys``): when the dataloader asks for the first position of a batch, the
loop chooses B rows (``loop.next(B)``, among ``round(ts_ratio * B)`` candidates) and the sampler
yields them one by one. ``RayPPOTrainer.fit`` calls ``update(batch)`` after each step; its rollouts,
keyed by ``data_source`` + ``extra_info.index``, go to ``loop.observe`` (``has_verdict`` 0 = no
evidence). ``state_dict``/``load_state_dict`` make torchdata's ``StatefulDataLoader`` restore the
sampler (the loop's state, plus the current batch and place in the epoch) instead of replaying it.

Known limit of verl <= 0.7.1: ``fit`` saves a checkpoint before calling ``update``, so the state in
checkpoint N holds the evidence of steps 1 .. N-1; the DAPO recipe trainer never calls ``update``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from mopps.core.validation import check_header, check_integer
from mopps.integrations.verl.config import SCORE_KEY, VERDICT_KEY, MoPPSVerlConfig, verdict_mask
from mopps.integrations.verl.keys import keys_of_rows

try:
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _SamplerBase
except ModuleNotFoundError:  # verl >= 0.8 has no curriculum hook; the class still works standalone
    from torch.utils.data import Sampler as _SamplerBase

logger = logging.getLogger(__name__)

STATE_FORMAT = "mopps.verl-curriculum-sampler"
STATE_VERSION = 2  # 1 (mopps <= 0.1): selector + stored permutation; 2: the loop's state


class MoPPSCurriculumSampler(_SamplerBase):
    """verl ``AbstractCurriculumSampler`` that lets a ``mopps.SelectionLoop`` choose each batch.

    ``data_source``: verl's ``RLHFDataset`` (its ``dataframe`` supplies ``data_source`` and
    ``extra_info.index``); ``data_config``: verl's ``data`` config node; B is ``data.gen_batch_size``
    if set, else ``data.train_batch_size``. ``len(sampler)`` = B * (number of rows // B), so an epoch
    has as many steps as with verl's own sampler. ``metrics``: the ``mopps/*`` metrics of the last
    ``update`` (with the candidates and selections since the one before).
    """

    def __init__(self, data_source, data_config) -> None:
        sampler_node = data_config.get("sampler") or {}
        self.config = MoPPSVerlConfig.from_mapping(sampler_node.get("mopps"))
        if self.config.max_num_gen_batches:
            # A sampler only orders rows; it cannot see rewards before verl trains on a batch.
            raise ValueError(f"mopps.max_num_gen_batches = {self.config.max_num_gen_batches}: dynamic sampling through "
                             "mopps.Refill needs the MoPPS V1 trainer; with this sampler use verl's own filter "
                             "(algorithm.filter_groups.enable=True, data.gen_batch_size) and max_num_gen_batches=0")
        if self.config.evidence_log:
            # A sampler sees no checkpoint or end of training to write the log at.
            raise ValueError(f"mopps.evidence_log = {self.config.evidence_log!r}: the evidence log is written by the "
                             "MoPPS V1 trainer (verl >= 0.8) and the TRL trainer; this sampler cannot write it, "
                             "set mopps.evidence_log=null")
        self.batch_size = int(data_config.get("gen_batch_size") or data_config.get("train_batch_size"))
        self.loop = self.config.build_loop(data_source, self.config.checked_selector())
        if len(self.loop) < self.batch_size:
            raise ValueError(f"data.train_batch_size = {self.batch_size} exceeds the {len(self.loop)} training prompts")
        self.metrics: dict[str, float] = {}
        self._selected = Counter()
        self._chunk = np.zeros(0, dtype=np.int64)  # the current batch's rows
        self._chunk_cursor = 0
        self._yielded = 0

    def __len__(self) -> int:
        return (len(self.loop) // self.batch_size) * self.batch_size

    def __iter__(self):
        while self._yielded < len(self):
            if self._chunk_cursor == len(self._chunk):
                batch = self.loop.next(self.batch_size)
                self._selected.update(batch.metrics())
                self._chunk, self._chunk_cursor = batch.positions, 0
            position = int(self._chunk[self._chunk_cursor])
            self._chunk_cursor += 1
            self._yielded += 1
            yield position
        self._yielded = 0

    def update(self, batch) -> None:
        """Learn from one trained verl ``DataProto``: each row a rollout, keyed by ``data_source`` +
        ``extra_info.index``, judged on ``mopps.reward_key``; ``non_tensor_batch["has_verdict"]``
        (when the reward function writes it) marks rollouts that are no evidence."""
        rows = batch.non_tensor_batch
        for field in ("data_source", "extra_info"):
            if field not in rows:
                raise ValueError(f"batch.non_tensor_batch has no {field!r}; it has {sorted(rows)}")
        has_verdict = verdict_mask(rows[VERDICT_KEY]) if VERDICT_KEY in rows else None
        observed = self.loop.observe(keys_of_rows(rows["data_source"], rows["extra_info"]), self._rewards(batch),
                                     has_verdict=has_verdict)
        self.metrics = {**{name: float(count) for name, count in self._selected.items()}, **observed}
        self._selected.clear()
        logger.info("MoPPS sampler: %s", self.metrics)

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
        """Everything needed to continue exactly: the loop's state (selector, candidate stream, open
        predictions: O(1) in the dataset size besides the selector), the current batch and the place
        in the epoch."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "batch_size": self.batch_size,
            "loop": self.loop.state_dict(),
            "chunk": self._chunk.tolist(),
            "chunk_cursor": self._chunk_cursor,
            "yielded": self._yielded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``; raises ``ValueError`` naming the field if the data, settings or
        batch size changed since it was saved; then the sampler is unchanged. A version-1 state (mopps
        <= 0.1) is migrated: its selector and place in the epoch are restored, and the candidate order
        continues from a new pass (the old order was a stored permutation the loop does not keep)."""
        version = check_header(state, STATE_FORMAT, (1, STATE_VERSION), "verl sampler state", missing_version=1)
        if state.get("batch_size") != self.batch_size:
            raise ValueError(f"state['batch_size'] = {state.get('batch_size')} but this run has {self.batch_size}")
        if version == 1 and state.get("num_prompts") != len(self.loop):
            raise ValueError(f"state['num_prompts'] = {state.get('num_prompts')} but this run has {len(self.loop)}")
        # Check the place in the epoch before the loop (the last step) takes its new state, so a
        # rejected state leaves the sampler as it was.
        chunk = np.asarray(state["chunk"], dtype=np.int64).reshape(-1)
        cursor = check_integer(state["chunk_cursor"], "state['chunk_cursor']")
        yielded = check_integer(state["yielded"], "state['yielded']")
        if cursor > len(chunk) or yielded > len(self) or ((chunk < 0) | (chunk >= len(self.loop))).any():
            raise ValueError("state['chunk'], ['chunk_cursor'] or ['yielded'] is out of range for this dataset")
        if version == 1:
            self.loop.selector.load_state_dict(state["selector"])
            logger.warning("MoPPS sampler: migrated a version-1 state; the selector is restored, the candidate "
                           "order starts a new pass")
        else:
            self.loop.load_state_dict(state["loop"])
        self._chunk, self._chunk_cursor, self._yielded = chunk, cursor, yielded
