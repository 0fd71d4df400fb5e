"""Tree attention: the torch reference against a float64 numpy one on random trees, every CUDA kernel
configuration compiled with NVRTC for sm_80 and sm_90 without spills, and the launcher's argument checks.
The kernel's numbers are checked on a GPU by `bench/gpu/tree_attention.py` (and the `gpu` test below)."""

from __future__ import annotations

from typing import Any

import decodekit as dk
import numpy as np
import nvrtc
import pytest
import reference

torch = pytest.importorskip("torch", reason="tree attention's reference and launcher need torch")

import decodekit.cuda as dkc  # noqa: E402
import decodekit.torch as dkt  # noqa: E402


def random_tree(rng: np.random.Generator, num_nodes: int) -> dk.DraftTree:
    parents = [-1] + [int(rng.integers(0, i)) for i in range(1, num_nodes)]
    return dk.DraftTree(rng.integers(0, 1000, size=num_nodes).astype(np.int32), np.array(parents, np.int32))


def random_inputs(
    rng: np.random.Generator, num_tree: int, prefix_len: int, q_heads: int, kv_heads: int, head_dim: int
) -> tuple[Any, Any, Any]:
    cache_len = prefix_len + num_tree + int(rng.integers(0, 5))  # caches may be longer than needed
    q = torch.from_numpy(rng.standard_normal((num_tree, q_heads, head_dim)).astype(np.float32))
    k = torch.from_numpy(rng.standard_normal((cache_len, kv_heads, head_dim)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((cache_len, kv_heads, head_dim)).astype(np.float32))
    return q, k, v


@pytest.mark.parametrize(
    ("num_tree", "prefix_len", "q_heads", "kv_heads", "head_dim"),
    [(1, 0, 4, 4, 64), (7, 13, 8, 2, 64), (33, 50, 4, 1, 128), (64, 5, 6, 3, 32), (100, 20, 2, 2, 16)],
)
def test_reference_matches_float64_numpy(
    num_tree: int, prefix_len: int, q_heads: int, kv_heads: int, head_dim: int
) -> None:
    rng = np.random.default_rng(num_tree * 1000 + prefix_len)
    tree = random_tree(rng, num_tree)
    q, k, v = random_inputs(rng, num_tree, prefix_len, q_heads, kv_heads, head_dim)
    scale = float(rng.uniform(0.05, 0.3))
    expected = reference.tree_attention(
        q.numpy(), k.numpy(), v.numpy(), tree.attention_mask(), prefix_len, scale
    )
    got = dkt.tree_attention_reference(q, k, v, tree.packed_mask(), prefix_len, scale=scale)
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-5, atol=2e-5)
    if num_tree <= 64:  # one 64-bit word per row gives the same result
        words = (tree.attention_mask().astype(np.uint64) << np.arange(num_tree, dtype=np.uint64)).sum(axis=1)
        again = dkt.tree_attention_reference(q, k, v, words.astype(np.uint64), prefix_len, scale=scale)
        np.testing.assert_array_equal(again.numpy(), got.numpy())


def test_reference_in_half_precision_and_default_scale() -> None:
    rng = np.random.default_rng(5)
    tree = random_tree(rng, 16)
    q, k, v = random_inputs(rng, 16, 40, 8, 2, 128)
    expected = reference.tree_attention(q.numpy(), k.numpy(), v.numpy(), tree.attention_mask(), 40, 128**-0.5)
    for dtype, tolerance in ((torch.float16, 3e-3), (torch.bfloat16, 2e-2)):
        got = dkt.tree_attention_reference(q.to(dtype), k.to(dtype), v.to(dtype), tree.packed_mask(), 40)
        assert got.dtype == dtype
        error = np.linalg.norm(got.float().numpy() - expected) / np.linalg.norm(expected)
        assert error < tolerance


def test_tree_mask_layouts_agree() -> None:
    rng = np.random.default_rng(9)
    tree = random_tree(rng, 64)
    packed = dkt.tree_mask_words(tree.packed_mask(), 64)
    words = (tree.attention_mask().astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1)
    assert torch.equal(dkt.tree_mask_words(words, 64), packed)
    assert torch.equal(dkt.tree_mask_words(words.view(np.int64), 64), packed)
    assert torch.equal(dkt.tree_visibility(packed, 64), torch.from_numpy(tree.attention_mask()))
    with pytest.raises(dk.InvalidInputError, match=r"int32 \[T, ceil\(T/32\)\]"):
        dkt.tree_mask_words(np.zeros((64, 1), np.int32), 64)
    with pytest.raises(dk.InvalidInputError, match="T <= 64"):
        dkt.tree_mask_words(np.zeros(65, np.uint64), 65)


# --- the CUDA kernel, compiled without a GPU ------------------------------------------------------------

