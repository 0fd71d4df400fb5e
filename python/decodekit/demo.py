"""The mini-benchmark behind ``decodekit demo`` and ``bench/generate_e2e.py``.

Prompts: the 26 bundled Spec-Bench questions (``decodekit/data/spec_bench_mini.jsonl``: the first two of
each category, first turn), formatted with the tokenizer's chat template. Each configuration (plain
greedy, each drafter, transformers' own generate for reference) decodes every prompt greedily for a fixed
number of new tokens; drafters are created once per configuration and kept across the prompts, as a
serving engine would keep them. Everything here needs torch (the ``demo`` extra).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from decodekit import _core
from decodekit import drafters as dkd
from decodekit.generation import generate
from decodekit.models import as_causal_lm

PLAIN = "greedy"
HF_GREEDY = "hf_greedy"
HF_PROMPT_LOOKUP = "hf_prompt_lookup"
# transformers' prompt lookup with its own switch for grouped-query attention under a mask
# (TRANSFORMERS_SDPA_FORCE_GQA=1), the attention shortcut decodekit's HFCausalLM takes
HF_PROMPT_LOOKUP_GQA = "hf_prompt_lookup_gqa"
HF_CONFIGS = (HF_GREEDY, HF_PROMPT_LOOKUP, HF_PROMPT_LOOKUP_GQA)

# name -> factory of a drafter object (one per benchmark run, kept across prompts)
DRAFTER_CONFIGS: dict[str, Callable[[], dkd.Drafter]] = {
    "prompt_lookup": dkd.PromptLookupDrafter,
    "ngram_store": dkd.NGramStoreDrafter,
    "recycling": dkd.RecyclingDrafter,
    "recycling_warm": lambda: dkd.RecyclingDrafter(warm_start=True),
    "aded": dkd.AdedDrafter,
    "merged": dkd.MergedDrafter,
}
CONFIGS = [PLAIN, *DRAFTER_CONFIGS, *HF_CONFIGS]


@dataclass(frozen=True)
class Prompt:
    """One benchmark prompt."""

    question_id: int
    category: str
    text: str


def load_prompts(count: int | None = None) -> list[Prompt]:
    """The bundled mini-benchmark prompts in file order (the first ``count`` when given)."""
    source = resources.files("decodekit").joinpath("data/spec_bench_mini.jsonl")
    prompts = [
        Prompt(int(record["question_id"]), str(record["category"]), str(record["prompt"]))
        for record in map(json.loads, source.read_text(encoding="utf-8").splitlines())
    ]
    return prompts if count is None else prompts[:count]


def chat_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of a one-turn chat asking ``text``, ready for the assistant's reply."""
    formatted = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    ids: list[int] = tokenizer(formatted, add_special_tokens=False)["input_ids"]
    return ids


@dataclass
class Outcome:
    """One configuration on one prompt."""

    category: str
    tokens: list[int]
    seconds: float
    steps: int
    model_seconds: float
    drafted: int = 0


@dataclass
class ConfigResult:
    """One configuration over all prompts."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """All new tokens over all time."""
        seconds = sum(o.seconds for o in self.outcomes)
        return sum(len(o.tokens) for o in self.outcomes) / seconds if seconds else 0.0

    @property
    def mean_accepted_length(self) -> float | None:
        """Tokens per verification step after the prefill (1.0 for plain decoding), pooled over prompts;
        ``None`` for transformers' own generate, whose steps are not observed."""
        steps = sum(o.steps for o in self.outcomes)
        if self.name in HF_CONFIGS or not steps:
            return None
        # the prefill emits each prompt's first token; the steps emit the rest
        return sum(len(o.tokens) - 1 for o in self.outcomes) / steps

    @property
    def mean_drafted(self) -> float | None:
        """Draft tokens scored per verification step (``None`` for transformers' generate)."""
        steps = sum(o.steps for o in self.outcomes)
        if self.name in HF_CONFIGS or not steps:
            return None
        return sum(o.drafted for o in self.outcomes) / steps

    @property
    def decodekit_share(self) -> float:
        """Fraction of the time spent outside the model."""
        seconds = sum(o.seconds for o in self.outcomes)
        return 1.0 - sum(o.model_seconds for o in self.outcomes) / seconds if seconds else 0.0

    def by_category(self) -> dict[str, ConfigResult]:
        """The same outcomes split by category (first-seen order)."""
        split: dict[str, ConfigResult] = {}
        for outcome in self.outcomes:
            split.setdefault(outcome.category, ConfigResult(self.name)).outcomes.append(outcome)
        return split


