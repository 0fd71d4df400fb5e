"""Token Recycling's acceptance rate per (depth, candidate rank) with the embedded model, the numbers
behind ``decodekit.drafters.default_recycling_template``.

Usage::

    .venv/bin/python bench/recycling_acceptance.py [--max-new-tokens 96] [--nodes 60]

Runs greedy ``decodekit.generate`` with a ``RecyclingDrafter`` over a breadth-first template
(``TreeTemplate.balanced(nodes, 6, 8)``) on the 26 bundled Spec-Bench prompts, the matrix kept across
prompts. For every scored node whose parent was on the accepted path it counts a trial at (depth, rank)
and a success when the node itself was accepted, then prints the rates, the trials and the mean accepted
length. A 60-node template reaches depth 2, so deeper rates are not measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import decodekit as dk
import numpy as np
from decodekit import demo
from decodekit.drafters import RecyclingDrafter

DEPTHS, RANKS = 6, 8


class CountingRecycler(RecyclingDrafter):
    """A recycling drafter that tallies which template nodes were accepted."""

    def __init__(self, template: dk.TreeTemplate) -> None:
        super().__init__(template=template)
        self.trials = np.zeros((DEPTHS, RANKS))
        self.successes = np.zeros((DEPTHS, RANKS))
        self._proposed: dk.DraftTree | None = None

    def propose(self, tokens: Sequence[int]) -> dk.DraftTree:
        self._proposed = super().propose(tokens)
        return self._proposed

    def update(self, tree: dk.DraftTree, logits: Any, new_tokens: Sequence[int]) -> None:
        super().update(tree, logits, new_tokens)
        if tree is not self._proposed:  # the prefill's prompt chain, not a draft
            return
        parents, tokens, depth = tree.parents.tolist(), tree.tokens.tolist(), tree.depth.tolist()
        children: dict[int, list[int]] = {}
        for node in range(1, len(tokens)):
            children.setdefault(parents[node], []).append(node)
        accepted, node = {0}, 0
        for token in new_tokens[:-1]:
            match = [child for child in children.get(node, []) if tokens[child] == token]
            if not match:
                break
            node = match[0]
            accepted.add(node)
        for parent, kids in children.items():
            if parent in accepted:
                for rank, child in enumerate(kids[:RANKS]):
                    if depth[child] <= DEPTHS:
                        self.trials[depth[child] - 1, rank] += 1
                        self.successes[depth[child] - 1, rank] += child in accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--nodes", type=int, default=60)
    args = parser.parse_args()
    from decodekit.models import load_default

    model, tokenizer = load_default()
    drafter = CountingRecycler(dk.TreeTemplate.balanced(args.nodes, DEPTHS, RANKS))
    lengths = []
    for prompt in demo.load_prompts():
        ids = demo.chat_ids(tokenizer, prompt.text)
        result = dk.generate(model, ids, max_new_tokens=args.max_new_tokens, drafter=drafter)
        lengths.append(result.stats.mean_accepted_length)
    np.set_printoptions(precision=3, suppress=True)
    print("acceptance rate [depth, rank]:\n", drafter.successes / np.maximum(drafter.trials, 1))
    print("trials:\n", drafter.trials)
    print(f"mean accepted length {np.mean(lengths):.2f}")


if __name__ == "__main__":
    main()
