"""A tiny causal LM saved to a folder, built from a config and a local word-level tokenizer (no Hub).

The tokenizer's vocabulary is the whitespace-separated words of the texts it will see, so every
prompt maps to distinct tokens; an optional chat template wraps messages in ``<|role|>`` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

SPECIAL = ["<pad>", "<eos>", "<unk>"]
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def word_tokenizer(texts, chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the words of ``texts`` plus specials and role markers."""
    words = sorted({word for text in texts for word in text.split()} - set(SPECIAL) - set(ROLES))
    vocab = {token: index for index, token in enumerate(SPECIAL + ROLES + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_lm(path, tokenizer, architecture: str = "qwen2", seed: int = 0):
    """A random 2-layer causal LM (hidden size 32) and ``tokenizer`` saved with save_pretrained to ``path``."""
    torch.manual_seed(seed)
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=256,
                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if architecture == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
