"""The policy: a small causal transformer over the task's tokens, with the three things RL needs.

- ``sample``: completions at temperature 1 (the rollouts);
- ``token_logprobs``: log-probabilities of given completion tokens (the PPO ratio);
- ``exact_success_rate``: the probability that one temperature-1 sample is exactly correct, computed
  in one teacher-forced forward pass as the product of the answer tokens' and the end token's
  probabilities. Since the answer string is unique and sampling stops at EOS, this *is* the prompt's
  success rate, the ground truth every selector's prediction is measured against.

Every sequence is prompt (fixed length P) + completion (fixed length L, scored up to the first EOS),
so no attention mask or padding logic is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture. ``context``: longest sequence in tokens (prompt + completion)."""

    vocab_size: int
    context: int
    width: int = 96
    layers: int = 3
    heads: int = 4


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """``x`` float (m, T, width). With ``cache`` (a list, empty on the first call), keys and values
        are appended to it and ``x`` may be one new position attending to everything cached."""
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        # A single new query may see every cached key; a block of queries needs the causal mask.
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=length > 1)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class Policy(nn.Module):
    """GPT-style decoder: token + learned position embeddings, ``layers`` blocks, linear head."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(Block(config.width, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)

    def forward(self, tokens: torch.Tensor, caches: list[list] | None = None, offset: int = 0) -> torch.Tensor:
        """Next-token logits float (m, T, vocab) for ``tokens`` int64 (m, T) at positions
        ``offset .. offset + T - 1``; ``caches`` (one list per block) enables incremental decoding."""
        return self.head(self.hidden_states(tokens, caches, offset))

    def hidden_states(self, tokens: torch.Tensor, caches: list[list] | None = None, offset: int = 0) -> torch.Tensor:
        """Final (normalised) hidden states float (m, T, width), what the head reads; arguments as ``forward``."""
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)[None]
        for index, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[index])
        return self.norm(x)


def completion_logprobs(policy: Policy, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """Log-probability of each completion token given everything before it, float (m, L).

    ``prompts`` int64 (m, P), ``completions`` int64 (m, L). One forward pass over (m, P + L - 1).
    """
    length = completions.shape[1]
    sequence = torch.cat([prompts, completions[:, :-1]], dim=1)
    logits = policy(sequence)[:, -length:]
    return torch.log_softmax(logits.float(), dim=-1).gather(2, completions[:, :, None]).squeeze(2)


@torch.no_grad()
def sample(policy: Policy, prompts: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Completions int64 (m, length) sampled at temperature 1 from ``prompts`` int64 (m, P).

    Sampling continues past EOS for simplicity; the tokens after the first EOS are never scored.
    Keys and values are cached, so each new token costs one position's forward pass.
    """
    caches = [[] for _ in policy.blocks]
    logits = policy(prompts, caches)[:, -1]
    tokens = []
    for step in range(length):
        token = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=generator)
        tokens.append(token)
        if step + 1 < length:
            logits = policy(token, caches, offset=prompts.shape[1] + step)[:, -1]
    return torch.cat(tokens, dim=1)


@torch.no_grad()
def exact_success_rate(policy: Policy, prompts: torch.Tensor, answers: torch.Tensor, mask: torch.Tensor,
                       chunk: int = 4096) -> torch.Tensor:
    """Probability that one temperature-1 sample is exactly the answer, float64 (m,) in [0, 1].

    ``answers`` int64 (m, L): the correct completion (EOS-padded); ``mask`` bool (m, L): its scored
    tokens (digits and the first EOS). The product of those tokens' teacher-forced probabilities.
    """
    rates = []
    for start in range(0, len(prompts), chunk):
        stop = start + chunk
        logprobs = completion_logprobs(policy, prompts[start:stop], answers[start:stop])
        rates.append(torch.exp((logprobs * mask[start:stop]).sum(dim=1).double()))
    return torch.cat(rates).clamp(0.0, 1.0)
