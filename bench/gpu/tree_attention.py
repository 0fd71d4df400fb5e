"""GPU check and timing of decodekit's tree-attention kernel (issue 9), in one run.

Usage (on a machine with a CUDA GPU, torch and CuPy, and decodekit installed from the abi3 wheel)::

    python bench/gpu/tree_attention.py [--quick] [--json results.json]

1. **Correctness.** For T in {1, 8, 16, 64}, L in {1k, 4k, 32k}, fp16 and bf16, GQA 32/8 and 32/32 and
   D = 128, it compares the kernel with `decodekit.torch.tree_attention_reference` on fresh random inputs
   (never zeros) and a random draft tree.
   - The relative error ||out - ref|| / ||ref|| must be under 1e-2 for bf16 and 3e-3 for fp16.
   - There must be no NaN.
   - Every output element must be written: `out=` is pre-filled with NaN.
2. **Timing**, in the same process, at every shape. The kernel is timed against:
   - PyTorch SDPA with a dense additive mask (`enable_gqa=True`);
   - the eager matmul-softmax path;
   - FlashInfer's `single_prefill_with_kv_cache` with a custom mask, when it can be imported.

   Each is the median of CUDA-event timings. The kernel's achieved bandwidth is reported as a
   fraction of a device-to-device copy measured in the same run. The bytes are the K and V read for
   the prefix plus tree, q read and out written.

The script exits non-zero when any correctness check fails, so it can gate a device run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import decodekit as dk
import decodekit.cuda as dkc
import decodekit.torch as dkt
import numpy as np
import torch
from timing import copy_bandwidth, main, median_ms

TOLERANCE = {torch.float16: 3e-3, torch.bfloat16: 1e-2}


def random_tree(rng: np.random.Generator, num_nodes: int) -> dk.DraftTree:
    """A random draft tree (every node's parent drawn among the earlier nodes)."""
    parents = [-1] + [int(rng.integers(0, i)) for i in range(1, num_nodes)]
    return dk.DraftTree(rng.integers(0, 1000, size=num_nodes).astype(np.int32), np.array(parents, np.int32))


def dense_additive_mask(tree_mask: Any, num_tree: int, prefix_len: int, dtype: Any) -> Any:
    visible = torch.ones((num_tree, prefix_len + num_tree), dtype=torch.bool, device="cuda")
    visible[:, prefix_len:] = dkt.tree_visibility(tree_mask, num_tree, device="cuda")
    additive = torch.zeros(visible.shape, dtype=dtype, device="cuda")
    return additive.masked_fill_(~visible, float("-inf")), visible


def sdpa(q: Any, k: Any, v: Any, additive: Any, num_keys: int) -> Any:
    """SDPA over [1, H, T, D] views with a dense additive mask and GQA."""
    return torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0),
        k[:num_keys].transpose(0, 1).unsqueeze(0),
        v[:num_keys].transpose(0, 1).unsqueeze(0),
        attn_mask=additive,
        enable_gqa=True,
    )


def eager(q: Any, k: Any, v: Any, additive: Any, num_keys: int) -> Any:
    """The eager path of HF attention: repeat KV heads, matmul, softmax in fp32, matmul."""
    group = q.shape[1] // k.shape[1]
    keys = k[:num_keys].repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, N, D]
    values = v[:num_keys].repeat_interleave(group, dim=1).transpose(0, 1)
    scores = torch.matmul(q.transpose(0, 1), keys.transpose(1, 2)) * q.shape[-1] ** -0.5 + additive
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, values)


def flashinfer_fn(q: Any, k: Any, v: Any, visible: Any, num_keys: int) -> Callable[[], Any] | None:
    try:
        import flashinfer
    except ImportError:
        return None
    keys, values = k[:num_keys].contiguous(), v[:num_keys].contiguous()
    return lambda: flashinfer.single_prefill_with_kv_cache(q, keys, values, custom_mask=visible)


