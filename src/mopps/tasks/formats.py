"""Rows in the formats trainers read, and writers for them.

A :class:`PromptRecord` is one prepared prompt, independent of any trainer. It becomes

* a verl parquet row: ``data_source``, ``prompt`` (chat messages), ``ability``,
  ``reward_model: {style: "rule", ground_truth}``, ``extra_info: {split, index, prompt_id, ...}``
  (plus ``images`` for vision tasks), written with :func:`write_verl_parquet`;
* a TRL row: ``prompt`` (messages, or plain text for base-model templates), ``prompt_id``,
  ``index`` and the ground-truth columns the reward callables read, saved as an HF dataset with
  :func:`write_trl_dataset`.

``index`` is the row's position in its split, as in the MoPPS reference (its posteriors are
keyed by ``str(extra_info.index)``): unique within a file and the same on every re-run from the
same source. ``prompt_id`` is a content hash (task, prompt text, ground truth), so it also
survives a reordered or filtered source; a repeated prompt gets ``-2``, ``-3`` ... suffixes to
stay unique.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PromptRecord:
    """One prepared prompt.

    ``data_source``: the name ``compute_score`` dispatches on. ``messages``: chat messages.
    ``ground_truth``: what the verifier compares with (Countdown dict or answer string).
    ``trl_columns``: ground-truth columns for TRL's reward callables (e.g. ``target``,
    ``numbers``; or ``answer``). ``extra_info``: further verl ``extra_info`` fields.
    ``images``: images for vision-language prompts (PIL images or ``{"bytes", "path"}`` dicts).
    ``trl_prompt``: what TRL gets as ``prompt`` when it differs from ``messages`` (plain text for
    base-model templates that must not be wrapped in a chat template; messages without verl's
    ``<image>`` markers, since TRL inserts images itself).
    """

    data_source: str
    messages: list[dict]
    ground_truth: Any
    trl_columns: dict[str, Any]
    extra_info: dict[str, Any] = field(default_factory=dict)
    images: list | None = None
    trl_prompt: Any = None
    ability: str = "math"


def content_hash(record: PromptRecord) -> str:
    """16 hex characters of SHA-256 over the record's source, messages and ground truth."""
    payload = json.dumps(
        [record.data_source, record.messages, record.ground_truth], sort_keys=True, ensure_ascii=False, default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def prompt_ids(records: Iterable[PromptRecord]) -> list[str]:
    """Stable, unique ids: the content hash, with ``-k`` appended to the k-th repeat (k >= 2)."""
    seen: dict[str, int] = {}
    ids = []
    for record in records:
        digest = content_hash(record)
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest]}")
    return ids


def verl_rows(records: list[PromptRecord], split: str) -> list[dict]:
    """verl parquet rows for one split; ``extra_info.index`` is the position in ``records``."""
    rows = []
    for index, (record, prompt_id) in enumerate(zip(records, prompt_ids(records))):
        row = {
            "data_source": record.data_source,
            "prompt": record.messages,
            "ability": record.ability,
            "reward_model": {"style": "rule", "ground_truth": record.ground_truth},
            "extra_info": {"split": split, "index": index, "prompt_id": prompt_id, **record.extra_info},
        }
        if record.images is not None:
            row["images"] = record.images
        rows.append(row)
    return rows


def trl_rows(records: list[PromptRecord]) -> list[dict]:
    """TRL rows: ``prompt``, ``prompt_id``, ``index``, the ground-truth columns (and ``images``)."""
    rows = []
    for index, (record, prompt_id) in enumerate(zip(records, prompt_ids(records))):
        prompt = record.messages if record.trl_prompt is None else record.trl_prompt
        row = {"prompt": prompt, "prompt_id": prompt_id, "index": index, **record.trl_columns}
        if record.images is not None:
            row["images"] = record.images
        rows.append(row)
    return rows


def _dataset(rows: list[dict], image_column: bool):
    from datasets import Dataset, Features, Image, Sequence

    if not rows:
        raise ValueError("cannot write an empty split")
    dataset = Dataset.from_list(rows)
    if image_column:
        features = Features({**dataset.features, "images": Sequence(Image())})
        dataset = dataset.cast(features)
    return dataset


def write_verl_parquet(records: list[PromptRecord], split: str, path: Path) -> Path:
    """Write ``records`` as verl rows to ``path`` (parquet; images as ``{bytes, path}`` structs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _dataset(verl_rows(records, split), image_column=records[0].images is not None).to_parquet(str(path))
    return path


def write_trl_dataset(records: list[PromptRecord], path: Path) -> Path:
    """Save ``records`` as TRL rows with ``Dataset.save_to_disk`` (reload with ``load_from_disk``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _dataset(trl_rows(records), image_column=records[0].images is not None).save_to_disk(str(path))
    return path

