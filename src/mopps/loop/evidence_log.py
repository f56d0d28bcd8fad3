"""The evidence log: a run's whole selection and evidence stream, so any selector can be replayed on it
offline (``mopps replay``) and scored on prediction, not training.

A log holds four tables of columns (numpy arrays of equal length within a table):

- ``candidates``: one row per candidate offered to the selector per selection step:
  ``step`` (int64, the loop's batch number, 1, 2, ...), ``prompt_id`` (int64 or str),
  ``chosen`` (bool: rolled out), ``predicted_rate`` (float32, the running selector's prediction; NaN
  when it makes none), ``tick`` (int64, the policy updates the selector had been told of when it
  chose: several steps share a tick under dynamic sampling; logs written before it existed read
  ``tick = step - 1``).
- ``outcomes``: one row per rolled-out prompt and ``observe`` call: ``step`` (the step that chose
  it; the evidence's own step when it was never chosen), ``prompt_id``, ``successes`` and ``trials``
  (float32: rollouts with a verdict judged a success by the loop's rule, and rollouts with a
  verdict), ``observed_step`` (int64: the loop's step when the evidence arrived; a host that chooses
  several batches before it observes, as verl's refills do, has observed_step > step; logs written
  before it existed read ``observed_step = step``). A group split over two ``observe`` calls has two
  rows; readers sum them (``EvidenceStream.rows``, replay).
- ``exact``: where the host knows the exact rate (the embedded testbed): ``step``, ``prompt_id``,
  ``exact_rate`` (float32) of each candidate at its selection.
- ``pool``: the exact rate of a fixed sample of the pool every few steps: ``step`` (the policy
  step after which it was measured; 0 = before training), ``prompt_id``, ``exact_rate``.

Joined on (step, prompt_id), the first three give one row per prompt per step: step, prompt id,
successes, trials, predicted rate, and the exact rate where known (``EvidenceStream.rows``).
``meta`` holds JSON: the source (``"testbed"``, ``"trl"``, ``"verl"``), group size, selector, seed.

The file is a compressed ``.npz`` with a ``__meta__`` member (``format`` = ``mopps.evidence-log``,
``version`` = 1), written atomically through ``mopps.storage`` on ``flush``. A log opened on an
existing file continues it: a host that resumes from a checkpoint at step s calls
``truncate_after(s)`` (the loop does on ``load_state_dict``), so rows of steps redone after the
checkpoint are written once.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mopps.core.validation import check_header
from mopps.storage import atomic_write

LOG_FORMAT = "mopps.evidence-log"
LOG_VERSION = 1
TABLES = {
    "candidates": ("step", "prompt_id", "chosen", "predicted_rate", "tick"),
    "outcomes": ("step", "prompt_id", "successes", "trials", "observed_step"),
    "exact": ("step", "prompt_id", "exact_rate"),
    "pool": ("step", "prompt_id", "exact_rate"),
}
_DTYPES = {"step": np.int64, "tick": np.int64, "observed_step": np.int64, "chosen": bool, "predicted_rate": np.float32, "successes": np.float32,
           "trials": np.float32, "exact_rate": np.float32}


def _column(name: str, values) -> np.ndarray:
    if name == "prompt_id":
        values = values if isinstance(values, np.ndarray) else np.asarray(list(values))
        return values.astype(np.int64) if values.dtype.kind in "iu" else values.astype(str)
    return np.asarray(values, dtype=_DTYPES[name])


@dataclass
class EvidenceStream:
    """A log read back: ``tables`` {table: {column: array}} and ``meta`` (dict)."""

    tables: dict[str, dict[str, np.ndarray]]
    meta: dict[str, Any]

    def steps(self) -> np.ndarray:
        """int64: the selection steps, in order."""
        return np.unique(self.tables["candidates"]["step"])

    def has_exact(self) -> bool:
        return len(self.tables["exact"]["step"]) > 0

    def rows(self) -> dict[str, np.ndarray]:
        """One row per candidate per step: step, prompt_id, chosen, predicted_rate, successes and
        trials (NaN / 0 for a candidate not rolled out), exact_rate (NaN where unknown)."""
        candidates = self.tables["candidates"]
        keys = _keys(candidates["step"], candidates["prompt_id"])
        result = {name: candidates[name] for name in TABLES["candidates"]}
        successes = np.full(len(keys), np.nan, dtype=np.float32)
        trials = np.zeros(len(keys), dtype=np.float32)
        outcomes = self.tables["outcomes"]
        at = _lookup(keys, _keys(outcomes["step"], outcomes["prompt_id"]))
        found = at >= 0
        trials_found = np.zeros(len(keys), dtype=np.float32)
        successes_found = np.zeros(len(keys), dtype=np.float32)
        # A group observed in two calls has two rows: their evidence adds up.
        np.add.at(successes_found, at[found], outcomes["successes"][found])
        np.add.at(trials_found, at[found], outcomes["trials"][found])
        seen = np.zeros(len(keys), dtype=bool)
        seen[at[found]] = True
        successes[seen], trials[seen] = successes_found[seen], trials_found[seen]
        exact = np.full(len(keys), np.nan, dtype=np.float32)
        table = self.tables["exact"]
        at = _lookup(keys, _keys(table["step"], table["prompt_id"]))
        exact[at[at >= 0]] = table["exact_rate"][at >= 0]
        result.update(successes=successes, trials=trials, exact_rate=exact)
        return result


def _keys(steps: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One comparable key per (step, id) row."""
    return np.array([f"{step}\x00{prompt}" for step, prompt in zip(steps.tolist(), ids.tolist())], dtype=object) \
        if ids.dtype.kind not in "iu" else np.stack([steps, ids.astype(np.int64)], axis=1).view(
            [("step", np.int64), ("id", np.int64)]).ravel()


