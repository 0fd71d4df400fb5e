"""decodekit.generate through the transformers adapter (HFCausalLM, DynamicCache compaction, 4-D tree
masks) and transformers' own generate with decodekit drafters, on a small random-weight Llama built from a
config (no download)."""

from __future__ import annotations

import decodekit as dk
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch")
transformers = pytest.importorskip("transformers", reason="needs transformers")

from decodekit import drafters as dkd  # noqa: E402
from decodekit.generation import generate  # noqa: E402
from decodekit.hf import generate_with_drafter  # noqa: E402
from decodekit.models import HFCausalLM, as_causal_lm  # noqa: E402

DRAFTERS = ["prompt_lookup", "ngram_store", "recycling", "aded", "merged"]
PROMPT = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3]


def tiny_llama(seed: int) -> object:
    """A 2-layer random-weight Llama over 64 tokens (grouped-query attention)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def llama() -> object:
    return tiny_llama(0)


def hf_greedy(model: object, prompt: list[int], count: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(  # type: ignore[attr-defined]
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=count,
            min_new_tokens=count,
        )
    return list(out[0, len(prompt) :].tolist())


@pytest.mark.parametrize("drafter", [None, *DRAFTERS])
def test_generate_equals_transformers_greedy(llama: object, drafter: str | None) -> None:
    reference = hf_greedy(llama, PROMPT, 48)
    result = generate(llama, PROMPT, max_new_tokens=48, drafter=drafter, eos_token_id=[])
    assert result.tokens == reference
    if drafter is not None:
        assert sum(result.stats.accepted) > 0


def test_trees_with_branches_are_scored_and_compacted(llama: object) -> None:
    """A prompt-lookup drafter with wide trees: branching nodes need the 4-D mask and a cache compaction
    that moves slots, not just a crop."""
    drafter = dkd.PromptLookupDrafter(max_depth=4, max_nodes=16)
    result = generate(llama, PROMPT, max_new_tokens=48, drafter=drafter, eos_token_id=[])
    assert result.tokens == hf_greedy(llama, PROMPT, 48)
    wide = dk.TreeTemplate.balanced(24, 3, 4)
    recycling = dkd.RecyclingDrafter(k=4, template=wide)
    result = generate(llama, PROMPT, max_new_tokens=48, drafter=recycling, eos_token_id=[])
    assert result.tokens == hf_greedy(llama, PROMPT, 48)
    assert sum(result.stats.accepted) > 0


def test_keep_moves_accepted_slots(llama: object) -> None:
    lm = HFCausalLM(llama)
    cache = lm.new_cache()
    with torch.inference_mode():
        lm.forward(torch.arange(10)[None], torch.arange(10)[None], None, cache)
    before = [layer.keys.clone() for layer in cache.layers]
    slots = np.array([0, 1, 2, 3, 5, 8], dtype=np.int64)
    lm.keep(cache, slots)
    for layer, keys in zip(cache.layers, before, strict=True):
        assert layer.keys.shape[2] == 6
        torch.testing.assert_close(layer.keys, keys[:, :, slots])
    assert as_causal_lm(llama).vocab_size == 64


def test_tree_forwards_run_grouped_query_attention_on_the_kv_heads(
    llama: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HFCausalLM's masked multi-token forwards skip transformers' per-group copy of the cached keys and
    values (enable_gqa), give the same logits as the model's own sdpa path, and leave the config as it
    was."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa: list[bool] = []

    def recording(*args: object, **kwargs: object) -> object:
        gqa.append(bool(kwargs.get("enable_gqa", False)))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    tree = dk.DraftTree(np.array([5, 6, 7, 8, 9], dtype=np.int32), np.array([-1, 0, 0, 1, 1], dtype=np.int32))
    prefix = 10
    ids = torch.from_numpy(tree.tokens.astype(np.int64))[None]
    positions = torch.from_numpy(tree.positions(prefix).astype(np.int64))[None]
    mask = torch.from_numpy(tree.attention_mask_with_prefix(prefix))[None, None]
    lm = HFCausalLM(llama)
    logits = []
    for through_adapter in (True, False):
        cache = lm.new_cache()
        with torch.inference_mode():
            lm.prefill(torch.arange(prefix)[None], torch.arange(prefix)[None], cache)
            gqa.clear()
            if through_adapter:
                logits.append(lm.forward(ids, positions, mask, cache))
                assert gqa
                assert all(gqa), "every layer ran on the key/value heads"
            else:
                cache_argument = {lm._cache_argument: cache}
                out = llama(input_ids=ids, position_ids=positions, attention_mask=mask, **cache_argument)  # type: ignore[operator]
                logits.append(out.logits[0])
                assert gqa
                assert not any(gqa), "transformers' own path repeats the key/value heads"
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)
    assert llama.config._attn_implementation == "sdpa"  # type: ignore[attr-defined]


@pytest.mark.parametrize("drafter", DRAFTERS)
def test_transformers_generate_with_a_decodekit_drafter(llama: object, drafter: str) -> None:
    made = dkd.make_drafter(drafter)
    calls = []
    original = made.propose  # type: ignore[union-attr]

    def counting(tokens: list[int]) -> dk.DraftTree:
        tree = original(tokens)
        calls.append(tree.num_nodes)
        return tree

    made.propose = counting  # type: ignore[method-assign, union-attr]
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        out = generate_with_drafter(
            llama,
            ids,
            made,
            do_sample=False,
            max_new_tokens=48,
            min_new_tokens=48,
            attention_mask=torch.ones_like(ids),
        )
    assert out[0, len(PROMPT) :].tolist() == hf_greedy(llama, PROMPT, 48)
    # transformers asked the drafter each step, and fewer steps than tokens were needed
    assert 0 < len(calls) < 48
    assert max(calls) > 1


def test_sampling_through_the_adapter_is_reproducible(llama: object) -> None:
    a = generate(llama, PROMPT, max_new_tokens=24, temperature=0.9, top_p=0.9, seed=3, drafter="recycling")
    b = generate(llama, PROMPT, max_new_tokens=24, temperature=0.9, top_p=0.9, seed=3, drafter="recycling")
    assert a.tokens == b.tokens
    assert len(a.tokens) == 24 or a.finish_reason == "eos"


def test_prepack_linears_keeps_outputs() -> None:
    from decodekit.models import prepack_linears

    model = tiny_llama(1)
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        before = model(ids).logits
    assert prepack_linears(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer + the LM head
    with torch.inference_mode():
        after = model(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert generate(model, PROMPT, max_new_tokens=24, eos_token_id=[], drafter="merged").tokens == hf_greedy(
        model, PROMPT, 24
    )
    half = tiny_llama(1).to(torch.bfloat16)  # type: ignore[attr-defined]
    with pytest.raises(dk.InvalidInputError, match="float32 CPU weights"):
        prepack_linears(half)
