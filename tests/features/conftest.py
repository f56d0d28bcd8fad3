"""Prepared data written by the project's own `mopps data` code from local files (no network)."""

import os

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

datasets = pytest.importorskip("datasets", reason="reading prepared data needs the tasks extra: pip install -e '.[tasks]'")

from _math_rows import LEVELS, PROBLEMS, TYPES  # noqa: E402
from mopps.tasks.prepare import prepare_countdown, prepare_math, write_prepared  # noqa: E402


@pytest.fixture(scope="session")
def math_data(tmp_path_factory):
    """`mopps data math` output (train: 8 prompts with MATH's level/type) as a folder."""
    root = tmp_path_factory.mktemp("math")
    hub = root / "hub" / "data"
    hub.mkdir(parents=True)
    train = pd.DataFrame({"problem": PROBLEMS, "solution": [f"so $\\boxed{{{i}}}$" for i in range(8)],
                          "level": LEVELS, "type": TYPES})
    train.to_parquet(hub / "train-00000-of-00001.parquet")
    train.iloc[:2].to_parquet(hub / "test-00000-of-00001.parquet")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "hf-cache")
        write_prepared(prepare_math(str(root / "hub"), progress=False), root / "out")
    return root / "out"


@pytest.fixture(scope="session")
def countdown_data(tmp_path_factory):
    """`mopps data countdown` output with 30 generated training prompts."""
    root = tmp_path_factory.mktemp("countdown")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "hf-cache")
        write_prepared(prepare_countdown(train_size=30, test_size=5, seed=1, progress=False), root / "out")
    return root / "out"
