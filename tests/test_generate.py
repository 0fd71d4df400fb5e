"""decodekit.generate with a plain-torch model implementing the CausalLM protocol (tests/tiny_lm.py):
cached tree forwards agree with uncached ones, drafted greedy output equals plain greedy, sampled output is
distributed exactly as without a drafter (chi-square against exact enumeration), grammar, stop, and errors.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import decodekit as dk
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch")

from decodekit import drafters as dkd  # noqa: E402
from decodekit.generation import generate  # noqa: E402
from decodekit.models import as_causal_lm  # noqa: E402
from scipy import stats  # noqa: E402
from tiny_lm import (  # noqa: E402
    LOSSLESS_PROMPT,
    LOSSLESS_TOKENS,
    TinyLM,
    exact_first_tokens,
    lossless_model,
    sample_first_tokens,
)

DRAFTERS = ["prompt_lookup", "ngram_store", "recycling", "aded", "merged"]
PROMPT = [1, 2, 3, 1, 2, 3, 4, 5, 1, 2, 3]


def plain_greedy(model: TinyLM, prompt: list[int], count: int) -> list[int]:
    """Greedy continuation by uncached full forwards, the reference."""
    ids = list(prompt)
    for _ in range(count):
        ids.append(int(model.full_logits(ids)[-1].argmax()))
    return ids[len(prompt) :]


def test_tree_forward_matches_uncached_forwards() -> None:
    """Scoring a draft tree in one cached forward gives, at every node, the logits of its path scored
    from scratch; keep() then leaves exactly the accepted path's cache."""
    model = TinyLM(vocab_size=8, seed=3)
    prompt = [1, 2, 3, 4]
    tree = dk.DraftTree.from_paths(prompt[-1], [[5, 6, 7], [5, 2], [0, 1]])
    cache = model.new_cache()
    with torch.inference_mode():
        model.forward(torch.tensor([prompt[:-1]]), torch.arange(3)[None], None, cache)
        cached = len(prompt) - 1
        mask = torch.from_numpy(tree.attention_mask_with_prefix(cached))[None, None]
        positions = torch.from_numpy(tree.positions(cached).astype(np.int64))[None]
        logits = model.forward(torch.from_numpy(tree.tokens.astype(np.int64))[None], positions, mask, cache)
    parents = tree.parents.tolist()
    for node in range(tree.num_nodes):
        path = []
        walk = node
        while walk >= 0:
            path.append(int(tree.tokens[walk]))
            walk = parents[walk]
        expected = model.full_logits(prompt[:-1] + path[::-1])[-1]
        torch.testing.assert_close(logits[node], expected, rtol=1e-5, atol=1e-5)
    # keep the path root -> 5 -> 2 (nodes 0, 1, 4 in breadth-first order), then continue from it
    nodes = [0, int(np.flatnonzero(tree.tokens == 5)[0])]
    nodes.append(next(i for i in range(tree.num_nodes) if parents[i] == nodes[1] and tree.tokens[i] == 2))
    model.keep(cache, np.array([0, 1, 2] + [cached + n for n in nodes], dtype=np.int64))
    assert model.cached(cache) == 6
    with torch.inference_mode():
        after = model.forward(torch.tensor([[7]]), torch.tensor([[6]]), None, cache)
    torch.testing.assert_close(after[0], model.full_logits([1, 2, 3, 4, 5, 2, 7])[-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("drafter", [None, *DRAFTERS])
def test_greedy_output_equals_plain_greedy(drafter: str | None) -> None:
    model = TinyLM(vocab_size=8, seed=1)
    result = generate(model, PROMPT, max_new_tokens=40, drafter=drafter)
    assert result.tokens == plain_greedy(model, PROMPT, 40)
    assert result.finish_reason == "length"
    stats_ = result.stats
    assert stats_.new_tokens == 40
    assert stats_.steps == len(stats_.accepted)
    # the prefill emits the first token, every step emits its accepted tokens plus one (the last step may
    # be cut by max_new_tokens)
    assert 1 + sum(stats_.accepted) + stats_.steps >= 40
    assert stats_.model_seconds <= stats_.total_seconds


def test_drafters_actually_accept_on_repetitive_text() -> None:
    """Without accepted drafts the equivalence tests above would prove nothing about verification."""
    model = TinyLM(vocab_size=8, seed=1)
    for name in DRAFTERS:
        result = generate(model, PROMPT, max_new_tokens=40, drafter=name)
        assert sum(result.stats.accepted) > 0, name
        assert result.stats.mean_accepted_length > 1.0, name


def test_drafter_objects_learn_across_calls() -> None:
    model = TinyLM(vocab_size=8, seed=1)
    store = dkd.NGramStoreDrafter()
    first = generate(model, PROMPT, max_new_tokens=40, drafter=store)
    assert store.store is not None
    assert len(store.store) > 0
    second = generate(model, PROMPT, max_new_tokens=40, drafter=store)
    assert second.tokens == first.tokens
    # the second run drafts its whole output from the stored first one
    assert second.stats.steps < first.stats.steps
    recycling = dkd.RecyclingDrafter(k=4, warm_start=True)
    generate(model, PROMPT, max_new_tokens=20, drafter=recycling)
    assert recycling.recycler is not None
    assert (recycling.recycler.matrix >= 0).any()


def test_prompt_lookup_cuts_its_chain_by_learned_acceptance() -> None:
    prompt = [1, 2, 3, 4, 5, 6, 7, 9, 1]  # the last token matches once (n = 1): chain [2, 3, 4, 5, 6, 7]
    rate, weight = dkd.PromptLookupDrafter.PRIOR_RATE, dkd.PromptLookupDrafter.PRIOR_WEIGHT

    def step(drafter: dkd.PromptLookupDrafter, new_tokens: list[int]) -> list[int]:
        drafter.begin(prompt, 16)  # the estimates survive begin(); the index does not
        tree = drafter.propose(prompt)
        drafter.update(tree, None, new_tokens)
        return tree.tokens[1:].tolist()

    drafter = dkd.PromptLookupDrafter(max_n=2, max_depth=6, max_nodes=6)
    prior = np.cumprod(np.full(6, rate))
    np.testing.assert_allclose(drafter.acceptance(1), prior)
    # the prior keeps the depths whose cumulative estimate is >= 0.05
    assert step(drafter, [2, 3, 8]) == [2, 3, 4, 5, 6][: int((prior >= 0.05).sum())]
    # depths 1-2 matched, depth 3 was compared and failed, depths 4-6 were not seen
    seen = np.array([1, 1, 0, rate, rate, rate])
    tested = np.array([1, 1, 1, 0, 0, 0])
    expected = np.cumprod((seen * tested + weight * rate) / (tested + weight))
    np.testing.assert_allclose(drafter.acceptance(1), expected)
    assert drafter.acceptance(2).tolist() == prior.tolist(), "other match lengths are untouched"
    for _ in range(60):
        step(drafter, [8])  # always wrong at depth 1
    assert drafter.acceptance(1)[0] < 0.05
    assert step(drafter, [8]) == [2], "one token is still drafted, so the estimate can recover"
    confident = dkd.PromptLookupDrafter(max_n=2, max_depth=6, max_nodes=6)
    for _ in range(20):
        step(confident, [2, 3, 4, 5, 6, 7, 9])  # always right
    assert step(confident, [2, 3, 4, 5, 6, 7, 9]) == [2, 3, 4, 5, 6, 7]
    assert confident.acceptance(1)[-1] > 0.8
    whole = dkd.PromptLookupDrafter(max_n=2, max_depth=6, max_nodes=6, min_accept_prob=0.0)
    for _ in range(5):
        assert step(whole, [8]) == [2, 3, 4, 5, 6, 7]
    with pytest.raises(dk.InvalidInputError, match="min_accept_prob"):
        dkd.PromptLookupDrafter(min_accept_prob=1.5)
    with pytest.raises(dk.InvalidInputError, match="match_length"):
        whole.acceptance(3)


def test_eos_and_stop() -> None:
    model = TinyLM(vocab_size=8, seed=1)
    reference = plain_greedy(model, PROMPT, 40)
    eos = reference[5]
    first = reference.index(eos)
    result = generate(model, PROMPT, max_new_tokens=40, eos_token_id=eos, drafter="prompt_lookup")
    assert result.tokens == reference[: first + 1]
    assert result.finish_reason == "eos"

    class Letters:
        """A tokenizer decoding id i to the letter 'a' + i."""

        def decode(self, ids: list[int]) -> str:
            return "".join(chr(ord("a") + i) for i in ids)

    text = Letters().decode(reference)
    stop = text[10:13]
    cut = text.index(stop) + len(stop)
    result = generate(model, PROMPT, max_new_tokens=40, stop=stop, tokenizer=Letters(), drafter="recycling")
    assert result.tokens == reference[:cut]
    assert result.text == text[:cut]
    assert result.finish_reason == "stop"


def test_grammar_constrains_every_token() -> None:
    """Under a regex over an 8-token vocabulary (token i is the letter 'a' + i), greedy output with and
    without drafters is the same and in the language."""
    model = TinyLM(vocab_size=8, seed=1)
    vocab = dk.Vocabulary.from_tokens([bytes([ord("a") + i]) for i in range(7)] + [b"</s>"], eos_ids=[7])
    compiled = dk.Grammar.regex("(ab|c[d-f])+g").compile(vocab)
    outputs = set()
    for drafter in [None, *DRAFTERS]:
        result = generate(model, PROMPT, max_new_tokens=30, grammar=compiled, drafter=drafter)
        outputs.add(tuple(result.tokens))
    assert len(outputs) == 1
    tokens = list(outputs.pop())
    text = "".join(chr(ord("a") + t) for t in tokens if t != 7)
    import re

    if tokens[-1] == 7:
        assert re.fullmatch("(ab|c[d-f])+g", text), text
    else:
        assert re.fullmatch("(ab|c[d-f])*(a|c)?", text) or re.fullmatch("(ab|c[d-f])+g?", text), text
    # sampled output is always in the language too
    for seed in range(30):
        result = generate(
            model,
            PROMPT,
            max_new_tokens=30,
            grammar=compiled,
            temperature=1.0,
            seed=seed,
            drafter="recycling",
        )
        if result.finish_reason == "eos":
            sampled = "".join(chr(ord("a") + t) for t in result.tokens[:-1])
            assert re.fullmatch("(ab|c[d-f])+g", sampled), sampled


def test_sampling_is_reproducible_and_respects_top_k() -> None:
    model = TinyLM(vocab_size=8, seed=2)
    a = generate(model, PROMPT, max_new_tokens=20, temperature=0.8, seed=5, drafter="recycling")
    b = generate(model, PROMPT, max_new_tokens=20, temperature=0.8, seed=5, drafter="recycling")
    assert a.tokens == b.tokens
    # top_k=1 is greedy whatever the temperature and the seed
    for seed in range(5):
        greedy = generate(model, PROMPT, max_new_tokens=20, temperature=1.5, top_k=1, seed=seed)
        assert greedy.tokens == plain_greedy(model, PROMPT, 20)


def _chi_square_p(
    counts: dict[tuple[int, ...], int], exact: dict[tuple[int, ...], float], runs: int
) -> float:
    """Chi-square goodness of fit, outcomes with an expected count under 5 pooled into one bin."""
    observed, expected = [], []
    rest_observed, rest_expected = 0, 0.0
    for outcome, p in exact.items():
        if p * runs >= 5:
            observed.append(counts.get(outcome, 0))
            expected.append(p * runs)
        else:
            rest_observed += counts.get(outcome, 0)
            rest_expected += p * runs
    assert sum(counts.values()) == runs
    assert set(counts) <= set(exact)
    if rest_expected > 0:
        observed.append(rest_observed)
        expected.append(rest_expected)
    scale = sum(observed) / sum(expected)  # absorbs float rounding of the exact probabilities
    return float(stats.chisquare(observed, [e * scale for e in expected]).pvalue)


RUNS = 100_000


@pytest.mark.slow
def test_sampled_output_is_distributed_as_without_a_drafter() -> None:
    """For each drafter, the first 3 tokens of 100,000 seeded sampled runs follow the exact distribution
    of the target model (enumerated), chi-square p > 0.001; the drafts must actually be accepted."""
    exact = exact_first_tokens(lossless_model(), LOSSLESS_PROMPT, LOSSLESS_TOKENS)
    assert math.isclose(sum(exact.values()), 1.0, rel_tol=1e-9)
    jobs = [(name, range(part, RUNS, 2)) for name in DRAFTERS for part in (0, 1)]
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(sample_first_tokens, *zip(*jobs, strict=True)))
    failures = []
    for index, name in enumerate(DRAFTERS):
        counts: dict[tuple[int, ...], int] = {}
        accepted = 0
        for part_counts, part_accepted in results[2 * index : 2 * index + 2]:
            accepted += part_accepted
            for outcome, count in part_counts.items():
                counts[outcome] = counts.get(outcome, 0) + count
        p_value = _chi_square_p(counts, exact, RUNS)
        print(f"{name}: p = {p_value:.4f}, {accepted} draft tokens accepted in {RUNS} runs")
        assert accepted > RUNS // 20, (
            f"{name} accepted too few drafts ({accepted}) for the test to have power"
        )
        if p_value <= 0.001:
            failures.append(f"{name}: p = {p_value:.2e}")
    assert not failures, failures


