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