def _lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """int64 (q,): the position of each query in ``keys`` (unique), -1 where absent."""
    if len(keys) == 0 or len(queries) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    position = np.clip(np.searchsorted(keys[order], queries), 0, len(keys) - 1)
    return np.where(keys[order][position] == queries, order[position], -1).astype(np.int64)


class EvidenceLog:
    """Collects a run's evidence stream in memory and writes it to ``path`` on ``flush`` (atomic).

    ``meta``: JSON-able facts about the run (source, group size, selector, seed, ...). An existing
    log at ``path`` is read and continued (``ValueError`` naming the file if it is not a log)."""

    def __init__(self, path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self._parts: dict[str, list[dict[str, np.ndarray]]] = {table: [] for table in TABLES}
        self._rows = dict.fromkeys(TABLES, 0)
        self._last_step = 0
        if self.path.exists():
            previous = read_evidence_log(self.path)
            self.meta = previous.meta  # a continued log keeps the facts of the run that began it
            for table, columns in previous.tables.items():
                self._parts[table].append(columns)
                self._rows[table] = len(columns["step"])
            self._last_step = int(previous.tables["candidates"]["step"].max(initial=0))
        # A log that holds steps is another run's until a resume truncates it to its checkpoint: until
        # then nothing is recorded into it and ``flush`` leaves the file as it is.
        self._adopted = self._last_step == 0

    def _append(self, table: str, **columns) -> None:
        lengths = {name: len(value) for name, value in columns.items() if np.ndim(value) > 0}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"evidence log table {table!r}: columns of different lengths {lengths}")
        size = next(iter(lengths.values()), 1)
        self._parts[table].append({name: _column(name, np.broadcast_to(columns[name], (size,))
                                                 if np.ndim(columns[name]) == 0 else columns[name])
                                   for name in TABLES[table]})
        self._rows[table] += size

    def record_selection(self, step: int, candidate_ids, chosen_index: np.ndarray,
                         predicted_rate: np.ndarray | None, tick: int = 0) -> None:
        """The candidates (n,) offered at ``step``, which were chosen (positions (k,)), the
        selector's prediction of each (n,) or None, and the selector's policy tick."""
        self.require_next_step(step)
        chosen = np.zeros(len(candidate_ids), dtype=bool)
        index = np.asarray(chosen_index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(chosen)):
            raise ValueError(f"chosen_index holds positions outside the {len(chosen)} candidates")
        chosen[index] = True
        predicted = np.full(len(chosen), np.nan) if predicted_rate is None else predicted_rate
        self._append("candidates", step=step, prompt_id=candidate_ids, chosen=chosen, predicted_rate=predicted,
                     tick=tick)
        self._last_step = int(step)

    def record_outcomes(self, steps: np.ndarray, prompt_ids, successes: np.ndarray, trials: np.ndarray,
                        observed_step: int, chosen: np.ndarray | None = None) -> None:
        """Evidence of rolled-out prompts (m,), each with the step that chose it, arrived at the loop's
        step ``observed_step``. ``chosen``: bool (m,), False where the loop found no open prediction
        (the rest of a group observed in an earlier call): such rows go to the latest step that chose
        the prompt, so a split group adds up at one step."""
        if not (len(successes) and self._adopted):
            return
        steps = np.array(steps, dtype=np.int64)
        if chosen is not None and not np.all(chosen):
            steps[~chosen] = self._latest_choice(_column("prompt_id", prompt_ids)[~chosen], steps[~chosen])
        self._append("outcomes", step=steps, prompt_id=prompt_ids, successes=successes, trials=trials,
                     observed_step=observed_step)

    def _latest_choice(self, prompt_ids: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """int64 (m,): the latest recorded step that chose each of ``prompt_ids`` (``fallback`` for one
        never chosen). For evidence without an open prediction (late evidence; an allocation's commit
        rounds, whose prompts were chosen a round earlier): the recorded parts are searched from the
        newest back, so a prompt chosen in the last few steps costs those steps' rows, not the run's."""
        result = np.array(fallback, dtype=np.int64)
        unresolved = np.ones(len(prompt_ids), dtype=bool)
        for part in reversed(self._parts["candidates"]):
            if not unresolved.any():
                break
            chosen_ids, chosen_steps = part["prompt_id"][part["chosen"]], part["step"][part["chosen"]]
            if not len(chosen_ids):
                continue
            latest_first = np.argsort(-chosen_steps, kind="stable")
            known, first = np.unique(chosen_ids[latest_first], return_index=True)  # each id's latest row
            wanted = np.flatnonzero(unresolved)
            rows = np.minimum(np.searchsorted(known, prompt_ids[wanted]), len(known) - 1)
            found = known[rows] == prompt_ids[wanted]
            result[wanted[found]] = chosen_steps[latest_first][first][rows[found]]
            unresolved[wanted[found]] = False
        return result

    def record_exact(self, step: int, prompt_ids, exact_rate: np.ndarray) -> None:
        """Exact rates of the candidates of ``step`` at their selection (a testbed's knowledge)."""
        if self._adopted:
                self._append("exact", step=step, prompt_id=prompt_ids, exact_rate=exact_rate)

    def record_pool(self, step: int, prompt_ids, exact_rate: np.ndarray) -> None:
        """Exact rates of a sample of the pool measured after policy step ``step``."""
        if self._adopted:
            self._append("pool", step=step, prompt_id=prompt_ids, exact_rate=exact_rate)

    def last_step(self) -> int:
        """The latest selection step recorded (0 when none)."""
        return self._last_step

    def require_next_step(self, step: int) -> None:
        """Raise ``ValueError`` unless ``step`` comes after every step recorded: a log that already holds
        another run's steps is never overwritten (a resumed run first truncates to its checkpoint)."""
        if not self._adopted or step <= self._last_step:
            raise ValueError(f"evidence_log {self.path} already holds selection steps up to {self._last_step} "
                             f"and this run is at step {step}: it is another run's log (or a resume that did "
                             "not restore the loop's state); give this run its own path")

    def rows_per_table(self) -> dict[str, int]:
        """How many rows each table holds."""
        return dict(self._rows)

    def mark(self) -> tuple:
        """What ``rewind`` restores: the recorded parts (arrays are never written in place, so the
        lists are copied, not the arrays) and the counters."""
        return ({table: list(parts) for table, parts in self._parts.items()}, dict(self._rows), self._last_step,
                self._adopted)

    def rewind(self, mark: tuple) -> None:
        """Back to ``mark()``: the loop's undo of an ``atomic`` block that failed (rows recorded since
        are dropped, rows truncated since come back)."""
        parts, rows, last_step, adopted = mark
        self._parts = {table: list(values) for table, values in parts.items()}
        self._rows, self._last_step, self._adopted = dict(rows), last_step, adopted

    def truncate_after(self, step: int) -> None:
        """Drop rows of selection steps after ``step``, evidence observed after it, and pool rows
        measured after it: a run resumed from a checkpoint at loop step ``step`` redoes them. The
        log is then this run's (``require_next_step``)."""
        for table, parts in self._parts.items():
            kept = []
            for part in parts:
                keep = part["step"] <= step
                if table == "outcomes":
                    keep &= part["observed_step"] <= step
                kept.append({name: values[keep] for name, values in part.items()})
            self._parts[table] = kept
            self._rows[table] = sum(len(part["step"]) for part in kept)
        steps = [part["step"] for part in self._parts["candidates"] if len(part["step"])]
        self._last_step = int(max(values.max() for values in steps)) if steps else 0
        self._adopted = True

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        """Every table so far, columns concatenated."""
        result = {}
        for table, columns in TABLES.items():
            parts = self._parts[table]
            result[table] = {name: np.concatenate([part[name] for part in parts]) if parts
                             else _column(name, np.zeros(0, dtype=np.int64)) for name in columns}
        return result

    def flush(self) -> None:
        """Write everything recorded so far to ``path`` atomically (compressed); a log that is another
        run's (never adopted) is left as it is."""
        if not self._adopted:
            return
        tables = self.tables()
        for table in tables:  # one part per table from now on: later flushes concatenate less
            self._parts[table] = [tables[table]]
        members = {f"{table}/{name}": values for table, columns in tables.items() for name, values in columns.items()}
        header = {"format": LOG_FORMAT, "version": LOG_VERSION, "meta": self.meta}
        members["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda handle: np.savez_compressed(handle, **members))


def open_evidence_log(path: str | None, source: str, group_size: int, seed: int | None) -> EvidenceLog | None:
    """What an adapter makes of its ``evidence_log`` setting: the log at ``path`` (continued if the
    file exists), or None when ``path`` is None or empty. ``source``: "trl" or "verl"; ``group_size``:
    rollouts per prompt; ``seed``: the run's selection seed (replay seeds its selectors with it)."""
    if not path:
        return None
    try:
        return EvidenceLog(path, meta={"source": source, "group_size": int(group_size), "seed": seed})
    except ValueError as error:
        raise ValueError(f"evidence_log = {path!r}: {error}") from None


def read_evidence_log(path) -> EvidenceStream:
    """The log at ``path``; ``ValueError`` naming the file if it is truncated, not a log, or of
    another version."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(bytes(archive["__meta__"]).decode())
            check_header(header, LOG_FORMAT, (LOG_VERSION,), "evidence log", "__meta__")
            tables = {table: {name: archive[f"{table}/{name}"] for name in columns if f"{table}/{name}" in archive}
                      for table, columns in TABLES.items()}
            if "candidates/tick" not in archive:  # a log of the first version's writer: one tick per step
                tables["candidates"]["tick"] = tables["candidates"]["step"] - 1
            if "outcomes/observed_step" not in archive:  # ... which observed each step before the next
                tables["outcomes"]["observed_step"] = tables["outcomes"]["step"].copy()
            missing = [f"{table}/{name}" for table, columns in TABLES.items() for name in columns
                       if name not in tables[table]]
            if missing:
                raise ValueError(f"it lacks the columns {missing}")
    except (OSError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable mopps evidence log ({type(error).__name__}: {error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    for table, columns in tables.items():
        if len({len(values) for values in columns.values()}) > 1:
            raise ValueError(f"{path}: the columns of table {table!r} differ in length")
    return EvidenceStream(tables, header.get("meta", {}))

