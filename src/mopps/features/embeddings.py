"""Frozen embeddings: mean-pooled hidden states of the *base* model for every prompt of a dataset.

What a user of an RL run always has before training starts is the model it starts from. Its
hidden states of a prompt describe the prompt as that model reads it (topic, form, length), and a
contextual selector can learn online which regions of that space the moving policy finds hard.
Features come from the prompt alone, computed once: never from the current policy's answers (that
is a rollout, the cost selection exists to avoid) and never from the policy being trained (they
would go stale, and the selector's state would depend on the trainer's).

Pooling: the hidden states of the chosen layer (``layer=-1``: the last, after the final norm),
averaged over the prompt's tokens, ignoring padding. Batches are right-padded, so with causal
attention a prompt's tokens never see its padding and keep the positions they have alone: its
embedding does not depend on what it is batched with (up to float rounding). Prompts are rendered
as the trainer renders them (the tokenizer's chat template with the generation prompt when there is
one; otherwise the message texts joined by newlines) and embedded longest first, so a batch that
does not fit in memory fails at once.

:func:`compute_embedding_features` (``mopps features --model ...``) writes the results in chunks
to ``<out>.partial/``; a rerun with the same settings continues where a stopped one ended and
refuses a partial folder written with other settings. torch and transformers are imported only
inside the functions here.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mopps.core.id_index import INT_KIND
from mopps.core.projection import KINDS, matrix_digest, project
from mopps.core.validation import check_choice, check_integer
from mopps.features import data as data_files
from mopps.features.files import load_features, save_features

POOLING = "mean"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_PART_GLOB = "part-*.npz"


def embed_token_ids(model, token_ids: Sequence[Sequence[int]], *, layer: int = -1, batch_size: int = 16,
                    pad_token_id: int = 0, progress=None) -> np.ndarray:
    """float32 (m, hidden): the mean over each prompt's tokens of the hidden states of ``layer``.

    ``model``: an HF model (a causal LM or its backbone; the LM head is never run), on its device.
    ``token_ids``: m non-empty lists of token ids, embedded in the order given, ``batch_size`` at
    a time, right-padded with ``pad_token_id``. ``layer``: index into the model's hidden states
    (0: the embedding output, ``num_hidden_layers`` or -1: the last layer after the final norm).
    ``progress``: an object with ``update(n)`` (a tqdm bar), told the prompts done per batch.
    """
    import torch

    backbone = getattr(model, "base_model", model)
    check_layer(backbone.config, layer)
    device = next(backbone.parameters()).device
    pooled_batches = []
    for start in range(0, len(token_ids), batch_size):
        batch = token_ids[start:start + batch_size]
        lengths = torch.tensor([len(ids) for ids in batch])
        input_ids = torch.full((len(batch), int(lengths.max())), pad_token_id, dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        with torch.inference_mode():
            outputs = backbone(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                               output_hidden_states=layer != -1, use_cache=False)
            hidden = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
            weights = mask.to(device=device, dtype=torch.float32)[:, :, None]
            pooled = (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1)
        pooled_batches.append(pooled.cpu().numpy())
        if progress is not None:
            progress.update(len(batch))
    return np.concatenate(pooled_batches).astype(np.float32, copy=False)


def check_layer(config, layer: int) -> None:
    """Raise ``ValueError`` unless ``layer`` indexes the ``num_hidden_layers + 1`` hidden states."""
    count = getattr(config, "num_hidden_layers", None)
    check_integer(layer, "layer", minimum=None)
    if count is not None and not -(count + 1) <= layer <= count:
        raise ValueError(f"layer = {layer}; the model has hidden states 0..{count} (or -{count + 1}..-1)")


def prepare_tokens(tokenizer, prompts: Sequence, max_length: int,
                   chat_template: bool = True) -> tuple[list[list[int]], int, bool]:
    """``(token_ids, truncated, templated)``: each prompt rendered and tokenised, cut to ``max_length``.

    ``truncated``: how many prompts were longer than ``max_length`` tokens (their first
    ``max_length`` tokens are kept). ``templated``: whether a chat template was applied. Raises
    ``ValueError`` naming the first prompt with no tokens.
    """
    check_integer(max_length, "max_length", minimum=1)
    token_ids, templated = data_files.tokenize(tokenizer, list(prompts), chat_template)
    empty = [row for row, ids in enumerate(token_ids) if not ids]
    if empty:
        raise ValueError(f"prompt {empty[0]} has no tokens; an empty prompt has no embedding")
    truncated = sum(len(ids) > max_length for ids in token_ids)
    return [ids[:max_length] for ids in token_ids], truncated, templated


def embed_prompts(model, tokenizer, prompts: Sequence, *, layer: int = -1, batch_size: int = 16,
                  max_length: int = 1024, chat_template: bool = True, progress: bool = False) -> np.ndarray:
    """float32 (m, hidden): mean-pooled hidden states of ``prompts`` (str or chat messages each).

    ``model``, ``tokenizer``: a loaded HF model (causal LM or backbone) and its tokenizer. Rows
    come back in the order of ``prompts``; internally they are embedded longest first.
    """
    from tqdm.auto import tqdm

    token_ids, _, _ = prepare_tokens(tokenizer, prompts, max_length, chat_template)
    order = np.argsort([-len(ids) for ids in token_ids], kind="stable")
    with tqdm(total=len(token_ids), unit="prompt", desc="embedding", disable=not progress) as bar:
        pooled = embed_token_ids(model, [token_ids[i] for i in order], layer=layer, batch_size=batch_size,
                                 pad_token_id=_pad_id(tokenizer), progress=bar)
    result = np.empty_like(pooled)
    result[order] = pooled
    return result


def compute_embedding_features(
    model: str,
    data,
    out,
    *,
    id_key: str = "prompt_id",
    layer: int = -1,
    batch_size: int = 16,
    max_length: int = 1024,
    device: str | None = None,
    dtype: str = "auto",
    project_to: int | None = None,
    projection: str = "gaussian",
    projection_seed: int = 0,
    chunk_size: int = 1024,
    chat_template: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Embed every prompt of ``data`` with the frozen model at ``model`` and write a feature file.

    ``model``: a local folder or Hub name readable by ``transformers.AutoModel`` and
    ``AutoTokenizer`` (the base model the run starts from). ``data``: a verl parquet or TRL folder
    written by ``mopps data``. ``out``: the feature file (``.npz``), keyed by ``id_key`` (see
    :mod:`mopps.features.data`), rows in the data's order. ``device``: a torch device, default
    ``cuda`` when available else ``cpu``. ``dtype``: the model's weights, ``auto`` = bfloat16 on
    CUDA, float32 elsewhere (pooling is always done in float32). ``project_to``: if given, features
    are projected to that many dimensions (:mod:`mopps.core.projection`, ``projection`` kind,
    ``projection_seed``). ``chunk_size``: prompts per partial file in ``<out>.partial/``.

    Resumable: the partial folder is kept until the final file is written; a rerun with the same
    settings and data embeds only the prompts that have no partial result yet. Raises
    ``ValueError`` for bad settings, an existing ``out`` (unless ``overwrite``), or a partial folder
    written with other settings. Returns ``out``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    out = Path(out)
    _check_settings(batch_size, chunk_size, dtype, project_to, projection, projection_seed)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; delete it, choose another --out, or pass overwrite")
    table = data_files.read_table(data)
    kind, ids = data_files.prompt_ids(table, id_key)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    weights_dtype = _torch_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model)
    backbone = AutoModel.from_pretrained(model, dtype=weights_dtype).to(device).eval()
    check_layer(backbone.config, layer)
    hidden_size = getattr(backbone.config, "hidden_size", None)
    if project_to is not None and hidden_size is not None and project_to > hidden_size:
        raise ValueError(f"project_to = {project_to} > the model's hidden size {hidden_size}")
    token_ids, truncated, templated = prepare_tokens(tokenizer, data_files.prompts(table), max_length, chat_template)
    if truncated:
        warnings.warn(f"{truncated} of {len(token_ids)} prompts are longer than max_length = {max_length} "
                      f"tokens; their first {max_length} tokens are embedded", stacklevel=2)

    run = {
        "model": str(Path(model).resolve()) if Path(model).exists() else str(model),
        "layer": layer, "pooling": POOLING, "max_length": max_length,
        "dtype": str(weights_dtype).removeprefix("torch."), "chat_template": templated, "id_key": id_key,
        "projection": None if project_to is None else {"kind": projection, "seed": projection_seed,
                                                        "output_dim": project_to},
        "prompts_sha256": _prompts_digest(kind, ids, token_ids),
    }
    partial = out.with_name(out.name + ".partial")
    done = _read_parts(partial, run)
    position = {key: row for row, key in enumerate(_as_list(ids))}
    todo = np.array([row for row in np.argsort([-len(t) for t in token_ids], kind="stable")
                     if _as_key(ids[row]) not in done], dtype=np.int64)
    next_part = 1 + max((int(path.stem.removeprefix("part-")) for path in partial.glob(_PART_GLOB)), default=-1)
    with tqdm(total=len(token_ids), initial=len(token_ids) - len(todo), unit="prompt", desc="embedding",
              disable=not progress) as bar:
        for start in range(0, len(todo), chunk_size):
            rows = todo[start:start + chunk_size]
            pooled = embed_token_ids(backbone, [token_ids[row] for row in rows], layer=layer, batch_size=batch_size,
                                     pad_token_id=_pad_id(tokenizer), progress=bar)
            if project_to is not None:
                pooled = project(pooled, project_to, projection_seed, projection)
            chunk_ids = ids[rows] if kind == INT_KIND else [ids[row] for row in rows]
            _write_part(partial / f"part-{next_part:06d}.npz", chunk_ids, pooled, run)
            next_part += 1
            done.update(zip(_as_list(chunk_ids), pooled))

    X = np.empty((len(token_ids), next(iter(done.values())).shape[0]), dtype=np.float32)
    for key, row_features in done.items():
        X[position[key]] = row_features
    meta = {"source": "embedding", **run, "data": str(Path(data).resolve()),
            "hidden_size": hidden_size, "truncated_prompts": truncated}
    if project_to is not None:
        input_dim = int(hidden_size) if hidden_size is not None else None
        meta["projection"] = {**run["projection"], "input_dim": input_dim,
                              "matrix_sha256": None if input_dim is None else
                              matrix_digest(input_dim, project_to, projection_seed, projection)}
    save_features(out, ids, X, meta)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def _write_part(path: Path, ids, X: np.ndarray, run: dict) -> None:
    """One chunk of results, as a feature file carrying the run's settings."""
    save_features(path, ids, X, {"source": "embedding-part", "run": run})


