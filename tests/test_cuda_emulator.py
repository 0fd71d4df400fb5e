"""decodekit's CUDA kernels run on the CPU emulator (tests/cuda_emulator), through the same launch code as
on a GPU (`decodekit.cuda._launch_quant`, `_launch_tree_attention`), against plain torch references.

The emulator runs every thread of a block as a fiber and emulates the kernels' PTX helpers (mma.sync,
cp.async, lop3, prmt, fp16/bf16 fma). The kernels that passed on an H200 pass here with the errors they
had there, and the mutation tests below show that the emulator catches the bugs it is meant to catch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the launch code works on torch tensors")

import cuda_emulator as emu  # noqa: E402
import decodekit.cuda as dkc  # noqa: E402
import decodekit.quant as dkq  # noqa: E402
import decodekit.torch as dkt  # noqa: E402

TOLERANCE = {torch.float16: 3e-3, torch.bfloat16: 1e-2}
DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
# (bits, group_size, symmetric); None = per-channel
LAYOUTS = (
    (8, None, True),
    (8, 16, True),
    (8, None, False),
    (4, 32, True),
    (4, 64, True),
    (4, 128, True),
    (4, None, True),
    (4, 128, False),
)
# (kernel, M, plan): every kernel, every tile plan, direct writes and split-K, pipelines with several
# steps per stage and a partly empty last stage, several row blocks.
CASES: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("generic", 1, {}),
    ("generic", 9, {}),
    ("swap", 1, {}),
    ("swap", 8, {"splits": 1}),
    ("swap", 3, {"m_tiles": 2}),
    ("swap", 16, {"splits": 3}),
    ("swap", 20, {}),
    ("swap", 5, {"pipeline": (3, 2, 3)}),
    ("swap", 13, {"pipeline": (2, 4, 2), "splits": 3}),
    ("mma", 1, {}),
    ("mma", 7, {"splits": 1}),
    ("mma", 19, {}),
    ("mma", 33, {"splits": 3}),
    ("mma", 65, {}),
    ("mma", 65, {"m_tiles": 2}),
    ("mma", 5, {"pipeline": (3, 2, 3)}),
    ("mma", 5, {"pipeline": (2, 4, 2), "splits": 3}),
    ("mma", 40, {"pipeline": (2, 2, 1), "splits": 2}),
)
ROWS, COLS = 264, 512  # 264: a third block whose first warp has one n8 tile and whose others have none


def rel_error(got: Any, expected: Any) -> float:
    return float(torch.linalg.norm(got.double() - expected) / torch.linalg.norm(expected))


def quant_kernels(
    dtype: Any,
    bits: int,
    kernel: str = "mma",
    tiles: int = 1,
    pipeline: tuple[int, int, int] | None = None,
    source: str | None = None,
    **mode: Any,
) -> tuple[emu.Module, dict[str, Any], dict[str, Any]]:
    """The emulated quantized-matmul kernels, bound as decodekit.cuda binds CuPy's, and the pipelines
    (``pipeline`` replaces the one of ``kernel`` with ``tiles`` tiles)."""
    pipelines = {"pipelines": dict(dkc.QUANT_PIPELINES), "swap_pipelines": dict(dkc.SWAP_PIPELINES)}
    if pipeline is not None:
        pipelines["swap_pipelines" if kernel == "swap" else "pipelines"][tiles] = pipeline
    if source is None:
        source = dkc.quant_matmul_source(DTYPE_NAMES[dtype], bits, **pipelines)
    module = emu.Module(source, dkc.QUANT_KERNELS, **mode)
    kernels = dkc._bind_quant_kernels(module, bits, pipelines["pipelines"], pipelines["swap_pipelines"])
    return module, kernels, pipelines


def emulated_quant_matmul(
    x: Any, qweight: Any, kernel: str, source: str | None = None, *, late_copies: bool = True, **plan: Any
) -> Any:
    """``x @ dequant(W).T`` by the emulated kernels, launched by decodekit.cuda's own launch code."""
    m = x.shape[0]
    pipeline = plan.pop("pipeline", None)
    swap = kernel == "swap"
    tiles = dkc.mma_plan(m, *qweight.shape, qweight.bits, 1, m_tiles=plan.get("m_tiles"), swap=swap)[0]
    mode = {"late_copies": late_copies, "reverse": not late_copies}
    module, kernels, pipelines = quant_kernels(x.dtype, qweight.bits, kernel, tiles, pipeline, source, **mode)
    tensors = [x, qweight.packed, qweight.scales] + ([] if qweight.zeros is None else [qweight.zeros])
    module.register(*tensors)
    y = torch.full((m, qweight.shape[0]), float("nan"), dtype=x.dtype)  # every output must be written
    dkc._launch_quant(kernels, x, qweight, y, variant=kernel, sm_count=2, **pipelines, **plan)
    return y


