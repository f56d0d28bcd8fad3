"""The verl 0.5 - 0.7.1 curriculum sampler, driven the way ``RayPPOTrainer`` drives it, against verl
0.9.1's ``RLHFDataset``, ``collate_fn``, ``DataProto`` and torchdata's ``StatefulDataLoader``
(0.9.1 has no ``verl.experimental.dataset.sampler``, so the sampler's base is torch's ``Sampler``)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from _verl_helpers import rlhf_dataset, verl_rows
from omegaconf import OmegaConf

from mopps.integrations.verl.legacy_sampler import MoPPSCurriculumSampler


def data_config(batch_size=4, **mopps):
    return OmegaConf.create({
        "train_batch_size": batch_size,
        "gen_batch_size": None,
        "dataloader_num_workers": 0,
        "sampler": {"class_path": "pkg://mopps.integrations.verl.legacy_sampler",
                    "class_name": "MoPPSCurriculumSampler", "mopps": mopps},
    })


def loader(dataset, sampler, batch_size=4):
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.utils.dataset.rl_dataset import collate_fn

    return StatefulDataLoader(dataset, batch_size=batch_size, num_workers=0, drop_last=True,
                              collate_fn=collate_fn, sampler=sampler)


def rollout_batch(batch_dict, accs_of_index, seed=0):
    """A trained batch as ``RayPPOTrainer.fit`` hands it to ``update``: each prompt repeated once per
    session with a fresh uid, ``acc`` from the reward function, rows shuffled like ``balance_batch``."""
    from verl import DataProto

    rows = []
    for row, info in enumerate(batch_dict["extra_info"]):
        uid = f"uid-{seed}-{row}"
        for acc in accs_of_index(int(info["index"])):
            rows.append((uid, batch_dict["data_source"][row], info, acc))
    order = np.random.default_rng(seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    column = lambda j: np.array([row[j] for row in rows], dtype=object)  # noqa: E731
    return DataProto.from_dict(
        tensors={"token_level_scores": torch.tensor([[0.0, row[3]] for row in rows])},
        non_tensors={"uid": column(0), "data_source": column(1), "extra_info": column(2),
                     "acc": np.array([row[3] for row in rows], dtype=np.float64)},
    )


def accs(index: int) -> list[float]:
    """Unequal groups: 2 + index % 3 sessions, the first right iff index is odd."""
    return [float(index % 2)] + [0.0] * (1 + index % 3)


@pytest.fixture
def dataset(write_parquet, tmp_path):
    return rlhf_dataset(write_parquet(verl_rows(24, index_of=lambda i: 100 + i)), str(tmp_path / "cache"))


def test_imports_without_verls_removed_sampler_module():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("verl.experimental.dataset.sampler")
    assert issubclass(MoPPSCurriculumSampler, torch.utils.data.Sampler)


def test_subclasses_verls_curriculum_sampler_where_it_exists(monkeypatch):
    """verl 0.5 - 0.7.1 check ``isinstance(sampler, AbstractSampler)`` and call ``update`` only on an
    ``AbstractCurriculumSampler``; a stand-in module with that class (same shape as 0.7.1's) is used."""
    import sys
    import types

    from mopps.integrations.verl import legacy_sampler

    class AbstractCurriculumSampler(torch.utils.data.Sampler):
        pass

    stand_in = types.ModuleType("verl.experimental.dataset.sampler")
    stand_in.AbstractCurriculumSampler = AbstractCurriculumSampler
    monkeypatch.setitem(sys.modules, "verl.experimental.dataset.sampler", stand_in)
    try:
        reloaded = importlib.reload(legacy_sampler)
        assert issubclass(reloaded.MoPPSCurriculumSampler, AbstractCurriculumSampler)
    finally:
        monkeypatch.undo()
        importlib.reload(legacy_sampler)


def test_each_batch_is_selected_from_ts_ratio_candidates(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=3))
    assert len(sampler) == 24
    batch = next(iter(loader(dataset, sampler)))
    assert len(set(int(info["index"]) for info in batch["extra_info"])) == 4
    metrics = sampler.ledger.pop_metrics()
    assert metrics["mopps/candidates"] == 12 and metrics["mopps/selected"] == 4


