"""Regex grammars: masks are sound and complete against a brute-force reference on real vocabularies and
on random regexes; rollback, copy, batching, forced tokens and bad input."""

from __future__ import annotations

import re
import threading
from functools import cache

import decodekit as dk
import numpy as np
import pytest
import reference
import vocabularies
from hypothesis import given
from hypothesis import strategies as st

# name: (pattern, strings of the language that the tests walk token by token)
CORPUS: dict[str, tuple[str, list[str]]] = {
    "integer": (r"-?(0|[1-9][0-9]*)", ["-120", "0", "98765432"]),
    "decimal": (r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][+-]?[0-9]+)?", ["3.14159", "-0.5e-10"]),
    "date": (r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", ["2026-11-28"]),
    "timestamp": (
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
        ["2026-11-28T09:33:28.123Z", "1999-01-01T00:00:00+05:30"],
    ),
    "email": (
        r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}",
        ["jane.doe+spam@mail.example.org"],
    ),
    "uuid": (
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ["123e4567-e89b-12d3-a456-426614174000"],
    ),
    "identifier": (r"[A-Za-z_][A-Za-z0-9_]*", ["snake_case_name2", "X"]),
    "quoted": (
        r'"([^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"',
        ['"say \\"hi\\" \u2014 caf\u00e9 \u65e5\u672c\\n"'],
    ),
    "keywords": (r"(true|false|null|none|nothing)", ["null", "nothing"]),
    "sentence": (r"(The answer is|Answer:) (yes|no)\.", ["The answer is yes.", "Answer: no."]),
}


@cache
def greedy_index(name: str) -> tuple[dict[bytes, int], int]:
    vocab = vocabularies.load(name).vocab
    special = set(vocab.special_ids)
    index: dict[bytes, int] = {}
    for i in range(vocab.num_tokens):
        token = vocab.token_bytes(i)
        if token and i not in special:
            index.setdefault(token, i)
    return index, max(len(t) for t in index)


def greedy_tokenize(name: str, data: bytes) -> list[int]:
    """Longest-match tokenization (not BPE; any tokenization of a language string works for the walk)."""
    index, longest = greedy_index(name)
    out, pos = [], 0
    while pos < len(data):
        for length in range(min(longest, len(data) - pos), 0, -1):
            if data[pos : pos + length] in index:
                out.append(index[data[pos : pos + length]])
                pos += length
                break
        else:
            raise AssertionError(f"no token for {data[pos:]!r}")
    return out


@cache
def all_token_bytes(name: str) -> list[bytes]:
    vocab = vocabularies.load(name).vocab
    return [vocab.token_bytes(i) for i in range(vocab.num_tokens)]


def mask_ids(matcher: dk.Matcher, size: int) -> set[int]:
    mask = dk.allocate_token_bitmask(1, size)
    matcher.fill_next_token_bitmask(mask)
    return set(dk.bitmask_to_ids(mask[0], size).tolist())


@cache
def compiled_grammar(name: str, pattern: str) -> dk.CompiledGrammar:
    return dk.Grammar.regex(pattern).compile(vocabularies.load(name).vocab)


