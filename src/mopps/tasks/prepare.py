"""Turn each task's source data into :class:`~mopps.tasks.formats.PromptRecord` splits and write them.

One ``prepare_*`` function per task returns ``{file stem: (split, records)}``;
:func:`write_prepared` writes ``<out>/<stem>.parquet`` for verl and ``<out>/trl/<stem>/`` for
TRL. Settings follow the MoPPS reference scripts (``recipe/ours/data_preprocess``): Countdown
train = the first 2,000 rows of Countdown-Tasks-3to4 and test = the next 512 (the CD-4 test set is
the first 512 rows of Countdown-Tasks-4); MATH keeps MATH-lighteval's train/test; DeepScaleR
writes its train set and five evaluation files; Geometry3k keeps train/test with images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from mopps.tasks.countdown import VARIANTS, CountdownInstance, generate_countdown, solve_countdown
from mopps.tasks.extract import last_boxed_answer
from mopps.tasks.formats import PromptRecord, write_trl_dataset, write_verl_parquet
from mopps.tasks.math_reward import reference_answers
from mopps.tasks.prompts import countdown_messages, geo3k_messages, math_messages
from mopps.tasks.rewards import ANSWER_ALTERNATIVES_KEY
from mopps.tasks.sources import (
    COUNTDOWN_HUB,
    DEEPSCALER_EVALS,
    DEEPSCALER_TRAIN,
    GEO3K_HUB,
    MATH_HUB,
    load_split,
    read_deepscaler_json,
)

Prepared = dict[str, tuple[str, list[PromptRecord]]]


def _bar(items: Iterable, description: str, progress: bool, total: int | None = None):
    return tqdm(items, desc=description, total=total, disable=not progress, unit="row")


def _require_columns(dataset, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{what} source lacks columns {missing}; has {dataset.column_names}")


def countdown_record(instance: CountdownInstance, template: str) -> PromptRecord:
    """A Countdown prompt; TRL gets plain text for the base template, messages for chat."""
    messages = countdown_messages(instance.numbers, instance.target, template)
    return PromptRecord(
        data_source="countdown",
        messages=messages,
        ground_truth=instance.ground_truth(),
        trl_columns={"target": instance.target, "numbers": list(instance.numbers)},
        extra_info={"solution": instance.solution},
        trl_prompt=messages[0]["content"] if template == "base" else None,
    )


def prepare_countdown(
    variant: str = "3to4",
    source: str | None = None,
    train_size: int = 2000,
    test_size: int = 512,
    seed: int = 0,
    template: str = "base",
    progress: bool = True,
) -> Prepared:
    """Countdown splits ``train`` (``train_size`` rows, omitted when 0) and ``test``.

    ``source=None`` generates solvable instances (:func:`generate_countdown`, deterministic in
    ``seed``); ``"hub"`` reads the variant's Hub dataset; any other value is a Hub name or a
    local path (see :func:`mopps.tasks.sources.load_split`). Loaded instances are solved to
    store a reference solution; an unsolvable one raises ``ValueError`` naming its row.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant = {variant!r}; must be one of {sorted(VARIANTS)}")
    if train_size < 0 or test_size < 0 or train_size + test_size == 0:
        raise ValueError(f"train_size = {train_size}, test_size = {test_size}; need both >= 0 and a positive sum")
    if source is None:
        instances = generate_countdown(train_size + test_size, seed=seed, sizes=VARIANTS[variant])
    else:
        rows = load_split(COUNTDOWN_HUB[variant] if source == "hub" else source, "train")
        _require_columns(rows, ("nums", "target"), "countdown")
        if len(rows) < train_size + test_size:
            raise ValueError(f"source has {len(rows)} rows; train_size + test_size = {train_size + test_size}")
        rows = rows.select(range(train_size + test_size))
        instances = []
        for position, row in enumerate(_bar(rows, "solving countdown", progress)):
            numbers, target = tuple(int(n) for n in row["nums"]), int(row["target"])
            solution = solve_countdown(numbers, target)
            if solution is None:
                raise ValueError(f"countdown source row {position} ({numbers} -> {target}) has no solution")
            instances.append(CountdownInstance(numbers, target, solution))
    records = [countdown_record(i, template) for i in _bar(instances, "countdown prompts", progress)]
    splits: Prepared = {"test": ("test", records[train_size:])}
    if train_size:
        splits = {"train": ("train", records[:train_size]), **splits}
    return splits


# MATH-lighteval's per-problem metadata ("Level 1".."Level 5", subject): kept in extra_info and as
# TRL columns, because a contextual selector can use them as features (mopps.features.columns).
MATH_METADATA = ("level", "type")


