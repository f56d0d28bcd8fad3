"""A GRPO setup small enough for CPU CI and built without the Hub: a WordLevel tokenizer over digits
and a few words, a 2-layer ``Qwen2ForCausalLM`` with random weights, and an "a + b =" dataset.

Each prompt has a stable ``prompt_id`` column and a 2-number ``features`` column (a, b);
``contains_answer`` rewards a completion 1.0 if it contains the sum as a word (a random policy does
so for a fraction of its completions, so groups have mixed outcomes) and 0.0 otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM  # noqa: E402
from mopps import MoPPS  # noqa: E402
from mopps.integrations.trl import MoPPSGRPOConfig, MoPPSGRPOTrainer  # noqa: E402

WORDS = [str(number) for number in range(19)] + ["+", "=", "the", "answer", "is"]
SPECIAL = ["<pad>", "<eos>", "<unk>"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A whitespace WordLevel tokenizer over ``WORDS`` (vocab size 27 incl. specials)."""
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                                      unk_token="<unk>")
    wrapped.padding_side = "left"
    return wrapped


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised 2-layer Qwen2 (hidden size 32), seeded so every process builds the same."""
    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config)


def addition_dataset(rows: int = 24) -> Dataset:
    """``rows`` prompts "a + b =" with a, b in 0..9, columns ``prompt``, ``answer``, ``prompt_id``,
    ``features`` ([a, b] as floats)."""
    pairs = [(index % 10, (index * 7 + 3) % 10) for index in range(rows)]
    return Dataset.from_dict({
        "prompt": [f"{a} + {b} =" for a, b in pairs],
        "answer": [str(a + b) for a, b in pairs],
        "prompt_id": [100 + index for index in range(rows)],
        "features": [[float(a), float(b)] for a, b in pairs],
    })


def contains_answer(completions, answer, **kwargs) -> list[float]:
    """1.0 per completion that contains its prompt's sum as a word, else 0.0."""
    return [1.0 if expected in completion.split() else 0.0 for completion, expected in zip(completions, answer)]


def tiny_trl_settings(output_dir) -> dict:
    """GRPO on CPU: 2 prompts x 4 generations per step, 6-token completions, no logging backends."""
    return dict(
        output_dir=str(output_dir), use_cpu=True, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=6, max_steps=4, learning_rate=1e-2, logging_steps=1, save_strategy="no",
        report_to=[], seed=0, temperature=1.0, dataloader_num_workers=0, disable_tqdm=True,
    )


def tiny_grpo_config(output_dir, **overrides) -> MoPPSGRPOConfig:
    """``tiny_trl_settings`` with selection from 3 x 2 candidates keyed by ``prompt_id``.
    ``overrides``: any MoPPSGRPOConfig field."""
    settings = dict(tiny_trl_settings(output_dir), ts_ratio=3, id_column="prompt_id")
    settings.update(overrides)
    return MoPPSGRPOConfig(**settings)


class RecordingMoPPS(MoPPS):
    """MoPPS that records, per ``select``: the number of updates applied before it (``steps``), the
    candidate ids (``candidates``) and the chosen ids (``choices``); per ``update``:
    ``(ids, successes, trials)`` as lists (``updates``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[int] = []
        self.candidates: list[list] = []
        self.choices: list[list] = []
        self.updates: list[tuple[list, list, list]] = []

    def select(self, candidate_ids, k):
        choice = super().select(candidate_ids, k)
        self.steps.append(self.step)
        self.candidates.append(np.asarray(candidate_ids).tolist())
        self.choices.append(list(np.asarray(choice.ids).tolist()))
        return choice

    def update(self, ids, successes, trials):
        super().update(ids, successes, trials)
        self.updates.append((np.asarray(ids).tolist(), np.asarray(successes).tolist(), np.asarray(trials).tolist()))


class FeatureGreedy(RecordingMoPPS):
    """A selector that uses features: it keeps the k candidates with the largest first feature (ties by
    id) and records every ``add_features`` call as ``(ids list, X array)`` in ``received``. Only for
    tests: its features live outside the saved state."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[list, np.ndarray]] = []
        self.first_feature: dict = {}

    def add_features(self, ids, X) -> None:
        X = np.asarray(X, dtype=np.float32)
        self.received.append((np.asarray(ids).tolist(), X.copy()))
        self.first_feature.update(zip(np.asarray(ids).tolist(), X[:, 0].tolist()))

    def _choose(self, state, kind, ids, k, rng):
        index, scores, predicted = super()._choose(state, kind, ids, k, rng)
        keys = np.asarray(ids).tolist()
        value = np.array([self.first_feature[key] for key in keys])
        order = np.lexsort((np.asarray(keys), -value))
        return order[:k].astype(np.int64), value, predicted


def logged(trainer, key: str) -> list[float]:
    """Every value of the metric ``key`` in the trainer's log history, in order."""
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def prompt_log_reward(log: list):
    """``contains_answer`` that also appends every ``prompt_id`` it scores (in batch order) to ``log``."""

    def logged_contains_answer(completions, answer, prompt_id, **kwargs) -> list[float]:
        log.extend(prompt_id)
        return contains_answer(completions, answer)

    return logged_contains_answer


def rescore(prompts: list[str], completions: list[str]) -> list[float]:
    """``contains_answer`` of decoded "a + b =" prompts and their completions, computed here."""
    answers = [str(int(a) + int(b)) for a, _, b, _ in (prompt.split() for prompt in prompts)]
    return contains_answer(completions, answers)


class TrainedBatches(MoPPSGRPOTrainer):
    """Records every generation batch dynamic sampling or allocation hands to TRL on this process: ``trained``
    holds, per generation, the dataset rows of its groups (all processes') and, for this process's
    rows, the decoded prompt and completion, the advantage, and the loss-token counts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trained: list[dict] = []

    def _refilled_generation(self, local_size):
        return self._recorded(super()._refilled_generation(local_size))

    def _allocated_generation(self, local_size):
        return self._recorded(super()._allocated_generation(local_size))

    def _recorded(self, local):
        decode = self.processing_class.batch_decode
        self.trained.append({
            "positions": self._positions.tolist(),
            "prompts": decode(local["prompt_ids"], skip_special_tokens=True),
            "completions": decode(local["completion_ids"] * local["completion_mask"], skip_special_tokens=True),
            "advantages": local["advantages"].tolist(),
            "num_items_in_batch": int(local["num_items_in_batch"]),
            "loss_tokens": int(local["completion_mask"].sum()),
        })
        return local