@pytest.mark.parametrize("vocab_name", ["gpt2", "llama3"])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_masks_are_sound_and_complete_on_real_vocabularies(vocab_name: str, case: str) -> None:
    pattern, examples = CORPUS[case]
    vocab = vocabularies.load(vocab_name).vocab
    token_bytes = all_token_bytes(vocab_name)
    special, eos = set(vocab.special_ids), set(vocab.eos_ids)
    compiled = compiled_grammar(vocab_name, pattern)
    for example in examples:
        assert re.fullmatch(pattern, example)
        tokens = greedy_tokenize(vocab_name, example.encode())
        matcher = dk.Matcher(compiled)
        prefix = b""
        # The brute force costs a pass over the vocabulary per prefix: check at most 6 prefixes per string,
        # always including the empty one and the complete string.
        steps = sorted({0, len(tokens), *np.linspace(0, len(tokens), 6).astype(int).tolist()})
        for step, token in enumerate([*tokens, None]):
            if step in steps:
                expected = reference.regex_allowed_tokens(pattern, token_bytes, special, eos, prefix)
                got = mask_ids(matcher, vocab.size)
                assert got == expected, (
                    f"{case} after {prefix!r}: extra {sorted(got - expected)[:5]}, "
                    f"missing {sorted(expected - got)[:5]}"
                )
            if token is not None:
                assert matcher.accept_token(token)
                prefix += token_bytes[token]
        assert matcher.is_accepting()
        assert not matcher.is_terminated()
        assert matcher.accept_token(vocab.eos_ids[0])
        assert matcher.is_terminated()
        assert mask_ids(matcher, vocab.size) == eos


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_masks_at_random_prefixes_of_the_language(case: str) -> None:
    """Prefixes drawn at random: each step takes a uniformly random allowed token (never EOS), so the text
    stays a prefix of the language, and the mask is checked against the brute force along the way."""
    pattern, _ = CORPUS[case]
    vocab = vocabularies.load("gpt2").vocab
    token_bytes = all_token_bytes("gpt2")
    special, eos = set(vocab.special_ids), set(vocab.eos_ids)
    matcher = dk.Matcher(compiled_grammar("gpt2", pattern))
    rng = np.random.default_rng(sum(map(ord, case)))
    prefix = b""
    for step in range(9):
        allowed = mask_ids(matcher, vocab.size)
        if step % 3 == 2:
            expected = reference.regex_allowed_tokens(pattern, token_bytes, special, eos, prefix)
            assert allowed == expected, f"{case} after {prefix!r}"
        choices = sorted(allowed - eos)
        if not choices:
            break
        token = choices[int(rng.integers(len(choices)))]
        assert matcher.accept_token(token)
        prefix += token_bytes[token]


# --- random regexes over a small vocabulary --------------------------------------------------------------

SMALL_TOKENS: list[bytes] = [
    *(bytes([c]) for c in b"abc\n"),
    *(bytes(p) for p in [b"ab", b"ba", b"cc", b"abc", b"bca", b"aaa", b"a\n"]),
    "\u00e9".encode(),
    "\u00e9".encode()[:1],
    "\u00e9".encode()[1:],
    b"a" + "\u00e9".encode()[:1],
    "\u65e5".encode()[:2],
    b"<s>",
    b"</s>",
]
SMALL_SPECIAL = {len(SMALL_TOKENS) - 2, len(SMALL_TOKENS) - 1}
SMALL_EOS = {len(SMALL_TOKENS) - 1}


@cache
def small_vocab() -> dk.Vocabulary:
    return dk.Vocabulary.from_tokens(
        SMALL_TOKENS, eos_ids=sorted(SMALL_EOS), special_ids=sorted(SMALL_SPECIAL)
    )


def regexes() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(["a", "b", "c", "\u00e9", ".", "[ab]", "[^a]", "(?:)", "\\n", "[a-c\u00e9]"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}{p[1]})"),
            st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
            st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}"])).map(
                lambda p: f"(?:{p[0]}){p[1]}"
            ),
        )

    return st.recursive(atoms, extend, max_leaves=8)


@given(pattern=regexes(), choices=st.lists(st.integers(0, 10**6), max_size=8))
def test_random_regexes_match_the_brute_force(pattern: str, choices: list[int]) -> None:
    vocab = small_vocab()
    matcher = dk.Matcher(dk.Grammar.regex(pattern).compile(vocab))
    prefix = b""
    for choice in [*choices, None]:
        expected = reference.regex_allowed_tokens(pattern, SMALL_TOKENS, SMALL_SPECIAL, SMALL_EOS, prefix)
        got = mask_ids(matcher, vocab.size)
        assert got == expected, (pattern, prefix)
        assert matcher.is_accepting() == bool(expected & SMALL_EOS)
        for token in range(vocab.size):
            assert matcher.is_allowed(token) == (token in expected)
        if choice is None or not expected:
            break
        token = sorted(expected)[choice % len(expected)]
        assert matcher.accept_token(token)
        if token in SMALL_EOS:
            assert matcher.is_terminated()
            break
        prefix += SMALL_TOKENS[token]


