"""Context-free grammars (GBNF): masks are sound and complete against feeding each token's bytes to the
parser, on real vocabularies, at fixed and random prefixes; draft-tree masks, jump-forward, rollback,
batching, sampling under the mask, pickling and bad input."""

from __future__ import annotations

import json
import pickle
from functools import cache
from typing import Any

import decodekit as dk
import numpy as np
import pytest
import vocabularies
from hypothesis import given, settings
from hypothesis import strategies as st
from test_grammar_regex import greedy_tokenize, mask_ids

JSON = r"""
root ::= value
value ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\""
number ::= "-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?
ws ::= [ \t\n]*
"""

C_LIKE = r"""
root ::= stmt+
stmt ::= ws (decl | assign | if | block) ws
decl ::= "int " ident (ws "=" ws expr)? ";"
assign ::= ident ws "=" ws expr ";"
if ::= "if" ws "(" ws expr ws ")" stmt ("else" stmt)?
block ::= "{" stmt* ws "}"
expr ::= term (ws [-+<>] ws term)*
term ::= factor (ws [*/%] ws factor)*
factor ::= ident | [0-9]+ | "(" ws expr ws ")" | ident "(" ws (expr (ws "," ws expr)*)? ws ")"
ident ::= [a-zA-Z_] [a-zA-Z0-9_]*
ws ::= [ \n]*
"""

ARITHMETIC = r"""
root ::= expr
expr ::= expr [-+] term | term
term ::= term [*/] factor | factor
factor ::= [0-9]+ ("." [0-9]+)? | "(" expr ")" | "-" factor
"""

# name: (grammar, sentences the tests walk token by token)
CORPUS: dict[str, tuple[str, list[str]]] = {
    "json": (
        JSON,
        [
            json.dumps({"name": "Ada", "tags": ["x", {"k": [1.5e-3, None, True]}], "s": "caf\u00e9 \\n"}),
            json.dumps([{"a": 1}, [], {}, 'quote " and \\ slash'], indent=2),
        ],
    ),
    "c_like": (
        C_LIKE,
        ["int x = 3;\nif (x < 4) { y = f(x, 2) * (x + 1); } else z = 0;\n", "{ {} a=b; }"],
    ),
    "arithmetic": (ARITHMETIC, ["12*(3.5-4)/-2+7", "((1))"]),
}


@cache
def compiled(vocab_name: str, grammar: str) -> dk.CompiledGrammar:
    return dk.Grammar.ebnf(grammar).compile(vocabularies.load(vocab_name).vocab)


def brute_force(matcher: dk.Matcher, size: int) -> set[int]:
    """The tokens whose bytes the parser accepts next, each fed alone (accepted, then rolled back)."""
    return {t for t in range(size) if matcher.is_allowed(t)}


def assert_mask_matches(matcher: dk.Matcher, size: int, where: str) -> set[int]:
    got, expected = mask_ids(matcher, size), brute_force(matcher, size)
    assert got == expected, (
        f"{where}: extra {sorted(got - expected)[:5]}, missing {sorted(expected - got)[:5]}"
    )
    return got


@pytest.mark.parametrize(("vocab_name", "prefixes"), [("gpt2", 7), ("llama3", 3)])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_masks_are_sound_and_complete_on_real_vocabularies(vocab_name: str, prefixes: int, case: str) -> None:
    grammar, sentences = CORPUS[case]
    vocab = vocabularies.load(vocab_name).vocab
    for sentence in sentences:
        tokens = greedy_tokenize(vocab_name, sentence.encode())
        matcher = dk.Matcher(compiled(vocab_name, grammar))
        steps = set(np.linspace(0, len(tokens), prefixes).astype(int).tolist())
        for step, token in enumerate([*tokens, None]):
            if step in steps:
                assert_mask_matches(matcher, vocab.size, f"{case} after {sentence.encode()[:step]!r}..")
            if token is not None:
                assert matcher.accept_token(token), f"{case}: {sentence!r} token {step}"
        assert matcher.is_accepting()
        assert matcher.accept_token(vocab.eos_ids[0])
        assert mask_ids(matcher, vocab.size) == set(vocab.eos_ids)


@settings(max_examples=12)
@given(case=st.sampled_from(sorted(CORPUS)), seed=st.integers(0, 2**32 - 1))
def test_masks_at_random_prefixes_of_the_language(case: str, seed: int) -> None:
    """Each step takes a random allowed token (never EOS), so the prefixes go where the sentences
    above do not; the mask is compared with the brute force at every step."""
    vocab = vocabularies.load("gpt2").vocab
    matcher = dk.Matcher(compiled("gpt2", CORPUS[case][0]))
    rng = np.random.default_rng(seed)
    for _ in range(6):
        allowed = assert_mask_matches(matcher, vocab.size, case) - set(vocab.eos_ids)
        if not allowed:
            break
        assert matcher.accept_token(int(rng.choice(sorted(allowed))))


