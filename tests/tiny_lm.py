"""A small plain-torch transformer that implements :class:`decodekit.models.CausalLM` by hand.

It exists to test the protocol and :func:`decodekit.generate` without transformers: learned token and
position embeddings, pre-norm blocks of multi-head attention over a per-layer key/value cache plus an MLP,
random weights from a seed. ``full_logits(ids)`` scores a whole sequence without any cache (plain causal
attention), the reference the cached tree forwards must agree with.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, layer_cache: list[torch.Tensor]) -> torch.Tensor:
        n, width = x.shape
        head_dim = width // self.heads
        q, k, v = self.qkv(self.norm1(x)).view(n, 3, self.heads, head_dim).unbind(1)
        layer_cache[0] = torch.cat([layer_cache[0], k])
        layer_cache[1] = torch.cat([layer_cache[1], v])
        keys, values = layer_cache
        scores = torch.einsum("qhd,khd->hqk", q, keys) / math.sqrt(head_dim) + mask
        attended = torch.einsum("hqk,khd->qhd", scores.softmax(-1), values).reshape(n, width)
        x = x + self.out(attended)
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A random-weight causal LM over ``vocab_size`` tokens implementing the CausalLM protocol."""

    def __init__(
        self,
        vocab_size: int = 8,
        width: int = 32,
        heads: int = 2,
        layers: int = 2,
        max_positions: int = 256,
        seed: int = 0,
        logit_scale: float = 3.0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self._vocab_size = vocab_size
        self.logit_scale = logit_scale
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(max_positions, width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        self.eval()

    @property
    def vocab_size(self) -> int:
        """The logits width."""
        return self._vocab_size

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.head.weight.device

    def new_cache(self) -> list[list[torch.Tensor]]:
        """One ``[keys, values]`` pair of ``[slots, heads, head_dim]`` tensors per layer."""
        width = self.embed.embedding_dim
        heads = self.blocks[0].heads if len(self.blocks) else 1
        empty = torch.zeros(0, heads, width // heads)
        return [[empty, empty] for _ in self.blocks]

    def cached(self, cache: list[list[torch.Tensor]]) -> int:
        """How many slots the cache holds."""
        return int(cache[0][0].shape[0]) if cache else 0

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: Any, cache: Any
    ) -> torch.Tensor:
        """Score ``input_ids`` ``[1, n]`` after the cache; appends to the cache; logits ``[n, V]``."""
        n = input_ids.shape[1]
        total = self.cached(cache) + n
        if attention_mask is None:
            mask = torch.full((n, total), -math.inf).triu(total - n + 1)
        else:
            assert tuple(attention_mask.shape) == (1, 1, n, total), attention_mask.shape
            mask = attention_mask[0, 0].to(torch.float32)
        x = self.embed(input_ids[0]) + self.position(position_ids[0])
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x = block(x, mask, layer_cache)
        return self.head(self.norm(x)) * self.logit_scale

    def keep(self, cache: list[list[torch.Tensor]], slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots`` of every layer."""
        index = torch.from_numpy(np.asarray(slots, dtype=np.int64))
        for layer_cache in cache:
            layer_cache[0] = layer_cache[0].index_select(0, index)
            layer_cache[1] = layer_cache[1].index_select(0, index)

    def full_logits(self, ids: list[int]) -> torch.Tensor:
        """Logits ``[len(ids), V]`` of the whole sequence with no cache reuse (the reference)."""
        with torch.inference_mode():
            positions = torch.arange(len(ids))[None]
            return self.forward(torch.tensor([ids]), positions, None, self.new_cache())


LOSSLESS_PROMPT = [1, 2, 3, 1, 2, 3, 4, 1, 2]
LOSSLESS_TOKENS = 3


def lossless_model() -> TinyLM:
    """The model of the losslessness test: 8 tokens, one small layer (cheap enough for 10^5 runs)."""
    return TinyLM(vocab_size=8, width=16, heads=2, layers=1, seed=7, logit_scale=2.0)


def exact_first_tokens(model: TinyLM, prompt: list[int], count: int) -> dict[tuple[int, ...], float]:
    """P(first ``count`` generated tokens) by enumerating every continuation with uncached forwards."""
    probs: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(count):
        grown: dict[tuple[int, ...], float] = {}
        for prefix, p in probs.items():
            row = torch.softmax(model.full_logits(prompt + list(prefix))[-1].double(), -1).tolist()
            for token, q in enumerate(row):
                grown[(*prefix, token)] = p * q
        probs = grown
    return probs


def sample_first_tokens(drafter_name: str | None, seeds: range) -> tuple[dict[tuple[int, ...], int], int]:
    """Counts of the first tokens of ``generate`` (temperature 1) over ``seeds``, and the total number of
    draft tokens accepted; a worker of the losslessness test (one drafter object reused across runs)."""
    from decodekit.drafters import make_drafter
    from decodekit.generation import generate

    torch.set_num_threads(1)
    model = lossless_model()
    drafter = make_drafter(drafter_name)
    counts: dict[tuple[int, ...], int] = {}
    accepted = 0
    for seed in seeds:
        result = generate(
            model,
            LOSSLESS_PROMPT,
            max_new_tokens=LOSSLESS_TOKENS,
            temperature=1.0,
            seed=seed,
            drafter=drafter,
        )
        key = tuple(result.tokens)
        counts[key] = counts.get(key, 0) + 1
        accepted += sum(result.stats.accepted)
    return counts, accepted