def test_empty_language_and_anchors() -> None:
    with pytest.raises(dk.GrammarError, match="matches no string"):
        dk.Grammar.regex("a^b")
    vocab = small_vocab()
    anchored = dk.Matcher(dk.Grammar.regex("^ab$").compile(vocab))
    assert anchored.accept_tokens([0, 1]) == 2
    assert anchored.is_accepting()
    dead_end = dk.Matcher(dk.Grammar.regex("a$b|c").compile(vocab))
    assert not dead_end.accept_token(0)  # "a" can never be completed


# --- matcher state ----------------------------------------------------------------------------------------


@given(data=st.data())
def test_rollback_then_reaccept_gives_identical_masks(data: st.DataObject) -> None:
    vocab = vocabularies.load("gpt2").vocab
    compiled = compiled_grammar("gpt2", CORPUS["quoted"][0])
    matcher = dk.Matcher(compiled)
    text = data.draw(st.sampled_from(['"a\\"b\u00e9c"', '"\\u12aF xyz"', '""', '"long text, with words"']))
    tokens = greedy_tokenize("gpt2", text.encode())
    masks = []
    for token in tokens:
        masks.append(mask_ids(matcher, vocab.size))
        assert matcher.accept_token(token)
    masks.append(mask_ids(matcher, vocab.size))
    n = data.draw(st.integers(0, len(tokens)))
    matcher.rollback(n)
    assert matcher.num_tokens == len(tokens) - n
    assert mask_ids(matcher, vocab.size) == masks[len(tokens) - n]
    assert matcher.accept_tokens(tokens[len(tokens) - n :]) == n
    assert mask_ids(matcher, vocab.size) == masks[-1]


def test_copy_is_independent_and_reset_restarts() -> None:
    vocab = small_vocab()
    matcher = dk.Matcher(dk.Grammar.regex("(ab)+").compile(vocab))
    assert matcher.accept_token(4)  # "ab"
    clone = matcher.copy()
    assert clone.accept_token(4)
    assert (matcher.num_tokens, clone.num_tokens) == (1, 2)
    clone.rollback(2)
    assert matcher.num_tokens == 1
    assert matcher.is_accepting()
    assert not clone.is_accepting()
    matcher.reset()
    assert matcher.num_tokens == 0
    assert not matcher.is_accepting()
    with pytest.raises(dk.InvalidInputError, match="only 0 have been accepted"):
        matcher.rollback(1)
    assert not matcher.accept_token(0) or matcher.num_tokens == 1


def test_forced_tokens_on_llama3() -> None:
    vocab = vocabularies.load("llama3").vocab
    compiled = dk.Grammar.regex(r'\{"name": "[a-z]+", "age": [0-9]+\}').compile(vocab)
    matcher = dk.Matcher(compiled)
    assert matcher.forced_bytes() == b'{"name": "'
    forced = matcher.forced_tokens()
    spelled = vocab.decode(forced)
    assert forced
    assert b'{"name": "'.startswith(spelled)
    assert matcher.accept_tokens(forced) == len(forced)
    assert matcher.accept_tokens(greedy_tokenize("llama3", b'{"name": "'[len(spelled) :] + b"bob")) > 0
    assert matcher.forced_bytes() == b""  # more letters or the closing quote: a choice
    assert matcher.accept_tokens(greedy_tokenize("llama3", b'"')) == 1
    assert matcher.forced_bytes() == b', "age": '
    assert vocab.decode(matcher.forced_tokens()) in {b', "age": ', b', "age":'}


# --- batches and bitmask application ------------------------------------------------------------------


def test_batch_fill_equals_sequential_fills() -> None:
    vocab = vocabularies.load("gpt2").vocab
    matchers = []
    for i, case in enumerate(sorted(CORPUS)):
        pattern, examples = CORPUS[case]
        matcher = dk.Matcher(compiled_grammar("gpt2", pattern))
        tokens = greedy_tokenize("gpt2", examples[0].encode())
        matcher.accept_tokens(tokens[: i % (len(tokens) + 1)])
        matchers.append(matcher)
    matchers[0].accept_tokens(greedy_tokenize("gpt2", CORPUS[sorted(CORPUS)[0]][1][0].encode()))
    matchers[0].accept_token(vocab.eos_ids[0])
    expected = dk.allocate_token_bitmask(len(matchers), vocab.size)
    for row, matcher in enumerate(matchers):
        matcher.fill_next_token_bitmask(expected, row)
    batch = dk.allocate_token_bitmask(len(matchers) + 2, vocab.size)
    dk.set_num_threads(2)
    try:
        dk.fill_next_token_bitmask_batch(matchers, batch)
    finally:
        dk.set_num_threads(0)
    np.testing.assert_array_equal(batch[: len(matchers)], expected)
    assert (batch[len(matchers) :] == -1).all()  # rows without a matcher are untouched