def math_record(
    problem: str, answers: list[str], data_source: str, alternatives: bool, metadata: dict | None = None
) -> PromptRecord:
    """A MATH-style prompt; with ``alternatives`` the further accepted answers travel along.

    ``metadata``: further columns (e.g. ``level``, ``type``) for ``extra_info`` and TRL.
    """
    extra = {ANSWER_ALTERNATIVES_KEY: answers[1:]} if alternatives else {}
    extra.update(metadata or {})
    return PromptRecord(
        data_source=data_source,
        messages=math_messages(problem),
        ground_truth=answers[0],
        trl_columns={"answer": answers[0], **extra},
        extra_info=extra,
    )


def prepare_math(source: str = MATH_HUB, progress: bool = True) -> Prepared:
    """MATH-lighteval ``train`` and ``test``; the ground truth is the last ``\\boxed{}`` of the solution.

    The source's ``level`` and ``type`` columns, where present, are kept (``extra_info`` and TRL columns).

    Raises ``ValueError`` naming the split and row of a solution without a readable box.
    """
    splits: Prepared = {}
    for split in ("train", "test"):
        rows = load_split(source, split)
        _require_columns(rows, ("problem", "solution"), f"math {split}")
        records = []
        for position, row in enumerate(_bar(rows, f"math {split}", progress)):
            answer = last_boxed_answer(row["solution"])
            if not answer:
                raise ValueError(f"math {split} row {position}: 'solution' has no readable \\boxed{{}} answer")
            metadata = {key: row[key] for key in MATH_METADATA if key in rows.column_names}
            records.append(math_record(row["problem"], [answer], MATH_HUB, alternatives=False, metadata=metadata))
        splits[split] = (split, records)
    return splits


def prepare_deepscaler(json_dir: str | Path, progress: bool = True) -> Prepared:
    """DeepScaleR ``train`` and the eval files ``aime, amc, math, minerva, olympiad_bench``.

    ``data_source`` is ``deepscaler`` for train and ``deepscaler/<name>`` for the evals; answers
    are strings (AMC's ``142.0`` becomes ``"142"``), and where a file lists several accepted
    answers (Minerva) the first is the ground truth and the rest go to ``answer_alternatives``.
    """
    splits: Prepared = {}
    for name in (DEEPSCALER_TRAIN, *DEEPSCALER_EVALS):
        source = "deepscaler" if name == DEEPSCALER_TRAIN else f"deepscaler/{name}"
        records = []
        for position, row in enumerate(_bar(read_deepscaler_json(json_dir, name), f"deepscaler {name}", progress)):
            try:
                answers = reference_answers(row["answer"])
            except ValueError as error:
                raise ValueError(f"deepscaler {name} record {position}: {error}") from error
            records.append(math_record(row["problem"], answers, source, alternatives=True))
        if name == DEEPSCALER_TRAIN:
            splits["train"] = ("train", records)
        else:
            splits[name] = ("test", records)
    return splits


def prepare_geo3k(source: str = GEO3K_HUB, progress: bool = True) -> Prepared:
    """Geometry3k ``train`` and ``test`` with their images (verl ``<image>`` markers; TRL without)."""
    splits: Prepared = {}
    for split in ("train", "test"):
        rows = load_split(source, split)
        _require_columns(rows, ("images", "problem", "answer"), f"geo3k {split}")
        records = []
        for position, row in enumerate(_bar(rows, f"geo3k {split}", progress)):
            images = list(row["images"] or [])
            if not images:
                raise ValueError(f"geo3k {split} row {position}: 'images' is empty")
            answer = str(row["answer"]).strip()
            records.append(
                PromptRecord(
                    data_source=GEO3K_HUB,
                    messages=geo3k_messages(row["problem"], len(images), image_placeholders=True),
                    ground_truth=answer,
                    trl_columns={"answer": answer},
                    images=images,
                    trl_prompt=geo3k_messages(row["problem"], len(images), image_placeholders=False),
                )
            )
        splits[split] = (split, records)
    return splits


def write_prepared(splits: Prepared, out: str | Path) -> list[Path]:
    """Write ``<out>/<stem>.parquet`` (verl) and ``<out>/trl/<stem>`` (TRL) for every split."""
    out = Path(out)
    written = []
    for stem, (split, records) in splits.items():
        written.append(write_verl_parquet(records, split, out / f"{stem}.parquet"))
        written.append(write_trl_dataset(records, out / "trl" / stem))
    return written
