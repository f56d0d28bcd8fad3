"""Frozen base-model embeddings on a tiny model saved to disk: values, padding, layers, resume, refusals."""

import argparse

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="model embeddings need the features extra: pip install -e '.[features]'")
pytest.importorskip("transformers", reason="model embeddings need the features extra: pip install -e '.[features]'")

from transformers import AutoModel, AutoTokenizer  # noqa: E402

from _tiny_lm import save_tiny_lm, word_tokenizer  # noqa: E402
from mopps.core.projection import matrix_digest, project  # noqa: E402
from mopps.features import embeddings, load_features  # noqa: E402
from mopps.features.cli import register  # noqa: E402
from mopps.features.data import plain_text  # noqa: E402


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="mopps")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", *argv, "--no-progress"])
    return args.func(args)


def train_rows(math_data):
    frame = pd.read_parquet(math_data / "train.parquet")
    messages = [[dict(message) for message in prompt] for prompt in frame["prompt"]]
    return frame, messages


def words(math_data):
    _, messages = train_rows(math_data)
    return [plain_text(prompt) for prompt in messages]


@pytest.fixture(scope="module")
def tiny_lm(math_data, tmp_path_factory):
    """A tiny Llama and Qwen2 saved to disk, with a word-level tokenizer knowing every MATH prompt word.

    The CLI tests use the Llama folder: transformers 5's AutoTokenizer loads any folder whose config
    says qwen2 as Qwen2Tokenizer (byte-level BPE rebuilt from the vocabulary), which turns our
    word-level tokenizer into something else; the Qwen2 model is tested with the tokenizer in memory.
    """
    root = tmp_path_factory.mktemp("lm")
    return {architecture: save_tiny_lm(root / architecture, word_tokenizer(words(math_data)), architecture)
            for architecture in ("llama", "qwen2")}


def load(path):
    return AutoModel.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def test_cli_writes_mean_pooled_last_layer_states_keyed_by_prompt_id(math_data, tiny_lm, tmp_path):
    out = tmp_path / "emb.npz"
    assert run_cli("--model", str(tiny_lm["llama"]), "--data", str(math_data / "train.parquet"), "--out", str(out),
                   "--batch-size", "3", "--device", "cpu") == 0
    ids, X, meta = load_features(out)
    frame, messages = train_rows(math_data)
    assert ids == [info["prompt_id"] for info in frame["extra_info"]]
    assert X.dtype == np.float32 and X.shape == (8, 32)
    assert (meta["source"], meta["pooling"], meta["layer"], meta["dimension"]) == ("embedding", "mean", -1, 32)
    assert meta["chat_template"] is True and meta["model"] == str(tiny_lm["llama"].resolve())
    # The same numbers by hand: chat template with generation prompt, no added specials, plain mean.
    model, tokenizer = load(tiny_lm["llama"])
    for row in (0, 7):
        text = tokenizer.apply_chat_template(messages[row], tokenize=False, add_generation_prompt=True)
        assert text.startswith("<|user|> ") and text.endswith("<|assistant|>")
        token_ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        assert tokenizer.convert_ids_to_tokens(token_ids[0]) == text.split()   # the saved tokenizer, faithfully
        with torch.no_grad():
            expected = model(input_ids=token_ids).last_hidden_state.mean(dim=1)[0].numpy()
        assert np.allclose(X[row], expected, atol=1e-5)
    assert not np.allclose(X[0], X[1], atol=1e-3)


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_padding_does_not_change_a_prompts_embedding(math_data, tiny_lm, architecture):
    model = AutoModel.from_pretrained(tiny_lm[architecture], dtype=torch.float32).eval()
    tokenizer = word_tokenizer(words(math_data))
    _, messages = train_rows(math_data)
    lengths = [len(ids) for ids in embeddings.prepare_tokens(tokenizer, messages, 1024)[0]]
    assert max(lengths) >= min(lengths) + 15    # batches really are padded
    alone = embeddings.embed_prompts(model, tokenizer, messages, batch_size=1)
    batched = embeddings.embed_prompts(model, tokenizer, messages, batch_size=8)
    assert np.allclose(alone, batched, atol=1e-5)
    # A prompt next to a much longer one in the same batch gives the same row as alone.
    short, long = int(np.argmin(lengths)), int(np.argmax(lengths))
    pair = embeddings.embed_prompts(model, tokenizer, [messages[short], messages[long]], batch_size=2)
    assert np.allclose(pair, alone[[short, long]], atol=1e-5)