CONFIGURATIONS = [
    (dtype, head_dim, group)
    for dtype in ("float16", "bfloat16")
    for head_dim in (64, 128)
    for group in (1, 2, 4, 8)
]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize(("dtype", "head_dim", "group"), CONFIGURATIONS)
def test_kernel_compiles_without_spills(arch: str, dtype: str, head_dim: int, group: int) -> None:
    report = nvrtc.compile_report(dkc.kernel_source(dtype, head_dim, group), arch)
    nvrtc.assert_no_spills(report, ["dk_tree_attention_split", "dk_tree_attention_combine"], arch)


def test_kernel_source_is_embedded() -> None:
    source = dk._core._kernel_source("tree_attention")
    assert "dk_tree_attention_split" in source
    assert "dk_tree_attention_combine" in source
    with pytest.raises(dk.InvalidInputError, match="no kernel source"):
        dk._core._kernel_source("nope")
    with pytest.raises(dk.InvalidInputError, match="head_dim"):
        dkc.kernel_source("float16", 96, 1)
    with pytest.raises(dk.InvalidInputError, match="dtype"):
        dkc.kernel_source("float32", 64, 1)


@pytest.mark.parametrize("num_keys", [1, 31, 32, 33, 1000, 32768 + 64])
@pytest.mark.parametrize(("rows", "kv_heads"), [(1, 8), (64, 8), (256, 8), (4096, 32)])
def test_launch_plan_covers_every_key_once(num_keys: int, rows: int, kv_heads: int) -> None:
    splits, keys_per_split, row_tiles = dkc.launch_plan(num_keys, rows, kv_heads, sm_count=132)
    assert keys_per_split % 32 == 0
    assert row_tiles * 64 >= rows > (row_tiles - 1) * 64
    starts = [s * keys_per_split for s in range(splits)]
    assert all(start < num_keys for start in starts)  # no empty split
    assert splits * keys_per_split >= num_keys
    if num_keys >= 32 * 2 * 132:
        assert splits * kv_heads * row_tiles >= 132  # long contexts fill the GPU


# --- the launcher ---------------------------------------------------------------------------------------


def half_inputs(num_tree: int = 4, prefix_len: int = 8) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    q, k, v = random_inputs(rng, num_tree, prefix_len, 8, 2, 64)
    mask = random_tree(rng, num_tree).packed_mask()
    return q.half(), k.half(), v.half(), mask


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q, k, v: (q[0], k, v), "q must be 3-D"),
        (lambda q, k, v: (q, k, v[:-1]), "must have k_cache's shape"),
        (lambda q, k, v: (q.float(), k, v), "share one dtype"),
        (lambda q, k, v: (q, k.bfloat16(), v), "share one dtype"),
        (lambda q, k, v: (q[..., :32], k[..., :32], v[..., :32]), "head dimension"),
        (lambda q, k, v: (q[:, :7], k, v), "multiple of Hkv"),
        (lambda q, k, v: (q, k[:10], v[:10]), "must hold prefix_len"),
        (lambda q, k, v: (q, k.transpose(0, 1).contiguous().transpose(0, 1), v), "contiguous"),
        (lambda q, k, v: (q.numpy(), k, v), "torch tensor or CuPy array"),
    ],
)
def test_launcher_checks_arguments(change: Any, message: str) -> None:
    q, k, v, mask = half_inputs()
    q, k, v = change(q, k, v)
    with pytest.raises(dk.InvalidInputError, match=message):
        dkc.tree_attention(q, k, v, mask, 8)


def test_launcher_checks_the_tree_mask_before_anything_else() -> None:
    q, k, v, _ = half_inputs()
    with pytest.raises(dk.InvalidInputError, match="tree_mask must be int32"):
        dkc.tree_attention(q, k, v, np.zeros((4, 1), np.int64), 8)


def test_launcher_without_a_gpu_raises_kernel_unavailable() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    q, k, v, mask = half_inputs()
    with pytest.raises(dk.KernelUnavailableError):
        dkc.tree_attention(q, k, v, mask, 8)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_kernel_matches_the_reference_on_a_gpu(dtype: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("cupy", reason="needs CuPy (the cuda extra)")
    torch_dtype = getattr(torch, dtype)
    rng = np.random.default_rng(1)
    for num_tree, prefix_len, q_heads, kv_heads, head_dim in [(1, 100, 8, 2, 128), (37, 1000, 8, 8, 64)]:
        q, k, v = (
            t.to("cuda", torch_dtype)
            for t in random_inputs(rng, num_tree, prefix_len, q_heads, kv_heads, head_dim)
        )
        mask = torch.from_numpy(random_tree(rng, num_tree).packed_mask()).cuda()
        got = dkc.tree_attention(q, k, v, mask, prefix_len).float()
        expected = dkt.tree_attention_reference(q, k, v, mask, prefix_len).float()
        assert torch.linalg.norm(got - expected) / torch.linalg.norm(expected) < 2e-2