def test_sampling_under_the_mask_always_gives_json() -> None:
    """Random logits, masked, sampled until EOS: every one of 100 texts is valid JSON."""
    vocab = vocabularies.load("gpt2").vocab
    grammar = compiled("gpt2", JSON)
    rng = np.random.default_rng(0)
    mask = dk.allocate_token_bitmask(1, vocab.size)
    eos = vocab.eos_ids[0]
    for _ in range(100):
        matcher, tokens = dk.Matcher(grammar), []
        while not matcher.is_terminated():
            logits = rng.standard_normal(vocab.size).astype(np.float32) * 3
            logits[eos] += 4 + len(tokens) / 4  # finish within a few dozen tokens
            matcher.fill_next_token_bitmask(mask)
            dk.apply_token_bitmask(logits, mask[0])
            token = int(np.argmax(logits))
            assert matcher.accept_token(token)
            tokens.append(token)
        json.loads(vocab.decode(tokens[:-1]))


def test_draft_tree_masks_equal_the_masks_after_each_path() -> None:
    vocab = vocabularies.load("gpt2").vocab
    grammar = compiled("gpt2", JSON)
    matcher = dk.Matcher(grammar)
    assert matcher.accept_tokens(greedy_tokenize("gpt2", b'{"a": ')) > 0
    pieces = [b"", b"[", b"1", b'"x', b"]", b",", b"}", b"2", b"{", b" ]"]
    tokens = [greedy_tokenize("gpt2", p)[0] if p else 0 for p in pieces]
    parents = [-1, 0, 1, 0, 1, 2, 2, 2, 0, 8]
    tree = dk.DraftTree(tokens, parents)
    bitmask = np.full((12, vocab.size // 32 + 2), -1, dtype=np.int32)
    grammatical = matcher.fill_draft_tree_bitmasks(tree, bitmask)
    assert grammatical.tolist() == [True, True, True, True, True, True, False, True, True, False]
    assert matcher.num_tokens == len(greedy_tokenize("gpt2", b'{"a": '))
    words = (vocab.size + 31) // 32
    for node in range(len(tokens)):
        path, i = [], node
        while i != 0:
            path.append(tokens[i])
            i = parents[i]
        fresh = matcher.copy()
        if not grammatical[node]:
            assert (bitmask[node] == 0).all()
            assert fresh.accept_tokens(path[::-1]) < len(path)
            continue
        assert fresh.accept_tokens(path[::-1]) == len(path)
        expected = dk.allocate_token_bitmask(1, vocab.size)
        fresh.fill_next_token_bitmask(expected)
        np.testing.assert_array_equal(bitmask[node, :words], expected[0], err_msg=f"node {node}")
        assert (bitmask[node, words:] == 0).all()
    assert (bitmask[len(tokens) :] == -1).all()
    with pytest.raises(dk.InvalidInputError, match="rows for a draft tree"):
        matcher.fill_draft_tree_bitmasks(tree, bitmask[:3])
    regex = dk.Matcher(dk.Grammar.regex("[0-9]+").compile(vocab))
    chain = dk.DraftTree.chain(0, [tokens[2], tokens[7], tokens[5]])  # "1", "2", ","
    assert regex.fill_draft_tree_bitmasks(chain, bitmask).tolist() == [True, True, True, False]
    assert (bitmask[3] == 0).all()
    assert regex.num_tokens == 0


def test_forced_tokens_jump_over_fixed_text() -> None:
    vocab = vocabularies.load("llama3").vocab
    grammar = dk.Grammar.ebnf(
        'root ::= "{\\"name\\": \\"" [a-z]+ "\\", \\"kind\\": " kind "}"\n'
        'kind ::= "\\"person\\"" | "\\"place\\""'
    )
    matcher = dk.Matcher(grammar.compile(vocab))
    assert matcher.forced_bytes() == b'{"name": "'
    forced = matcher.forced_tokens()
    assert forced
    assert b'{"name": "'.startswith(vocab.decode(forced))
    assert matcher.accept_tokens(forced) == len(forced)
    rest = b'{"name": "'[len(vocab.decode(forced)) :] + b"ada"
    assert matcher.accept_tokens(greedy_tokenize("llama3", rest)) > 0
    assert matcher.forced_bytes() == b""
    assert matcher.accept_tokens(greedy_tokenize("llama3", b'"')) == 1
    assert matcher.forced_bytes() == b', "kind": "p'
    assert matcher.accept_tokens(greedy_tokenize("llama3", b', "kind": "pl')) > 0
    assert matcher.forced_bytes() == b'ace"}'


def test_batch_fill_mixes_regular_and_context_free_grammars() -> None:
    vocab = vocabularies.load("gpt2").vocab
    matchers = [dk.Matcher(compiled("gpt2", CORPUS[case][0])) for case in sorted(CORPUS)]
    matchers.append(dk.Matcher(dk.Grammar.regex("[a-z]+").compile(vocab)))
    for i, (matcher, case) in enumerate(zip(matchers, sorted(CORPUS), strict=False)):
        tokens = greedy_tokenize("gpt2", CORPUS[case][1][0].encode())
        matcher.accept_tokens(tokens[: 3 * i + 2])
    expected = dk.allocate_token_bitmask(len(matchers), vocab.size)
    for row, matcher in enumerate(matchers):
        matcher.fill_next_token_bitmask(expected, row)
    batch = dk.allocate_token_bitmask(len(matchers), vocab.size)
    dk.fill_next_token_bitmask_batch(matchers, batch)
    np.testing.assert_array_equal(batch, expected)


def test_rollback_copy_and_pickle() -> None:
    vocab = vocabularies.load("gpt2").vocab
    grammar = dk.Grammar.ebnf(ARITHMETIC)
    assert grammar.is_context_free
    assert not dk.Grammar.regex("a").is_context_free
    again = pickle.loads(pickle.dumps(grammar))
    assert again.is_context_free
    assert again.num_states == grammar.num_states
    matcher = dk.Matcher(grammar.compile(vocab))
    tokens = greedy_tokenize("gpt2", b"(1+2)*3")
    before = [mask_ids(matcher, vocab.size)]
    for token in tokens:
        assert matcher.accept_token(token)
        before.append(mask_ids(matcher, vocab.size))
    clone = matcher.copy()
    matcher.rollback(len(tokens) - 1)
    assert mask_ids(matcher, vocab.size) == before[1]
    assert mask_ids(clone, vocab.size) == before[-1]
    assert matcher.accept_tokens(tokens[1:]) == len(tokens) - 1
    assert mask_ids(matcher, vocab.size) == before[-1]
    matcher.reset()
    assert mask_ids(matcher, vocab.size) == before[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('root ::= "a" b', 'line 1, column 14: reference to undefined rule "b"'),
        ('root ::= "a"\nroot ::= "b"', 'line 2, column 1: rule "root" is defined twice'),
        ('start ::= "a"', 'no rule named "root"'),
        ('root ::= x\nx ::= "a" x', 'rule "x" can never finish'),
        ('root ::= "a" (', "line 1"),
        ("root ::= [a-", "line 1"),
        ('root ::= "a"{3,2}', "line 1"),
    ],
)
def test_grammar_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(dk.GrammarError, match=message.replace("(", r"\(")):
        dk.Grammar.ebnf(text)


LARK_JSON = r"""
?start: value
?value: object | array | string | SIGNED_NUMBER -> number | "true" | "false" | "null"
array  : "[" [value ("," value)*] "]"
object : "{" [pair ("," pair)*] "}"
pair   : string ":" value
string : ESCAPED_STRING
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""


def test_lark_grammars_mask_like_the_brute_force() -> None:
    vocab = vocabularies.load("gpt2").vocab
    grammar = dk.Grammar.lark(LARK_JSON)
    assert grammar.is_context_free
    matcher = dk.Matcher(grammar.compile(vocab))
    text = '{"a": [1, -2.5e3, {"b": null}], "c" : "x\\"y"}'
    tokens = greedy_tokenize("gpt2", text.encode())
    for step, token in enumerate(tokens):
        if step % 4 == 0:
            assert_mask_matches(matcher, vocab.size, f"lark json after token {step}")
        assert matcher.accept_token(token), step
    assert matcher.is_accepting()
    assert pickle.loads(pickle.dumps(grammar)).num_states == grammar.num_states


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start: a", "undefined rule"),
        ('start: "a"\n%declare X', "line 2"),
        ("start: /a(?=b)/", "look-around"),
        ('start: "a" "b" (', "line 1"),
        ('rule: "a"', 'no rule named "start"'),
        ("%import common.NOPE\nstart: NOPE", "NOPE"),
    ],
)
def test_lark_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(dk.GrammarError, match=message):
        dk.Grammar.lark(text)


@pytest.mark.parametrize("make", [dk.Grammar.ebnf, dk.Grammar.lark])
def test_deeply_nested_groups_are_refused_not_a_crash(make: Any) -> None:
    root = "root ::= " if make is dk.Grammar.ebnf else "start: "
    with pytest.raises(dk.GrammarError, match="nested more than 200 deep"):
        make(root + "(" * 100_000 + '"a"' + ")" * 100_000)