def test_plain_sampling_matches_exact_distribution() -> None:
    """Without a drafter (the reference the drafted runs are compared with), 20,000 runs."""
    exact = exact_first_tokens(lossless_model(), LOSSLESS_PROMPT, LOSSLESS_TOKENS)
    counts, accepted = sample_first_tokens(None, range(20_000))
    assert accepted == 0
    assert _chi_square_p(counts, exact, 20_000) > 0.001


class NotAModel:
    vocab_size = 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"max_new_tokens": 4, "drafter": "medusa"}, "unknown drafter 'medusa'"),
        ({"max_new_tokens": 4, "drafter": object()}, "not a decodekit drafter"),
        ({"max_new_tokens": 4, "temperature": -1.0}, "temperature"),
        ({"max_new_tokens": 4, "temperature": float("nan")}, "temperature"),
        ({"max_new_tokens": 4, "top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 4, "top_k": -2}, "top_k"),
        ({"max_new_tokens": 4, "stop": "x"}, "tokenizer"),
        ({"max_new_tokens": 4, "eos_token_id": -1}, "eos_token_id"),
        ({"max_new_tokens": 4, "grammar": "[a-z]+"}, "grammar must be"),
        ({"max_new_tokens": 4, "grammar": dk.Grammar.regex("a+")}, "tokenizer"),
    ],
)
def test_bad_arguments_fail_before_any_work(kwargs: dict[str, object], message: str) -> None:
    model = TinyLM(vocab_size=8)
    with pytest.raises(dk.InvalidInputError, match=message):
        generate(model, PROMPT, **kwargs)  # type: ignore[arg-type]