def run_configs(
    names: Sequence[str],
    model: Any,
    prompts: Sequence[tuple[str, list[int]]],
    max_new_tokens: int,
    on_generation: Callable[[], None] | None = None,
) -> list[ConfigResult]:
    """Decode every ``(category, ids)`` prompt greedily with every configuration in ``names``.

    The configurations take turns on each prompt (prompt-major order), so that a machine whose speed
    drifts during the run slows every configuration alike. Each drafter configuration builds its drafter
    once and keeps it across the prompts.
    """
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise _core.InvalidInputError(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    results = [ConfigResult(name) for name in names]
    drafters = {name: DRAFTER_CONFIGS[name]() for name in names if name in DRAFTER_CONFIGS}
    for category, ids in prompts:
        for result in results:
            name = result.name
            if name in HF_CONFIGS:
                outcome = _hf_generate(
                    model,
                    ids,
                    max_new_tokens,
                    prompt_lookup=name != HF_GREEDY,
                    force_gqa=name == HF_PROMPT_LOOKUP_GQA,
                )
            else:
                generation = generate(model, ids, max_new_tokens=max_new_tokens, drafter=drafters.get(name))
                stats = generation.stats
                outcome = Outcome(
                    "",
                    generation.tokens,
                    stats.total_seconds,
                    stats.steps,
                    stats.model_seconds,
                    sum(stats.drafted),
                )
            outcome.category = category
            result.outcomes.append(outcome)
            if on_generation is not None:
                on_generation()
    return results


def _hf_generate(
    model: Any, ids: list[int], max_new_tokens: int, *, prompt_lookup: bool, force_gqa: bool = False
) -> Outcome:
    """transformers' ``generate`` (greedy; with ``prompt_lookup_num_tokens=10`` when asked; with
    ``TRANSFORMERS_SDPA_FORCE_GQA=1`` for the duration of the call when ``force_gqa``)."""
    import torch

    input_ids = torch.tensor([ids], dtype=torch.long, device=model.device)
    extra = {"prompt_lookup_num_tokens": 10} if prompt_lookup else {}
    saved = os.environ.get(_FORCE_GQA)
    if force_gqa:
        os.environ[_FORCE_GQA] = "1"
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                **extra,
            )
    finally:
        seconds = time.perf_counter() - start
        if force_gqa:
            if saved is None:
                del os.environ[_FORCE_GQA]
            else:
                os.environ[_FORCE_GQA] = saved
    tokens = output[0, len(ids) :].tolist()
    # transformers pads finished sequences only in batches; drop nothing else
    return Outcome("", tokens, seconds, 0, seconds)


_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


# The constrained-generation part of the demo: a small JSON schema, enforced by a regular expression
# (the JSON-Schema compiler arrives with the context-free grammar work).
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "minLength": 1, "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PERSON_REGEX = (
    r'\{"name": "[A-Za-z][A-Za-z .\-]{0,23}", "age": (0|[1-9][0-9]?|1[01][0-9]|120), '
    r'"city": "[A-Za-z][A-Za-z .\-]{0,23}"\}'
)
PERSON_PROMPT = (
    "Invent a fictional person and describe them as a JSON object with the keys name, age and city. "
    "Reply with the JSON object only."
)


def validate_person(text: str) -> bool:
    """Whether ``text`` is a JSON object following :data:`PERSON_SCHEMA` (checked by hand: the demo does
    not depend on a JSON-Schema validator)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    if not isinstance(value, dict) or set(value) != {"name", "age", "city"}:
        return False
    name, age, city = value["name"], value["age"], value["city"]
    return (
        isinstance(name, str)
        and isinstance(city, str)
        and 1 <= len(name) <= 24
        and 1 <= len(city) <= 24
        and isinstance(age, int)
        and not isinstance(age, bool)
        and 0 <= age <= 120
    )


@dataclass
class ConstrainedResult:
    """One constrained generation."""

    drafter: str
    text: str
    valid: bool
    tokens: int
    seconds: float
    mean_accepted_length: float


def person_grammar(model: Any, tokenizer: Any) -> _core.CompiledGrammar:
    """:data:`PERSON_REGEX` compiled for the tokenizer at the model's logits width."""
    width = as_causal_lm(model).vocab_size
    return _core.Grammar.regex(PERSON_REGEX).compile(_core.Vocabulary.from_hf(tokenizer, size=width))


def run_constrained(
    model: Any,
    tokenizer: Any,
    drafter: str | None,
    *,
    temperature: float = 0.0,
    seed: int = 0,
    compiled: _core.CompiledGrammar | None = None,
) -> ConstrainedResult:
    """Generate a person as JSON under :data:`PERSON_REGEX` (``compiled``: from :func:`person_grammar`,
    made here when not given) and validate it."""
    if compiled is None:
        compiled = person_grammar(model, tokenizer)
    ids = chat_ids(tokenizer, PERSON_PROMPT)
    result = generate(
        model,
        ids,
        max_new_tokens=96,
        grammar=compiled,
        drafter=drafter,
        temperature=temperature,
        seed=seed,
        tokenizer=tokenizer,
    )
    text = tokenizer.decode(result.tokens, skip_special_tokens=True)
    return ConstrainedResult(
        drafter or "none",
        text,
        validate_person(text) and re.fullmatch(PERSON_REGEX, text) is not None,
        len(result.tokens),
        result.stats.total_seconds,
        result.stats.mean_accepted_length,
    )