def quantized(dtype: Any, bits: int, group_size: int | None, symmetric: bool, seed: int = 0) -> Any:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(ROWS, COLS, generator=generator) * torch.rand(ROWS, 1, generator=generator)
    return dkq.quantize(weight, bits, group_size, symmetric, scale_dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("bits", "group_size", "symmetric"), LAYOUTS)
def test_quant_kernels_match_the_reference_on_the_emulator(
    dtype: Any, bits: int, group_size: int | None, symmetric: bool
) -> None:
    emu.compiler()
    qweight = quantized(dtype, bits, group_size, symmetric)
    weight = qweight.dequantize().double()
    generator = torch.Generator().manual_seed(1)
    for index, (kernel, m, plan) in enumerate(CASES):
        x = torch.randn(m, COLS, generator=generator).to(dtype)
        # alternate copies landing late (at their wait) and early (at issue, threads in reverse order)
        y = emulated_quant_matmul(x, qweight, kernel, late_copies=index % 2 == 0, **plan)
        expected = x.double() @ weight.T
        assert not torch.isnan(y).any(), (kernel, m, plan)
        error = rel_error(y, expected)
        assert error < TOLERANCE[dtype], (kernel, m, plan, error)


@pytest.mark.parametrize(("bits", "group_size", "m"), [(4, 128, 1), (8, None, 16)])
def test_swap_kernels_at_an_h200_plan(bits: int, group_size: int | None, m: int) -> None:
    """A benchmark shape (4096 x 4096) with the plan decodekit.cuda makes for 132 multiprocessors: 512
    blocks of two or four steps, split-K over 16 slices."""
    emu.compiler()
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(4096, 4096, generator=generator) * torch.rand(4096, 1, generator=generator)
    qweight = dkq.quantize(weight, bits, group_size, True, scale_dtype=torch.float16)
    x = torch.randn(m, 4096, generator=generator).to(torch.float16)
    module, kernels, pipelines = quant_kernels(torch.float16, bits, "swap")
    module.register(x, qweight.packed, qweight.scales)
    y = torch.full((m, 4096), float("nan"), dtype=torch.float16)
    assert dkc.mma_plan(m, 4096, 4096, bits, 132, swap=True)[1] == 16
    dkc._launch_quant(kernels, x, qweight, y, variant="swap", sm_count=132, **pipelines)
    assert rel_error(y, x.double() @ qweight.dequantize().double().T) < TOLERANCE[torch.float16]