def _read_parts(partial: Path, run: dict) -> dict:
    """id -> float32 (d,) from the partial files of an earlier run with the same ``run`` settings."""
    done: dict = {}
    if not partial.exists():
        return done
    for leftover in partial.glob(".part-*.tmp"):
        leftover.unlink()   # the temporary file of a write that a crash interrupted
    for path in sorted(partial.glob(_PART_GLOB)):
        ids, X, meta = load_features(path)
        if meta.get("run") != run:
            earlier = meta.get("run") or {}
            differs = sorted(key for key in set(run) | set(earlier) if run.get(key) != earlier.get(key))
            raise ValueError(
                f"{partial} holds results of a run with other settings or data (differs in {differs}); "
                "rerun with the same settings, or delete that folder to start over"
            )
        done.update(zip(_as_list(ids), X))
    return done


def _check_settings(batch_size, chunk_size, dtype, project_to, projection, projection_seed) -> None:
    check_integer(batch_size, "batch_size", minimum=1)
    check_integer(chunk_size, "chunk_size", minimum=1)
    check_choice(dtype, "dtype", DTYPES)
    if project_to is not None:
        check_integer(project_to, "project_to", minimum=1)
    check_choice(projection, "projection", KINDS)
    check_integer(projection_seed, "projection_seed", minimum=0)


def _torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def _pad_id(tokenizer) -> int:
    """Any valid token id does: right padding is masked and never seen by the prompt's tokens."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _prompts_digest(kind: str, ids, token_ids: list[list[int]]) -> str:
    """SHA-256 over the ids and the exact tokens embedded: a resumed run must see the same prompts."""
    digest = hashlib.sha256(kind.encode())
    for key, tokens in zip(_as_list(ids), token_ids):
        digest.update(str(key).encode("utf-8") + b"\0")
        digest.update(np.asarray(tokens, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _as_list(ids) -> list:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def _as_key(value):
    return int(value) if isinstance(value, np.integer) else value
