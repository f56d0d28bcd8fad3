"""A tiny Hugging Face policy with mixed rewards, for CPU runs of the TRL adapter.

A random tiny model solves nothing, so every GRPO group has zero reward variance and neither prompt
selection nor dynamic sampling has anything to do. This module gives TRL a policy that solves some
prompts and fails others, built without the Hub:

- ``build_tokenizer(task)``: a WordLevel tokenizer (whitespace split) over the task's words plus
  ``<pad>``, ``<eos>``, ``<unk>``, padding on the left. Prompts and answers are written as
  space-separated words (``"7 2 + 5 9 ="`` -> ``"2 2 1"`` for 27 + 95 with 2-digit operands; numbers
  are least-significant digit first, see ``AdditionTask``).
- ``load_tiny_model(config)``: a ``Qwen2ForCausalLM`` built from a ``Qwen2Config`` and warm-started by a
  short deterministic supervised run on freshly sampled problems of ``config.task``, stopped early so
  that it knows the no-carry digits and not yet the carries. Cached on disk (below).
- ``build_dataset(count, seed, task)``: a ``datasets.Dataset`` of distinct prompts with the columns
  TRL and ``MoPPSGRPOTrainer`` need (``prompt``, ``answer``, ``prompt_id``, ``features``).
- ``exact_answer_reward``: a TRL reward function, 1.0 iff the completion is the answer;
  ``recording_reward(log)`` is the same, also appending each reward to ``log``.
- ``success_rates(model, dataset, task)``: each prompt's exact success probability at
  temperature 1, and ``expected_zero_variance_share(rates, generations)``.

The default ``TinyConfig`` (2-digit addition, hidden 64, 3 layers, 450 Adam steps of 64 problems of
which 10% have a carry; about 20 s on one CPU core) measures with ``success_rates`` on
``build_dataset(64, seed=0)``: mean success rate 0.44; 34% of prompts below 0.2, 31% between 0.2
and 0.8, 34% above 0.8; by carries, mean 0.86 for no-carry prompts (25), 0.22 with one carry (28),
0.04 with two (11). Expected zero-variance groups under uniform sampling
(``expected_zero_variance_share``): 55% with 4 generations, 35% with 8. On 256 prompts (seed 1):
mean 0.48, 55% and 35%. Sampled frequencies through ``generate`` agree with these exact rates.

Cache: the entry ``tiny-hf-<key>/`` of the testbed's one warm-start cache (``mopps.testbed.cache``:
``$MOPPS_CACHE`` or ``~/.cache/mopps``; the same key scheme, manifest and integrity check as the
testbed's own warm start), a folder ``from_pretrained`` reads (model and tokenizer). ``key`` hashes
every setting, ``CACHE_FORMAT`` and the torch version.

Imports torch, transformers, tokenizers and datasets (the ``trl`` extra). Nothing here touches the
network: the tokenizer is built in memory and ``from_pretrained`` reads only the local cache folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from mopps.core.validation import check_integer
from mopps.testbed.cache import cache_key, entry_path, load_or_build
from mopps.testbed.task import AdditionTask, Task, sample_unique, task_features, task_key

CACHE_FORMAT = 1  # bump when the code changes what a config produces
CACHE_NAME = "tiny-hf"
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
IGNORE = -100  # transformers' label value for positions without loss


@dataclass(frozen=True)
class TinyConfig:
    """Everything that determines the warm-started weights.

    ``task``: the task (its class and parameters key the cache); ``hidden_size``, ``layers``,
    ``heads``, ``kv_heads``, ``intermediate_size``: the ``Qwen2Config``; ``steps``: supervised Adam
    steps (the knob that sets how competent the start is); ``batch_size``: problems per step;
    ``learning_rate``: Adam step size; ``seed``: initialisation and data.
    """

    task: Task = AdditionTask(2)
    hidden_size: int = 64
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    steps: int = 450
    batch_size: int = 64
    carry_share: float | None = 0.1
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.carry_share is not None:
            if not 0.0 <= self.carry_share <= 1.0:
                raise ValueError(f"carry_share = {self.carry_share}; carry_share must be in [0, 1] or None")
            if "carries" not in task_features(self.task, self.task.sample_problems(1, np.random.default_rng(0))):
                raise ValueError(f"carry_share = {self.carry_share}; task = {self.task!r} has no 'carries' "
                                 "feature: use carry_share=None")

    def key(self) -> str:
        """Short hash of every setting, the task, ``CACHE_FORMAT`` and the torch version (``cache_key``)."""
        settings = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "task"}
        return cache_key(CACHE_NAME, CACHE_FORMAT, {"task": task_key(self.task), **settings})

    def model_config(self, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
        """The ``Qwen2Config`` for ``tokenizer`` (its vocabulary and special tokens)."""
        return Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.task.prompt_length + self.task.answer_length + 8,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
            tie_word_embeddings=True,
        )


# ---------------------------------------------------------------------------------------------------
# Text

def task_words(task: Task) -> list[str]:
    """The task's vocabulary without its end token (that one is the tokenizer's ``<eos>``)."""
    return [word for index, word in enumerate(task.vocab) if index != task.eos]


def build_tokenizer(task: Task = AdditionTask(2)) -> PreTrainedTokenizerFast:
    """A whitespace WordLevel tokenizer: ids 0, 1, 2 are ``<pad>``, ``<eos>``, ``<unk>``, then the
    task's words in task order; padding on the left (TRL generates from left-padded prompts)."""
    words = task_words(task)
    clashes = sorted({PAD, EOS, UNK} & set(words))
    if clashes or any(not word or any(char.isspace() for char in word) for word in words):
        raise ValueError(f"task = {task!r}; its words must be non-empty, without whitespace and not one "
                         f"of {PAD}, {EOS}, {UNK} (got {words})")
    vocab = {word: index for index, word in enumerate([PAD, EOS, UNK, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    wrapped.padding_side = "left"
    return wrapped


def token_map(task: Task) -> np.ndarray:
    """int64 (len(task.vocab),): the ``build_tokenizer(task)`` id of each task token id (the task's
    end token -> ``<eos>``)."""
    ids = np.empty(len(task.vocab), dtype=np.int64)
    ids[task.eos] = 1
    others = np.array([index for index in range(len(task.vocab)) if index != task.eos], dtype=np.int64)
    ids[others] = 3 + np.arange(len(others))
    return ids


def words(task: Task, tokens: np.ndarray) -> list[str]:
    """Space-separated texts of token rows ``tokens`` int (m, length), task ids; the task's end token
    and whatever follows it are left out."""
    texts = []
    for row in np.asarray(tokens):
        end = np.flatnonzero(row == task.eos)
        row = row[: end[0]] if len(end) else row
        texts.append(" ".join(task.vocab[int(token)] for token in row))
    return texts


def answer_words(completion: str) -> list[str]:
    """The words of a decoded completion before its first ``<eos>`` (TRL decodes with special tokens
    skipped, so there usually is none; text written by other code may still show it)."""
    return completion.split(EOS, 1)[0].split()


def exact_answer_reward(completions, answer, **kwargs) -> list[float]:
    """TRL reward function: per completion, 1.0 iff its whitespace-separated words before any
    ``<eos>`` are exactly the words of its ``answer`` (the dataset column), else 0.0.

    ``completions``: list of str (decoded completions, B); ``answer``: list of str (B). Extra
    whitespace anywhere is ignored; a missing, extra or wrong digit fails. A completion cut off at
    ``max_completion_length`` before its answer ends fails. Conversational completions (lists of
    messages) are judged on their last message's ``content``.
    """
    if len(completions) != len(answer):
        raise ValueError(f"completions has {len(completions)} entries, answer {len(answer)}; they must match")
    rewards = []
    for completion, expected in zip(completions, answer):
        if isinstance(completion, list):
            completion = completion[-1]["content"]
        rewards.append(1.0 if answer_words(completion) == str(expected).split() else 0.0)
    return rewards


def recording_reward(log: list):
    """``exact_answer_reward`` that also appends every reward it returns, in call order, to ``log``
    (a benchmark or test reads the groups back as ``np.reshape(log, (-1, num_generations))``)."""

    def exact_answer(completions, answer, **kwargs) -> list[float]:
        values = exact_answer_reward(completions, answer)
        log.extend(values)
        return values

    return exact_answer


# ---------------------------------------------------------------------------------------------------
# Data

def prompt_ids(task: Task, prompts: np.ndarray) -> np.ndarray:
    """Stable int64 ids (m,) of prompts ``prompts`` int (m, prompt_length), task ids: the prompt read as
    a number in base ``len(task.vocab)``. The same prompt gets the same id in every dataset."""
    base = len(task.vocab)
    if task.prompt_length * np.log2(base) >= 63:
        raise ValueError(f"task = {task!r}; its prompts are too long for int64 ids")
    powers = base ** np.arange(task.prompt_length - 1, -1, -1, dtype=np.int64)
    return np.asarray(prompts, dtype=np.int64) @ powers


def build_dataset(count: int, seed: int = 0, task: Task = AdditionTask(2)) -> Dataset:
    """``count`` distinct problems of ``task`` drawn with ``numpy.random.default_rng(seed)``.

    Columns: ``prompt`` (str, space-separated words ending in ``=``), ``answer`` (str, the answer's
    words without the end token), ``prompt_id`` (int, ``prompt_ids``: the same for the same prompt
    whatever ``count`` and ``seed``), ``features`` (list of float, the task's ``features()`` values in
    their dict order; for ``AdditionTask``: a_digits, b_digits, answer_digits, carries; empty if the
    task has none).
    """
    count = check_integer(count, "count", minimum=1)
    problems = sample_unique(task, count, np.random.default_rng(seed))
    prompts = task.encode_prompts(problems)
    features = task_features(task, problems)
    matrix = (np.stack([np.asarray(values, dtype=np.float64) for values in features.values()], axis=1)
              if features else np.zeros((count, 0)))
    return Dataset.from_dict({
        "prompt": words(task, prompts),
        "answer": words(task, task.encode_answers(problems)),
        "prompt_id": prompt_ids(task, prompts).tolist(),
        "features": matrix.tolist(),
    })


def encode(task: Task, problems: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + answer token ids (tokenizer ids) and labels for supervised training or scoring:
    two int64 tensors (m, prompt_length + answer_length); labels are ``IGNORE`` except on the scored
    answer tokens (the answer and its end token)."""
    mapping = token_map(task)
    prompts = mapping[task.encode_prompts(problems)]
    answers = mapping[task.encode_answers(problems)]
    labels = np.where(task.answer_mask(problems), answers, IGNORE)
    prompt_labels = np.full_like(prompts, IGNORE)
    return (torch.from_numpy(np.concatenate([prompts, answers], axis=1)),
            torch.from_numpy(np.concatenate([prompt_labels, labels], axis=1)))


# ---------------------------------------------------------------------------------------------------
# The model and its cache

def train_tiny_model(config: TinyConfig) -> Qwen2ForCausalLM:
    """A fresh ``Qwen2ForCausalLM`` trained ``config.steps`` Adam steps on the answer tokens of freshly
    sampled problems (next-token cross-entropy, prompt tokens unscored).

    Deterministic: initialisation from ``torch.manual_seed(config.seed)`` inside a forked RNG (the
    caller's torch RNG is left as it was), data from ``numpy.random.default_rng(config.seed)``, one
    torch thread whatever the caller's setting (float sums over several threads are ordered
    differently and would give different weights).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _train(config)
    finally:
        torch.set_num_threads(threads)


def training_batch(task: Task, size: int, carry_share: float | None, rng: np.random.Generator) -> np.ndarray:
    """``size`` problems (size, w) drawn with ``rng``: as the task samples them if ``carry_share`` is
    None, else ``round(size * carry_share)`` with at least one carry (first) and the rest without."""
    if carry_share is None:
        return task.sample_problems(size, rng)
    with_carry = round(size * carry_share)
    pools: list[np.ndarray] = []
    counts = np.zeros(2, dtype=np.int64)  # problems drawn so far without / with a carry
    while counts[0] < size - with_carry or counts[1] < with_carry:
        problems = task.sample_problems(4 * size, rng)
        pools.append(problems)
        carried = task.features(problems)["carries"] > 0
        counts += [np.sum(~carried), np.sum(carried)]
    problems = np.concatenate(pools)
    carried = task.features(problems)["carries"] > 0
    return np.concatenate([problems[carried][:with_carry], problems[~carried][:size - with_carry]])


def _train(config: TinyConfig) -> Qwen2ForCausalLM:
    task = config.task
    model = Qwen2ForCausalLM(config.model_config(build_tokenizer(task)))
    model.train()
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    for _ in range(config.steps):
        input_ids, labels = encode(task, training_batch(task, config.batch_size, config.carry_share, rng))
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def cache_path(config: TinyConfig) -> Path:
    """The cache folder of ``config``'s model (it may not exist yet)."""
    return entry_path(CACHE_NAME, config.key())


def load_tiny_model(config: TinyConfig = TinyConfig()) -> Qwen2ForCausalLM:
    """The warm-started model for ``config`` in eval mode: read from the cache, or trained once and
    cached (a damaged cache entry is rebuilt, with a ``RuntimeWarning``)."""

    def write(model: Qwen2ForCausalLM, folder: Path) -> None:
        model.save_pretrained(folder)
        build_tokenizer(config.task).save_pretrained(folder)

    return load_or_build(CACHE_NAME, config.key(), repr(config), lambda: train_tiny_model(config), write,
                         lambda folder: Qwen2ForCausalLM.from_pretrained(folder, local_files_only=True).eval())


def load_tiny_policy(config: TinyConfig = TinyConfig()) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """``(load_tiny_model(config), build_tokenizer(config.task))``."""
    return load_tiny_model(config), build_tokenizer(config.task)


# ---------------------------------------------------------------------------------------------------
# Measuring

def success_rates(model: Qwen2ForCausalLM, dataset: Dataset, task: Task = AdditionTask(2),
                  chunk: int = 1024) -> np.ndarray:
    """Each row's exact probability, float64 (len(dataset),) in [0, 1], that sampling at temperature
    1.0 over the whole vocabulary (TRL's defaults: no top-k, top-p 1) emits exactly the answer's
    tokens and then ``<eos>``: the product of the teacher-forced next-token probabilities.

    This is the success probability of ``exact_answer_reward`` up to completions that interleave
    ``<pad>`` or ``<unk>`` (invisible after TRL's decoding; the trained model gives them almost no
    mass). Rows are read from the ``prompt`` and ``answer`` columns, so any dataset of ``task``
    written like ``build_dataset``'s works. ``chunk``: rows per forward pass.
    """
    tokenizer = build_tokenizer(task)
    texts = [f"{prompt} {answer} {EOS}" for prompt, answer in zip(dataset["prompt"], dataset["answer"])]
    prompt_lengths = np.array([len(prompt.split()) for prompt in dataset["prompt"]])
    rates = np.empty(len(texts))
    for start in range(0, len(texts), chunk):
        batch = tokenizer(texts[start:start + chunk], return_tensors="pt", padding=True)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attention,
                           position_ids=(attention.cumsum(1) - 1).clamp(min=0)).logits
        logprobs = torch.log_softmax(logits[:, :-1].double(), dim=-1).gather(2, ids[:, 1:, None])[..., 0]
        # A token is scored if it comes after the prompt: left padding puts the prompt's end at
        # (width - real length + prompt length) of each row.
        real = attention.sum(1).numpy()
        starts = ids.shape[1] - real + prompt_lengths[start:start + chunk]
        scored = torch.from_numpy(np.arange(1, ids.shape[1])[None, :] >= starts[:, None])
        rates[start:start + chunk] = torch.exp((logprobs * scored).sum(1)).numpy()
    return rates


def expected_zero_variance_share(rates, generations: int) -> float:
    """Expected share of zero-variance groups (all ``generations`` rollouts succeed or all fail) when
    every prompt with success rate in ``rates`` (float array (m,), in [0, 1]) is drawn equally often:
    mean of rate**n + (1 - rate)**n."""
    rates = np.asarray(rates, dtype=np.float64)
    return float(np.mean(rates**generations + (1.0 - rates) ** generations))
