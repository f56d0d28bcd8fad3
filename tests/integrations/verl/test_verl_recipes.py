"""The launch recipes compose into valid verl 0.9.1 configs (no GPU: the command is printed with
DRY_RUN=1 and composed by hydra, which rejects any key verl's schema lacks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mopps.integrations.verl.config import MoPPSVerlConfig

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "verl"
VERL_CONFIG_DIR = str(Path(__import__("verl").__file__).parent / "trainer" / "config")


def recipe_config(script: str, method: str):
    printed = subprocess.run(
        ["bash", str(RECIPES / script), method], check=True, capture_output=True, text=True,
        env={"DRY_RUN": "1", "HOME": "/home/user", "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    options = dict(arg[2:].split("=", 1) for arg in printed if arg.startswith("--"))
    overrides = [arg for arg in printed if not arg.startswith("--")]
    with initialize_config_dir(config_dir=options.get("config-path", VERL_CONFIG_DIR), version_base=None):
        return compose(options.get("config-name", "ppo_trainer"), overrides=overrides)


@pytest.mark.parametrize("script, ts_ratio, decay, cap", [
    ("countdown_qwen2.5-3b.sh", 8, 0.5, 10),
    ("math_r1-distill-qwen-1.5b.sh", 16, 1.0, 4),
])
def test_recipes_compose_with_the_papers_settings(script, ts_ratio, decay, cap):
    mopps = recipe_config(script, "mopps")
    settings = MoPPSVerlConfig.from_mapping(mopps.mopps)
    assert (settings.ts_ratio, settings.bandit_decay_ratio) == (ts_ratio, decay)
    assert mopps.trainer.v1.trainer_mode == "mopps"
    assert mopps.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook.endswith("setup_worker")
    uniform = recipe_config(script, "uniform")
    dynamic = recipe_config(script, "ds")
    assert "mopps" not in uniform and uniform.trainer.v1.trainer_mode == "sync"
    assert dynamic.algorithm.filter_groups.enable and dynamic.algorithm.filter_groups.metric == "acc"
    guided = recipe_config(script, "mopps_ds")
    guided_settings = MoPPSVerlConfig.from_mapping(guided.mopps)
    assert (guided_settings.ts_ratio, guided_settings.max_num_gen_batches) == (ts_ratio, cap)
    assert not guided.algorithm.filter_groups.enable  # Refill filters; verl's DAPO stays off
    for config in (mopps, uniform, dynamic, guided):
        assert config.reward.custom_reward_function.path == "pkg://mopps.tasks"
        assert config.actor_rollout_ref.rollout.n == 8
        assert config.actor_rollout_ref.actor.clip_ratio_high == 0.28
        assert config.data.train_batch_size == 256


def test_the_yaml_lists_every_setting_with_the_shared_default():
    # One source of truth: the recipe's mopps block is MoPPSVerlConfig's fields, at their defaults
    # (ReferenceSettings', which TRL's config shares), with the same names.
    from dataclasses import fields

    import yaml

    block = yaml.safe_load((RECIPES / "config" / "mopps_trainer.yaml").read_text())["mopps"]
    assert block == {field.name: field.default for field in fields(MoPPSVerlConfig)}


def test_a_selector_class_and_its_kwargs_compose_as_overrides():
    with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base=None):
        config = compose("mopps_trainer", overrides=[
            "mopps.selector_class=mopps.ContextualMoPPS", "mopps.selector_kwargs={temperature: 0.5}",
            "mopps.features_column=extra_info.embedding"])
    settings = MoPPSVerlConfig.from_mapping(config.mopps)
    assert settings.selector_kwargs == {"temperature": 0.5}
    assert settings.checked_selector().state_dict()["config"]["temperature"] == 0.5