def test_raw_pointer_fill_equals_the_array_fill() -> None:
    vocab = vocabularies.load("gpt2").vocab
    compiled = dk.Grammar.regex(CORPUS["email"][0]).compile(vocab, precompute=False)
    matcher = dk.Matcher(compiled)
    tokens = greedy_tokenize("gpt2", CORPUS["email"][1][0].encode())
    row = np.zeros(vocab.size // 32 + 3, dtype=np.int32)  # wider than needed: the extra words are cleared
    expected = dk.allocate_token_bitmask(1, vocab.size)
    for token in [*tokens, None]:
        row[:] = -1
        matcher.unsafe_fill_next_token_bitmask_ptr(row.ctypes.data, row.size)  # first visits walk the trie
        matcher.fill_next_token_bitmask(expected)
        np.testing.assert_array_equal(row[: expected.shape[1]], expected[0])
        assert (row[expected.shape[1] :] == 0).all()
        if token is not None:
            assert matcher.accept_token(token)
    with pytest.raises(dk.InvalidInputError, match="null or not 4-byte aligned"):
        matcher.unsafe_fill_next_token_bitmask_ptr(0, row.size)
    with pytest.raises(dk.InvalidInputError, match="null or not 4-byte aligned"):
        matcher.unsafe_fill_next_token_bitmask_ptr(row.ctypes.data + 2, row.size)
    with pytest.raises(dk.InvalidInputError, match="needs ceil"):
        matcher.unsafe_fill_next_token_bitmask_ptr(row.ctypes.data, 10)


def test_apply_token_bitmask_numpy() -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((3, 70)).astype(np.float32)
    bitmask = rng.integers(-(2**31), 2**31, size=(3, 3), dtype=np.int64).astype(np.int32)
    expected = logits.copy()
    for row in range(3):
        allowed = set(dk.bitmask_to_ids(bitmask[row], 70).tolist())
        expected[row, [t for t in range(70) if t not in allowed]] = -np.inf
    dk.apply_token_bitmask(logits, bitmask)
    np.testing.assert_array_equal(logits, expected)
    one = rng.standard_normal(40).astype(np.float32)
    dk.apply_token_bitmask(one, np.array([0, 1], dtype=np.int32))
    assert np.isfinite(one).tolist() == [False] * 32 + [True] + [False] * 7


def test_apply_token_bitmask_torch() -> None:
    torch = pytest.importorskip("torch")
    import decodekit.torch as dkt

    rng = np.random.default_rng(4)
    bitmask = rng.integers(-(2**31), 2**31, size=(2, 2), dtype=np.int64).astype(np.int32)
    base = torch.from_numpy(rng.standard_normal((2, 50)).astype(np.float32))
    expected = base.numpy().copy()
    dk.apply_token_bitmask(expected, bitmask)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        logits = base.to(dtype)
        dkt.apply_token_bitmask_(logits, bitmask)
        assert torch.equal(torch.isinf(logits), torch.from_numpy(np.isinf(expected)))
    transposed = base.t().contiguous().t()  # not contiguous: takes the torch path
    dkt.apply_token_bitmask_(transposed, torch.from_numpy(bitmask))
    assert torch.equal(torch.isinf(transposed), torch.from_numpy(np.isinf(expected)))
    with pytest.raises(dk.InvalidInputError, match="int32"):
        dkt.apply_token_bitmask_(base, bitmask.astype(np.int64))
    with pytest.raises(dk.InvalidInputError, match="does not cover"):
        dkt.apply_token_bitmask_(base, bitmask[:, :1])


def test_compiled_grammar_is_shared_across_threads() -> None:
    vocab = vocabularies.load("gpt2").vocab
    compiled = dk.Grammar.regex(CORPUS["email"][0]).compile(vocab, precompute=False)
    tokens = greedy_tokenize("gpt2", CORPUS["email"][1][0].encode())
    results: list[list[set[int]]] = []

    def walk() -> None:
        matcher = dk.Matcher(compiled)
        masks = []
        for token in tokens:
            masks.append(mask_ids(matcher, vocab.size))
            matcher.accept_token(token)
        results.append(masks)

    threads = [threading.Thread(target=walk) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert 0 < compiled.num_cached_masks <= compiled.num_states


def test_precompute_fills_every_state() -> None:
    vocab = small_vocab()
    grammar = dk.Grammar.regex("[a-c]{2,5}")
    assert grammar.compile(vocab, precompute=True).num_cached_masks == grammar.num_states
    assert grammar.compile(vocab, precompute=False).num_cached_masks == 0


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("ab(c", "line 1, column 3"),
        ("x{3,1}", "invalid regex at line 1"),
        ("a(?=b)", "look-around"),
        ("a(?<!b)", "look-around"),
        (r"(a)\1", "backreferences"),
        (r"\bword\b", "word-boundary"),
        ("(?m)^a$", "multi-line anchors"),
    ],
)
def test_regex_errors_name_the_problem(pattern: str, message: str) -> None:
    with pytest.raises(dk.GrammarError, match=re.escape(message)):
        dk.Grammar.regex(pattern)


