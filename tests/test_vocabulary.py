"""Vocabularies: token bytes equal each tokenizer's own decode on four real vocabularies; bad files fail."""

from __future__ import annotations

import json
import pickle

import decodekit as dk
import numpy as np
import pytest
import vocabularies

EXPECTED = {
    # name: (num_tokens, eos ids)
    "gpt2": (50257, [50256]),
    "llama3": (128256, [128001, 128008, 128009]),
    "qwen": (151851, [151643, 151645]),
    "smollm2": (49152, [2]),
}


@pytest.mark.parametrize("name", vocabularies.NAMES)
def test_token_bytes_equal_the_tokenizers_decode(name: str) -> None:
    real = vocabularies.load(name)
    vocab = real.vocab
    num_tokens, eos = EXPECTED[name]
    assert (vocab.num_tokens, vocab.size, vocab.eos_ids) == (num_tokens, num_tokens, eos)
    text_decoder = name == "smollm2"  # tokenizers decodes to str (invalid UTF-8 becomes U+FFFD)

    def ours(ids: list[int]) -> bytes | str:
        data = vocab.decode(np.asarray(ids, dtype=np.int32))
        return data.decode("utf-8", errors="replace") if text_decoder else data

    # Every id on its own ...
    mismatches = [i for i in range(num_tokens) if ours([i]) != real.decode([i])]
    assert mismatches == [], f"{len(mismatches)} ids differ, first {mismatches[:5]}"
    # ... and random sequences, where partial UTF-8 tokens join up.
    rng = np.random.default_rng(7)
    for _ in range(300):
        ids = rng.integers(0, num_tokens, size=int(rng.integers(1, 24))).tolist()
        assert ours(ids) == real.decode(ids), ids


def test_special_tokens_are_marked() -> None:
    llama = vocabularies.load("llama3").vocab
    assert llama.special_ids == list(range(128000, 128256))
    assert llama.token_bytes(128009) == b"<|eot_id|>"
    smol = vocabularies.load("smollm2").vocab
    assert 0 in smol.special_ids
    assert 2 in smol.special_ids
    assert 200 not in smol.special_ids
    assert smol.token_bytes(smol.num_tokens - 1) != b""


def test_from_hf_reads_a_fast_tokenizer() -> None:
    transformers = pytest.importorskip("transformers")
    text = vocabularies.smollm2_tokenizer_json()
    tokenizers = pytest.importorskip("tokenizers")
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer.from_str(text), eos_token="<|im_end|>"
    )
    vocab = dk.Vocabulary.from_hf(hf, size=49280)
    assert (vocab.num_tokens, vocab.size, vocab.eos_ids) == (49152, 49280, [2])
    assert vocab.decode([hf.convert_tokens_to_ids("Ġhello")]) == b" hello"
    with pytest.raises(dk.VocabularyError, match="fast tokenizer"):
        dk.Vocabulary.from_hf(object())


def test_from_tokens_and_pickle_round_trip() -> None:
    vocab = dk.Vocabulary.from_tokens(
        [b"a", None, b"bc", b"<s>", b"</s>"], eos_ids=[4], special_ids=[3], size=70
    )
    assert (vocab.num_tokens, vocab.size, len(vocab)) == (5, 70, 70)
    assert vocab.special_ids == [3, 4]
    assert vocab.eos_ids == [4]
    assert vocab.token_bytes(1) == b""
    assert vocab.token_bytes(69) == b""
    again = pickle.loads(pickle.dumps(vocab))
    assert [again.token_bytes(i) for i in range(70)] == [vocab.token_bytes(i) for i in range(70)]
    assert (again.size, again.eos_ids, again.special_ids) == (70, [4], [3, 4])
    assert repr(vocab) == "Vocabulary(num_tokens=5, size=70, eos_ids=[4], special=2)"


