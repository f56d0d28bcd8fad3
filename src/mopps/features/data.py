"""Read prompts, their ids and their columns from a file written by ``mopps data``.

Two layouts are read (see ``mopps.tasks.formats``):

- verl parquet (``<out>/<split>.parquet``): ``data_source``, ``prompt`` (chat messages),
  ``extra_info: {index, prompt_id, split, ...}``, ``reward_model: {ground_truth, ...}``;
- a TRL dataset folder (``<out>/trl/<split>/``, ``datasets.save_to_disk``): ``prompt`` (messages or
  plain text), ``prompt_id``, ``index`` and the ground-truth columns.

A column is named by its path, with dots into struct columns: ``extra_info.level``,
``reward_model.ground_truth.target``. The prompt id (``id_key``) is one of

- ``"prompt_id"`` (default): the content hash ``mopps data`` writes (``extra_info.prompt_id`` in
  parquet, ``prompt_id`` in a TRL folder); stable across reorderings, the same in both layouts;
- ``"index"``: the row's position in its split (``extra_info.index`` or ``index``), an int;
- ``"verl"``: ``f"{data_source}/{extra_info.index}"``, the key the verl adapter uses;
- any other column path, for data prepared elsewhere.

pyarrow (and ``datasets`` for a folder) are imported when a file is read.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from mopps.core.id_index import normalize_ids, require_unique

ID_KEYS = ("prompt_id", "index", "verl")
_ID_COLUMNS = {"prompt_id": ("extra_info.prompt_id", "prompt_id"), "index": ("extra_info.index", "index")}


def read_table(path):
    """The rows of a verl parquet file or a TRL dataset folder as a ``pyarrow.Table``."""
    path = Path(path)
    if path.is_dir():
        from datasets import Dataset, load_from_disk

        dataset = load_from_disk(str(path))
        if not isinstance(dataset, Dataset):
            raise ValueError(f"{path} holds several splits ({list(dataset)}); name one split's folder")
        return dataset.with_format("arrow")[:]
    if path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}")
    raise ValueError(f"data = {str(path)!r}: must be a .parquet file or a folder written by datasets.save_to_disk")


def has_column(table, name: str) -> bool:
    """Whether ``name`` (a column or a dotted path into struct columns) exists in ``table``."""
    try:
        column(table, name)
    except ValueError:
        return False
    return True


def column(table, name: str):
    """The values of column ``name`` (dotted path into structs) as one ``pyarrow.Array``.

    Raises ``ValueError`` listing what exists where the path breaks off.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if name in table.column_names:
        return table.column(name).combine_chunks()
    head, *rest = name.split(".")
    if head not in table.column_names:
        raise ValueError(f"the data has no column {name!r}; columns: {table.column_names}")
    array = table.column(head).combine_chunks()
    walked = head
    for part in rest:
        if not pa.types.is_struct(array.type) or array.type.get_field_index(part) < 0:
            fields = [field.name for field in array.type] if pa.types.is_struct(array.type) else []
            raise ValueError(f"the data has no column {name!r}: {walked!r} has fields {fields}")
        array = pc.struct_field(array, part)
        walked = f"{walked}.{part}"
    return array


def prompt_ids(table, id_key: str = "prompt_id"):
    """``(kind, ids)``: every row's prompt id under ``id_key`` (see the module docstring).

    ``kind`` is ``"int"`` (ids an int64 array) or ``"str"`` (a list of str). Raises ``ValueError``
    naming the first row with a missing or repeated id.
    """
    if id_key == "verl":
        sources = column(table, "data_source").to_pylist()
        indices = column(table, "extra_info.index").to_pylist()
        values = []
        for row, (source, index) in enumerate(zip(sources, indices)):
            if source in (None, "") or index is None:
                raise ValueError(f"row {row}: data_source = {source!r}, extra_info.index = {index!r}; both are needed")
            if isinstance(index, float) and index.is_integer():
                index = int(index)
            values.append(f"{source}/{int(index) if isinstance(index, Integral) else index}")
        name = "data_source/extra_info.index"
    else:
        candidates = _ID_COLUMNS.get(id_key, (id_key,))
        name = next((path for path in candidates if has_column(table, path)), None)
        if name is None:
            raise ValueError(f"id_key = {id_key!r}: the data has none of the columns {list(candidates)}")
        values = column(table, name).to_pylist()
        missing = [row for row, value in enumerate(values) if value is None]
        if missing:
            raise ValueError(f"row {missing[0]}: {name} is missing; every prompt needs an id")
    kind, ids = normalize_ids(values, name)
    if kind is None:
        raise ValueError("the data has no rows")
    require_unique(kind, ids, lambda row: f"row {row}: {name}")
    return kind, ids


def prompts(table) -> list:
    """Every row's ``prompt``: a str (plain text) or a list of chat messages ``{role, content}``."""
    return column(table, "prompt").to_pylist()


def plain_text(prompt: Any, row: int = 0) -> str:
    """A prompt as text without any template: the message contents joined by newlines.

    ``content`` may be a str or a list of parts (``{"type": "text", "text": ...}``; other parts,
    such as images, contribute nothing). Raises ``ValueError`` naming ``row`` for anything else.
    """
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list):
        raise ValueError(f"row {row}: prompt is {type(prompt).__name__}; expected text or a list of messages")
    texts = []
    for message in prompt:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(part["text"] for part in content
                               if isinstance(part, dict) and part.get("type") == "text" and part.get("text"))
        if not isinstance(content, str):
            raise ValueError(f"row {row}: a message has no text content: {message!r}")
        texts.append(content)
    return "\n".join(texts)


def render(prompt: Any, tokenizer=None, chat_template: bool = True, row: int = 0) -> tuple[str, bool]:
    """``(text, templated)``: the text a model reads for ``prompt``.

    Chat messages go through the tokenizer's chat template (with the generation prompt, as trainers
    render them for rollout) when ``chat_template`` is true and the tokenizer has one; otherwise,
    and for plain-text prompts, :func:`plain_text`. ``templated`` tells the tokenizer not to add
    special tokens again.
    """
    if (
        chat_template and isinstance(prompt, list) and tokenizer is not None
        and getattr(tokenizer, "chat_template", None)
    ):
        messages = [{**message, "content": plain_text([message], row)} for message in prompt]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return plain_text(prompt, row), False


def token_counts(tokenizer, prompts_: list, chat_template: bool = True) -> np.ndarray:
    """int64 (m,): tokens of each rendered prompt (no truncation)."""
    return np.array([len(ids) for ids in tokenize(tokenizer, prompts_, chat_template)[0]], dtype=np.int64)


def tokenize(tokenizer, prompts_: list, chat_template: bool = True) -> tuple[list[list[int]], bool]:
    """``(token_ids, templated_any)``: each prompt rendered by :func:`render` and tokenised, unpadded.

    Templated texts are tokenised without adding special tokens (the template already has them);
    plain texts with them, as a trainer would.
    """
    rendered = [render(prompt, tokenizer, chat_template, row) for row, prompt in enumerate(prompts_)]
    token_ids: list[list[int] | None] = [None] * len(rendered)
    for templated in (True, False):
        rows = [row for row, (_, is_templated) in enumerate(rendered) if is_templated == templated]
        if rows:
            encoded = tokenizer([rendered[row][0] for row in rows], add_special_tokens=not templated)["input_ids"]
            for row, ids in zip(rows, encoded):
                token_ids[row] = list(ids)
    return token_ids, any(templated for _, templated in rendered)
