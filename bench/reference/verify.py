"""Reference draft-tree verifiers in plain torch, the way a Python inference stack writes them.

* :func:`torch_verify_tree`: lossless recursive rejection sampling over a tree of deterministic drafts
  (SpecInfer; the semantics of ``decodekit.verify_tree`` with ``draft_probs=None``), one node at a time.
* :func:`torch_verify_greedy_batched`: greedy tree verification as Medusa's ``evaluate_posterior`` does it
  at temperature 0 (candidates gathered through ``retrieve_indices``, compared with the target's argmax,
  ``cumprod``, longest accepted path), vectorized over a batch of requests.

torch is optional: it is imported inside the functions, so this module imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def torch_verify_tree(
    parents: torch.Tensor, tokens: torch.Tensor, target_probs: torch.Tensor, generator: torch.Generator
) -> tuple[list[int], list[int]]:
    """Verify a draft tree against the target by recursive rejection sampling; return what it accepts.

    ``parents`` / ``tokens`` int ``[n]`` (``parents[0] == -1``, parents before children), ``target_probs``
    float ``[n, V]`` (row ``u``: the target distribution after node ``u``). From the root, the children of
    the current node are tried in node order: child ``x`` is accepted with probability ``p'(x)``, where
    ``p'`` is the node's target row with the already rejected siblings zeroed and renormalized (a clone, an
    indexed store and a division over ``V`` per rejection). If a child is accepted the walk moves to it; if
    all are rejected the recovered token is drawn from the final ``p'`` with ``torch.multinomial``, and
    after an accepted leaf the bonus token is drawn from the leaf's row.

    Returns ``(accepted_nodes, emitted_tokens)``: the accepted root-to-node path (root first) and the
    accepted draft tokens followed by the one token drawn from the target.
    """
    import torch  # optional dependency: imported only when a torch reference actually runs

    parent_list = parents.tolist()
    token_list = tokens.tolist()
    children: list[list[int]] = [[] for _ in parent_list]
    for node in range(1, len(parent_list)):
        children[parent_list[node]].append(node)

    accepted = [0]
    emitted: list[int] = []
    node = 0
    while True:
        residual = target_probs[node]
        next_node = None
        for child in children[node]:
            x = token_list[child]
            u = torch.rand((), generator=generator).item()
            if u < residual[x].item():
                next_node = child
                break
            residual = residual.clone()
            residual[x] = 0.0
            residual = residual / residual.sum()
        if next_node is None:
            emitted.append(int(torch.multinomial(residual, 1, generator=generator).item()))
            return accepted, emitted
        node = next_node
        accepted.append(node)
        emitted.append(token_list[node])


def torch_verify_greedy_batched(
    tokens: torch.Tensor, target_tokens: torch.Tensor, retrieve_indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Medusa-style greedy verification of ``B`` draft trees at once.

    ``tokens`` int64 ``[B, n]``: each tree's node tokens (root first, trees padded to the same ``n``);
    ``target_tokens`` int64 ``[B, n]``: the target's argmax after each node; ``retrieve_indices`` int64
    ``[B, L, D]``: every root-to-leaf path of each tree, padded with -1 (Medusa's buffer, stacked).
    Padding points at an extra column whose draft and target tokens never match. As in Medusa's
    ``evaluate_posterior`` at temperature 0: ``candidates[:, 1:] == argmax[:, :-1]`` along each path,
    ``cumprod`` and ``sum`` give each path's accepted length, ``argmax`` picks the first longest path.

    Returns ``accept_length`` ``[B]``, ``best_path`` ``[B, D]`` (node indices of the chosen path, so the
    accepted nodes are ``best_path[b, :accept_length[b] + 1]``; padding reads ``n``) and ``next_token``
    ``[B]`` (the target's token after the last accepted node).
    """
    import torch  # optional dependency: imported only when a torch reference actually runs

    batch, n = tokens.shape
    _, leaves, depth = retrieve_indices.shape
    tokens_ext = torch.cat([tokens, tokens.new_full((batch, 1), -1)], dim=1)
    target_ext = torch.cat([target_tokens, target_tokens.new_full((batch, 1), -2)], dim=1)
    paths = torch.where(retrieve_indices < 0, n, retrieve_indices)
    flat = paths.view(batch, -1)
    candidates = tokens_ext.gather(1, flat).view(batch, leaves, depth)
    targets = target_ext.gather(1, flat).view(batch, leaves, depth)
    posterior_mask = (candidates[:, :, 1:] == targets[:, :, :-1]).int()
    candidates_accept_length = torch.cumprod(posterior_mask, dim=2).sum(dim=2)
    best = torch.argmax(candidates_accept_length, dim=1)
    rows = torch.arange(batch)
    accept_length = candidates_accept_length[rows, best]
    best_path = paths[rows, best]
    next_token = targets[rows, best, accept_length]
    return accept_length, best_path, next_token
