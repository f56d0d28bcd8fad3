"""The tiny Hugging Face policy: text, data, reward, cache, and that its rewards are mixed."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

# Nothing here may reach the Hub: fail instead of downloading.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("transformers", reason="the tiny Hugging Face policy needs the trl extra: pip install -e '.[trl]'")
pytest.importorskip("datasets", reason="the tiny Hugging Face policy needs the trl extra: pip install -e '.[trl]'")

import torch  # noqa: E402

from mopps.testbed import hf_tiny  # noqa: E402
from mopps.testbed.cache import MANIFEST, entry_problem  # noqa: E402
from mopps.testbed.hf_tiny import (  # noqa: E402
    TinyConfig,
    build_dataset,
    build_tokenizer,
    cache_path,
    exact_answer_reward,
    expected_zero_variance_share,
    load_tiny_model,
    success_rates,
    train_tiny_model,
    training_batch,
)
from mopps.testbed.task import AdditionTask, SortTask  # noqa: E402

CHEAP = TinyConfig(steps=3, batch_size=8)  # a few steps: enough to test the cache and determinism


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """The default config's model, trained once into a temporary cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOPPS_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_tiny_model(TinyConfig())


def same_weights(first, second) -> bool:
    second_state = second.state_dict()
    return all(torch.equal(tensor, second_state[name]) for name, tensor in first.state_dict().items())


# -- text and data -----------------------------------------------------------------------------------

def test_tokenizer_reads_dataset_words_and_pads_left():
    tokenizer = build_tokenizer()
    dataset = build_dataset(8, seed=3)
    encoded = tokenizer(list(dataset["prompt"]) + ["1 +"], padding=True)["input_ids"]
    assert tokenizer.unk_token_id not in sum(encoded, [])
    assert encoded[-1][:4] == [tokenizer.pad_token_id] * 4  # the short row is padded on the left
    assert tokenizer.decode(encoded[0]) == dataset[0]["prompt"]
    words = tokenizer(dataset[0]["answer"] + " <eos>")["input_ids"]
    assert words[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(words, skip_special_tokens=True) == dataset[0]["answer"]


def test_tokenizer_refuses_words_it_cannot_split():
    @dataclasses.dataclass(frozen=True)
    class Spaced(AdditionTask):
        vocab = AdditionTask.vocab[:10] + ("plus sign", "=", "<eos>")

    with pytest.raises(ValueError, match="whitespace"):
        build_tokenizer(Spaced(2))


def test_dataset_rows_are_distinct_correct_and_stably_keyed():
    dataset = build_dataset(40, seed=1)
    assert dataset.column_names == ["prompt", "answer", "prompt_id", "features"]
    assert len(set(dataset["prompt"])) == len(set(dataset["prompt_id"])) == 40
    for row in dataset:
        left, right = row["prompt"].removesuffix(" =").split(" + ")
        a, b = (int(text.replace(" ", "")[::-1]) for text in (left, right))
        assert row["answer"] == " ".join(str(a + b)[::-1])
        assert row["features"][:3] == [float(len(str(a))), float(len(str(b))), float(len(str(a + b)))]
        assert len(row["features"]) == 4 and row["features"][3] in (0.0, 1.0, 2.0)
    other = build_dataset(60, seed=2)
    ids = dict(zip(other["prompt"], other["prompt_id"]))
    shared = [prompt for prompt in dataset["prompt"] if prompt in ids]
    assert shared, "two draws of 40 and 60 from 10^4 problems share prompts with this seed"
    assert all(ids[prompt] == dict(zip(dataset["prompt"], dataset["prompt_id"]))[prompt] for prompt in shared)


@pytest.mark.parametrize("count", [0, -1, 2.5, True])
def test_dataset_refuses_bad_count(count):
    with pytest.raises(ValueError, match="count"):
        build_dataset(count)


def test_training_batch_has_the_asked_carry_share():
    task = AdditionTask(2)
    batch = training_batch(task, 50, 0.2, np.random.default_rng(0))
    assert batch.shape == (50, 2)
    assert np.sum(task.features(batch)["carries"] > 0) == 10


def test_config_refuses_bad_carry_share():
    with pytest.raises(ValueError, match="carry_share"):
        TinyConfig(carry_share=1.5)
    with pytest.raises(ValueError, match="carry_share"):
        TinyConfig(task=SortTask(), carry_share=0.1)
    TinyConfig(task=SortTask(), carry_share=None)


# -- reward --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "reward"), [
    ("2 2 1", 1.0),
    ("  2  2\t1 \n", 1.0),        # stray whitespace
    ("2 2 1 <eos>", 1.0),         # an end token left in the text, and what follows it, is not judged
    ("2 2 1<eos> 7 7", 1.0),
    ("2 2", 0.0),                 # missing digit (e.g. cut off)
    ("2 2 1 0", 0.0),             # extra digit
    ("2 3 1", 0.0),
    ("221", 0.0),                 # one word, not three tokens
    ("", 0.0),
    ("<eos> 2 2 1", 0.0),
])
def test_reward_accepts_exactly_the_answer(completion, reward):
    assert exact_answer_reward([completion], ["2 2 1"]) == [reward]


def test_reward_handles_batches_extra_columns_and_messages():
    rewards = exact_answer_reward(["1", "0 1", [{"role": "assistant", "content": "0 1"}]], ["1", "1 0", "0 1"],
                                  prompt_id=[1, 2, 3], completion_ids=[[4], [3, 4], [3, 4]])
    assert rewards == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="completions"):
        exact_answer_reward(["1", "2"], ["1"])


