"""``MoPPSGRPOTrainer``: TRL's ``GRPOTrainer`` with its training prompts chosen by a prompt selector.

Where it plugs in (trl 1.16.0, see ``docs/trl.md``): TRL generates once every
``steps_per_generation * num_iterations`` micro-steps, inside ``_prepare_inputs``. At exactly that
moment this trainer

1. draws ``ts_ratio * B`` candidate rows (``CandidateStream``; B = prompts per generation),
2. asks the selector for B of them,
3. replaces the batch TRL's dataloader prefetched with the chosen rows, in TRL's layout (each prompt
   ``num_generations`` times in a row; process p gets the p-th contiguous slice), and lets TRL
   generate, score and train on it as usual;
4. when TRL's ``_calculate_rewards`` returns the rewards of all processes (gathered), updates the
   selector once with them, on every process alike.

Choosing at generation time rather than in the sampler is what removes the staleness: the HF Trainer
prefetches ``gradient_accumulation_steps`` batches and accelerate looks one batch ahead, so a sampler
is asked for generation k's prompts before generation k-1 is scored. TRL's sampler still drives the
dataloader, so the number of steps and epochs is exactly that of a plain ``GRPOTrainer`` run (an A/B
against Uniform compares equal step counts).

Evaluation never touches the selector (reward functions also run in ``evaluate()``). Selector and
stream state go into every checkpoint and come back with ``resume_from_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
from accelerate.utils import gather_object
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer

from mopps.core.evidence import aggregate_rollouts
from mopps.core.id_index import INT_KIND, STR_KIND, first_duplicate, normalize_ids
from mopps.core.metrics import GROUP_KEYS, selection_report
from mopps.integrations.trl.candidates import CandidateStream
from mopps.integrations.trl.config import MoPPSConfig
from mopps.selectors import Selector
from mopps.storage import load_state, write_json

SELECTOR_FILE = "mopps_selector.npz"
ADAPTER_FILE = "mopps_trainer_state.json"
ADAPTER_FORMAT = "mopps.trl-adapter-state"
ADAPTER_VERSION = 1


class MoPPSGRPOTrainer(GRPOTrainer):
    """A ``GRPOTrainer`` that lets a prompt selector pick each generation's prompts.

    Takes every argument of ``trl.GRPOTrainer`` plus, keyword-only:
    ``mopps``: ``MoPPSConfig`` (default ``MoPPSConfig()``);
    ``selector``: any ``mopps.selectors.Selector`` (e.g. ``mopps.Uniform`` for an A/B run); default
    the ``MoPPS`` from the config's ``build_selector(seed)``. It must be built identically on every process.

    ``train_dataset`` must be a map-style ``datasets.Dataset``. After training, ``selector`` holds the
    learned state; ``rollouts_scored`` counts the rollouts whose rewards reached it.
    """

    def __init__(self, *args, mopps: MoPPSConfig | None = None, selector: Selector | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mopps_config = mopps if mopps is not None else MoPPSConfig()
        dataset = self.train_dataset
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"train_dataset is a {type(dataset).__name__}; MoPPSGRPOTrainer needs a map-style "
                "datasets.Dataset (the selector picks rows by position)"
            )
        seed = self.mopps_config.seed_or(self.args.seed)
        self.prompts_per_generation = self.args.generation_batch_size // self.num_generations
        if len(dataset) < self.prompts_per_generation:
            raise ValueError(
                f"train_dataset has {len(dataset)} rows but one generation needs "
                f"{self.prompts_per_generation} distinct prompts (generation_batch_size // num_generations)"
            )
        self._id_kind, self._row_ids = _row_ids(dataset, self.mopps_config.id_column)
        # The rows TRL's own dataloader would serve (it drops unused columns when asked to).
        self._rows = self._remove_unused_columns(dataset, description="training")
        self._candidates = CandidateStream(
            len(dataset), self.mopps_config.num_candidates(self.prompts_per_generation, len(dataset)), seed)
        self._success_rule = self.mopps_config.build_success_rule()
        self._success_column = self._reward_column(self.mopps_config.success_reward)

        self.selector = selector if selector is not None else self.mopps_config.build_selector(seed)
        column = self.mopps_config.id_column
        self.mopps_config.apply_prior_file(
            self.selector, self._row_ids, "row positions" if column is None else f"train_dataset[{column!r}]")

        self.rollouts_scored = 0
        self._generations_selected = 0
        self._generations_applied = 0
        self._chosen_positions: np.ndarray | None = None  # (B,) dataset rows of the current generation
        self._chosen_prediction: np.ndarray | None = None  # (B,) predicted success rate at selection
        self._awaiting_evidence = False

    # -- choosing prompts ----------------------------------------------------------------------------

    def _prepare_inputs(self, generation_batch):
        if self.model.training:
            generate_every = self.args.steps_per_generation * self.num_iterations
            fresh = self._step % generate_every == 0
            # Same condition as GRPOTrainer._prepare_inputs: TRL is about to generate. After a resume in
            # the middle of a generation the buffer is empty but the prompts were already chosen (and
            # their evidence applied): TRL regenerates completions for the same prompts.
            if fresh or self._buffered_inputs is None:
                if fresh:
                    self._select_generation()
                generation_batch = self._chosen_rows(len(generation_batch))
        return super()._prepare_inputs(generation_batch)

    def _select_generation(self) -> None:
        # Generations chosen before this one whose rewards have not reached the selector. Zero by
        # construction here; logged so that a trainer change that breaks it shows up in the metrics.
        lag = self._generations_selected - self._generations_applied
        positions = self._candidates.next()
        choice = self.selector.select(self._ids_at(positions), self.prompts_per_generation)
        self._chosen_positions = positions[choice.index]
        self._chosen_prediction = None if choice.predicted_rate is None else choice.predicted_rate[choice.index]
        self._awaiting_evidence = True
        self._generations_selected += 1
        self._check_processes_agree()
        self._record({"lag": float(lag), "candidates": float(len(positions))})

    def _chosen_rows(self, local_size: int) -> list[dict[str, Any]]:
        """This process's slice of the generation batch, as a list of ``local_size`` row dicts."""
        num_processes = self.accelerator.num_processes
        if local_size * num_processes != self.args.generation_batch_size:
            raise RuntimeError(
                f"the dataloader served {local_size} rows per process x {num_processes} processes, but "
                f"generation_batch_size = {self.args.generation_batch_size}; MoPPSGRPOTrainer relies on "
                "TRL's generation-batch layout"
            )
        layout = np.repeat(self._chosen_positions, self.num_generations)
        start = self.accelerator.process_index * local_size
        return [self._rows[int(position)] for position in layout[start:start + local_size]]

    def _check_processes_agree(self) -> None:
        if self.accelerator.num_processes == 1:
            return
        digest = hashlib.sha1(np.ascontiguousarray(self._chosen_positions, dtype=np.int64).tobytes()).hexdigest()
        digests = gather_object([digest])
        if len(set(digests)) != 1:
            raise RuntimeError(
                f"processes chose different prompts (digests per rank: {digests}); build the selector with "
                "the same seed and state on every process"
            )

    # -- learning from rewards -----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training and self._awaiting_evidence:
            self._apply_evidence(rewards_per_func.detach().float().cpu().numpy())
        return rewards_per_func

    def _apply_evidence(self, rewards_per_func: np.ndarray) -> None:
        """Update the selector from ``rewards_per_func``: float (B * num_generations, reward funcs),
        the rewards of all processes in generation-batch order (NaN = function returned None)."""
        if self._success_column is None:
            weights = self.reward_weights.detach().float().cpu().numpy()
            scored = ~np.isnan(rewards_per_func).all(axis=1)
            signal = np.nansum(rewards_per_func * weights, axis=1)
        else:
            signal = rewards_per_func[:, self._success_column]
            scored = ~np.isnan(signal)
        rollout_positions = np.repeat(self._chosen_positions, self.num_generations)
        if len(rollout_positions) != len(signal):
            raise RuntimeError(
                f"got {len(signal)} rewards for {len(rollout_positions)} rollouts "
                f"({self.prompts_per_generation} prompts x {self.num_generations} generations)"
            )
        evidence = aggregate_rollouts(self._ids_at(rollout_positions[scored]), signal[scored], self._success_rule)
        if not self.mopps_config.bandit_no_update:
            self.selector.update(evidence.ids, evidence.successes, evidence.trials)
        self._awaiting_evidence = False
        self._generations_applied += 1
        self.rollouts_scored += int(scored.sum())
        self._record_evidence_metrics(evidence)

    def _record_evidence_metrics(self, evidence) -> None:
        predicted = None
        if self._chosen_prediction is not None:
            predicted_by_id = dict(zip(_as_list(self._ids_at(self._chosen_positions)),
                                       self._chosen_prediction.tolist()))
            predicted = np.array([predicted_by_id[prompt_id] for prompt_id in _as_list(evidence.ids)])
        report = selection_report(predicted, evidence.successes, evidence.trials)
        if predicted is None:
            # A selector that predicts nothing would only feed nan into TRL's window averages.
            report = {name: report[name] for name in GROUP_KEYS}
        self._record(report)

    def _record(self, metrics: dict[str, float]) -> None:
        """Queue ``mopps/<name>`` metrics for TRL's next ``log`` (averaged over the logging window)."""
        for name, value in metrics.items():
            self._metrics["train"][f"mopps/{name}"].append(float(value))

    # -- checkpoints ---------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial) -> None:
        # Written before the model so that a checkpoint pushed to the Hub by super() includes it.
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            self.selector.save(os.path.join(folder, SELECTOR_FILE))
            write_json(os.path.join(folder, ADAPTER_FILE), self._adapter_state())
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_adapter_checkpoint(checkpoint)

    def _adapter_state(self) -> dict[str, Any]:
        # Saves happen after an optimizer step; a generation's rewards arrive in its first micro-step,
        # so no evidence is ever outstanding here.
        return {
            "format": ADAPTER_FORMAT,
            "version": ADAPTER_VERSION,
            "candidates": self._candidates.state_dict(),
            "chosen_positions": None if self._chosen_positions is None else self._chosen_positions.tolist(),
            "generations_selected": self._generations_selected,
            "rollouts_scored": self.rollouts_scored,
            # TRL's micro-step counter decides when to generate; GRPOTrainer does not save it, so a run
            # resumed mid-generation would otherwise regenerate out of phase.
            "micro_step": self._step,
        }

    def _load_adapter_checkpoint(self, checkpoint: str) -> None:
        selector_path = os.path.join(checkpoint, SELECTOR_FILE)
        adapter_path = os.path.join(checkpoint, ADAPTER_FILE)
        for path in (selector_path, adapter_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing: resume_from_checkpoint={checkpoint!r} was not written by MoPPSGRPOTrainer"
                )
        with open(adapter_path, encoding="utf-8") as handle:
            state = json.load(handle)
        if state.get("format") != ADAPTER_FORMAT or state.get("version") != ADAPTER_VERSION:
            raise ValueError(f"{adapter_path}: not a {ADAPTER_FORMAT} file of version {ADAPTER_VERSION}")
        self.selector.load_state_dict(load_state(selector_path))
        self._candidates.load_state_dict(state["candidates"])
        chosen = state["chosen_positions"]
        self._chosen_positions = None if chosen is None else np.asarray(chosen, dtype=np.int64)
        self._chosen_prediction = None
        self._awaiting_evidence = False
        self._generations_selected = self._generations_applied = int(state["generations_selected"])
        self.rollouts_scored = int(state["rollouts_scored"])
        self._step = int(state["micro_step"])

    # -- helpers -------------------------------------------------------------------------------------

    def _ids_at(self, positions: np.ndarray):
        """Prompt ids of dataset rows ``positions`` (int64 array, or list of str for string ids)."""
        if self._id_kind == STR_KIND:
            return [self._row_ids[int(position)] for position in positions]
        return self._row_ids[positions]

    def _reward_column(self, name: str | None) -> int | None:
        if name is None:
            return None
        if name not in self.reward_func_names:
            raise ValueError(f"success_reward = {name!r}; reward functions are {self.reward_func_names}")
        return self.reward_func_names.index(name)


def _row_ids(dataset: Dataset, id_column: str | None):
    """``(kind, ids)``: each row's prompt id, row positions when ``id_column`` is None."""
    if id_column is None:
        return INT_KIND, np.arange(len(dataset), dtype=np.int64)
    if id_column not in dataset.column_names:
        raise ValueError(f"id_column = {id_column!r}; train_dataset columns are {dataset.column_names}")
    kind, ids = normalize_ids(dataset[id_column], f"train_dataset[{id_column!r}]")
    position = first_duplicate(kind, ids)
    if position >= 0:
        raise ValueError(
            f"train_dataset[{id_column!r}][{position}] = {ids[position]!r} occurs earlier too; "
            "prompt ids must be unique"
        )
    return kind, ids


def _as_list(ids) -> list:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