def mutated(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, f"the mutation's target {old!r} is not in the source once"
    return source.replace(old, new)


@pytest.mark.parametrize(
    ("kernel", "old", "new", "late_copies"),
    [
        # waiting for one commit group too few: late copies have not landed when the tiles are read
        ("mma", "dk_copy_wait<STAGES - 2>();", "dk_copy_wait<STAGES - 1>();", True),
        ("swap", "dk_copy_wait<STAGES - 2>();", "dk_copy_wait<STAGES - 1>();", True),
        # no barrier before the next stage's copies: early copies overwrite tiles other warps still read
        ("swap", "__syncthreads();             // ... and everyone's", "// (no barrier)", False),
        # a fragment register in the wrong place
        (
            "mma",
            "dk_mma(acc[mt][j], a[mt][0].x, a[mt][1].x, a[mt][0].y, a[mt][1].y, b[0][0], b[0][1]);",
            "dk_mma(acc[mt][j], a[mt][0].x, a[mt][0].y, a[mt][1].x, a[mt][1].y, b[0][0], b[0][1]);",
            True,
        ),
        (
            "swap",
            "dk_mma(part[mt][f], lo[0][0], hi[0][0], lo[0][1], hi[0][1], b[mt].x, b[mt].y);",
            "dk_mma(part[mt][f], lo[0][0], hi[0][0], lo[0][1], hi[0][1], b[mt].y, b[mt].x);",
            True,
        ),
        # the nibble masks of the int4 fp16 conversion swapped
        (
            "swap",
            "dk_lop3_and_or(word, 0x000f000fu, magic2)",
            "dk_lop3_and_or(word, 0x00f000f0u, magic2)",
            True,
        ),
        # split-K summed by the next-to-last block of a tile to finish, before the last one's partials
        ("swap", "atomicAdd(counter, 1u) == gridDim.y - 1", "atomicAdd(counter, 1u) == gridDim.y - 2", True),
    ],
    ids=[
        "wait-group-mma",
        "wait-group-swap",
        "barrier-swap",
        "fragment-mma",
        "fragment-swap",
        "nibbles",
        "split",
    ],
)
def test_the_emulator_catches_broken_kernels(kernel: str, old: str, new: str, late_copies: bool) -> None:
    emu.compiler()
    qweight = quantized(torch.float16, 4, 128, True)
    weight = qweight.dequantize().double()
    source = dkc.quant_matmul_source("float16", 4)
    splits = 4 if "atomicAdd" in old else 1  # K = 512: four one-step splits
    # fresh activations for each run, so that a buffer the allocator hands back holds nothing useful
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, COLS, generator=generator).to(torch.float16)
    intact = emulated_quant_matmul(x, qweight, kernel, source, late_copies=late_copies, splits=splits)
    assert rel_error(intact, x.double() @ weight.T) < TOLERANCE[torch.float16]
    x = torch.randn(3, COLS, generator=generator).to(torch.float16)
    broken = emulated_quant_matmul(
        x, qweight, kernel, mutated(source, old, new), late_copies=late_copies, splits=splits
    )
    assert torch.isnan(broken).any() or rel_error(broken, x.double() @ weight.T) > 0.1


def test_split_k_leaves_its_tile_counters_at_zero() -> None:
    """One counter buffer serves every launch on a stream: each launch must leave it as it found it."""
    emu.compiler()
    qweight = quantized(torch.bfloat16, 8, None, True)
    expected_weight = qweight.dequantize().double()
    module, kernels, pipelines = quant_kernels(torch.bfloat16, 8, "swap")
    counters = torch.zeros(64, dtype=torch.int32)
    generator = torch.Generator().manual_seed(4)
    for m in (3, 12, 3):
        x = torch.randn(m, COLS, generator=generator).to(torch.bfloat16)
        module.buffers = [x, qweight.packed, qweight.scales]
        y = torch.full((m, ROWS), float("nan"), dtype=torch.bfloat16)
        dkc._launch_quant(
            kernels,
            x,
            qweight,
            y,
            counters=lambda count: counters,
            variant="swap",
            sm_count=2,
            splits=4,
            **pipelines,
        )
        assert rel_error(y, x.double() @ expected_weight.T) < TOLERANCE[torch.bfloat16]
        assert not counters.any()


def test_the_emulator_refuses_misbehaving_launches() -> None:
    emu.compiler()
    qweight = quantized(torch.float16, 4, 128, True)
    x = torch.randn(3, COLS, generator=torch.Generator().manual_seed(3)).to(torch.float16)
    module, kernels, _ = quant_kernels(torch.float16, 4)
    module.register(x, qweight.packed, qweight.scales)
    y = torch.empty(3, ROWS, dtype=torch.float16)
    shared = dkc.quant_shared_bytes(4, 1, *dkc.QUANT_PIPELINES[1][:2])
    args = [x, qweight.packed, qweight.scales]
    raw = [np.uint64(t.data_ptr()) for t in args] + [np.uint64(0)]
    raw += [np.int32(3), np.int32(ROWS), np.int32(COLS), np.int32(128), np.int32(7), np.int32(4)]
    raw += [np.uint64(y.data_ptr()), np.uint64(y.data_ptr()), np.uint64(0)]  # one split: no counters
    kernel = kernels["dk_quant_mma_m1"]
    grid = (3, 1, 1)
    kernel(grid, (128,), raw, shared_mem=shared)  # as launched: fine
    with pytest.raises(emu.EmulatorError, match="outside the dynamic shared memory"):
        kernel(grid, (128,), raw, shared_mem=shared - 4096)  # the last stage's activation tile
    module.buffers = [x, qweight.scales]  # the packed codes are not a buffer of the launch
    with pytest.raises(emu.EmulatorError, match="outside every buffer"):
        kernel(grid, (128,), raw, shared_mem=shared)
    with pytest.raises(emu.EmulatorError, match="takes 13 arguments"):
        kernel(grid, (128,), raw[:-1], shared_mem=shared)

    barrier = """
extern "C" __global__ void divergent_barrier(dk_ptr out) {
    if (threadIdx.x < 32) { __syncthreads(); }
    ((float*)out)[threadIdx.x] = 1.0f;
}
extern "C" __global__ void divergent_shuffle(dk_ptr out) {
    float v = 1.0f;
    if (threadIdx.x % 32 != 5) { v = dk_warp_sum(v); }
    ((float*)out)[threadIdx.x] = v;
}
extern "C" __global__ void warp_sums(dk_ptr out) {
    ((float*)out)[threadIdx.x] = dk_warp_sum((float)threadIdx.x);
}
"""
    source = "#define DK_BF16 0\n" + dkc._core._kernel_source("dk_common") + barrier
    small = emu.Module(source, ["divergent_barrier", "divergent_shuffle", "warp_sums"])
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(emu.EmulatorError, match="exited while others wait at __syncthreads"):
        small.get_function("divergent_barrier")((1,), (64,), [np.uint64(out.ctypes.data)])
    with pytest.raises(emu.EmulatorError, match="exited while its warp waits at shfl"):
        small.get_function("divergent_shuffle")((1,), (64,), [np.uint64(out.ctypes.data)])
    small.get_function("warp_sums")((1,), (64,), [np.uint64(out.ctypes.data)])
    assert out.tolist() == [float(sum(range(32)))] * 32 + [float(sum(range(32, 64)))] * 32


