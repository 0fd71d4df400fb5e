"""Mean accepted tokens per verification step (MAT) of drafters, by replaying recorded greedy trajectories.

Usage::

    python bench/mat.py [--asset tests/assets/specbench_trajectories.json]

The asset (written by ``bench/record_trajectories.py``) holds greedy outputs of SmolLM2-135M-Instruct on
Spec-Bench prompts. Under greedy verification a drafter's acceptance depends only on the target's greedy
tokens, so replaying a trajectory gives exactly the accepted lengths a real speculative decoding run with
that drafter would see, without the model.

Replay of one trajectory: the context starts as the prompt; while fewer than ``N`` (128) output tokens are
consumed, the drafter proposes a :class:`decodekit.DraftTree` rooted at the last context token; the
accepted length is the longest root path whose tokens equal the next output tokens (at each depth the first
child in node order that matches); the step emits ``accepted + 1`` tokens (the bonus token), clipped at the
end of the trajectory, and the drafter is told the new tokens. MAT = emitted tokens / verification steps,
pooled over all steps of a category (so a category's MAT is ``N * trajectories / total steps``).

Drafters:

* ``PL chain``: ``PromptLookup(1, 4, max_depth=8, max_nodes=8)``, vLLM's n-gram proposer semantics.
* ``PL tree``: ``PromptLookup(1, 4, max_depth=8, max_nodes=32)``.
* ``PL chain + store``: the chain with an ``NGramStore(max_n=4)`` fallback fed with prompt + output of
  every *other* trajectory (leave-one-out; one store per held-out trajectory).
* ``ADED trigram``: ``TrigramTable.from_corpus(other trajectories, top_k=12)`` (leave-one-out), MCTS
  drafts with ``max_nodes=32, iterations=150, rollout_depth=4, seeds=step``, adapted online on each
  step's new tokens (with the two tokens before them, so every trigram is complete).
* ``HF prompt lookup``: transformers' own ``PromptLookupCandidateGenerator`` (``max_matching_ngram_size=2,
  num_output_tokens=10``), driven without a model, its candidates taken as a chain. Needs torch and
  transformers; the column is left out (with a note on stderr) when they are missing.

Only numpy and decodekit are imported at module level, so the replay helpers import without torch (the
tests use them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import decodekit as dk

DEFAULT_ASSET = Path(__file__).resolve().parent.parent / "tests" / "assets" / "specbench_trajectories.json"


@dataclass(frozen=True)
class Trajectory:
    """One recorded greedy continuation: the prompt's token ids and the ``N`` output token ids."""

    question_id: int
    category: str
    prompt_ids: list[int]
    output_ids: list[int]

    @property
    def tokens(self) -> list[int]:
        """Prompt followed by output."""
        return self.prompt_ids + self.output_ids


def load_trajectories(path: Path = DEFAULT_ASSET) -> tuple[dict[str, Any], list[Trajectory]]:
    """Read the asset: its header and its trajectories, in file order."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    trajectories = [
        Trajectory(
            question_id=int(record["question_id"]),
            category=str(record["category"]),
            prompt_ids=[int(token) for token in record["prompt_ids"]],
            output_ids=[int(token) for token in record["output_ids"]],
        )
        for record in data["trajectories"]
    ]
    return data["header"], trajectories


def accepted_length(tree: dk.DraftTree, output: Sequence[int], pos: int) -> int:
    """How many draft nodes greedy verification accepts when the target's next tokens are ``output[pos:]``.

    From the root, at depth ``d`` the first child (in node order) whose token is ``output[pos + d - 1]`` is
    taken; the walk stops when no child matches or the output is exhausted.
    """
    tokens = tree.tokens.tolist()
    parents = tree.parents.tolist()
    children: dict[int, list[int]] = {}
    for node in range(1, len(tokens)):
        children.setdefault(parents[node], []).append(node)
    node, accepted = 0, 0
    while pos + accepted < len(output):
        want = output[pos + accepted]
        node = next((child for child in children.get(node, ()) if tokens[child] == want), -1)
        if node < 0:
            break
        accepted += 1
    return accepted


class Drafter(Protocol):
    """One sequence's drafter during a replay."""

    def propose(self, step: int) -> dk.DraftTree:
        """A draft tree rooted at the last context token (``step``: the 0-based verification step)."""
        ...

    def extend(self, tokens: list[int]) -> None:
        """Append the tokens the step emitted to the context."""
        ...


