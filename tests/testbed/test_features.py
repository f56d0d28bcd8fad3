"""Testbed features: the frozen model's pooled hidden states and the task's own descriptors."""

import numpy as np
import pytest
import torch

from mopps.testbed.features import pool_features
from mopps.testbed.grpo import TestbedConfig, make_pools
from mopps.testbed.methods import METHODS, build_method
from mopps.testbed.policy import Policy
from mopps.testbed.task import AdditionTask
from mopps.testbed.warmstart import WarmStartConfig


@pytest.fixture(scope="module")
def small():
    warm = WarmStartConfig(task=AdditionTask(2), width=16, layers=1, heads=2)
    config = TestbedConfig(train_pool_size=40, test_size=10, batch_size=4, ts_ratio=2, warm_start=warm)
    task, train, _ = make_pools(config)
    torch.manual_seed(0)
    return task, train, Policy(warm.policy_config())


def test_generic_features_are_mean_pooled_final_hidden_states(small):
    task, train, policy = small
    features = pool_features("generic", task, train, policy, chunk=7)  # chunks must not change the result
    assert features.dtype == np.float32 and features.shape == (40, 16)
    with torch.no_grad():
        logits = policy(train.prompts[:3])
        hidden = policy.hidden_states(train.prompts[:3])
    torch.testing.assert_close(policy.head(hidden), logits)  # the states the head reads
    np.testing.assert_allclose(features[:3], hidden.mean(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    assert np.ptp(features, axis=0).min() > 0  # prompts differ


def test_task_features_are_digit_counts_and_carries(small):
    task, train, policy = small
    features = pool_features("task", task, train, policy)
    columns = task.features(train.problems)
    assert features.shape == (40, 4)
    np.testing.assert_array_equal(features[:, 3], columns["carries"])
    np.testing.assert_array_equal(features[:, 0], columns["a_digits"])
    with pytest.raises(ValueError, match="source"):
        pool_features("current_policy", task, train, policy)


def test_contextual_and_refill_methods():
    built = {name: build_method(name, 0, 8, 10, lambda ids: np.zeros(len(ids)))
             for name in METHODS if name.startswith("contextual") or name.endswith("_ds")}
    assert {name: method.features for name, method in built.items()} == {
        "contextual": "generic", "contextual_nofeatures": None, "contextual_taskfeatures": "task",
        "mopps_ds": None, "contextual_ds": "generic", "contextual_informative": "generic",
        "contextual_perturbed": "generic"}
    # Selection-guided dynamic sampling: each generation batch chosen from ts_ratio x as many candidates.
    for name in ("mopps_ds", "contextual_ds"):
        assert built[name].max_num_gen_batches == 10 and built[name].candidates == 8
