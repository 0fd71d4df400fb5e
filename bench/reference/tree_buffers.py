"""Reference draft-tree buffer construction, as Medusa and EAGLE-2 do it, plus the trees they are run on.

Both functions are our own re-implementations of the upstream procedures, kept step for step (same
loops, same torch ops, same output layout), because their Python-loop structure is what is being measured:

* :func:`medusa_generate_buffers` follows ``generate_medusa_buffers`` in Medusa's ``medusa/model/utils.py``
  (FasterDecoding/Medusa): the buffers built from a static template of index paths.
* :func:`eagle2_tree_buffers` follows the tail of ``Model.topK_genrate`` in EAGLE's ``eagle/model/cnets.py``
  (SafeAILab/EAGLE, EAGLE-2 onwards): the tree mask, position ids and retrieve indices built from the
  parent of each node of the dynamic draft tree.

The trees:

* :data:`TOKEN_RECYCLING_TEMPLATE`: the static tree of Token Recycling (Luo et al. 2024, arXiv:2408.08696,
  Figure 5 in Appendix 8.1) as Medusa-style index paths.
* :data:`EAGLE2_60_NODE_PARENTS`: a 60-node tree grown by EAGLE-2's expansion rule, see
  :func:`eagle2_expand`.

torch is optional: it is imported inside the functions that need it, so the trees import without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# --- Token Recycling's static tree ---------------------------------------------------------------------

# Figure 5 of the paper, layer by layer: for every node of a layer (breadth-first, left to right), how many
# children it has. A node's children are always candidates 0..c-1 of its own adjacency-matrix row, so the
# counts determine the tree. Transcribed from the ``static_tree`` layers in smpanaro/token-recycling
# (src/token_recycling.py, a third-party implementation that cites Figure 5) and checked against the text
# of Figure 5 extracted from the paper (paper.txt in the same repository): 80 numbered nodes whose labels
# are 41 zeros, 13 ones, 8 twos, 5 threes, 4 fours and 3 each of 5, 6, 7, under a separate root.
# The paper's prose says "80 nodes (including the root node)", i.e. 79 draft tokens; Figure 5 itself has
# 80 draft nodes plus the root, which is what is used here (81 nodes in all). The official code was not
# among the stored sources.
_TOKEN_RECYCLING_CHILD_COUNTS: tuple[tuple[int, ...], ...] = (
    (8,),
    (8, 4, 3, 2, 1, 1, 1, 1),
    (8, 3, 2, 1, 1, 1, 1, 1, 2, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0),
    (5, 2, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0),
    (3, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0),
    (2, 0, 0, 1, 0, 0, 0, 0),
)


def _paths_from_child_counts(layers: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    """Medusa-style paths (candidate ranks from the root) of every non-root node, breadth-first."""
    paths: list[tuple[int, ...]] = []
    frontier: list[tuple[int, ...]] = [()]
    for counts in layers:
        if len(counts) != len(frontier):
            raise ValueError(f"a layer lists {len(counts)} child counts for {len(frontier)} nodes")
        pairs = zip(frontier, counts, strict=True)
        frontier = [(*parent, rank) for parent, count in pairs for rank in range(count)]
        paths.extend(frontier)
    return paths


TOKEN_RECYCLING_TEMPLATE: list[tuple[int, ...]] = _paths_from_child_counts(_TOKEN_RECYCLING_CHILD_COUNTS)
"""The 80 draft nodes of Token Recycling's static tree (depth 6, at most 8 children), every node's path."""

# --- An EAGLE-2 tree -----------------------------------------------------------------------------------


def eagle2_expand(
    num_nodes: int = 60,
    depth: int = 5,
    top_k: int = 10,
    vocab: int = 32_000,
    logit_scale: float = 6.0,
    seed: int = 0,
) -> list[int]:
    """Grow a ``num_nodes``-node draft tree with EAGLE-2's rule and return its parent array (root: -1).

    EAGLE-2 (``topK_genrate``): the root gets its draft head's top-``top_k`` tokens; then ``depth`` times,
    each of the ``top_k`` frontier nodes proposes its own top-``top_k`` children, scored by the path's
    summed log-probability, and the ``top_k`` best of those ``top_k**2`` become the next frontier. Finally
    the ``num_nodes - 1`` best-scoring candidates over all steps are kept (in the order they were
    generated) and each one's parent is located among them with ``searchsorted``, as upstream does.

    The draft head's log-probabilities are synthetic: ``log_softmax(logit_scale * N(0, 1))`` over a
    Llama-2-sized vocabulary, from ``numpy.random.default_rng(seed)``. With the defaults (``top_k=10``,
    ``depth=5`` as in EAGLE-2's ``EaModel``; 60 nodes, 59 of them drafts) the draft's top-1 probability is
    about 0.45 and the tree is 10, 13, 12, 12, 9, 3 nodes wide at depths 1 to 6.
    """
    rng = np.random.default_rng(seed)

    def top_log_probs(rows: int) -> np.ndarray:
        logits = rng.standard_normal((rows, vocab)) * logit_scale
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        order = np.argsort(-log_probs, axis=1, kind="stable")[:, :top_k]
        return np.take_along_axis(log_probs, order, axis=1)

    scores = top_log_probs(1)[0]
    scores_list = [scores]
    # Upstream numbering: candidate j of the flattened score list is node j + 1; 0 is the root.
    parents_list = [np.zeros(1, dtype=np.int64)]
    frontier = np.arange(top_k)
    for step in range(depth):
        offset = 1 + top_k**2 * max(0, step - 1) + (top_k if step > 0 else 0)
        parents_list.append(frontier + offset)
        cumulative = (top_log_probs(top_k) + scores[:, None]).reshape(-1)
        frontier = np.argsort(-cumulative, kind="stable")[:top_k]
        scores = cumulative[frontier]
        scores_list.append(cumulative)
    all_scores = np.concatenate(scores_list)
    kept = np.sort(np.argsort(-all_scores, kind="stable")[: num_nodes - 1])
    kept_parents = np.concatenate(parents_list)[kept // top_k]
    parent_slots = np.searchsorted(kept, kept_parents - 1)
    parent_slots[kept_parents == 0] = -1
    return [-1, *(parent_slots + 1).tolist()]


# fmt: off
EAGLE2_60_NODE_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 5, 5, 8, 11, 11, 12, 12, 12, 17,
    17, 13, 13, 20, 21, 14, 24, 25, 25, 25, 25, 29, 29, 26, 31, 30, 27, 33, 36, 36, 36, 37, 38, 41, 44,
    42, 45, 48, 52, 54,
)
# fmt: on
"""``eagle2_expand()`` with its defaults, written out so the benchmark does not depend on numpy's
generator; ``bench/test_bench_tree.py`` checks that the two agree."""


# --- Medusa ----------------------------------------------------------------------------------------------

MEDUSA_TOPK = 10  # Medusa's TOPK: the candidates kept per head (the stride of ``tree_indices``).


def _pad_path(path: list[int], length: int, pad_value: int = -2) -> list[int]:
    return path + [pad_value] * (length - len(path))


def medusa_generate_buffers(
    medusa_choices: list[tuple[int, ...]], device: str = "cpu", topk: int = MEDUSA_TOPK
) -> dict[str, torch.Tensor]:
    """Medusa's ``generate_medusa_buffers``: the tree buffers of a static template of index paths.

    The choices (every node's path of candidate ranks, prefixes included) are sorted by length, then
    lexicographically; node ``i + 1`` is sorted choice ``i`` and node 0 the root. Returns

    * ``medusa_attn_mask`` float ``[1, 1, n, n]``: 1 where a node may attend (itself, its ancestors, the
      root), built with a Python loop that looks every ancestor up with ``list.index``;
    * ``tree_indices`` int64 ``[n]``: where each node's token sits in Medusa's flat candidate list
      (``rank + topk * depth_index + 1``);
    * ``medusa_position_ids`` int64 ``[n]``: the depth of each node;
    * ``retrieve_indices`` int64 ``[leaves, max_depth + 1]``: one root-to-leaf path per leaf, padded with
      -1, leaves in reverse sorted order (longest paths first).
    """
    import torch  # optional dependency: imported only when a torch reference actually runs

    sorted_choices = sorted(medusa_choices, key=lambda x: (len(x), x))
    medusa_len = len(sorted_choices) + 1

    depth_counts: list[int] = []
    prev_depth = 0
    for path in sorted_choices:
        depth = len(path)
        if depth != prev_depth:
            depth_counts.append(0)
        depth_counts[depth - 1] += 1
        prev_depth = depth

    attn_mask = torch.eye(medusa_len, medusa_len)
    attn_mask[:, 0] = 1
    start = 0
    for i in range(len(depth_counts)):
        for j in range(depth_counts[i]):
            choice = sorted_choices[start + j]
            if len(choice) == 1:
                continue
            ancestors = [sorted_choices.index(choice[: c + 1]) + 1 for c in range(len(choice) - 1)]
            attn_mask[j + start + 1, ancestors] = 1
        start += depth_counts[i]

    tree_indices = torch.zeros(medusa_len, dtype=torch.long)
    tree_indices[0] = 0
    start = 0
    for i in range(len(depth_counts)):
        for j in range(depth_counts[i]):
            tree_indices[start + j + 1] = sorted_choices[start + j][-1] + topk * i + 1
        start += depth_counts[i]

    position_ids = torch.zeros(medusa_len, dtype=torch.long)
    start = 0
    for i in range(len(depth_counts)):
        position_ids[start + 1 : start + depth_counts[i] + 1] = i + 1
        start += depth_counts[i]

    retrieve_nest: list[list[int]] = []
    retrieve_paths: list[tuple[int, ...]] = []
    for i in range(len(sorted_choices)):
        choice = sorted_choices[-i - 1]
        if choice in retrieve_paths:
            continue
        indices = []
        for c in range(len(choice)):
            indices.append(sorted_choices.index(choice[: c + 1]))
            retrieve_paths.append(choice[: c + 1])
        retrieve_nest.append(indices)
    max_length = max(len(x) for x in retrieve_nest)
    retrieve = torch.tensor([_pad_path(p, max_length) for p in retrieve_nest], dtype=torch.long) + 1
    retrieve = torch.cat([torch.zeros((retrieve.shape[0], 1), dtype=torch.long), retrieve], dim=1)

    buffers = {
        "medusa_attn_mask": attn_mask.unsqueeze(0).unsqueeze(0),
        "tree_indices": tree_indices,
        "medusa_position_ids": position_ids,
        "retrieve_indices": retrieve,
    }
    return {k: v.clone().to(device) for k, v in buffers.items()}


# --- EAGLE-2 ---------------------------------------------------------------------------------------------


def eagle2_tree_buffers(
    parents: torch.Tensor, sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EAGLE-2's tree mask, position ids and retrieve indices from the parent of each node.

    ``parents`` is int64 ``[n]`` with ``parents[0] == -1`` (the root) and every other parent an earlier
    node: upstream's ``mask_index`` (``parents[1:]``) once ``searchsorted`` has located the parents.
    As upstream: each mask row is the identity row plus the root column, OR-ed with its parent's row
    (``add_`` on bool rows, one torch op per node); position ids are the row sums minus one; the leaves are
    the nodes that are nobody's parent (``torch.unique``, then a Python membership test per node), and
    each leaf's path is walked up through the parent list. ``sample=True`` adds the sort upstream applies
    when sampling (leaf paths ordered lexicographically, padding last).

    Returns ``tree_mask`` float ``[1, 1, n, n]`` (1 = may attend), ``tree_position_ids`` int64 ``[n]``
    (depths; the caller adds the prefix length) and ``retrieve_indices`` int64 ``[leaves, max_depth + 1]``
    padded with -1, one row per leaf in node order.
    """
    import torch  # optional dependency: imported only when a torch reference actually runs

    total_tokens = parents.shape[0] - 1
    mask_index = parents[1:]
    mask_index_list = mask_index.tolist()
    tree_mask = torch.eye(total_tokens + 1).bool()
    tree_mask[:, 0] = True
    for i in range(total_tokens):
        tree_mask[i + 1].add_(tree_mask[mask_index_list[i]])
    tree_position_ids = torch.sum(tree_mask, dim=1) - 1
    tree_mask = tree_mask.float()[None, None]

    max_depth = torch.max(tree_position_ids) + 1
    noleaf_index = torch.unique(mask_index).tolist()
    noleaf_num = len(noleaf_index) - 1
    leaf_num = total_tokens - noleaf_num
    retrieve_indices = (torch.zeros(leaf_num, int(max_depth.item()), dtype=torch.long) - 1).tolist()
    rid = 0
    position_ids_list = tree_position_ids.tolist()
    for i in range(total_tokens + 1):
        if i not in noleaf_index:
            cid = i
            depth = position_ids_list[i]
            for j in reversed(range(depth + 1)):
                retrieve_indices[rid][j] = cid
                cid = mask_index_list[cid - 1]
            rid += 1

    if sample:
        maxitem = total_tokens + 5
        retrieve_indices = sorted(retrieve_indices, key=lambda row: [x if x >= 0 else maxitem for x in row])
    return tree_mask, tree_position_ids, torch.tensor(retrieve_indices, dtype=torch.long)