def test_layer_option_pools_the_chosen_hidden_state(math_data, tiny_lm):
    model = AutoModel.from_pretrained(tiny_lm["llama"], dtype=torch.float32).eval()
    tokenizer = word_tokenizer(words(math_data), chat_template=None)
    _, messages = train_rows(math_data)
    first = embeddings.embed_prompts(model, tokenizer, messages, layer=0, batch_size=4)
    text = plain_text(messages[2])
    token_ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        expected = model.get_input_embeddings()(token_ids).mean(dim=1)[0].numpy()
    assert np.allclose(first[2], expected, atol=1e-6)
    assert np.allclose(embeddings.embed_prompts(model, tokenizer, messages, layer=2),
                       embeddings.embed_prompts(model, tokenizer, messages, layer=-1), atol=1e-6)
    with pytest.raises(ValueError, match=r"layer = 3; the model has hidden states 0..2"):
        embeddings.embed_prompts(model, tokenizer, messages, layer=3)


def test_an_interrupted_run_resumes_where_it_stopped(math_data, tiny_lm, tmp_path, monkeypatch):
    settings = dict(batch_size=2, chunk_size=3, device="cpu", progress=False)
    data = math_data / "train.parquet"
    reference = load_features(embeddings.compute_embedding_features(str(tiny_lm["llama"]), data,
                                                                    tmp_path / "ref.npz", **settings))
    out = tmp_path / "emb.npz"
    write_part = embeddings._write_part
    parts_written = []

    def interrupt_on_second_part(path, ids, X, run):
        if parts_written:
            raise KeyboardInterrupt   # as if the user pressed Ctrl-C while the second chunk was written
        parts_written.append(path)
        write_part(path, ids, X, run)

    monkeypatch.setattr(embeddings, "_write_part", interrupt_on_second_part)
    with pytest.raises(KeyboardInterrupt):
        embeddings.compute_embedding_features(str(tiny_lm["llama"]), data, out, **settings)
    partial = tmp_path / "emb.npz.partial"
    assert not out.exists() and [p.name for p in partial.iterdir()] == ["part-000000.npz"]
    (partial / ".part-000001.npz.abc.tmp").write_bytes(b"PK half")   # a torn temporary from a crash

    monkeypatch.setattr(embeddings, "_write_part", write_part)
    embedded = []
    embed_token_ids = embeddings.embed_token_ids

    def counting(model, token_ids, **kwargs):
        embedded.append(len(token_ids))
        return embed_token_ids(model, token_ids, **kwargs)

    monkeypatch.setattr(embeddings, "embed_token_ids", counting)
    embeddings.compute_embedding_features(str(tiny_lm["llama"]), data, out, **settings)
    assert embedded == [3, 2]                      # only the 5 prompts without a partial result
    resumed = load_features(out)
    assert resumed.ids == reference.ids and np.allclose(resumed.X, reference.X, atol=1e-6)
    assert resumed.meta["prompts_sha256"] == reference.meta["prompts_sha256"]
    assert not partial.exists()


def test_a_partial_folder_from_other_settings_or_a_bad_part_is_refused(math_data, tiny_lm, tmp_path, monkeypatch):
    data, out = math_data / "train.parquet", tmp_path / "emb.npz"

    def interrupt(path, ids, X, run):
        embeddings.save_features(path, ids, X, {"source": "embedding-part", "run": run})
        raise KeyboardInterrupt

    monkeypatch.setattr(embeddings, "_write_part", interrupt)
    with pytest.raises(KeyboardInterrupt):
        embeddings.compute_embedding_features(str(tiny_lm["llama"]), data, out, chunk_size=4, progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"emb\.npz\.partial holds results of a run with other settings .*\['layer'\]"):
        embeddings.compute_embedding_features(str(tiny_lm["llama"]), data, out, chunk_size=4, layer=1, progress=False)
    other_data = math_data / "test.parquet"
    with pytest.raises(ValueError, match=r"differs in \['prompts_sha256'\]"):
        embeddings.compute_embedding_features(str(tiny_lm["llama"]), other_data, out, chunk_size=4, progress=False)
    part = tmp_path / "emb.npz.partial" / "part-000000.npz"
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot read feature file .*part-000000\.npz"):
        embeddings.compute_embedding_features(str(tiny_lm["llama"]), data, out, chunk_size=4, progress=False)