def test_resource_limits() -> None:
    with pytest.raises(dk.ResourceLimitError, match="max_states"):
        dk.Grammar.regex("[a-z]{1,300}", max_states=100)
    with pytest.raises(dk.ResourceLimitError, match="max_automaton_bytes"):
        dk.Grammar.regex(r"\w{30}", max_automaton_bytes=100_000)
    assert dk.Grammar.regex("[a-z]{1,300}").num_states > 100


def test_bad_bitmasks() -> None:
    vocab = small_vocab()
    matcher = dk.Matcher(dk.Grammar.regex("a+").compile(vocab))
    with pytest.raises(dk.InvalidInputError, match="int32"):
        matcher.fill_next_token_bitmask(np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(dk.InvalidInputError, match="needs ceil"):
        matcher.fill_next_token_bitmask(np.zeros((1, 0), dtype=np.int32))
    with pytest.raises(dk.InvalidInputError, match="row 2 is out of range"):
        matcher.fill_next_token_bitmask(np.zeros((2, 1), dtype=np.int32), row=2)
    with pytest.raises(dk.InvalidInputError, match="1-D"):
        matcher.fill_next_token_bitmask(np.zeros((1, 1, 1), dtype=np.int32))
    with pytest.raises(dk.InvalidInputError, match="C-contiguous"):
        matcher.fill_next_token_bitmask(np.zeros((2, 2), dtype=np.int32)[:, :1])
    readonly = np.zeros((1, 1), dtype=np.int32)
    readonly.setflags(write=False)
    with pytest.raises(dk.InvalidInputError, match="writable"):
        matcher.fill_next_token_bitmask(readonly)
    with pytest.raises(dk.InvalidInputError, match="2 rows for 3 matchers"):
        dk.fill_next_token_bitmask_batch([matcher] * 3, np.zeros((2, 1), dtype=np.int32))
    with pytest.raises(dk.InvalidInputError, match="float32"):
        dk.apply_token_bitmask(np.zeros(3, dtype=np.float64), np.zeros(1, dtype=np.int32))
    with pytest.raises(dk.InvalidInputError, match="covers 32 tokens"):
        dk.apply_token_bitmask(np.zeros(33, dtype=np.float32), np.zeros(1, dtype=np.int32))
    with pytest.raises(dk.InvalidInputError, match="rows"):
        dk.apply_token_bitmask(np.zeros((2, 3), dtype=np.float32), np.zeros((1, 1), dtype=np.int32))
    with pytest.raises(dk.InvalidInputError):
        dk.allocate_token_bitmask(1, 0)
    with pytest.raises(dk.InvalidInputError, match="negative"):
        matcher.accept_tokens([0, -1])
