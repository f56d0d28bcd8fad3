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


def rollout_batch(batch_dict, accs_of_index, seed=0, verdicts_of_index=None):
    """A trained batch as ``RayPPOTrainer.fit`` hands it to ``update``: each prompt repeated once per
    session with a fresh uid, ``acc`` from the reward function (and ``has_verdict`` if
    ``verdicts_of_index`` is given), rows shuffled like ``balance_batch``."""
    from verl import DataProto

    rows = []
    for row, info in enumerate(batch_dict["extra_info"]):
        uid = f"uid-{seed}-{row}"
        index = int(info["index"])
        verdicts = verdicts_of_index(index) if verdicts_of_index else [1.0] * len(accs_of_index(index))
        for acc, verdict in zip(accs_of_index(index), verdicts, strict=True):
            rows.append((uid, batch_dict["data_source"][row], info, acc, verdict))
    order = np.random.default_rng(seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    column = lambda j: np.array([row[j] for row in rows], dtype=object)  # noqa: E731
    non_tensors = {"uid": column(0), "data_source": column(1), "extra_info": column(2),
                   "acc": np.array([row[3] for row in rows], dtype=np.float64)}
    if verdicts_of_index:
        non_tensors["has_verdict"] = np.array([row[4] for row in rows], dtype=np.float64)
    return DataProto.from_dict(tensors={"token_level_scores": torch.tensor([[0.0, row[3]] for row in rows])},
                               non_tensors=non_tensors)


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
    sampler.update(rollout_batch(batch, accs))
    metrics = sampler.metrics
    assert metrics["mopps/candidates"] == 12 and metrics["mopps/selected"] == 4
    assert metrics["mopps/observed_groups"] == 4 and metrics["mopps/lag"] == 0.0


def test_update_keys_shuffled_rows_by_extra_info_index(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, bandit_decay_ratio=1.0))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    for info in batch["extra_info"]:
        index = int(info["index"])
        alpha, beta = sampler.loop.selector.posterior([f"countdown/{index}"])
        assert (alpha[0] - 1, beta[0] - 1) == (sum(accs(index)), len(accs(index)) - sum(accs(index)))


def test_rollouts_without_a_verdict_are_no_evidence(dataset):
    def verdicts(index):  # the first session (the only one that can be right) timed out for odd indices
        return [1.0 - index % 2] + [1.0] * (len(accs(index)) - 1)

    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, bandit_decay_ratio=1.0))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs, verdicts_of_index=verdicts))
    indices = [int(info["index"]) for info in batch["extra_info"]]
    for index in indices:
        alpha, beta = sampler.loop.selector.posterior([f"countdown/{index}"])
        judged = np.asarray(verdicts(index)) > 0
        assert (alpha[0] - 1, beta[0] - 1) == (0.0, judged.sum())  # trials < n where a verdict is missing
    assert sampler.metrics["mopps/rollouts_without_verdict"] == sum(index % 2 for index in indices)


def test_update_on_score_sums_token_level_scores(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, reward_key="score", bandit_decay_ratio=1.0))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    index = int(batch["extra_info"][0]["index"])
    alpha, _ = sampler.loop.selector.posterior([f"countdown/{index}"])
    assert alpha[0] - 1 == sum(accs(index))


def test_update_names_a_missing_reward_key(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(reward_key="correct"))
    batch = next(iter(loader(dataset, sampler)))
    with pytest.raises(ValueError, match="has no 'correct'"):
        sampler.update(rollout_batch(batch, accs))


def test_refuses_dynamic_sampling_it_cannot_run(dataset):
    with pytest.raises(ValueError, match="mopps.max_num_gen_batches = 4: dynamic sampling through mopps.Refill needs"):
        MoPPSCurriculumSampler(dataset, data_config(max_num_gen_batches=4))


def test_refuses_missing_index(write_parquet, tmp_path):
    rows = verl_rows(8, index_of=lambda i: None if i == 5 else i)
    dataset = rlhf_dataset(write_parquet(rows), str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="row 5: extra_info.index is missing"):
        MoPPSCurriculumSampler(dataset, data_config())


def test_positions_map_to_keys_after_verl_subsamples_rows(write_parquet, tmp_path):
    dataset = rlhf_dataset(write_parquet(verl_rows(24)), str(tmp_path / "cache"), shuffle=True, seed=1)
    dataset.dataframe = dataset.dataframe.select([5, 3, 17, 0, 9, 11, 2, 8])  # as train_max_samples does
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2))
    assert sampler.loop.prompt_ids == [f"countdown/{i}" for i in (5, 3, 17, 0, 9, 11, 2, 8)]


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
    assert restored.loop.selector.step == 3
    for step, expected in zip(range(3, 8), later):
        batch = next(restored_iterator, None) or next(restored_iterator := iter(restored_data))
        assert [int(info["index"]) for info in batch["extra_info"]] == expected
        restored.update(rollout_batch(batch, accs, seed=step))
    assert restored.loop.selector.state_dict()["arrays"]["ids"] == sampler.loop.selector.state_dict()["arrays"]["ids"]
    np.testing.assert_array_equal(restored.loop.selector.state_dict()["arrays"]["alpha"],
                                  sampler.loop.selector.state_dict()["arrays"]["alpha"])


