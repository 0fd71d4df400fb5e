"""`decodekit.hf.GrammarLogitsProcessor` inside `model.generate` (greedy, sampling, beam search, batches)
with a small random-weight Llama model over SmolLM2's real tokenizer."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import decodekit as dk
import numpy as np
import pytest
import vocabularies

torch = pytest.importorskip("torch", reason="the HF adapter tests need torch (the torch extra)")
transformers = pytest.importorskip("transformers")

from decodekit.hf import GrammarLogitsProcessor  # noqa: E402

PATTERN = r"\(?[0-9]{3}\)? [0-9]{3}-[0-9]{4}"
EOS = 2  # <|im_end|>
LOGITS_WIDTH = 49152 + 128  # wider than the tokenizer, as models often are: ids above 49151 are padding


@cache
def tokenizer() -> Any:
    tokenizers = pytest.importorskip("tokenizers")
    backend = tokenizers.Tokenizer.from_str(vocabularies.smollm2_tokenizer_json())
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


@cache
def model() -> Any:
    config = transformers.LlamaConfig(
        vocab_size=LOGITS_WIDTH,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        eos_token_id=EOS,
        pad_token_id=EOS,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def completions(output: Any, prompt_len: int) -> list[str]:
    vocab = dk.Vocabulary.from_hf(tokenizer())
    texts = []
    for row in output[:, prompt_len:].tolist():
        ids = row[: row.index(EOS)] if EOS in row else row
        texts.append(vocab.decode(ids).decode("utf-8"))
    return texts


@pytest.mark.parametrize(
    "options",
    [
        {"do_sample": False},
        {"do_sample": True, "top_k": 0, "temperature": 1.0},
        {"do_sample": False, "num_beams": 3},
    ],
    ids=["greedy", "sampling", "beam_search"],
)
def test_generate_follows_the_grammar(options: dict[str, Any]) -> None:
    prompts = tokenizer()(["Call me at", "My number, please:"], return_tensors="pt", padding=True)
    processor = GrammarLogitsProcessor(dk.Grammar.regex(PATTERN), tokenizer())
    torch.manual_seed(1)
    output = model().generate(
        **prompts,
        logits_processor=[processor],
        max_new_tokens=20,
        eos_token_id=EOS,
        pad_token_id=EOS,
        **options,
    )
    for text in completions(output, prompts["input_ids"].shape[1]):
        assert re.fullmatch(PATTERN, text), text
    assert EOS in output[0, prompts["input_ids"].shape[1] :].tolist()


def test_reordered_rows_roll_back() -> None:
    """Beam search reorders rows between steps; the processor must mask each row for its own history."""
    compiled = dk.Grammar.regex(PATTERN).compile(dk.Vocabulary.from_hf(tokenizer(), size=LOGITS_WIDTH))
    processor = GrammarLogitsProcessor(compiled, tokenizer())
    digits = [tokenizer().convert_tokens_to_ids(d) for d in "0123456789"]
    prompt = torch.tensor([[5, 6], [5, 6]])
    scores = torch.zeros((2, LOGITS_WIDTH))
    processor(prompt, scores.clone())
    histories = [[digits[1], digits[2]], [digits[3]]]
    step = torch.tensor([[5, 6, *histories[0]], [5, 6, histories[1][0], digits[4]]])
    first = processor(step, scores.clone())
    swapped = processor(step.flip(0), scores.clone())
    assert torch.equal(first.flip(0), swapped)
    for row, ids in enumerate(step[:, 2:].tolist()):
        matcher = dk.Matcher(compiled)
        assert matcher.accept_tokens(ids) == len(ids)
        mask = dk.allocate_token_bitmask(1, LOGITS_WIDTH)
        matcher.fill_next_token_bitmask(mask)
        allowed = dk.bitmask_to_ids(mask[0], LOGITS_WIDTH)
        assert np.array_equal(np.flatnonzero(np.isfinite(first[row].numpy())), allowed)
    broken = processor(torch.tensor([[5, 6, tokenizer().convert_tokens_to_ids("a")]]), scores[:1].clone())
    assert np.flatnonzero(np.isfinite(broken[0].numpy())).tolist() == [EOS]
