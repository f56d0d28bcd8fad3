"""``MoPPSGRPOTrainer``: TRL's ``GRPOTrainer`` with its training prompts chosen by a ``mopps.SelectionLoop``.

The loop decides (candidates, selector, ledger, evidence, metrics, state); this file translates
between it and TRL (trl 1.16.0, see ``docs/trl.md``). TRL generates once every
``steps_per_generation * num_iterations`` micro-steps, inside ``_prepare_inputs``. At exactly that
moment this trainer

1. asks the loop for B prompts (``loop.next(B)``; B = ``generation_batch_size // num_generations``),
2. replaces the batch TRL's dataloader prefetched with those rows, in TRL's layout (each prompt
   ``num_generations`` times in a row; process p gets the p-th contiguous slice), and lets TRL
   generate, score and train on it as usual;
3. when TRL's ``_calculate_rewards`` returns the rewards of all processes (gathered), hands them to
   ``loop.observe`` once, on every process alike; a reward of None (NaN) is no verdict, not evidence;
4. after every optimiser step tells the loop the policy moved (``loop.policy_updated``, the loop's
   ``clock="host"``; ``PolicyClock``).

Choosing at generation time rather than in the sampler is what removes the staleness: the HF Trainer
prefetches ``gradient_accumulation_steps`` batches and accelerate looks one batch ahead, so a sampler
is asked for generation k's prompts before generation k-1 is scored. TRL's sampler still drives the
dataloader, so the number of steps and epochs is exactly that of a plain ``GRPOTrainer`` run.

With ``max_num_gen_batches`` >= 1 (dynamic sampling), step 1-3 become ``mopps.Refill.fill``: TRL
generates and scores up to that many rounds of R prompts (``dynamic_sampling_round_prompts``,
default B), each round's prompts chosen by ``loop.next(R)`` and its rewards (gathered, so identical on every process) observed before the next
round is chosen; Refill keeps the groups whose successes are not all equal, and the trained
generation batch is built from the kept groups' rows of every round and process
(``rollout_rows``), re-padded, in TRL's layout, with ``num_items_in_batch`` recomputed; what fills
the batch when the cap is hit first is ``dynamic_sampling_at_cap`` (``RefillResult.trained_groups``).

Evaluation never touches the loop (reward functions also run in ``evaluate()``). The loop's state
goes into every checkpoint and comes back with ``resume_from_checkpoint``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from mopps.core.validation import check_header, check_integer
from mopps.features import load_features_for, vector_column
from mopps.integrations.trl.config import TrlSelectionSettings
from mopps.integrations.trl.rollout_rows import assemble_rollouts, count_loss_tokens, gather_rollouts
from mopps.loop import RUNNING_TOTALS, Allocation, Batch, Refill, SelectionLoop
from mopps.loop.allocation import build_rule, check_group_size, group_size_for
from mopps.loop.evidence_log import open_evidence_log
from mopps.selectors import Selector
from mopps.storage import load_state, save_state

CHECKPOINT_FILE = "mopps_loop.npz"
CHECKPOINT_FORMAT = "mopps.trl-checkpoint"
CHECKPOINT_VERSION = 2  # version 1: mopps 0.1's mopps_selector.npz + mopps_trainer_state.json
_VERSION_1_FILES = ("mopps_selector.npz", "mopps_trainer_state.json")


class PolicyClock(TrainerCallback):
    """Tells the loop of each optimiser step (``on_step_end`` runs once per step, after gradient
    accumulation and before a checkpoint is saved, so a saved loop holds the step's tick)."""

    def __init__(self, loop: SelectionLoop) -> None:
        self.loop = loop

    def on_step_end(self, args, state, control, **kwargs):
        self.loop.policy_updated()


class MoPPSGRPOTrainer(GRPOTrainer):
    """A ``GRPOTrainer`` whose generation prompts are chosen by a prompt selector.

    Takes every argument of ``trl.GRPOTrainer``; the selection settings are the fields of ``args``
    when it is a ``MoPPSGRPOConfig`` (TRL's ``GRPOConfig`` + ``TrlSelectionSettings``), else the
    defaults. Keyword-only: ``selector``: any ``mopps.Selector`` (e.g. ``mopps.Uniform`` for an A/B
    run, a ``ContextualMoPPS`` for features), built identically on every process; default the
    ``MoPPS`` the settings build. With ``selector=`` the settings that would configure the built
    selector (``bandit_sample_strategy``, ``bandit_target_mean``, ...) must stay at their defaults.
    ``mopps``: deprecated (mopps 0.1's separate ``MoPPSConfig``); use ``MoPPSGRPOConfig``.

    ``train_dataset`` must be a map-style ``datasets.Dataset``. ``loop`` is the ``SelectionLoop``
    (``loop.selector``, ``loop.rollouts``: rollouts with a verdict that reached it).
    """

    def __init__(self, *args, selector: Selector | None = None, mopps: TrlSelectionSettings | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = self._selection_settings(mopps)
        dataset = self.train_dataset
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"train_dataset is a {type(dataset).__name__}; MoPPSGRPOTrainer needs a map-style "
                "datasets.Dataset (the selector picks rows by position)"
            )
        self._allocation_rule = build_rule(settings.rollout_allocation) if settings.rollout_allocation else None
        self.group_rows = self._group_rows(settings)  # rollouts per trained prompt
        self.prompts_per_generation = self.args.generation_batch_size // self.group_rows
        if len(dataset) < self.prompts_per_generation:
            raise ValueError(
                f"train_dataset has {len(dataset)} rows but one generation needs "
                f"{self.prompts_per_generation} distinct prompts (generation_batch_size // num_generations)"
            )
        prompt_ids, where = _prompt_ids(dataset, settings.id_column)
        seed = settings.seed_or(self.args.seed)
        selector = settings.build_selector(default_seed=seed, selector=selector)
        try:
            self.loop = SelectionLoop(selector, prompt_ids, rule=settings.build_success_rule(),
                                      ts_ratio=settings.ts_ratio, seed=seed, learn=not settings.bandit_no_update,
                                      evidence_log=open_evidence_log(settings.evidence_log, "trl",
                                                                     self.num_generations, seed),
                                      clock="host")
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        # One tick per optimiser step: a generation serves steps_per_generation * num_iterations micro-steps
        # and may span several optimiser steps, a dynamic-sampling generation several observe calls.
        self.add_callback(PolicyClock(self.loop))
        settings.apply_prior_file(self.loop.selector, self.loop.prompt_ids, where)
        self._add_features(dataset, settings)
        # The rows TRL's own dataloader would serve (it drops unused columns when asked to).
        self._rows = self._remove_unused_columns(dataset, description="training")
        self._success_column = self._reward_column(settings.success_reward)
        self._positions = np.zeros(0, dtype=np.int64)  # dataset rows of the current generation (B,) or round (R,)
        self._awaiting_evidence = False
        self._last_rewards = None  # float (prompts * num_generations, reward funcs) of the latest training generation
        self.refill = self._dynamic_sampling(settings)  # mopps.Refill over the loop, or None
        self.allocation = self._rollout_allocation(settings)  # mopps.loop.Allocation over the loop, or None
        self._refill_pending = False  # the next training generation is a dynamic-sampling or allocation one

    @property
    def selector(self) -> Selector:
        """The loop's selector (its learned state after training)."""
        return self.loop.selector

    def _selection_settings(self, mopps: TrlSelectionSettings | None) -> TrlSelectionSettings:
        from_args = isinstance(self.args, TrlSelectionSettings)
        if mopps is None:
            return self.args if from_args else TrlSelectionSettings()
        if from_args:
            raise ValueError("mopps= was passed together with a MoPPSGRPOConfig as args; set the selection fields "
                             "in one place (the MoPPSGRPOConfig)")
        if not isinstance(mopps, TrlSelectionSettings):
            raise ValueError(f"mopps is a {type(mopps).__name__}; it must be a MoPPSConfig")
        warnings.warn("MoPPSGRPOTrainer(mopps=...) is deprecated: pass a MoPPSGRPOConfig with the same fields as args",
                      DeprecationWarning, stacklevel=3)
        return mopps

    def _add_features(self, dataset: Dataset, settings: TrlSelectionSettings) -> None:
        """Hand the configured per-prompt features to the loop: every row of ``features_column``, or
        the rows of the ``features_path`` file whose ids are prompts here (the settings allow one)."""
        name, value = ("features_column", settings.features_column) if settings.features_column else \
            ("features_path", settings.features_path)
        if not value:
            return
        try:
            if name == "features_column":
                self.loop.add_features(self.loop.prompt_ids, vector_column(dataset, value))
            else:
                self.loop.add_features(*load_features_for(value, self.loop.prompt_ids)[:2])
        except ValueError as error:
            raise ValueError(f"{name} = {value!r}: {error}") from None

    def _dynamic_sampling(self, settings: TrlSelectionSettings) -> Refill | None:
        """``Refill`` over the loop when ``max_num_gen_batches`` >= 1 (else None). Refuses, naming the
        setting: a round size R outside [B, dataset size] or not splitting over the processes;
        advantage settings that normalise over a whole round (the trained batch mixes groups of several
        rounds, so only per-group advantages stay what TRL computed); reused log-probs on a model
        without rotary positions."""
        self._at_cap = settings.dynamic_sampling_at_cap
        self.round_prompts = settings.dynamic_sampling_round_prompts or self.prompts_per_generation
        if not settings.max_num_gen_batches:
            return None
        rollouts = self.round_prompts * self.num_generations
        if not self.prompts_per_generation <= self.round_prompts <= len(self.loop) or \
                rollouts % self.accelerator.num_processes:
            raise ValueError(
                f"dynamic_sampling_round_prompts = {self.round_prompts}; a round must roll out between B = "
                f"{self.prompts_per_generation} and the {len(self.loop)} prompts of the dataset, and its "
                f"{rollouts} rollouts must split evenly over {self.accelerator.num_processes} processes")
        self._check_multi_round(f"dynamic sampling (max_num_gen_batches = {settings.max_num_gen_batches})")
        return Refill(self.loop, settings.max_num_gen_batches)

    def _group_rows(self, settings: TrlSelectionSettings) -> int:
        """Rollouts per trained prompt: ``num_generations``, or with rollout allocation the group size n,
        a multiple of ``num_generations`` (TRL generates ``num_generations`` answers per prompt at a
        time, so every allocation round asks for whole multiples of it). Refuses, naming the field, a
        group size whose rounds do not split so, or a generation batch it does not divide."""
        if self._allocation_rule is None:
            return self.num_generations
        if settings.rollout_allocation_group_size is None:
            rows = group_size_for(self._allocation_rule, self.num_generations)
        else:
            rows = check_group_size(self._allocation_rule, settings.rollout_allocation_group_size, self.num_generations)
        if self.args.generation_batch_size % rows:
            raise ValueError(f"rollout_allocation_group_size = {rows} (rollouts per trained prompt) does not divide "
                             f"generation_batch_size = {self.args.generation_batch_size}; the trained batch is "
                             "generation_batch_size // rollout_allocation_group_size prompts")
        return rows

    def _rollout_allocation(self, settings: TrlSelectionSettings) -> Allocation | None:
        """``Allocation`` over the loop when ``rollout_allocation`` is set (else None). Refuses what
        dynamic sampling refuses (its trained batch mixes rounds too) and ``num_generations`` that does
        not split over the processes (a round's rollouts are spread evenly over them)."""
        if self._allocation_rule is None:
            return None
        if self.num_generations % self.accelerator.num_processes:
            raise ValueError(f"rollout_allocation = {settings.rollout_allocation!r} needs num_generations = "
                             f"{self.num_generations} divisible by the {self.accelerator.num_processes} processes "
                             "(every round's rollouts are split evenly over them)")
        self._check_multi_round(f"rollout allocation (rollout_allocation = {settings.rollout_allocation!r})")
        return Allocation(self.loop, self._allocation_rule, self.group_rows)

    def _check_multi_round(self, what: str) -> None:
        """Refuse, naming the setting, what cannot hold when a trained batch mixes generation rounds
        (``what``: the feature, with its setting): advantage settings that normalise over a whole round
        (only per-group advantages stay right) and reused log-probs on a model without rotary positions."""
        if self.scale_rewards == "batch":
            raise ValueError("scale_rewards = 'batch' scales advantages by one generation round's reward std; with "
                             f"{what} the trained batch mixes rounds, so use scale_rewards='group' or 'none'")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(f"multi_objective_aggregation = {self.multi_objective_aggregation!r} normalises over one "
                             f"generation round; with {what} use 'sum_then_normalize'")
        # Groups of several rounds share one padded width, so a prompt may get more left padding than when its
        # old / reference log-probs were computed. Rotary position embeddings only see relative positions, so
        # those log-probs still hold; with absolute positions they would not, and are refused when TRL uses them.
        generate_every = self.args.steps_per_generation * self.num_iterations
        uses_logps = self.beta != 0.0 or self.args.gradient_accumulation_steps % generate_every != 0 or (
            self.use_vllm and self.vllm_importance_sampling_correction)
        if uses_logps and not _has_rotary_positions(self.accelerator.unwrap_model(self.model)):
            raise ValueError(
                f"{what} re-pads prompts of several rounds to one width, which moves absolute positions after old / "
                "reference log-probs were computed; this model has no rotary position embeddings, so use it with "
                "beta=0, generation aligned with gradient_accumulation_steps and no vLLM importance-sampling "
                "correction")

    # -- choosing prompts ----------------------------------------------------------------------------

    def _prepare_inputs(self, generation_batch):
        if self.model.training:
            generate_every = self.args.steps_per_generation * self.num_iterations
            fresh = self._step % generate_every == 0
            # Same condition as GRPOTrainer._prepare_inputs: TRL is about to generate. After a resume in
            # the middle of a generation the buffer is empty but the prompts were already chosen (and
            # their evidence observed): TRL regenerates completions for the same prompts.
            if fresh and (self.refill is not None or self.allocation is not None):
                # _generate_and_score_completions runs the rounds; the prefetched rows only give the size.
                self._refill_pending = True
            elif fresh or self._buffered_inputs is None:
                if fresh:
                    batch = self.loop.next(self.prompts_per_generation)
                    self._select(batch)
                    self._record(batch.metrics())
                    self._awaiting_evidence = True
                generation_batch = self._chosen_rows(len(generation_batch))
        return super()._prepare_inputs(generation_batch)

    def _select(self, batch: Batch) -> None:
        """Make ``batch`` (from ``loop.next``) the prompts TRL generates for next."""
        self._positions = batch.positions
        self._check_processes_agree()

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self._refill_pending):
            output = super()._generate_and_score_completions(inputs)
            if self.model.training and self.allocation is not None:
                # Resumed mid-generation: the trained prompts' groups are regenerated whole (group_rows
                # each); TRL normalised per num_generations, the group is group_rows.
                output["advantages"] = self._local(self._group_advantages(self._last_rewards), len(inputs))
            return output
        self._refill_pending = False
        if self.allocation is not None:
            return self._allocated_generation(len(inputs))
        return self._refilled_generation(len(inputs))

    def _allocated_generation(self, local_size: int) -> dict:
        """This process's part of a generation batch assembled by rollout allocation (``local_size``
        rows): the rule's rounds, each rolled out by TRL (a prompt asked for c * num_generations
        rollouts appears as c consecutive TRL groups), then the trained prompts' groups of
        ``group_rows`` rollouts (pilot rows included), with advantages normalised over each whole group."""
        rounds: list[dict] = []  # every round's rows, gathered from all processes
        round_rewards: list[np.ndarray] = []  # every round's rewards per function, all processes
        pad_token_id = self._tokenizer.pad_token_id

        def roll_out(request):
            self._positions = request.positions
            self._check_processes_agree()
            layout = np.repeat(request.positions, request.rollouts_per_prompt)
            output = super(MoPPSGRPOTrainer, self)._generate_and_score_completions(self._local_rows(layout))
            rounds.append(gather_rollouts(output, self.accelerator, pad_token_id))
            round_rewards.append(self._last_rewards)
            return self._judged(self._last_rewards, len(layout))

        result = self.allocation.step(self.prompts_per_generation, roll_out)
        if (result.group_sizes() != self.group_rows).any():
            raise RuntimeError(f"the allocation trained groups of {sorted(set(result.group_sizes().tolist()))} "
                               f"rollouts; TRL trains groups of rollout_allocation_group_size = {self.group_rows} "
                               "(rollouts without a verdict may have left a group short)")
        rows = np.concatenate(result.members)  # (round, row in that round's gathered batch), group by group
        trained = assemble_rollouts(rounds, rows, pad_token_id)
        flat = np.cumsum([0] + [len(values) for values in round_rewards])[rows[:, 0]] + rows[:, 1]
        advantages = self._group_advantages(np.concatenate(round_rewards)[flat])
        trained["advantages"] = advantages.to(device=trained["advantages"].device, dtype=trained["advantages"].dtype)
        self._positions = result.positions
        self._record({**result.metrics(), "mopps/trained_rollouts": float(len(rows))})
        local = {key: self._local(value, local_size) for key, value in trained.items()}
        local["num_items_in_batch"] = count_loss_tokens(trained)
        return local

    def _group_advantages(self, rewards_per_func: np.ndarray) -> torch.Tensor:
        """Advantages (rows,) of rollouts laid out as consecutive groups of ``group_rows``, computed as
        TRL computes them per group (``sum_then_normalize``: the weighted sum of the reward functions, a
        row where every function returned None is NaN and gets 0; minus the group's mean, divided by
        its std + 1e-4 unless ``scale_rewards="none"``). ``rewards_per_func``: float (rows, funcs)."""
        values = torch.as_tensor(rewards_per_func, dtype=torch.float32)
        rewards = (values * self.reward_weights.detach().float().cpu().unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(values).all(dim=1)] = torch.nan
        grouped = rewards.view(-1, self.group_rows)
        advantages = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
        if self.scale_rewards != "none":
            advantages = advantages / (nanstd(grouped, dim=1).unsqueeze(1) + 1e-4)
        return torch.nan_to_num(advantages.reshape(-1), nan=0.0)

    def _local(self, values, local_size: int):
        """This process's ``local_size`` rows of all processes' ``values`` (rows in generation-batch order)."""
        start = self.accelerator.process_index * local_size
        return values[start:start + local_size]

    def _local_rows(self, layout: np.ndarray) -> list[dict[str, Any]]:
        """This process's slice of the dataset rows ``layout`` (one entry per rollout), as row dicts."""
        return [self._rows[int(position)] for position in self._local(layout, len(layout) // self.accelerator.num_processes)]

    def _refilled_generation(self, local_size: int) -> dict:
        """This process's part of a generation batch assembled by dynamic sampling (``local_size`` rows,
        as TRL's ``_generate_and_score_completions`` returns it)."""
        rounds: list[dict] = []  # every round's rows, gathered from all processes
        pad_token_id = self._tokenizer.pad_token_id  # what TRL pads its generation batches with

        def roll_out(batch: Batch):
            self._select(batch)
            round_size = len(batch) * self.num_generations // self.accelerator.num_processes
            output = super(MoPPSGRPOTrainer, self)._generate_and_score_completions(self._chosen_rows(round_size))
            rounds.append(gather_rollouts(output, self.accelerator, pad_token_id))
            rewards, has_verdict = self._judged(self._last_rewards)
            return self.loop.ids_at(np.repeat(batch.positions, self.num_generations)), rewards, has_verdict

        result = self.refill.fill(self.prompts_per_generation, roll_out, batch_size=self.round_prompts)
        trained_groups = result.trained_groups(self.prompts_per_generation, self._at_cap)
        groups = trained_groups.groups
        generation = np.arange(self.num_generations)
        rows = np.stack([np.repeat(groups[:, 0], self.num_generations),
                         (groups[:, 1, None] * self.num_generations + generation).ravel()], axis=1)
        trained = assemble_rollouts(rounds, rows, pad_token_id)
        # A group that only fills the batch at the cap teaches nothing, whatever a shaped reward beside the
        # judged one says: the policy gradient is that of the kept groups.
        filler = np.repeat(~trained_groups.kept, self.num_generations)
        if filler.any():
            trained["advantages"][torch.as_tensor(filler, device=trained["advantages"].device)] = 0.0
        self._positions = trained_groups.positions
        self._record({**result.metrics(), **trained_groups.metrics(), "mopps/trained_rollouts": float(len(rows))})
        start = self.accelerator.process_index * local_size
        local = {key: value[start:start + local_size] for key, value in trained.items()}
        local["num_items_in_batch"] = count_loss_tokens(trained)
        return local

    def _chosen_rows(self, local_size: int) -> list[dict[str, Any]]:
        """This process's slice of the chosen prompts' rollouts (each prompt ``num_generations`` times
        in a row), as a list of ``local_size`` row dicts."""
        num_processes = self.accelerator.num_processes
        layout = np.repeat(self._positions, self.group_rows)
        if local_size * num_processes != len(layout):
            raise RuntimeError(
                f"the dataloader served {local_size} rows per process x {num_processes} processes, but "
                f"{len(self._positions)} prompts x {self.group_rows} rollouts make {len(layout)}; "
                "MoPPSGRPOTrainer relies on TRL's generation-batch layout"
            )
        return self._local_rows(layout)

    def _check_processes_agree(self) -> None:
        if self.accelerator.num_processes == 1:
            return
        digest = hashlib.sha1(np.ascontiguousarray(self._positions, dtype=np.int64).tobytes()).hexdigest()
        digests = gather_object([digest])
        if len(set(digests)) != 1:
            raise RuntimeError(
                f"processes chose different prompts (digests per rank: {digests}); build the selector with "
                "the same seed and state on every process"
            )

    # -- learning from rewards -----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._last_rewards = rewards_per_func.detach().float().cpu().numpy()
            if self._awaiting_evidence:
                rewards, has_verdict = self._judged(self._last_rewards)
                rollout_ids = self.loop.ids_at(np.repeat(self._positions, self.num_generations))
                self._record(self.loop.observe(rollout_ids, rewards, has_verdict=has_verdict))
                self._awaiting_evidence = False
        return rewards_per_func

    def _judged(self, rewards_per_func: np.ndarray, expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rewards, has_verdict)`` (prompts * num_generations,) of the latest generation (its prompts
        are ``self._positions``; ``expected``: its rollouts, when a round gives each more than
        num_generations) for the loop.
        ``rewards_per_func``: float (prompts * num_generations, reward funcs), all processes' rewards in
        generation-batch order; NaN = the function returned None, i.e. no verdict: such a rollout is
        not evidence (the judged function's, or every function's when the weighted sum is judged)."""
        expected = len(self._positions) * self.num_generations if expected is None else expected
        if len(rewards_per_func) != expected:
            raise RuntimeError(f"got {len(rewards_per_func)} rewards for {expected} rollouts of "
                               f"{len(self._positions)} prompts")
        if self._success_column is None:
            weights = self.reward_weights.detach().float().cpu().numpy()
            has_verdict = ~np.isnan(rewards_per_func).all(axis=1)
            return np.nansum(rewards_per_func * weights, axis=1), has_verdict
        rewards = rewards_per_func[:, self._success_column]
        return rewards, ~np.isnan(rewards)

    def _record(self, metrics: dict[str, float]) -> None:
        """Queue the loop's ``mopps/*`` metrics for TRL's next ``log`` (averaged over the logging window,
        except running totals: see ``log``)."""
        for name, value in metrics.items():
            self._metrics["train"][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL averages each metric over the logging window; a running total is logged as its latest value.
        for name in RUNNING_TOTALS:
            values = self._metrics["train"].get(name)
            if values:
                del values[:-1]
        super().log(logs, start_time)

    # -- checkpoints ---------------------------------------------------------------------------------

    def train(self, *args, **kwargs):
        """TRL's ``train``; the evidence log (if set) is written when it ends, normally or not."""
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.loop.evidence_log is not None and self.args.should_save:
                self.loop.evidence_log.flush()

    def _save_checkpoint(self, model, trial) -> None:
        # Written before the model so that a checkpoint pushed to the Hub by super() includes it. Saves
        # happen after an optimizer step; a generation's rewards arrive in its first micro-step, so no
        # evidence is outstanding here.
        if self.args.should_save:
            if self.loop.evidence_log is not None:
                # The log first: a crash between the two leaves rows a resume truncates, never a gap.
                self.loop.evidence_log.flush()
            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            save_state({
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "loop": self.loop.state_dict(),
                # The current generation's rows (a resume mid-generation regenerates them) and TRL's
                # micro-step counter, which decides when to generate and which GRPOTrainer does not save.
                "generation_positions": self._positions,
                "micro_step": self._step,
            }, os.path.join(folder, CHECKPOINT_FILE))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)

    def _load_checkpoint(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, CHECKPOINT_FILE)
        if not os.path.isfile(path):
            if all(os.path.isfile(os.path.join(checkpoint, name)) for name in _VERSION_1_FILES):
                # mopps 0.1 ordered candidates by another generator, so its stream position cannot be
                # continued exactly; the posteriors can.
                raise ValueError(
                    f"{checkpoint} was written by mopps 0.1's TRL adapter ({', '.join(_VERSION_1_FILES)}), whose "
                    "candidate order this version cannot continue. Keep its learned posteriors by starting a new "
                    f"run with bandit_load_path={os.path.join(checkpoint, _VERSION_1_FILES[0])!r} and the old run's "
                    "bandit_* / prior_* settings"
                )
            raise FileNotFoundError(
                f"{path} is missing: resume_from_checkpoint={checkpoint!r} was not written by MoPPSGRPOTrainer"
            )
        state = load_state(path, what="MoPPSGRPOTrainer checkpoint")
        try:
            check_header(state, CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,), "TRL checkpoint",
                         keys=("generation_positions", "loop", "micro_step"))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        micro_step = check_integer(state["micro_step"], f"{path}: micro_step")
        positions = np.asarray(state["generation_positions"], dtype=np.int64)
        in_dataset = (positions >= 0) & (positions < len(self.loop))
        if positions.shape != (self.prompts_per_generation,) or not in_dataset.all():
            raise ValueError(f"{path}: generation_positions {positions.tolist()} are not {self.prompts_per_generation} "
                             f"rows of this dataset; resume with the same dataset, generation batch, "
                             f"rollout_allocation and rollout_allocation_group_size")
        try:
            self.loop.load_state_dict(state["loop"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        self._positions = positions
        self._awaiting_evidence = False
        self._step = micro_step

    # -- helpers -------------------------------------------------------------------------------------

    def _reward_column(self, name: str | None) -> int | None:
        if name is None:
            return None
        if name not in self.reward_func_names:
            raise ValueError(f"success_reward = {name!r}; reward functions are {self.reward_func_names}")
        return self.reward_func_names.index(name)


def _has_rotary_positions(model) -> bool:
    """Whether ``model``'s (text) config declares rotary position embeddings (transformers 5:
    ``rope_parameters``; earlier: ``rope_theta``)."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_theta", None))


def _prompt_ids(dataset: Dataset, id_column: str | None) -> tuple[Any, str]:
    """Each row's prompt id (row positions when ``id_column`` is None) and where they come from."""
    if id_column is None:
        return np.arange(len(dataset), dtype=np.int64), "row positions"
    if id_column not in dataset.column_names:
        raise ValueError(f"id_column = {id_column!r}; train_dataset columns are {dataset.column_names}")
    return dataset[id_column], f"id_column = {id_column!r} (train_dataset[{id_column!r}])"