def test_the_state_does_not_grow_with_the_dataset(write_parquet, tmp_path):
    # mopps <= 0.1 stored the candidate permutation: a list of every row in every checkpoint.
    def state_entries(rows):
        data = rlhf_dataset(write_parquet(verl_rows(rows), name=f"{rows}.parquet"), str(tmp_path / f"cache{rows}"))
        sampler = MoPPSCurriculumSampler(data, data_config(ts_ratio=2))
        sampler.update(rollout_batch(next(iter(loader(data, sampler))), accs))
        return largest_entry(sampler.state_dict())

    assert state_entries(24) == state_entries(2400) == 4  # the batch: 4 prompts observed, 4 rows yielded


def largest_entry(state) -> int:
    """The longest list or array anywhere in a nested state."""
    if isinstance(state, dict):
        return max((largest_entry(value) for value in state.values()), default=0)
    if isinstance(state, (list, np.ndarray)):
        return max([len(state)] + [largest_entry(value) for value in state if isinstance(value, (dict, list))])
    return 0


def test_a_version_1_state_is_migrated(dataset):
    # What mopps <= 0.1 saved: the selector, a stored permutation, and the place in the epoch.
    from mopps import MoPPS

    selector = MoPPS(seed=0)
    selector.update(["countdown/101", "countdown/102"], [2.0, 0.0], [3.0, 3.0])
    old = {"format": "mopps.verl-curriculum-sampler", "num_prompts": 24, "batch_size": 4,
           "selector": selector.state_dict(), "candidate_rng": {}, "permutation": list(range(24)), "cursor": 8,
           "chunk": [3, 7, 1, 0], "chunk_cursor": 2, "yielded": 6}
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2))
    sampler.load_state_dict(old)
    np.testing.assert_allclose(sampler.loop.selector.posterior(["countdown/101"]), ([3.0], [2.0]))
    positions = iter(sampler)
    assert [next(positions), next(positions)] == [1, 0]  # the rest of the saved batch, then new batches
    assert len(set(next(positions) for _ in range(4))) == 4 and sampler.loop.step == 1
    with pytest.raises(ValueError, match="num_prompts"):
        sampler.load_state_dict({**old, "num_prompts": 25})


def test_prior_file_is_keyed_by_prompt_keys(dataset, tmp_path):
    import json

    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"countdown/100": [1, 1, 1, 0], "countdown/101": [0, 0]}))
    sampler = MoPPSCurriculumSampler(dataset, data_config(bandit_init_path=str(prior)))
    np.testing.assert_allclose(sampler.loop.selector.posterior(["countdown/100", "countdown/101"]),
                               ([10.0, 1.0], [4.0, 7.0]))
    prior.write_text(json.dumps({"100": [1, 0]}))  # bare extra_info.index: not a prompt key here
    with pytest.raises(ValueError, match="bandit_init_path.*none of its"):
        MoPPSCurriculumSampler(dataset, data_config(bandit_init_path=str(prior)))


def test_a_rejected_state_leaves_the_sampler_as_it_was(dataset):
    sampler = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2))
    batch = next(iter(loader(dataset, sampler)))
    sampler.update(rollout_batch(batch, accs))
    other = MoPPSCurriculumSampler(dataset, data_config(ts_ratio=2, seed=5))
    other_iterator = iter(loader(dataset, other))
    other.update(rollout_batch(next(other_iterator), accs))
    next(other_iterator)
    before = other.state_dict()
    saved = sampler.state_dict()
    for broken, match in (
        (saved, "seed"),  # another run's settings
        ({**saved, "loop": {**saved["loop"], "config": {**saved["loop"]["config"], "seed": 5}},
          "chunk_cursor": 9}, "out of range"),
        ({**saved, "batch_size": 8}, "batch_size"),
        ({**saved, "format": "x"}, "format"),
    ):
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(broken)
        after = other.state_dict()
        assert after["loop"]["stream"] == before["loop"]["stream"] and after["chunk"] == before["chunk"]
        assert after["loop"]["selector"]["arrays"]["ids"] == before["loop"]["selector"]["arrays"]["ids"]
        assert after["loop"]["selector"]["rng"] == before["loop"]["selector"]["rng"] and after["loop"]["step"] == 2
        assert (after["chunk_cursor"], after["yielded"]) == (before["chunk_cursor"], before["yielded"]) == (4, 8)