def chain_and_branches(num_tree: int, seed: int) -> Any:
    """A random draft tree's ancestor mask as int32 words [T, ceil(T / 32)] (every token sees itself)."""
    generator = torch.Generator().manual_seed(seed)
    parents = [-1] + [int(torch.randint(0, i, (), generator=generator)) for i in range(1, num_tree)]
    words = [[0] * -(-num_tree // 32) for _ in range(num_tree)]
    for i in range(num_tree):
        j = i
        while j >= 0:
            words[i][j // 32] |= 1 << (j % 32)
            j = parents[j]
    signed = [[w - (1 << 32) if w >= 1 << 31 else w for w in row] for row in words]
    return torch.tensor(signed, dtype=torch.int32)


@pytest.mark.parametrize(
    ("dtype", "head_dim", "num_q_heads", "num_kv_heads", "num_tree", "prefix_len"),
    [
        (torch.float16, 64, 4, 2, 5, 40),
        (torch.float16, 128, 1, 1, 128, 0),
        (torch.bfloat16, 128, 8, 2, 37, 300),
        (torch.bfloat16, 64, 2, 2, 64, 1),
    ],
)
def test_tree_attention_matches_the_reference_on_the_emulator(
    dtype: Any, head_dim: int, num_q_heads: int, num_kv_heads: int, num_tree: int, prefix_len: int
) -> None:
    emu.compiler()
    generator = torch.Generator().manual_seed(num_tree)
    cache_len = prefix_len + num_tree + 3
    q = torch.randn(num_tree, num_q_heads, head_dim, generator=generator).to(dtype)
    k = torch.randn(cache_len, num_kv_heads, head_dim, generator=generator).to(dtype)
    v = torch.randn(cache_len, num_kv_heads, head_dim, generator=generator).to(dtype)
    words = chain_and_branches(num_tree, seed=prefix_len)
    source = dkc.kernel_source(DTYPE_NAMES[dtype], head_dim, num_q_heads // num_kv_heads)
    # threads (and blocks) in reverse order between barriers for half the cases, to shake out races
    module = emu.Module(
        source, ["dk_tree_attention_split", "dk_tree_attention_combine"], reverse=num_tree % 2 == 1
    )
    out = torch.full_like(q, float("nan"))
    dkc._launch_tree_attention(
        module.get_function("dk_tree_attention_split"),
        module.get_function("dk_tree_attention_combine"),
        q,
        k,
        v,
        dkt.tree_mask_words(words, num_tree),
        prefix_len,
        head_dim**-0.5,
        out,
        4,  # multiprocessors: small enough that long prefixes take several splits
    )
    expected = dkt.tree_attention_reference(q, k, v, words, prefix_len).double()
    assert not torch.isnan(out).any()
    assert rel_error(out, expected) < TOLERANCE[dtype]
