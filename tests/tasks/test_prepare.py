"""`mopps data` on local fixture files: the outputs load with pandas, pyarrow and HF datasets."""

import argparse
import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip("datasets", reason="reading prepared data needs the tasks extra: pip install -e '.[tasks]'")
from PIL import Image  # noqa: E402

from mopps.tasks import compute_score  # noqa: E402
from mopps.tasks.cli import register  # noqa: E402
from mopps.tasks.countdown import generate_countdown  # noqa: E402
from mopps.tasks.prepare import prepare_countdown, prepare_deepscaler, prepare_math  # noqa: E402

VERL_COLUMNS = {"data_source", "prompt", "ability", "reward_model", "extra_info"}


@pytest.fixture(autouse=True)
def local_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="mopps")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv, "--no-progress"])
    return args.func(args)


def read_verl(path):
    frame = pd.read_parquet(path)
    assert VERL_COLUMNS <= set(frame.columns)
    assert pq.read_table(path).num_rows == len(frame)
    indices = [info["index"] for info in frame["extra_info"]]
    assert indices == list(range(len(frame)))
    assert len({info["prompt_id"] for info in frame["extra_info"]}) == len(frame)
    assert all(rm["style"] == "rule" for rm in frame["reward_model"])
    return frame


def test_countdown_generated_is_stable_across_reruns_and_self_consistent(tmp_path):
    assert run_cli("countdown", "--out", str(tmp_path / "a"), "--train-size", "60", "--test-size", "20", "--seed", "5") == 0
    assert run_cli("countdown", "--out", str(tmp_path / "b"), "--train-size", "60", "--test-size", "20", "--seed", "5") == 0
    for split in ("train", "test"):
        first, second = read_verl(tmp_path / "a" / f"{split}.parquet"), read_verl(tmp_path / "b" / f"{split}.parquet")
        assert first.to_json() == second.to_json()
    train, test = read_verl(tmp_path / "a" / "train.parquet"), read_verl(tmp_path / "a" / "test.parquet")
    assert len(train) == 60 and len(test) == 20
    assert not {i["prompt_id"] for i in train["extra_info"]} & {i["prompt_id"] for i in test["extra_info"]}
    for _, row in train.iterrows():
        gt = row["reward_model"]["ground_truth"]
        answer = f"<answer>{row['extra_info']['solution']}</answer>"
        assert compute_score(row["data_source"], answer, gt, row["extra_info"])["acc"] == 1.0
        assert f"create an equation that equals {gt['target']}" in row["prompt"][0]["content"]
    trl = datasets.load_from_disk(str(tmp_path / "a" / "trl" / "train"))
    assert {"prompt", "prompt_id", "index", "target", "numbers"} <= set(trl.column_names)
    assert trl["prompt_id"] == [i["prompt_id"] for i in train["extra_info"]]
    assert isinstance(trl[0]["prompt"], str)


def test_countdown_chat_template_gives_trl_messages():
    splits = prepare_countdown(train_size=0, test_size=3, template="chat", progress=False)
    assert list(splits) == ["test"]
    record = splits["test"][1][0]
    assert record.trl_prompt is None and [m["role"] for m in record.messages] == ["system", "user"]


def test_countdown_from_hub_layout_local_files(tmp_path):
    instances = generate_countdown(30, seed=2)
    hub_dir = tmp_path / "Countdown-Tasks-3to4" / "data"
    hub_dir.mkdir(parents=True)
    pd.DataFrame({"target": [i.target for i in instances], "nums": [list(i.numbers) for i in instances]}).to_parquet(
        hub_dir / "train-00000-of-00001.parquet"
    )
    assert run_cli("countdown", "--source", str(hub_dir.parent), "--out", str(tmp_path / "out"),
                   "--train-size", "20", "--test-size", "10") == 0
    train = read_verl(tmp_path / "out" / "train.parquet")
    assert [r["ground_truth"]["target"] for r in train["reward_model"]] == [i.target for i in instances[:20]]
    test = read_verl(tmp_path / "out" / "test.parquet")
    assert [list(r["ground_truth"]["numbers"]) for r in test["reward_model"]] == [list(i.numbers) for i in instances[20:]]
    single_file = hub_dir / "train-00000-of-00001.parquet"
    splits = prepare_countdown(source=str(single_file), train_size=5, test_size=5, progress=False)
    assert [r.ground_truth["target"] for r in splits["train"][1]] == [i.target for i in instances[:5]]


