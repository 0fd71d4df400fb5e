"""Helpers that connect decodekit primitives to torch tensors (torch is optional: imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from decodekit import _core


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("decodekit.torch needs torch: pip install 'decodekit[torch]'") from error


def recycle(recycler: _core.TokenRecycler, tokens: Any, logits: Any, k: int | None = None) -> None:
    """One Token Recycling update from a forward pass, in one call.

    ``tokens`` (int ``[n]``, tensor or array) are the tokens of the ``n`` positions the model just scored
    and ``logits`` (float ``[n, V]`` tensor, any device) their next-token logits. The top-``k`` ids are
    taken on the logits' device, copied to the host once, and written with ``recycler.update``. ``k``
    defaults to ``recycler.k`` and must equal it.
    """
    torch = _torch()
    k = recycler.k if k is None else k
    if k != recycler.k:
        raise _core.InvalidInputError(f"k = {k} disagrees with the recycler's k = {recycler.k}")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
        raise _core.InvalidInputError(f"logits must be a 2-D torch tensor [n, vocab], got {shape}")
    if logits.shape[1] < k:
        raise _core.InvalidInputError(f"logits has {logits.shape[1]} columns, fewer than k = {k}")
    top = torch.topk(logits, k, dim=-1).indices.to(device="cpu", dtype=torch.int32).numpy()
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.to(device="cpu", dtype=torch.int32).numpy()
    host_tokens = np.asarray(tokens)
    if host_tokens.ndim != 1 or host_tokens.shape[0] != top.shape[0]:
        raise _core.InvalidInputError(
            f"tokens must be 1-D with one token per logits row ({top.shape[0]}), "
            f"got shape {host_tokens.shape}"
        )
    recycler.update(host_tokens, top)


def apply_token_bitmask_(logits: Any, bitmask: Any) -> None:
    """Set ``logits[i, t] = -inf`` in place wherever bit ``t`` of ``bitmask[i]`` is clear.

    ``logits`` is a float torch tensor ``[batch, V]`` or ``[V]`` on any device; ``bitmask`` is int32
    ``[batch, W]`` or ``[W]`` with ``32 * W >= V`` (a numpy array or a tensor; moved to the logits' device).
    float32 logits on the CPU take decodekit's native path; other dtypes and devices use torch ops.
    """
    torch = _torch()
    if not isinstance(logits, torch.Tensor):
        raise _core.InvalidInputError(f"logits must be a torch tensor, got {type(logits).__name__}")
    if isinstance(bitmask, np.ndarray):
        bitmask = torch.from_numpy(bitmask)
    if not isinstance(bitmask, torch.Tensor) or bitmask.dtype != torch.int32:
        kind = bitmask.dtype if isinstance(bitmask, torch.Tensor) else type(bitmask).__name__
        raise _core.InvalidInputError(f"bitmask must be an int32 tensor or numpy array, got {kind}")
    if logits.dim() not in (1, 2) or bitmask.dim() != logits.dim():
        raise _core.InvalidInputError(
            f"logits {tuple(logits.shape)} and bitmask {tuple(bitmask.shape)} must both be 1-D or both 2-D"
        )
    width = logits.shape[-1]
    if bitmask.shape[-1] * 32 < width or (logits.dim() == 2 and bitmask.shape[0] != logits.shape[0]):
        raise _core.InvalidInputError(
            f"bitmask {tuple(bitmask.shape)} does not cover logits {tuple(logits.shape)}: "
            "it needs the same rows and at least ceil(V / 32) words per row"
        )
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.is_contiguous():
        _core.apply_token_bitmask(logits.detach().numpy(), bitmask.cpu().contiguous().numpy())
        return
    bits = torch.arange(32, device=logits.device, dtype=torch.int32)
    words = bitmask.to(logits.device)
    allowed = ((words.unsqueeze(-1) >> bits) & 1).bool().flatten(-2)[..., :width]
    logits.masked_fill_(~allowed, float("-inf"))


def tree_mask_words(tree_mask: Any, num_tree: int, device: Any = None) -> Any:
    """A tree-attention mask as int32 words ``[T, ceil(T / 32)]`` on ``device`` (row i sees tree token j
    when bit ``j % 32`` of word ``j // 32`` is set).

    ``tree_mask`` (tensor or numpy array) is either that packed int32 layout, as returned by
    ``DraftTree.packed_mask()``, or one 64-bit word per row, int64/uint64 ``[T]`` with ``T <= 64``.
    """
    torch = _torch()
    mask = torch.as_tensor(tree_mask, device=device)
    words = (num_tree + 31) // 32
    if mask.dim() == 1 and mask.dtype in (torch.int64, torch.uint64):
        if mask.shape[0] != num_tree or num_tree > 64:
            raise _core.InvalidInputError(
                f"a one-word-per-row tree_mask needs shape [T] with T <= 64, got {tuple(mask.shape)} "
                f"for T = {num_tree}"
            )
        wide = mask.view(torch.int64)  # same bits for uint64
        halves = torch.stack([wide & 0xFFFFFFFF, (wide >> 32) & 0xFFFFFFFF], dim=1)[:, :words]
        # Keep the raw bits: values of 2**31 and above become the negative int32 with the same bits.
        return (halves - ((halves >> 31) << 32)).to(torch.int32).contiguous()
    if mask.dim() != 2 or mask.shape[0] != num_tree or mask.shape[1] < words or mask.dtype != torch.int32:
        raise _core.InvalidInputError(
            f"tree_mask must be int32 [T, ceil(T/32)] = [{num_tree}, {words}] (DraftTree.packed_mask) or "
            f"int64/uint64 [T], got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask[:, :words].contiguous()


def tree_visibility(tree_mask: Any, num_tree: int, device: Any = None) -> Any:
    """The tree part of a tree-attention mask as a dense bool tensor ``[T, T]`` (row i sees tree token j);
    ``tree_mask`` in either layout of :func:`tree_mask_words`."""
    torch = _torch()
    words = tree_mask_words(tree_mask, num_tree, device).to(torch.int64) & 0xFFFFFFFF
    j = torch.arange(num_tree, device=words.device)
    return ((words[:, j // 32] >> (j % 32)) & 1).bool()


def tree_attention_reference(
    q: Any, k_cache: Any, v_cache: Any, tree_mask: Any, prefix_len: int, *, scale: float | None = None
) -> Any:
    """Tree attention in plain torch with fp32 math and a dense mask: the reference for
    :func:`decodekit.cuda.tree_attention` and its CPU path.

    ``q`` is ``[T, Hq, D]``; ``k_cache`` and ``v_cache`` are ``[L, Hkv, D]`` with ``L >= prefix_len + T``,
    the T tree tokens' keys and values at positions ``prefix_len .. prefix_len + T - 1``; ``Hq`` must be a
    multiple of ``Hkv`` (GQA). Query ``i`` sees every prefix key and tree key ``j`` when ``tree_mask`` says
    so (see :func:`tree_visibility`). ``scale`` defaults to ``1 / sqrt(D)``. Returns ``[T, Hq, D]`` in
    ``q``'s dtype; a row that sees no key at all is zeros.
    """
    torch = _torch()
    num_tree, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    if num_q_heads % num_kv_heads != 0:
        raise _core.InvalidInputError(f"Hq = {num_q_heads} is not a multiple of Hkv = {num_kv_heads}")
    num_keys = prefix_len + num_tree
    if k_cache.shape[0] < num_keys:
        raise _core.InvalidInputError(
            f"the cache holds {k_cache.shape[0]} tokens, fewer than prefix_len + T = {num_keys}"
        )
    group = num_q_heads // num_kv_heads
    scale = head_dim**-0.5 if scale is None else scale
    keys = k_cache[:num_keys].float().repeat_interleave(group, dim=1)
    values = v_cache[:num_keys].float().repeat_interleave(group, dim=1)
    scores = torch.einsum("thd,nhd->htn", q.float(), keys) * scale
    visible = torch.ones((num_tree, num_keys), dtype=torch.bool, device=q.device)
    visible[:, prefix_len:] = tree_visibility(tree_mask, num_tree, device=q.device)
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1).nan_to_num(0.0)
    return torch.einsum("htn,nhd->thd", probs, values).to(q.dtype)