def replay(drafter: Drafter, trajectory: Trajectory) -> list[int]:
    """Replay one trajectory against a drafter already fed with the prompt; return the tokens per step."""
    output = trajectory.output_ids
    emitted: list[int] = []
    pos = 0
    while pos < len(output):
        tree = drafter.propose(len(emitted))
        count = min(accepted_length(tree, output, pos) + 1, len(output) - pos)
        new = output[pos : pos + count]
        pos += count
        emitted.append(count)
        drafter.extend(new)
    return emitted


class LookupDrafter:
    """``decodekit.PromptLookup``, fed incrementally."""

    def __init__(self, prompt: list[int], **kwargs: Any) -> None:
        self.lookup = dk.PromptLookup(**kwargs)
        self.lookup.extend(prompt)

    def propose(self, step: int) -> dk.DraftTree:
        """The lookup's tree."""
        return self.lookup.propose()

    def extend(self, tokens: list[int]) -> None:
        """Append the new tokens."""
        self.lookup.extend(tokens)


class TrigramDrafter:
    """ADED: ``decodekit.TrigramTable`` MCTS drafts, adapted online on the accepted tokens."""

    def __init__(self, table: dk.TrigramTable, prompt: list[int]) -> None:
        self.table = table
        self.context = list(prompt)

    def propose(self, step: int) -> dk.DraftTree:
        """An MCTS draft after the last two context tokens, seeded by the step index."""
        last_two = (self.context[-2], self.context[-1])
        return self.table.propose(last_two, max_nodes=32, iterations=150, rollout_depth=4, seeds=step)

    def extend(self, tokens: list[int]) -> None:
        """Adapt on the new tokens together with the two context tokens before them."""
        self.table.adapt(self.context[-2:] + tokens)
        self.context.extend(tokens)


class HFPromptLookupDrafter:
    """transformers' ``PromptLookupCandidateGenerator``, called on the whole context each step.

    Built as ``generate(prompt_lookup_num_tokens=10)`` builds it (``eos_token_id`` from the generation
    config, ``max_length`` = prompt + N), except without a ``logits_processor``: plain greedy decoding
    has none that forbids tokens. Its candidates form a chain.
    """

    def __init__(self, prompt: list[int], max_new_tokens: int, eos_token_ids: list[int]) -> None:
        import torch
        from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

        self.torch = torch
        self.generator = PromptLookupCandidateGenerator(
            eos_token_id=torch.tensor(eos_token_ids, dtype=torch.long) if eos_token_ids else None,
            num_output_tokens=10,
            max_matching_ngram_size=2,
            max_length=len(prompt) + max_new_tokens,
        )
        self.context = list(prompt)

    def propose(self, step: int) -> dk.DraftTree:
        """The generator's candidates after the context, as a chain."""
        input_ids = self.torch.tensor([self.context], dtype=self.torch.long)
        candidate_ids, _ = self.generator.get_candidates(input_ids)
        return dk.DraftTree.chain(self.context[-1], candidate_ids[0, len(self.context) :].tolist())

    def extend(self, tokens: list[int]) -> None:
        """Append the new tokens."""
        self.context.extend(tokens)


# A drafter family: given every trajectory and the index of the one to replay, a drafter fed with its
# prompt (cross-trajectory state, if any, built from the other trajectories only).
DrafterFactory = Callable[[Sequence[Trajectory], int], Drafter]


def pl_chain(trajectories: Sequence[Trajectory], index: int) -> Drafter:
    """Prompt lookup, chain (vLLM semantics)."""
    return LookupDrafter(trajectories[index].prompt_ids, min_n=1, max_n=4, max_depth=8, max_nodes=8)


