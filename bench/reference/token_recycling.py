"""Reference Token Recycling per-step host work in torch on the CPU, as the paper's code structures it.

Token Recycling (Luo et al. 2024, arXiv:2408.08696; official code Luowaterbi/TokenRecycling, built on
Spec-Bench's Medusa-style tree buffers) keeps a ``[V, k]`` adjacency matrix of token ids as a torch tensor
and, around each target forward pass, does on the host:

(a) **update**: the target scored every node of the last draft tree; the top-k of each node's logits is
    written into the row of that node's token, ``matrix[tokens] = topk_ids`` (one ``index_put``; a later
    duplicate token wins, as with decodekit's ``update``);
(b) **draft**: the static template is filled breadth-first, level by level: the tokens of a level are
    ``matrix[parent_tokens, ranks]`` for the level's (parent index, rank) pairs, one advanced-indexing
    gather per level launched from Python (6 levels for the paper's 80-node tree);
(c) **tree buffers**: the tree attention mask over the 81 nodes (root included) and the position ids.
    The official code derives the static template's buffers (mask, depths) once, Medusa style, and per
    step sets the position ids from the current sequence length. Here the ``[81, 81]`` bool mask is also
    allocated and filled every step (one ``index_put`` from the precomputed ancestor pairs), because
    decodekit returns a fresh mask with every proposal (its trees can be pruned where the matrix has
    empty slots); the position ids are ``prefix_len + depth`` (one add).

Only the draft-side host work is modelled: no target forward pass, no verification. The tree is assumed
full (the official matrix has no empty slots), so no pruning is done. This is our own code, written from
the paper's description and the official repository's template and README, not a copy of upstream code.

torch is imported inside the functions so that this module imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TemplateIndex:
    """The template's per-level index tensors, built once (as the reference builds its tree buffers)."""

    num_nodes: int
    levels: list[tuple[int, int, torch.Tensor, torch.Tensor]]  # (start, end, parent node index, rank)
    depth: torch.Tensor  # int64 [num_nodes]
    ancestor_rows: torch.Tensor  # int64: (row, col) pairs where node ``row`` may attend to node ``col``
    ancestor_cols: torch.Tensor


def build_template_index(paths: list[tuple[int, ...]]) -> TemplateIndex:
    """Index the Medusa-style ``paths`` (breadth-first, root excluded) for level-by-level drafting."""
    import torch

    node_of: dict[tuple[int, ...], int] = {(): 0}
    for i, path in enumerate(paths):
        node_of[path] = i + 1
    parents = [-1] + [node_of[path[:-1]] for path in paths]
    ranks = [0] + [path[-1] for path in paths]
    depths = [0] + [len(path) for path in paths]
    if depths != sorted(depths):
        raise ValueError("paths must be listed level by level (breadth-first)")
    levels = []
    start = 1
    while start < len(depths):
        end = start
        while end < len(depths) and depths[end] == depths[start]:
            end += 1
        levels.append(
            (
                start,
                end,
                torch.tensor(parents[start:end], dtype=torch.int64),
                torch.tensor(ranks[start:end], dtype=torch.int64),
            )
        )
        start = end
    rows, cols = [], []
    for node in range(len(parents)):
        ancestor = node
        while ancestor >= 0:
            rows.append(node)
            cols.append(ancestor)
            ancestor = parents[ancestor]
    return TemplateIndex(
        num_nodes=len(parents),
        levels=levels,
        depth=torch.tensor(depths, dtype=torch.int64),
        ancestor_rows=torch.tensor(rows, dtype=torch.int64),
        ancestor_cols=torch.tensor(cols, dtype=torch.int64),
    )


def update(matrix: torch.Tensor, tokens: torch.Tensor, topk_ids: torch.Tensor) -> None:
    """(a) Recycle the scored nodes' top-k: ``matrix[tokens] = topk_ids`` (int64 tensors)."""
    matrix[tokens] = topk_ids


def draft(matrix: torch.Tensor, root_token: int, index: TemplateIndex) -> torch.Tensor:
    """(b) Fill the template breadth-first: one gather per level. Returns the int64 tokens, root first."""
    import torch

    tokens = torch.empty(index.num_nodes, dtype=torch.int64)
    tokens[0] = root_token
    for start, end, parent, rank in index.levels:
        tokens[start:end] = matrix[tokens[parent], rank]
    return tokens


def draft_batch(matrix: torch.Tensor, root_tokens: torch.Tensor, index: TemplateIndex) -> torch.Tensor:
    """(b) batched over sequences: one gather per level over ``[B, nodes_in_level]``. Returns ``[B, n]``."""
    import torch

    tokens = torch.empty((root_tokens.shape[0], index.num_nodes), dtype=torch.int64)
    tokens[:, 0] = root_tokens
    for start, end, parent, rank in index.levels:
        tokens[:, start:end] = matrix[tokens[:, parent], rank]
    return tokens


def tree_buffers(index: TemplateIndex, prefix_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(c) A freshly allocated ``[n, n]`` bool tree mask (ancestors and self) and the position ids."""
    import torch

    mask = torch.zeros((index.num_nodes, index.num_nodes), dtype=torch.bool)
    mask[index.ancestor_rows, index.ancestor_cols] = True
    return mask, index.depth + prefix_len


def step(
    matrix: torch.Tensor,
    scored_tokens: torch.Tensor,
    scored_topk: torch.Tensor,
    root_token: int,
    index: TemplateIndex,
    prefix_len: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: (a) update, (b) draft, (c) mask and positions. Returns the tokens, mask and positions."""
    update(matrix, scored_tokens, scored_topk)
    tokens = draft(matrix, root_token, index)
    mask, positions = tree_buffers(index, prefix_len)
    return tokens, mask, positions
