"""``MoPPSGRPOConfig``: the selection fields in TRL's idiom (a ``GRPOConfig`` subclass settable from
``TrlParser`` / YAML), one definition shared with verl, one seed, and no trl import for the definitions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import MISSING, fields

import pytest

from mopps.integrations.trl.config import TrlSelectionSettings
from mopps.selectors.settings import ReferenceSettings

trl = pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")

from mopps.integrations.trl import MoPPSGRPOConfig  # noqa: E402

CPU = ["--output_dir", "unused", "--use_cpu", "true"]


def test_the_field_definitions_import_no_framework():
    code = textwrap.dedent("""
        import sys
        import mopps.integrations.trl.config
        from mopps.integrations.trl import TrlSelectionSettings
        TrlSelectionSettings(ts_ratio=4, id_column="prompt_id")
        frameworks = ("trl", "torch", "transformers", "accelerate", "datasets")
        loaded = sorted(name for name in frameworks if name in sys.modules)
        print(loaded)
    """)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip() == "[]"


def test_trl_parser_sets_the_selection_fields_from_the_command_line():
    (args,) = trl.TrlParser(MoPPSGRPOConfig).parse_args_and_config(
        CPU + ["--ts_ratio", "16", "--bandit_decay_ratio", "0.5", "--bandit_no_update", "true",
               "--id_column", "prompt_id", "--success_reward", "math_accuracy", "--features_path", "f.npz",
               "--selector_class", "mopps.Uniform", "--selector_kwargs", '{"seed": 3}', "--seed", "7",
               "--num_generations", "4", "--max_num_gen_batches", "4", "--dynamic_sampling_at_cap", "repeat"])
    assert isinstance(args, MoPPSGRPOConfig)
    assert (args.ts_ratio, args.bandit_decay_ratio, args.bandit_no_update) == (16.0, 0.5, True)
    assert (args.id_column, args.success_reward, args.features_path) == ("prompt_id", "math_accuracy", "f.npz")
    assert (args.selector_class, args.selector_kwargs) == ("mopps.Uniform", {"seed": 3})
    assert (args.max_num_gen_batches, args.dynamic_sampling_at_cap) == (4, "repeat")
    assert args.seed == 7 and args.num_generations == 4  # TRL's own fields beside them
    assert args.bandit_target_mean == 0.5 and args.bandit_init_path is None  # untouched: defaults


def test_trl_parser_reads_a_yaml_file_and_the_command_line_wins(tmp_path):
    config = tmp_path / "grpo.yaml"
    config.write_text(textwrap.dedent("""
        output_dir: runs/x
        use_cpu: true
        seed: 3
        ts_ratio: 8
        bandit_decay_ratio: 0.5
        bandit_sample_strategy: threshold
        id_column: prompt_id
        features_column: embedding
        selector_class: mopps.HistoryFilter
        selector_kwargs:
          target_zero_variance: 0.2
        learning_rate: 1.0e-6
    """))
    (args,) = trl.TrlParser(MoPPSGRPOConfig).parse_args_and_config(["--config", str(config), "--ts_ratio", "4"])
    assert (args.ts_ratio, args.bandit_decay_ratio, args.bandit_sample_strategy) == (4.0, 0.5, "threshold")
    assert (args.id_column, args.features_column, args.seed, args.learning_rate) == ("prompt_id", "embedding", 3, 1e-6)
    assert args.selector_kwargs == {"target_zero_variance": 0.2}


@pytest.mark.parametrize("bad, match", [(["--ts_ratio", "0.5"], "ts_ratio"),
                                        (["--bandit_sample_strategy", "best"], "bandit_sample_strategy"),
                                        (["--selector_kwargs", "{not json"], "selector_kwargs"),
                                        (["--max_num_gen_batches", "-1"], "max_num_gen_batches"),
                                        (["--dynamic_sampling_at_cap", "drop"], "dynamic_sampling_at_cap")])
def test_bad_values_from_the_command_line_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        trl.TrlParser(MoPPSGRPOConfig).parse_args_and_config(CPU + bad)


def test_one_seed_and_every_selection_field_with_its_default_and_help():
    trl_fields = {entry.name: entry for entry in fields(MoPPSGRPOConfig)}
    assert [entry.name for entry in fields(MoPPSGRPOConfig)].count("seed") == 1
    assert trl_fields["seed"].type in ("int", int) and trl_fields["seed"].default == 42  # TRL's own seed
    for entry in fields(TrlSelectionSettings):
        assert entry.metadata.get("help"), f"{entry.name} has no help"
        if entry.name != "seed":
            assert trl_fields[entry.name].default == entry.default, entry.name
            assert trl_fields[entry.name].metadata["help"] == entry.metadata["help"], entry.name
    shared = {entry.name for entry in fields(ReferenceSettings)}
    assert shared <= set(trl_fields) and all(entry.default is not MISSING for entry in fields(TrlSelectionSettings))


def test_the_seed_of_the_config_seeds_the_selection():
    args = MoPPSGRPOConfig(output_dir="unused", use_cpu=True, seed=11, bandit_decay_ratio=0.5)
    assert args.seed_or(0) == 11
    selector = args.build_selector()
    assert selector.discount == 0.5 and selector.state_dict()["rng"] == type(selector)(seed=11).state_dict()["rng"]