def test_padding_and_unused_ids_are_never_allowed() -> None:
    vocab = dk.Vocabulary.from_tokens([b"a", None, b"b", b"</s>"], eos_ids=[3], size=100)
    compiled = dk.Grammar.regex("(?s:.*)").compile(vocab)
    matcher = dk.Matcher(compiled)
    mask = dk.allocate_token_bitmask(1, 100)
    matcher.fill_next_token_bitmask(mask)
    assert dk.bitmask_to_ids(mask[0]).tolist() == [0, 2, 3]
    assert not matcher.accept_token(1)
    assert not matcher.accept_token(99)
    with pytest.raises(dk.InvalidInputError, match="out of range"):
        matcher.accept_token(100)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("{}", 'no "model"'),
        ('{"model": {"type": "WordPiece", "vocab": {"a": 0}}}', "WordPiece"),
        ('{"model": {"type": "BPE", "vocab": {"a": -1}}}', "invalid id"),
        ('{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 1}]}', "needs an integer"),
        ('{"model": {"type": "BPE", "vocab": ["a"]}}', "must be an object"),
        (
            '{"model": {"type": "BPE", "vocab": {"\\u4e00": 0}}, "decoder": {"type": "ByteLevel"},'
            ' "added_tokens": [{"id": 1, "content": "</s>", "special": true}]}',
            "GPT-2 byte map",
        ),
        ('{"model": {"type": "BPE", "vocab": {"a": 0}}}', "no EOS token"),
    ],
)
def test_malformed_tokenizer_json(text: str, message: str) -> None:
    with pytest.raises(dk.VocabularyError, match=message):
        dk.Vocabulary.from_tokenizer_json(text)


def test_tokenizer_json_names_eos_and_checks_size(tmp_path: object) -> None:
    doc = {
        "model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["\u2581a", -1.0], ["<0x0A>", -2.0]]},
        "added_tokens": [{"id": 3, "content": "<eos>", "special": True}],
        "decoder": {"type": "Metaspace", "replacement": "\u2581"},
    }
    text = json.dumps(doc)
    vocab = dk.Vocabulary.from_tokenizer_json(text, eos_tokens=["<eos>"])
    assert vocab.decode([1, 2]) == b" a<0x0A>"  # no byte fallback declared: <0x0A> is literal text
    doc["model"]["byte_fallback"] = True  # type: ignore[index]
    vocab = dk.Vocabulary.from_tokenizer_json(json.dumps(doc))
    assert vocab.decode([1, 2]) == b" a\n"
    with pytest.raises(dk.VocabularyError, match="not among"):
        dk.Vocabulary.from_tokenizer_json(text, eos_tokens=["</s>"])
    with pytest.raises(dk.VocabularyError, match="smaller than"):
        dk.Vocabulary.from_tokenizer_json(text, size=2)
    with pytest.raises(FileNotFoundError):
        dk.Vocabulary.from_tokenizer_json("/nonexistent/tokenizer.json")


@pytest.mark.parametrize(
    ("content", "special", "message"),
    [
        (b"YQ== 0\n!!! 1\n", {"<|endoftext|>": 2}, "line 2: the token is not valid base64"),
        (b"YQ== 0\nYg== x\n", {"<|endoftext|>": 2}, "line 2: the rank"),
        (b"YQ== 0\nYg== 0\n", {"<|endoftext|>": 2}, "rank 0 appears twice"),
        (b"YQ== 0\nYg== 1 2\n", {"<|endoftext|>": 2}, "line 2: expected"),
        (b"YQ== 0\nYg== 1\n", {"<|endoftext|>": 1}, "already uses"),
        (b"YQ== 0\n", {"<|endoftext|>": -1}, "invalid id"),
        (b"\n\n", {}, "no tokens"),
        (b"YQ== 0\n", {"<x>": 1}, "no EOS token"),
    ],
)
def test_malformed_tiktoken(tmp_path: object, content: bytes, special: dict[str, int], message: str) -> None:
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    path = tmp_path / "bad.tiktoken"
    path.write_bytes(content)
    with pytest.raises(dk.VocabularyError, match=message):
        dk.Vocabulary.from_tiktoken(path, special)


def test_from_tokens_rejects_bad_ids() -> None:
    with pytest.raises(dk.VocabularyError, match="out of range"):
        dk.Vocabulary.from_tokens([b"a"], eos_ids=[3])
    with pytest.raises(dk.VocabularyError, match="unused id"):
        dk.Vocabulary.from_tokens([b"a", None], eos_ids=[1])
    with pytest.raises(dk.VocabularyError, match="negative"):
        dk.Vocabulary.from_tokens([b"a"], eos_ids=[-1])
    with pytest.raises(dk.VocabularyError, match="no tokens"):
        dk.Vocabulary.from_tokens([], eos_ids=[])
