"""Fixtures of the verl adapter tests (helpers in ``_verl_helpers``); all on CPU, only
``test_verl_ray_hook`` starts a (local, one-CPU) Ray node."""

from __future__ import annotations

import os

import pytest

# Without the verl extra nothing here can run: the whole folder is skipped, and -ra says why.
pytest.importorskip("verl", reason="the verl adapter needs the verl extra: pip install -e '.[verl]'")


@pytest.fixture
def write_parquet(tmp_path):
    import pandas as pd

    def write(rows, name="train.parquet") -> str:
        path = tmp_path / name
        pd.DataFrame(rows).to_parquet(path)
        return str(path)

    return write


@pytest.fixture
def verl_config(tmp_path):
    """verl 0.9.1's full PPO config with a tiny data section; ``make(train_file, **mopps)``."""
    import verl
    from omegaconf import OmegaConf, open_dict

    base = os.path.join(os.path.dirname(verl.__file__), "trainer/config/_generated_ppo_trainer.yaml")

    def make(train_file: str, batch_size: int = 4, dapo: bool = False, **mopps):
        config = OmegaConf.load(base)
        with open_dict(config):
            config.data.train_files = train_file
            config.data.val_files = train_file
            config.data.train_batch_size = batch_size
            config.data.filter_overlong_prompts = False
            config.data.dataloader_num_workers = 0
            config.data.cache_dir = str(tmp_path / "verl_cache")
            config.algorithm.adv_estimator = "grpo"  # no critic: the paper trains with GRPO
            config.trainer.v1.trainer_mode = "mopps"
            config.trainer.default_local_dir = str(tmp_path / "checkpoints")
            config.mopps = mopps
            if dapo:
                config.algorithm.filter_groups = {"enable": True, "metric": "acc", "max_inflight_gen_batches": 2}
        return config

    return make


@pytest.fixture
def memory_queue(monkeypatch):
    """Route ``transfer_queue``'s module functions (used by verl and the adapter) to a MemoryQueue."""
    import transfer_queue
    from _verl_helpers import MemoryQueue

    queue = MemoryQueue()
    for name in ("kv_list", "kv_batch_put", "kv_batch_get", "kv_clear"):
        monkeypatch.setattr(transfer_queue, name, getattr(queue, name))
    return queue