def test_countdown_source_errors_name_the_problem(tmp_path):
    path = tmp_path / "small.parquet"
    pd.DataFrame({"target": [6], "nums": [[1, 2, 3]]}).to_parquet(path)
    with pytest.raises(ValueError, match="rows"):
        prepare_countdown(source=str(path), train_size=5, test_size=5, progress=False)
    pd.DataFrame({"target": [100], "nums": [[1, 1, 1]]}).to_parquet(path)
    with pytest.raises(ValueError, match="row 0"):
        prepare_countdown(source=str(path), train_size=0, test_size=1, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        prepare_countdown(source=str(tmp_path / "missing"), progress=False)
    assert run_cli("countdown", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o")) == 2


def write_math_hub(directory):
    directory.mkdir(parents=True)
    rows = {
        "train": [("What is $1+1$?", "It is $\\boxed{2}$."), ("Half?", "So $\\boxed{\\frac{1}{2}}$.")],
        "test": [("Interval?", "We get \\boxed{\\left[ 1, \\frac{3}{2} \\right)}.")],
    }
    for split, items in rows.items():
        pd.DataFrame({"problem": [p for p, _ in items], "solution": [s for _, s in items], "level": "Level 1",
                      "type": "Algebra"}).to_parquet(directory / f"{split}-00000-of-00001.parquet")


def test_math_from_local_hub_layout(tmp_path):
    write_math_hub(tmp_path / "MATH-lighteval" / "data")
    assert run_cli("math", "--source", str(tmp_path / "MATH-lighteval"), "--out", str(tmp_path / "out")) == 0
    train, test = read_verl(tmp_path / "out" / "train.parquet"), read_verl(tmp_path / "out" / "test.parquet")
    assert [r["ground_truth"] for r in train["reward_model"]] == ["2", "\\frac{1}{2}"]
    assert test["reward_model"][0]["ground_truth"] == "\\left[ 1, \\frac{3}{2} \\right)"
    assert train["prompt"][0][0]["content"] == (
        "What is $1+1$? Let's think step by step and output the final answer within \\boxed{}."
    )
    assert set(train["data_source"]) == {"DigitalLearningGmbH/MATH-lighteval"}
    assert compute_score(train["data_source"][1], "\\boxed{0.5}", train["reward_model"][1]["ground_truth"])["acc"] == 1.0
    trl = datasets.load_from_disk(str(tmp_path / "out" / "trl" / "test"))
    assert trl[0]["answer"] == "\\left[ 1, \\frac{3}{2} \\right)" and trl[0]["prompt"][0]["role"] == "user"
    # MATH's level and type travel along for feature builders (mopps.features.columns).
    assert train["extra_info"][0]["level"] == "Level 1" and train["extra_info"][0]["type"] == "Algebra"
    assert trl[0]["level"] == "Level 1" and trl[0]["type"] == "Algebra"


def test_math_without_a_box_names_the_row(tmp_path):
    directory = tmp_path / "m"
    write_math_hub(directory)
    pd.DataFrame({"problem": ["x"], "solution": ["no box"], "level": "Level 1", "type": "Algebra"}).to_parquet(
        directory / "train-00000-of-00001.parquet"
    )
    with pytest.raises(ValueError, match="math train row 0"):
        prepare_math(str(directory), progress=False)


def write_deepscaler(directory):
    (directory / "train").mkdir(parents=True)
    (directory / "test").mkdir()
    (directory / "train" / "deepscaler.json").write_text(json.dumps(
        [{"problem": "p1", "answer": "3", "solution": "s"}, {"problem": "p2", "answer": "\\frac{1}{2}"}]))
    tests = {
        "aime": [{"problem": "a", "answer": "025", "year": 2024}],
        "amc": [{"problem": "b", "answer": 142.0, "url": "u"}],
        "math": [{"problem": "c", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "unique_id": "x"}],
        "minerva": [{"problem": "d", "answer": ["6630.65\n", "6630\n"], "idx": 0}],
        "olympiad_bench": [{"problem": "e", "answer": ["$\\frac{1}{2 n+2}$"], "context": None, "is_multiple_answer": False}],
    }
    for name, records in tests.items():
        (directory / "test" / f"{name}.json").write_text(json.dumps(records))


def test_deepscaler_json_layout(tmp_path):
    write_deepscaler(tmp_path / "data")
    assert run_cli("deepscaler", "--source", str(tmp_path / "data"), "--out", str(tmp_path / "out")) == 0
    expected = {"train": "3", "aime": "025", "amc": "142", "math": "\\left( 3, \\frac{\\pi}{2} \\right)",
                "minerva": "6630.65", "olympiad_bench": "\\frac{1}{2 n+2}"}
    for stem, first_answer in expected.items():
        frame = read_verl(tmp_path / "out" / f"{stem}.parquet")
        assert frame["reward_model"][0]["ground_truth"] == first_answer
        assert frame["data_source"][0] == ("deepscaler" if stem == "train" else f"deepscaler/{stem}")
        assert frame["extra_info"][0]["split"] == ("train" if stem == "train" else "test")
    minerva = read_verl(tmp_path / "out" / "minerva.parquet").iloc[0]
    assert list(minerva["extra_info"]["answer_alternatives"]) == ["6630"]
    assert compute_score(minerva["data_source"], "\\boxed{6630}", minerva["reward_model"]["ground_truth"],
                         minerva["extra_info"])["acc"] == 1.0
    trl = datasets.load_from_disk(str(tmp_path / "out" / "trl" / "minerva"))
    assert trl[0]["answer"] == "6630.65" and trl[0]["answer_alternatives"] == ["6630"]


def test_deepscaler_errors(tmp_path):
    assert run_cli("deepscaler", "--out", str(tmp_path / "o")) == 2
    with pytest.raises(ValueError, match="deepscaler.json"):
        prepare_deepscaler(tmp_path, progress=False)
    write_deepscaler(tmp_path / "data")
    (tmp_path / "data" / "test" / "amc.json").write_text(json.dumps([{"problem": "b"}]))
    with pytest.raises(ValueError, match="record 0 lacks \\['answer'\\]"):
        prepare_deepscaler(tmp_path / "data", progress=False)


def png_bytes(color):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_geo3k_keeps_images_for_verl_and_trl(tmp_path):
    directory = tmp_path / "geometry3k" / "data"
    directory.mkdir(parents=True)
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    for split, color in (("train", "red"), ("test", "blue")):
        rows = {"images": [[{"bytes": png_bytes(color), "path": None}]] * 2,
                "problem": ["<image>Find x.", "Find the area."], "answer": ["60", "3\\sqrt{3}"]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(directory / f"{split}-00000-of-00001.parquet"))
    assert run_cli("geo3k", "--source", str(tmp_path / "geometry3k"), "--out", str(tmp_path / "out")) == 0
    train = read_verl(tmp_path / "out" / "train.parquet")
    assert "images" in train.columns
    for _, row in train.iterrows():
        images = row["images"]
        assert len(images) == 1 and isinstance(images[0]["bytes"], bytes)
        assert Image.open(io.BytesIO(images[0]["bytes"])).size == (4, 4)
        assert row["prompt"][0]["content"].count("<image>") == len(images)
        assert row["prompt"][0]["content"].endswith("The final answer MUST BE put in \\boxed{}.")
    assert set(train["data_source"]) == {"hiyouga/geometry3k"}
    response = "<think>30-60-90</think> \\boxed{3 \\sqrt{3}}"
    assert compute_score("hiyouga/geometry3k", response, train["reward_model"][1]["ground_truth"])["acc"] == 1.0
    trl = datasets.load_from_disk(str(tmp_path / "out" / "trl" / "test"))
    example = trl[0]
    assert isinstance(example["images"][0], Image.Image) and example["images"][0].getpixel((0, 0)) == (0, 0, 255)
    assert "<image>" not in example["prompt"][0]["content"] and example["answer"] == "60"


def test_verl_rows_of_countdown_ground_truth_are_plain_ints(tmp_path):
    splits = prepare_countdown(train_size=0, test_size=4, seed=9, progress=False)
    from mopps.tasks.prepare import write_prepared

    write_prepared(splits, tmp_path)
    frame = pd.read_parquet(tmp_path / "test.parquet")
    numbers = frame["reward_model"][0]["ground_truth"]["numbers"]
    assert isinstance(numbers, np.ndarray) and numbers.dtype.kind == "i"
