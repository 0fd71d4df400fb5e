"""What ``TokenRecycler.warm_start`` buys on the recorded Spec-Bench greedy trajectories.

Usage::

    python bench/recycling_warm_start.py

For each trajectory of ``tests/assets/specbench_trajectories.json`` (leave-one-out):

* recycler A starts empty;
* recycler B is ``warm_start``-ed on prompt + output of every *other* trajectory.

Both then get a prefill update from the prompt's own bigrams (row ``prompt[i]`` gets ``prompt[i + 1]`` at
rank 0, the rest of the row left as is), mirroring that a prefill recycles the prompt positions' top-k.
Then the first 16 decoding steps of the recorded output are replayed from context = prompt: the root is
the last context token, the proposal's accepted length is the longest root path whose tokens match the
next output tokens (at each depth, the child whose token is the next output token), and the step emits
accepted + 1 tokens (the target's own token after the accepted path).

Proxy update rule (an approximation): the target's top-k at the drafted nodes was not recorded, so after
each step only the rows of the root and of the accepted path's tokens are updated, each with its true
next token (the greedy target's top-1) at rank 0, the rest of the row left as is. The real method also
refreshes ranks 1..k-1 of those rows and the rows of every rejected node, so absolute numbers here
understate both A and B; the comparison between them is what this script is for.

Prints a Markdown table of the mean tokens per step (accepted + 1) over the first 16 steps, per category
and overall, for A and B.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import decodekit as dk
import numpy as np
import numpy.typing as npt

ASSET = Path(__file__).resolve().parent.parent / "tests" / "assets" / "specbench_trajectories.json"
STEPS = 16
K = 8


def _set_rank0(rec: dk.TokenRecycler, tokens: list[int], successors: list[int]) -> None:
    """Row ``tokens[i]`` gets ``successors[i]`` at rank 0, the rest of the row unchanged (later pairs win)."""
    toks = np.asarray(tokens, dtype=np.int32)
    rows = np.array(rec.matrix[toks], dtype=np.int32)
    rows[:, 0] = successors
    # With a repeated token every copy starts from the same old row and the last pair wins, which is what
    # applying the pairs one by one gives.
    rec.update(toks, rows)


def _accepted(tree: dk.DraftTree, upcoming: list[int]) -> tuple[int, list[int]]:
    """Longest root path matching ``upcoming``: its length and its tokens."""
    parents, tokens = tree.parents.tolist(), tree.tokens.tolist()
    children: dict[int, list[int]] = defaultdict(list)
    for node in range(1, len(parents)):
        children[parents[node]].append(node)
    node, path = 0, []
    for want in upcoming:
        nxt = next((c for c in children[node] if tokens[c] == want), None)
        if nxt is None:
            break
        node = nxt
        path.append(want)
    return len(path), path


def replay(rec: dk.TokenRecycler, prompt: list[int], output: list[int]) -> list[int]:
    """Tokens emitted per step (accepted + 1) over the first ``STEPS`` steps of ``output``."""
    if len(prompt) > 1:
        _set_rank0(rec, prompt[:-1], prompt[1:])
    root, pos, emitted = prompt[-1], 0, []
    for _ in range(STEPS):
        if pos >= len(output):
            break
        # The last output token has no recorded successor, so a proposal may only be checked up to it.
        accepted, path = _accepted(rec.propose(root), output[pos : len(output) - 1])
        emitted.append(accepted + 1)
        seq = [root, *path]
        _set_rank0(rec, seq, output[pos : pos + accepted + 1])
        pos += accepted + 1
        root = output[pos - 1]
    return emitted


def main() -> int:
    data: dict[str, Any] = json.loads(ASSET.read_text(encoding="utf-8"))
    vocab = int(data["header"]["vocab_size"])
    records: list[dict[str, Any]] = data["trajectories"]
    corpus: list[npt.NDArray[np.int32]] = [
        np.asarray(r["prompt_ids"] + r["output_ids"], dtype=np.int32) for r in records
    ]
    per_cat: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"A": [], "B": []})
    for i, record in enumerate(records):
        cold = dk.TokenRecycler(vocab, k=K)
        warm = dk.TokenRecycler(vocab, k=K)
        warm.warm_start(corpus[:i] + corpus[i + 1 :])
        for name, rec in (("A", cold), ("B", warm)):
            per_cat[record["category"]][name].extend(replay(rec, record["prompt_ids"], record["output_ids"]))

    header = data["header"]
    print(
        f"Mean tokens per step (accepted + 1) over the first {STEPS} steps of {len(records)} greedy "
        f"trajectories ({header['model']}, Spec-Bench, {len(per_cat)} categories); A = empty recycler, "
        f"B = warm_start on the other {len(records) - 1} trajectories (leave-one-out); proxy update rule "
        "(see the script's docstring).\n"
    )
    print("| Category | Trajectories | A: empty | B: warm_start | B / A |")
    print("|---|---:|---:|---:|---:|")
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record["category"]] += 1
    all_a: list[int] = []
    all_b: list[int] = []
    for cat, steps in per_cat.items():
        a, b = float(np.mean(steps["A"])), float(np.mean(steps["B"]))
        all_a += steps["A"]
        all_b += steps["B"]
        print(f"| {cat} | {counts[cat]} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    a, b = float(np.mean(all_a)), float(np.mean(all_b))
    print(f"| **overall** | {len(records)} | **{a:.2f}** | **{b:.2f}** | **{b / a:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