def pl_tree(trajectories: Sequence[Trajectory], index: int) -> Drafter:
    """Prompt lookup, merged tree of up to 32 nodes."""
    return LookupDrafter(trajectories[index].prompt_ids, min_n=1, max_n=4, max_depth=8, max_nodes=32)


def pl_chain_store(trajectories: Sequence[Trajectory], index: int) -> Drafter:
    """Prompt lookup chain with an ``NGramStore`` fallback fed with the other trajectories."""
    store = dk.NGramStore(max_n=4)
    for other, trajectory in enumerate(trajectories):
        if other != index:
            store.add(trajectory.tokens)
    return LookupDrafter(
        trajectories[index].prompt_ids, min_n=1, max_n=4, max_depth=8, max_nodes=8, store=store
    )


def aded_trigram(trajectories: Sequence[Trajectory], index: int) -> Drafter:
    """ADED tri-gram table built from the other trajectories."""
    corpus = [trajectory.tokens for other, trajectory in enumerate(trajectories) if other != index]
    return TrigramDrafter(dk.TrigramTable.from_corpus(corpus, top_k=12), trajectories[index].prompt_ids)


def hf_prompt_lookup(eos_token_ids: list[int]) -> DrafterFactory:
    """transformers' prompt lookup (``max_matching_ngram_size=2, num_output_tokens=10``)."""

    def make(trajectories: Sequence[Trajectory], index: int) -> Drafter:
        trajectory = trajectories[index]
        return HFPromptLookupDrafter(trajectory.prompt_ids, len(trajectory.output_ids), eos_token_ids)

    return make


DECODEKIT_DRAFTERS: dict[str, DrafterFactory] = {
    "PL chain": pl_chain,
    "PL tree (32)": pl_tree,
    "PL chain + store": pl_chain_store,
    "ADED trigram": aded_trigram,
}


def steps_per_trajectory(factory: DrafterFactory, trajectories: Sequence[Trajectory]) -> list[list[int]]:
    """For every trajectory, the tokens emitted at each verification step."""
    return [replay(factory(trajectories, index), trajectories[index]) for index in range(len(trajectories))]


def mat(steps: Sequence[Sequence[int]]) -> float:
    """Mean tokens per step, pooled over the steps of the given trajectories."""
    return sum(sum(trajectory) for trajectory in steps) / sum(len(trajectory) for trajectory in steps)


def table(trajectories: Sequence[Trajectory], drafters: dict[str, DrafterFactory]) -> str:
    """The Markdown table: one row per category (file order) and one overall, one column per drafter."""
    results = {name: steps_per_trajectory(factory, trajectories) for name, factory in drafters.items()}
    categories = list(dict.fromkeys(trajectory.category for trajectory in trajectories))
    rows: list[tuple[str, list[int]]] = [
        (category, [i for i, trajectory in enumerate(trajectories) if trajectory.category == category])
        for category in categories
    ]
    rows.append(("**overall**", list(range(len(trajectories)))))
    lines = [
        "| category | n | " + " | ".join(drafters) + " |",
        "|---|---:|" + "---:|" * len(drafters),
    ]
    for label, members in rows:
        cells = [f"{mat([results[name][i] for i in members]):.2f}" for name in drafters]
        lines.append(f"| {label} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the MAT table of every drafter on the asset's trajectories."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asset", type=Path, default=DEFAULT_ASSET)
    args = parser.parse_args(argv)
    header, trajectories = load_trajectories(args.asset)
    drafters = dict(DECODEKIT_DRAFTERS)
    try:
        import torch  # noqa: F401
        import transformers.generation.candidate_generator  # noqa: F401
    except ImportError as error:
        print(f"HF prompt lookup left out: {error}", file=sys.stderr)
    else:
        drafters["HF prompt lookup"] = hf_prompt_lookup(list(header.get("eos_token_ids", [])))
    print(table(trajectories, drafters))


if __name__ == "__main__":
    main()
