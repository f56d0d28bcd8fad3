"""The policy's three RL primitives, against each other and against sampling."""

import numpy as np
import pytest
import torch

from mopps.bench.presets import PRESETS
from mopps.testbed.grpo import completion_mask, make_pools
from mopps.testbed.policy import Policy, PolicyConfig, sample
from mopps.testbed.task import EOS, AdditionTask
from mopps.testbed.warmstart import cache_dir, load_warm_start, train_warm_start


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset's config and its warm-started policy (trained into a temporary cache)."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOPPS_CACHE", str(cache))
        config = PRESETS["tiny"].config
        policy = load_warm_start(config.warm_start)
        assert (cache / f"warmstart-{config.warm_start.key()}" / "policy.pt").exists()
    return config, policy


def test_cached_sampling_equals_full_recompute():
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(vocab_size=14, context=12, width=16, layers=2, heads=2))
    prompts = torch.randint(0, 14, (6, 7))
    cached = sample(policy, prompts, 5, torch.Generator().manual_seed(3))
    generator, sequence = torch.Generator().manual_seed(3), prompts
    with torch.no_grad():
        for _ in range(5):
            probabilities = torch.softmax(policy(sequence)[:, -1], dim=-1)
            sequence = torch.cat([sequence, torch.multinomial(probabilities, 1, generator=generator)], dim=1)
    assert torch.equal(cached, sequence[:, 7:])


def test_exact_rate_matches_sampled_frequency(tiny):
    config, policy = tiny
    task, train_pool, _ = make_pools(config)
    rates = train_pool.exact_rates(policy, np.arange(len(train_pool)))
    assert np.all((rates >= 0.0) & (rates <= 1.0))
    prompt = int(np.argmin(np.abs(rates - 0.5)))  # the fixed prompt: the pool's most uncertain
    assert 0.1 < rates[prompt] < 0.9
    draws = 4000
    completions = sample(policy, train_pool.prompts[[prompt] * draws], task.answer_length,
                         torch.Generator().manual_seed(0))
    frequency = task.verify(train_pool.problems[[prompt] * draws], completions.numpy()).mean()
    tolerance = 4.0 * np.sqrt(rates[prompt] * (1.0 - rates[prompt]) / draws)
    assert abs(frequency - rates[prompt]) < tolerance


def test_warm_start_is_deterministic_and_cache_keyed(tiny):
    config, policy = tiny
    again = train_warm_start(config.warm_start)
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert config.warm_start.key() != type(config.warm_start)(task=AdditionTask(3)).key()


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path


def test_completion_mask_stops_after_first_eos():
    completions = torch.tensor([[1, EOS, 3, EOS], [2, 2, 2, 2]])
    assert completion_mask(completions, EOS).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_warm_start_does_not_depend_on_the_callers_thread_count(tiny):
    config, policy = tiny
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = train_warm_start(config.warm_start)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