def check_and_time(
    dtype: Any,
    q_heads: int,
    kv_heads: int,
    num_tree: int,
    cache_len: int,
    rng: np.random.Generator,
    bandwidth: float,
) -> dict[str, Any]:
    """Check the kernel at one shape against the reference, then time it and the baselines."""
    prefix_len = cache_len - num_tree
    head_dim = 128
    q = torch.randn(num_tree, q_heads, head_dim, device="cuda", dtype=dtype)
    k = torch.randn(cache_len, kv_heads, head_dim, device="cuda", dtype=dtype)
    v = torch.randn(cache_len, kv_heads, head_dim, device="cuda", dtype=dtype)
    mask = torch.from_numpy(random_tree(rng, num_tree).packed_mask()).cuda()
    out = torch.full_like(q, float("nan"))  # every element must be overwritten
    dkc.tree_attention(q, k, v, mask, prefix_len, out=out)
    ref = dkt.tree_attention_reference(q, k, v, mask, prefix_len).float()
    error = float(torch.linalg.norm(out.float() - ref) / torch.linalg.norm(ref))
    passed = bool(torch.isfinite(out).all()) and error < TOLERANCE[dtype]
    additive, visible = dense_additive_mask(mask, num_tree, prefix_len, dtype)
    timings = {
        "decodekit": median_ms(lambda: dkc.tree_attention(q, k, v, mask, prefix_len, out=out)),
        "sdpa": median_ms(lambda: sdpa(q, k, v, additive, cache_len)),
        "eager": median_ms(lambda: eager(q, k, v, additive, cache_len)),
    }
    fi = flashinfer_fn(q, k, v, visible, cache_len)
    if fi is not None:
        try:
            timings["flashinfer"] = median_ms(fi)
        except Exception as error:  # an API change in FlashInfer must not stop the run
            print(f"# flashinfer failed: {error}")
    moved = 2 * cache_len * kv_heads * head_dim * 2 + 2 * q.numel() * 2
    seconds = timings["decodekit"] * 1e-3
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "heads": f"{q_heads}/{kv_heads}",
        "T": num_tree,
        "L": cache_len,
        "rel_error": error,
        "passed": passed,
        "ms": timings,
        "bandwidth_fraction": moved / seconds / bandwidth,
        "tflops": 4 * num_tree * q_heads * cache_len * head_dim / seconds / 1e12,
        "speedup_vs_sdpa": timings["sdpa"] / timings["decodekit"],
    }


def run(quick: bool) -> tuple[list[dict[str, Any]], bool]:
    """Check and time every shape; returns the rows and whether every check passed."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    bandwidth = copy_bandwidth()
    props = torch.cuda.get_device_properties(0)
    print(f"# {props.name}, {props.multi_processor_count} SMs; copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    trees = (1, 16, 64) if quick else (1, 8, 16, 64)
    lengths = (1024, 32768) if quick else (1024, 4096, 8192, 32768)
    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        for q_heads, kv_heads in ((32, 8), (32, 32)):
            for num_tree in trees:
                for cache_len in lengths:
                    row = check_and_time(dtype, q_heads, kv_heads, num_tree, cache_len, rng, bandwidth)
                    rows.append(row)
                    timings = row["ms"]
                    others = " ".join(
                        f"{name} {ms:.3f}" for name, ms in timings.items() if name != "decodekit"
                    )
                    print(
                        f"{row['dtype']:>8} {row['heads']:>5} T={num_tree:<3} L={cache_len:<6} "
                        f"err={row['rel_error']:.2e} {'ok ' if row['passed'] else 'BAD'} "
                        f"dk {timings['decodekit']:.3f} ms ({row['bandwidth_fraction']:.0%} of copy, "
                        f"{row['tflops']:.1f} TFLOP/s) | {others} | x{row['speedup_vs_sdpa']:.2f} vs SDPA"
                    )
                    sys.stdout.flush()
    return rows, all(row["passed"] for row in rows)


if __name__ == "__main__":
    sys.exit(main(__doc__.split("\n")[0], run, "fewer shapes (T 1/16/64, L 1k/32k)"))
