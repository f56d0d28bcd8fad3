"""Helpers of the verl adapter tests: a tiny parquet in verl's row schema, verl's dataset class, an
in-memory stand-in for TransferQueue and a scripted rollout engine. Fixtures are in ``conftest``.

verl's ``RLHFDataset``, ``StatefulDataLoader``, ``DataProto``, ``ReplayBuffer`` (with its DAPO filter)
and ``PPOTrainer`` code paths are the real ones; only the queue service and the generation engine
are replaced, by objects with the same calls.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from omegaconf import OmegaConf

from mopps import Uniform


def verl_rows(count: int, source: str = "countdown", index_of=lambda i: i) -> list[dict]:
    """``count`` rows in verl's parquet schema; ``index_of(i)`` gives row i's extra_info.index
    (None: the row has no index)."""
    rows = []
    for i in range(count):
        extra_info = {"split": "train"}
        if index_of(i) is not None:
            extra_info["index"] = index_of(i)
        rows.append({
            "data_source": source,
            "prompt": [{"role": "user", "content": f"Make {i} from 1 2 3."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": extra_info,
        })
    return rows


def rlhf_dataset(train_file: str, cache_dir: str, **data):
    """verl's ``RLHFDataset`` over ``train_file`` (no tokenizer needed without length filtering)."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": cache_dir, **data})
    return RLHFDataset(train_file, tokenizer=None, config=config)


def _plain(value):
    """A field value as TransferQueue hands it back: non-tensor data (e.g. a uid) as the value itself."""
    from tensordict import NonTensorData

    return value.data if isinstance(value, NonTensorData) else value


class MemoryQueue:
    """In-memory stand-in for the TransferQueue calls verl's trainer and replay buffer make
    (``kv_list``, ``kv_batch_put``, ``kv_batch_get``, ``kv_clear``)."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, dict]] = defaultdict(dict)
        self.fields: dict[str, dict[str, dict]] = defaultdict(dict)

    def kv_list(self, partition_id=None):
        return {
            partition: {key: dict(tag) for key, tag in items.items()}
            for partition, items in self.tags.items()
            if partition_id in (None, partition)
        }

    def kv_batch_put(self, keys, partition_id, tags=None, fields=None):
        for i, key in enumerate(keys):
            self.tags[partition_id].setdefault(key, {}).update(tags[i] if tags else {})
            if fields is not None:  # a put adds or overwrites fields of a key, as TransferQueue's does
                self.fields[partition_id].setdefault(key, {}).update(
                    {name: _plain(value) for name, value in fields[i].items()})

    def kv_batch_get(self, keys, partition_id, select_fields):
        """Per field, the values of ``keys``; a tensor field as one jagged nested tensor, as TransferQueue
        returns variable-length fields."""
        got = {field: [self.fields[partition_id][key][field] for key in keys] for field in select_fields}
        return {field: torch.nested.nested_tensor(values, layout=torch.jagged)
                if values and all(isinstance(value, torch.Tensor) for value in values) else values
                for field, values in got.items()}

    def kv_clear(self, keys, partition_id):
        for key in keys:
            self.tags[partition_id].pop(key, None)
            self.fields[partition_id].pop(key, None)


class ScriptedRollouts:
    """Stands in for verl's ``AgentLoopManagerTQ``: finishes every submitted prompt at once, writing
    its sessions to the queue in shuffled order. ``outcomes(index)`` lists the ``acc`` of each session
    of prompt ``extra_info.index`` (lists of unequal length make unequal groups); ``verdicts(index)``,
    if given, the ``has_verdict`` (1.0 / 0.0) of each, written beside ``acc`` as ``mopps.tasks``'s
    ``compute_score`` does; prompts whose index is in ``multi_output`` get a second, earlier output
    in session 0 (a multi-turn agent loop). A row with ``__rollout_n__`` gets that many sessions, taking
    the prompt's outcomes in turn from where its earlier sessions stopped (cyclically)."""

    def __init__(self, queue: MemoryQueue, outcomes, multi_output=(), seed: int = 0, verdicts=None) -> None:
        self.queue = queue
        self.outcomes = outcomes
        self.verdicts = verdicts
        self.multi_output = set(multi_output)
        self.rng = np.random.default_rng(seed)
        self.sessions_by_index: dict[int, int] = defaultdict(int)
        self.uids: list[str] = []  # every submitted group, in order
        self.submitted_indices: list[int] = []  # and its prompt's extra_info.index

    def generate_sequences(self, batch) -> None:
        writes = []
        rollout_n = batch["__rollout_n__"] if "__rollout_n__" in batch.keys() else [None] * len(batch["uid"])
        for uid, info, sessions in zip(batch["uid"], batch["extra_info"], rollout_n):
            index = int(info["index"])
            accs = self.outcomes(index)
            if sessions is not None:  # a per-row rollout count: the script's outcomes continue across rounds
                served = self.sessions_by_index[index]
                accs = [accs[(served + session) % len(accs)] for session in range(int(sessions))]
            self.sessions_by_index[index] += len(accs)
            self.uids.append(uid)
            self.submitted_indices.append(index)
            verdicts = self.verdicts(index) if self.verdicts else None
            for session, acc in enumerate(accs):
                outputs = 2 if (index in self.multi_output and session == 0) else 1
                for output in range(outputs):
                    extra = {"reward_extra_info": {"acc": float(acc)}}
                    if verdicts is not None:
                        extra["reward_extra_info"]["has_verdict"] = float(verdicts[session])
                    field = {"extra_fields": extra, "rm_scores": torch.tensor([0.0, float(acc)])}
                    tag = {"status": "success", "seq_len": 8, "min_global_steps": 1, "max_global_steps": 1}
                    writes.append((f"{uid}_{session}_{output}", tag, field))
        for position in self.rng.permutation(len(writes)):
            key, tag, field = writes[position]
            self.queue.kv_batch_put([key], "train", tags=[tag], fields=[field])
        self.queue.kv_batch_put(list(batch["uid"]), "train", tags=[{"status": "finished"}] * len(batch["uid"]))




class FeatureRecorder(Uniform):
    """A selector that records every ``add_features`` call (``calls``: list of (ids, X)); chooses as
    ``Uniform``. Named in config as ``selector_class: _verl_helpers:FeatureRecorder``."""

    def __init__(self, prior=(1.0, 1.0), discount: float = 1.0, seed: int | None = 0) -> None:
        self.calls: list[tuple[list, np.ndarray]] = []
        super().__init__(prior=prior, discount=discount, seed=seed)

    def add_features(self, ids, features) -> None:
        self.calls.append((list(ids), np.array(features, dtype=np.float64)))
