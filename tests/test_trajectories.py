"""The recorded Spec-Bench trajectories asset and the drafter replay of ``bench/mat.py``.

``tests/assets/specbench_trajectories.json`` holds greedy outputs of the embedded model (written by
``bench/record_trajectories.py``). These tests need only numpy and decodekit: ``bench/mat.py`` imports
neither torch nor transformers at module level, so its replay helpers are loaded from its path.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import decodekit as dk
import numpy as np
import pytest

ASSET = Path(__file__).parent / "assets" / "specbench_trajectories.json"
MAT_SCRIPT = Path(__file__).parent.parent / "bench" / "mat.py"
PER_CATEGORY = 5
NEW_TOKENS = 128
# A few trajectories from different categories (indices into the asset), enough for the replay checks.
SAMPLE = (0, 12, 27, 43, 61)


def _load_mat() -> ModuleType:
    name = "_decodekit_bench_mat"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MAT_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


mat = _load_mat()
HEADER, TRAJECTORIES = mat.load_trajectories(ASSET)


def test_asset_header() -> None:
    assert HEADER["max_new_tokens"] == NEW_TOKENS
    assert HEADER["gguf_file"].endswith(".gguf")
    for key in ("model", "date", "prompt_rule", "transformers_version", "eos_token_ids", "vocab_size"):
        assert key in HEADER, key


def test_asset_five_trajectories_per_category() -> None:
    counts = Counter(trajectory.category for trajectory in TRAJECTORIES)
    assert list(counts) == HEADER["categories"]
    assert len(counts) >= 8
    assert set(counts.values()) == {PER_CATEGORY}
    assert len({trajectory.question_id for trajectory in TRAJECTORIES}) == len(TRAJECTORIES)


def test_asset_token_ids_are_valid() -> None:
    vocab = int(HEADER["vocab_size"])
    eos = set(HEADER["eos_token_ids"])
    for trajectory in TRAJECTORIES:
        assert len(trajectory.output_ids) == NEW_TOKENS
        assert len(trajectory.prompt_ids) >= 2
        ids = np.asarray(trajectory.tokens)
        assert ids.min() >= 0
        assert ids.max() < vocab
        # Recorded with min_new_tokens = max_new_tokens, so the model never emitted an EOS id.
        assert not eos.intersection(trajectory.output_ids)


def _brute_force_pl_chain(trajectory: Any) -> tuple[list[int], list[dk.DraftTree]]:
    """Replay the chain PromptLookup, rebuilt from the whole context at every step, verified with
    ``dk.verify_greedy``; return the tokens emitted per step and the trees."""
    prompt, output = trajectory.prompt_ids, trajectory.output_ids
    context = list(prompt)
    emitted: list[int] = []
    trees: list[dk.DraftTree] = []
    pos = 0
    while pos < len(output):
        lookup = dk.PromptLookup(min_n=1, max_n=4, max_depth=8, max_nodes=8)
        lookup.extend(context)
        tree = lookup.propose()
        trees.append(tree)
        # The target's greedy token after each node: the trajectory's next token at that depth (only
        # read on paths that match the trajectory), or one no node carries past the end of the output.
        beyond = int(tree.tokens.max()) + 1
        target = [output[pos + d] if pos + d < len(output) else beyond for d in tree.depth.tolist()]
        accepted = dk.verify_greedy(tree, np.asarray(target, dtype=np.int64)).num_accepted
        count = min(accepted + 1, len(output) - pos)
        context += output[pos : pos + count]
        pos += count
        emitted.append(count)
    return emitted, trees


class _Recording:
    """Wraps a replay drafter and keeps the trees it proposes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trees: list[dk.DraftTree] = []

    def propose(self, step: int) -> dk.DraftTree:
        tree: dk.DraftTree = self.inner.propose(step)
        self.trees.append(tree)
        return tree

    def extend(self, tokens: list[int]) -> None:
        self.inner.extend(tokens)


@pytest.mark.parametrize("index", SAMPLE)
def test_incremental_replay_matches_brute_force(index: int) -> None:
    trajectory = TRAJECTORIES[index]
    drafter = _Recording(mat.pl_chain(TRAJECTORIES, index))
    incremental = mat.replay(drafter, trajectory)
    brute, brute_trees = _brute_force_pl_chain(trajectory)
    assert incremental == brute
    assert drafter.trees == brute_trees
    assert mat.mat([incremental]) == mat.mat([brute]) == NEW_TOKENS / len(brute)


@pytest.mark.parametrize("name", list(mat.DECODEKIT_DRAFTERS))
def test_every_drafter_mat_at_least_one(name: str) -> None:
    factory = mat.DECODEKIT_DRAFTERS[name]
    steps = [mat.replay(factory(TRAJECTORIES, index), TRAJECTORIES[index]) for index in SAMPLE]
    for trajectory_steps in steps:
        assert sum(trajectory_steps) == NEW_TOKENS
        assert min(trajectory_steps) >= 1
        assert max(trajectory_steps) <= 33  # at most 32 draft nodes on a path, plus the bonus token
    assert mat.mat(steps) >= 1.0


def test_accepted_length_walks_first_matching_child() -> None:
    tree = dk.DraftTree.from_paths(5, [[1, 2, 3], [1, 4, 7], [6]])
    assert mat.accepted_length(tree, [1, 4, 7, 9], 0) == 3
    assert mat.accepted_length(tree, [1, 2, 9], 0) == 2
    assert mat.accepted_length(tree, [8, 1, 2], 0) == 0
    assert mat.accepted_length(tree, [0, 6, 1], 1) == 1
    # The output ends before the tree does.
    assert mat.accepted_length(tree, [1, 2], 0) == 2