def test_bad_models_prompts_and_grammars() -> None:
    model = TinyLM(vocab_size=8)
    with pytest.raises(dk.InvalidInputError, match="lacks new_cache, forward, keep, device"):
        generate(NotAModel(), PROMPT, max_new_tokens=4)
    with pytest.raises(dk.InvalidInputError, match=r"\[0, 8\)"):
        generate(model, [1, 9], max_new_tokens=4)
    with pytest.raises(dk.InvalidInputError, match="non-empty"):
        generate(model, [], max_new_tokens=4)
    with pytest.raises(dk.InvalidInputError, match="batch size 1"):
        generate(model, [[1, 2], [3, 4]], max_new_tokens=4)
    with pytest.raises(dk.InvalidInputError, match="text prompt needs tokenizer"):
        generate(model, "hello", max_new_tokens=4)
    vocab = dk.Vocabulary.from_tokens([b"a", b"b", b"</s>"], eos_ids=[2])
    with pytest.raises(dk.InvalidInputError, match="vocabulary of 3 ids but the model's logits have 8"):
        generate(model, PROMPT, max_new_tokens=4, grammar=dk.Grammar.regex("a+").compile(vocab))
    assert as_causal_lm(model) is model


class WrongRoot(dkd.PromptLookupDrafter):
    """Drafts as if the sequence ended with token 0."""

    def propose(self, tokens: object) -> dk.DraftTree:
        return dk.DraftTree.chain(0, np.array([1, 2], dtype=np.int32))


def test_a_tree_not_rooted_at_the_last_token_is_refused() -> None:
    with pytest.raises(dk.InvalidInputError, match="root must be the last token"):
        generate(TinyLM(vocab_size=8), [1, 2, 3], max_new_tokens=8, drafter=WrongRoot())