def test_update_groups_shuffled_rows_by_uid_and_keys_by_extra_info_index(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, bandit_decay_ratio=1.0))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    for info in batch["extra_info"]:
        index = int(info["index"])
        alpha, beta = sampler.selector.posterior([f"countdown/{index}"])
        assert (alpha[0] - 1, beta[0] - 1) == (sum(accs(index)), len(accs(index)) - sum(accs(index)))


def test_update_on_score_sums_token_level_scores(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, reward_key="score", bandit_decay_ratio=1.0))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    index = int(batch["extra_info"][0]["index"])
    alpha, _ = sampler.selector.posterior([f"countdown/{index}"])
    assert alpha[0] - 1 == sum(accs(index))


def test_update_names_a_missing_reward_key(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(reward_key="correct"))
    batch = next(iter(loader(dataset, sampler)))
    with pytest.raises(ValueError, match="has no 'correct'"):
        sampler.update(rollout_batch(batch, accs))


def test_refuses_missing_index(write_parquet, tmp_path):
    rows = verl_rows(8, index_of=lambda i: None if i == 5 else i)
    dataset = rlhf_dataset(write_parquet(rows), str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="row 5: extra_info.index is missing"):
        MoPPSCurriculumSampler(dataset, data_config())


def test_positions_map_to_keys_after_verl_subsamples_rows(write_parquet, tmp_path):
    dataset = rlhf_dataset(write_parquet(verl_rows(24)), str(tmp_path / "cache"), shuffle=True, seed=1)
    dataset.dataframe = dataset.dataframe.select([5, 3, 17, 0, 9, 11, 2, 8])  # as train_max_samples does
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2))
    assert sampler.keys == [f"countdown/{i}" for i in (5, 3, 17, 0, 9, 11, 2, 8)]


def test_dataloader_checkpoint_restores_the_sampler_instead_of_replaying(dataset):
    def run(restore_from=None):
        sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=3))
        data = loader(dataset, sampler)
        if restore_from is not None:
            data.load_state_dict(restore_from)
        return sampler, data

    sampler, data = run()
    iterator = iter(data)
    for step in range(3):
        sampler.update(rollout_batch(next(iterator), accs, seed=step))
    saved = data.state_dict()
    later = []
    for step in range(3, 8):  # crosses the epoch boundary (6 batches per epoch)
        batch = next(iterator, None) or next(iterator := iter(data))
        later.append([int(info["index"]) for info in batch["extra_info"]])
        sampler.update(rollout_batch(batch, accs, seed=step))

    restored, restored_data = run(restore_from=saved)
    restored_iterator = iter(restored_data)  # torchdata applies a loaded state when iteration starts
    assert restored.selector.step == 3
    for step, expected in zip(range(3, 8), later):
        batch = next(restored_iterator, None) or next(restored_iterator := iter(restored_data))
        assert [int(info["index"]) for info in batch["extra_info"]] == expected
        restored.update(rollout_batch(batch, accs, seed=step))
    assert restored.selector.state_dict()["arrays"]["ids"] == sampler.selector.state_dict()["arrays"]["ids"]


def test_prior_file_is_keyed_by_prompt_keys(dataset, tmp_path):
    import json

    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"countdown/100": [1, 1, 1, 0], "countdown/101": [0, 0]}))
    sampler = MoPPSCurriculumSampler(dataset, data_config(bandit_init_path=str(prior)))
    np.testing.assert_allclose(sampler.selector.posterior(["countdown/100", "countdown/101"]), ([10.0, 1.0], [4.0, 7.0]))
    prior.write_text(json.dumps({"100": [1, 0]}))  # bare extra_info.index: not a prompt key here
    with pytest.raises(ValueError, match="bandit_init_path.*none of its"):
        MoPPSCurriculumSampler(dataset, data_config(bandit_init_path=str(prior)))


def test_a_rejected_state_leaves_the_sampler_as_it_was(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    other = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, seed=5))
    before = other.state_dict()
    broken = {**sampler.state_dict(), "candidate_rng": {"bit_generator": "PCG64", "state": "x"}}
    with pytest.raises(ValueError, match="candidate_rng"):
        other.load_state_dict(broken)
    after = other.state_dict()
    assert list(after["selector"]["arrays"]["ids"]) == list(before["selector"]["arrays"]["ids"])
    assert after["candidate_rng"] == before["candidate_rng"] and after["cursor"] == before["cursor"]