def test_projection_and_the_trl_folder(math_data, tiny_lm, tmp_path):
    full = tmp_path / "full.npz"
    train = str(math_data / "train.parquet")
    assert run_cli("--model", str(tiny_lm["llama"]), "--data", train, "--out", str(full)) == 0
    projected = tmp_path / "p.npz"
    assert run_cli("--model", str(tiny_lm["llama"]), "--data", str(math_data / "trl" / "train"), "--out",
                   str(projected), "--project-to", "8", "--projection", "achlioptas", "--projection-seed", "3") == 0
    ids, X, meta = load_features(projected)
    reference = load_features(full)
    assert ids == reference.ids and X.shape == (8, 8)
    assert np.allclose(X, project(reference.X, 8, 3, "achlioptas"), atol=1e-5)
    assert meta["projection"] == {"kind": "achlioptas", "seed": 3, "output_dim": 8, "input_dim": 32,
                                  "matrix_sha256": matrix_digest(32, 8, 3, "achlioptas")}


def test_no_chat_template_embeds_the_joined_texts(math_data, tiny_lm, tmp_path):
    out = tmp_path / "plain.npz"
    assert run_cli("--model", str(tiny_lm["llama"]), "--data", str(math_data / "train.parquet"), "--out", str(out),
                   "--no-chat-template", "--id", "index") == 0
    ids, X, meta = load_features(out)
    assert ids.tolist() == list(range(8)) and meta["chat_template"] is False
    model, tokenizer = load(tiny_lm["llama"])
    _, messages = train_rows(math_data)
    token_ids = torch.tensor([tokenizer(plain_text(messages[4]))["input_ids"]])
    with torch.no_grad():
        assert np.allclose(X[4], model(input_ids=token_ids).last_hidden_state.mean(dim=1)[0].numpy(), atol=1e-5)


def test_token_length_column_and_cli_refusals(math_data, tiny_lm, tmp_path, capsys):
    out = tmp_path / "len.npz"
    assert run_cli("--data", str(math_data / "train.parquet"), "--out", str(out), "--length", "tokens",
                   "--tokenizer", str(tiny_lm["llama"]), "--categorical", "extra_info.level") == 0
    _, X, meta = load_features(out)
    assert meta["columns"][-1] == "log1p_length_tokens"
    _, messages = train_rows(math_data)
    # Template: "<|user|> " + text + " <|assistant|>", one token per word.
    counts = np.array([len(plain_text(m).split()) + 2 for m in messages], dtype=np.float64)
    log_counts = np.log1p(counts)
    assert np.allclose(X[:, -1], (log_counts - log_counts.mean()) / log_counts.std(), atol=1e-6)
    capsys.readouterr()
    assert run_cli("--data", str(math_data / "train.parquet"), "--out", str(out), "--length", "chars") == 2
    assert "exists" in capsys.readouterr().err
    assert run_cli("--data", str(math_data / "train.parquet"), "--out", str(tmp_path / "x.npz"),
                   "--model", str(tiny_lm["llama"]), "--length", "chars") == 2
    assert "run them separately" in capsys.readouterr().err
    assert run_cli("--data", str(math_data / "train.parquet"), "--out", str(tmp_path / "x.npz")) == 2
    assert "say what to compute" in capsys.readouterr().err
    assert run_cli("--data", str(math_data / "train.parquet"), "--out", str(tmp_path / "x.npz"),
                   "--model", str(tiny_lm["llama"]), "--layer", "7") == 2
    assert "layer = 7" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_an_empty_prompt_is_refused_naming_it(tiny_lm):
    model, tokenizer = load(tiny_lm["llama"])
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        embeddings.embed_prompts(model, tokenizer, ["What is", "", "x"])