def test_recording_reward_returns_and_logs_every_reward_in_call_order():
    log: list[float] = []
    reward = hf_tiny.recording_reward(log)
    assert reward(["2 2 1", "2 2"], ["2 2 1", "2 2 1"]) == [1.0, 0.0]
    assert reward(["1"], ["1"]) == [1.0] and log == [1.0, 0.0, 1.0]


# -- training and cache ----------------------------------------------------------------------------

def test_training_is_deterministic_whatever_the_thread_count_and_keeps_the_callers_rng():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = train_tiny_model(CHEAP)
    assert torch.equal(torch.rand(1), expected_draw)
    torch.set_num_threads(2)
    try:
        second = train_tiny_model(CHEAP)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert same_weights(first, second)
    assert not same_weights(first, train_tiny_model(dataclasses.replace(CHEAP, seed=1)))


def test_cache_round_trip_gives_identical_weights_without_training(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    built = load_tiny_model(CHEAP)
    path = cache_path(CHEAP)
    assert path.parent == tmp_path and (path / MANIFEST).exists() and (path / "tokenizer.json").exists()
    assert [item.name for item in tmp_path.iterdir()] == [path.name]  # no temporary folder left behind

    def refuse(config):
        raise AssertionError("a valid cache entry must be loaded, not retrained")

    monkeypatch.setattr(hf_tiny, "train_tiny_model", refuse)
    loaded = load_tiny_model(CHEAP)
    assert same_weights(built, loaded)
    assert not loaded.training


def test_cache_key_changes_with_every_setting():
    changed = {"task": AdditionTask(3), "hidden_size": 32, "layers": 2, "heads": 2, "kv_heads": 1,
               "intermediate_size": 64, "steps": 4, "batch_size": 9, "carry_share": None,
               "learning_rate": 1e-3, "seed": 1}
    assert set(changed) == {field.name for field in dataclasses.fields(TinyConfig)}
    keys = {name: dataclasses.replace(CHEAP, **{name: value}).key() for name, value in changed.items()}
    assert len(set(keys.values()) | {CHEAP.key()}) == len(changed) + 1
    assert TinyConfig(steps=3, batch_size=8).key() == CHEAP.key()
    assert dataclasses.replace(CHEAP, carry_share=0.1000001).key() != CHEAP.key()


def _flip_a_byte(path, name):
    data = bytearray((path / name).read_bytes())
    data[len(data) - 100] ^= 0xFF  # inside the weights: the file still parses, only its values change
    (path / name).write_bytes(bytes(data))


def _drop_the_manifest(path, name):
    (path / MANIFEST).unlink()


def _truncate(path, name):
    (path / name).write_bytes((path / name).read_bytes()[:1000])


def _other_key(path, name):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["key"] = "0" * 16
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_flip_a_byte, _drop_the_manifest, _truncate, _other_key])
def test_damaged_cache_entry_is_rebuilt_not_used(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    built = load_tiny_model(CHEAP)
    path = cache_path(CHEAP)
    damage(path, "model.safetensors")
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = load_tiny_model(CHEAP)
    assert same_weights(built, rebuilt)
    assert entry_problem(path, CHEAP.key()) is None  # the entry is whole again
    assert [item.name for item in tmp_path.iterdir()] == [path.name]


def test_building_and_loading_never_open_a_network_connection(monkeypatch, tmp_path):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("hf_tiny opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    built = load_tiny_model(CHEAP)  # trained and stored
    assert same_weights(built, load_tiny_model(CHEAP))  # read back from the cache
    assert len(build_dataset(4)) == 4 and build_tokenizer().pad_token == "<pad>"


# -- the warm-started model ------------------------------------------------------------------------

@pytest.mark.slow
def test_exact_success_rate_matches_sampled_frequency(warm):
    """``success_rates`` predicts how often TRL-style sampling (temperature 1, full vocabulary, decoded
    with special tokens skipped) earns ``exact_answer_reward``."""
    dataset = build_dataset(64, seed=0)
    rates = success_rates(warm, dataset)
    row = int(np.argmin(np.abs(rates - 0.5)))
    tokenizer = build_tokenizer()
    draws = 1000
    inputs = tokenizer([dataset[row]["prompt"]], return_tensors="pt")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        output = warm.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=5,
                               num_return_sequences=draws, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    frequency = np.mean(exact_answer_reward(texts, [dataset[row]["answer"]] * draws))
    assert abs(frequency - rates[row]) < 4.0 * np.sqrt(rates[row] * (1.0 - rates[row]) / draws)


@pytest.mark.slow
def test_success_rates_do_not_depend_on_batching(warm):
    dataset = build_dataset(20, seed=4)
    np.testing.assert_allclose(success_rates(warm, dataset, chunk=3), success_rates(warm, dataset), atol=1e-6)


@pytest.mark.slow
def test_warm_model_has_mixed_rewards(warm):
    dataset = build_dataset(64, seed=0)
    rates = success_rates(warm, dataset)
    assert np.all((rates >= 0.0) & (rates <= 1.0))
    assert np.mean(rates > 0.8) >= 0.1 and np.mean(rates < 0.2) >= 0.1  # both solved and unsolved prompts
    assert np.mean((rates > 0.2) & (rates < 0.8)) >= 0.2  # and prompts in between
    assert 0.3 <= expected_zero_variance_share(rates, 4) <= 0.7
    carries = np.array(dataset["features"])[:, 3]
    assert rates[carries == 0].mean() > rates[carries > 0].mean() + 0.3  # carries make a prompt hard


def test_expected_zero_variance_share():
    assert expected_zero_variance_share([0.0, 1.0], 4) == 1.0
    assert expected_zero_variance_share([0.5], 2) == 0.5
