"""Weight-only quantization: pack/unpack round trips, codes and error bounds against a float64 numpy
reference, FineQuant's adaptive group size, QuantLinear and quantize_model on the CPU, bad input."""

from __future__ import annotations

from typing import Any

import decodekit as dk
import decodekit.quant as dkq
import numpy as np
import nvrtc
import pytest
import reference
from hypothesis import given, settings
from hypothesis import strategies as st


@given(
    bits=st.sampled_from([4, 8]), rows=st.integers(1, 4), words=st.integers(1, 6), seed=st.integers(0, 2**32)
)
def test_pack_and_unpack_are_exact_inverses(bits: int, rows: int, words: int, seed: int) -> None:
    cols = words * 32 // bits
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=(rows, cols), dtype=np.uint8)
    packed = dkq.pack(codes, bits)
    assert packed.shape == (rows, words)
    assert packed.dtype == np.int32
    np.testing.assert_array_equal(dkq.unpack(packed, bits), codes)


def test_int4_layout_pairs_codes_for_the_kernels() -> None:
    word = int(dkq.pack(np.array([[1, 2, 3, 4, 5, 6, 7, 8]], np.uint8), 4)[0, 0]) & 0xFFFFFFFF
    # (word >> 4i) & 0x000f000f holds codes 2i and 2i + 1 in its low and high 16-bit halves.
    for i in range(4):
        pair = (word >> (4 * i)) & 0x000F000F
        assert (pair & 0xF, pair >> 16) == (2 * i + 1, 2 * i + 2)
    assert int(dkq.pack(np.array([[1, 2, 3, 4]], np.uint8), 8)[0, 0]) == 0x04030201


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [None, 32, 128])
def test_codes_and_error_bounds_match_the_float64_reference(
    bits: int, symmetric: bool, group_size: int | None
) -> None:
    rng = np.random.default_rng(bits * 10 + symmetric)
    weight = (rng.standard_normal((48, 256)) * rng.uniform(0.01, 2.0, size=(48, 1))).astype(np.float32)
    weight[3, :] = 0.0  # an all-zero channel must not divide by zero
    q = dkq.quantize(weight, bits, group_size, symmetric)
    size = 256 if group_size is None else group_size
    assert q.group_size == size
    codes, scales, zeros = reference.quantize_weight(weight, bits, size, symmetric)
    np.testing.assert_allclose(q.scales, scales, rtol=1e-6)
    if symmetric:
        assert q.zeros is None
    else:
        np.testing.assert_array_equal(q.zeros, zeros)
    ours = dkq.unpack(q.packed, bits).astype(np.int64)
    # float32 and float64 may round a value that sits on a .5 boundary differently: at most a few codes.
    differ = ours != codes
    assert differ.mean() < 1e-3
    assert np.abs(ours - codes).max() <= 1
    back = q.dequantize()
    bound = np.repeat(q.scales, size, axis=1) * 0.5 + 1e-6
    assert (np.abs(back - weight) <= bound).all()
    np.testing.assert_array_equal(back[3], 0.0)


def test_auto_group_size_is_finer_for_outliers() -> None:
    rng = np.random.default_rng(0)
    plain = rng.standard_normal((64, 1024)).astype(np.float32)
    spiky = plain.copy()
    spiky[np.arange(64), rng.integers(0, 1024, size=64)] = 50.0
    for bits in (4, 8):
        calm = dkq.quantize(plain, bits, "auto").group_size
        chosen = dkq.quantize(spiky, bits, "auto").group_size
        assert calm == 1024, bits
        assert chosen in (32, 64, 128), bits
        assert chosen < calm


def test_quantize_checks_its_input() -> None:
    w = np.zeros((4, 64), np.float32)
    with pytest.raises(dk.InvalidInputError, match="bits must be 4 or 8"):
        dkq.quantize(w, 3)
    with pytest.raises(dk.InvalidInputError, match="must divide K"):
        dkq.quantize(w, 4, 48)
    with pytest.raises(dk.InvalidInputError, match="multiple of 8"):
        dkq.quantize(np.zeros((4, 60), np.float32), 4)
    with pytest.raises(dk.InvalidInputError, match="non-finite"):
        dkq.quantize(np.full((4, 64), np.nan, np.float32), 4)
    with pytest.raises(dk.InvalidInputError, match="2-D"):
        dkq.quantize(np.zeros(64, np.float32), 4)
    with pytest.raises(dk.InvalidInputError, match="'auto', None or an int"):
        dkq.quantize(w, 4, "fine")
    with pytest.raises(dk.InvalidInputError, match="does not fit in 4 bits"):
        dkq.pack(np.full((1, 8), 16, np.uint8), 4)


# --- torch: QuantLinear and quantize_model ----------------------------------------------------------------


@pytest.fixture
def torch_module() -> Any:
    return pytest.importorskip("torch", reason="QuantLinear needs torch")


@pytest.mark.parametrize("bits", [4, 8])
def test_quant_linear_matches_dequantize_and_matmul(torch_module: Any, bits: int) -> None:
    torch = torch_module
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96)
    layer = dkq.QuantLinear.from_linear(linear, bits=bits, group_size=64)
    x = torch.randn(5, 7, 256)
    expected = torch.matmul(x, layer.qweight.dequantize().t()) + linear.bias
    torch.testing.assert_close(layer(x), expected)
    assert layer.qweight.scales.dtype == torch.float16  # float32 weights default to fp16 scales
    error = (layer(x) - linear(x)).norm() / linear(x).norm()
    assert error < (0.1 if bits == 4 else 0.01)
    half = dkq.QuantLinear.from_linear(linear.to(torch.bfloat16), bits=bits, group_size=None)
    assert half(x.to(torch.bfloat16)).dtype == torch.bfloat16
    assert "bits=" in repr(layer)


def test_quantize_model_replaces_linears(torch_module: Any) -> None:
    torch = torch_module
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        before = model(ids).logits
        dkq.quantize_model(model, bits=8)
        after = model(ids).logits
    quant_linear = dkq.QuantLinear
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [type(m) for m in linears] == [torch.nn.Linear]  # only lm_head is left
    assert sum(isinstance(m, quant_linear) for m in model.modules()) == 2 * 7
    assert ((after - before).norm() / before.norm()).item() < 0.05


# --- the CUDA kernel: compiled without a GPU, launcher checks --------------------------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("bits", [4, 8])
def test_quant_kernel_compiles_without_spills(arch: str, dtype: str, bits: int) -> None:
    import decodekit.cuda as dkc

    report = nvrtc.compile_report(dkc.quant_matmul_source(dtype, bits), arch)
    nvrtc.assert_no_spills(report, list(dkc.QUANT_KERNELS), arch)


def test_quant_kernel_variants_compile() -> None:
    """The measurement variants and other pipelines that bench/gpu/quant_matmul.py builds compile too."""
    import decodekit.cuda as dkc

    for probe in ("copy", "copy_tiled", "math"):
        source = dkc.quant_matmul_source(
            "bfloat16", 4, probe=probe, pipelines={1: (2, 4, 2), 2: (3, 2, 1), 4: (2, 2, 1)}
        )
        nvrtc.assert_no_spills(nvrtc.compile_report(source, "sm_90"), list(dkc.QUANT_KERNELS), "sm_90")
    with pytest.raises(dk.InvalidInputError, match="probe"):
        dkc.quant_matmul_source("float16", 4, probe="fast")
    assert dkc.quant_shared_bytes(4, 1, 3, 1) == 3 * (128 * 64 + 16 * 128 * 2)


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 300),
    n=st.integers(1, 40000),
    steps=st.integers(1, 400),
    bits=st.sampled_from([4, 8]),
    sm_count=st.integers(1, 200),
    splits=st.one_of(st.none(), st.integers(1, 1000)),
    swap=st.booleans(),
)
def test_mma_plan_covers_every_step_once(
    m: int, n: int, steps: int, bits: int, sm_count: int, splits: int | None, swap: bool
) -> None:
    import decodekit.cuda as dkc

    k = steps * 512 // bits
    m_tiles, num_splits, per_split = dkc.mma_plan(m, n, k, bits, sm_count, splits=splits, swap=swap)
    tile_rows, choices = (8, (1, 2)) if swap else (16, (1, 2, 4))
    assert m_tiles in choices
    assert m > tile_rows * choices[-1] or tile_rows * m_tiles >= m
    # every split has at least one step and together they cover all steps
    assert (num_splits - 1) * per_split < steps <= num_splits * per_split
    if splits is not None:
        assert num_splits <= splits
    elif swap and num_splits > 1:
        # split-K never makes more blocks than whole waves hold
        blocks = -(-n // 128) * -(-m // (8 * m_tiles)) * num_splits
        waves = 2 if bits == 8 and m_tiles == 1 else 1
        assert blocks <= waves * sm_count * dkc.SWAP_PIPELINES[m_tiles][2]


def test_mma_plan_and_support_checks() -> None:
    import decodekit.cuda as dkc

    assert dkc.mma_supported(4096, 4096, 4, 128)
    assert dkc.mma_supported(4096, 4096, 8, 4096)
    assert not dkc.mma_supported(100, 4096, 4, 128)  # N % 8
    assert not dkc.mma_supported(4096, 96, 4, 32)  # K % 128
    assert not dkc.mma_supported(4096, 4096, 4, 8)  # groups narrower than one thread's 32 columns
    assert dkc.mma_plan(1, 4096, 4096, 4, 132, m_tiles=2)[0] == 2
    # the swap kernels fill one wave of resident blocks: 4096 x 28672 int4 at M = 1 on 132 SMs with 4
    # blocks each takes 16 splits of 32 blocks (512 of 528 slots), not 17 (a second wave of 16 blocks)
    assert dkc.mma_plan(1, 4096, 28672, 4, 132, swap=True, blocks_per_sm=4) == (1, 16, 14)
    assert dkc.mma_plan(9, 4096, 28672, 4, 132, swap=True)[0] == 2
    with pytest.raises(dk.InvalidInputError, match="m_tiles"):
        dkc.mma_plan(1, 4096, 4096, 4, 132, m_tiles=3)
    with pytest.raises(dk.InvalidInputError, match="bits"):
        dkc.mma_plan(1, 4096, 4096, 3, 132)
    with pytest.raises(dk.InvalidInputError, match="shorter than one"):
        dkc.mma_plan(1, 4096, 64, 4, 132)


def test_kernel_choice_and_launch_helpers() -> None:
    import decodekit.cuda as dkc

    # "auto": the swap kernel up to 16 rows, the mma kernel beyond, the generic one for other shapes
    assert dkc._quant_variant("auto", True, 1) == "swap"
    assert dkc._quant_variant("auto", True, 16) == "swap"
    assert dkc._quant_variant("auto", True, 17) == "mma"
    assert dkc._quant_variant("auto", False, 1) == "generic"
    assert dkc._quant_variant("mma", True, 1) == "mma"
    # power-of-two groups shift; others divide
    assert [dkc._group_shift(g) for g in (16, 32, 128, 4096, 96, 14336)] == [4, 5, 7, 12, -1, -1]
    # a pipeline override replaces one entry and keeps the others
    swap = dkc._pipeline_dict(((2, (2, 4, 2)),), dkc.SWAP_PIPELINES)
    assert swap == {**dkc.SWAP_PIPELINES, 2: (2, 4, 2)}
    assert dkc._pipeline_dict(None, dkc.QUANT_PIPELINES) == dkc.QUANT_PIPELINES
    # shared memory: codes of 128 rows (64 bytes each) and the activation tile, per step of each stage
    assert dkc.quant_shared_bytes(4, 1, 3, 1) == 3 * (128 * 64 + 16 * 128 * 2)
    assert dkc.quant_shared_bytes(4, 1, 3, 1, swap=True) == 3 * (128 * 64 + 8 * 128 * 2)
    assert dkc.quant_shared_bytes(8, 2, 2, 4, swap=True) == 8 * (128 * 64 + 16 * 64 * 2)


def test_split_counters_are_kept_per_device_and_stream(
    torch_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import decodekit.cuda as dkc

    torch = torch_module
    monkeypatch.setattr(dkc, "_COUNTERS", {})
    capturing = [False]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing[0])
    first = types.SimpleNamespace(device=torch.device("cpu", 0), cuda_stream=0)
    second = types.SimpleNamespace(device=torch.device("cpu", 1), cuda_stream=0)  # both default streams
    kept = dkc._split_counters(torch, first, 10)
    assert kept is dkc._split_counters(torch, first, 1024)  # big enough: the same zeros
    assert dkc._split_counters(torch, second, 10) is not kept
    grown = dkc._split_counters(torch, first, 5000)
    assert grown.numel() >= 5000
    assert not grown.any()
    assert dkc._split_counters(torch, first, 10) is grown
    capturing[0] = True  # a graph being captured gets fresh zeros of its own, not kept
    captured = dkc._split_counters(torch, first, 9000)
    assert captured.numel() >= 9000
    assert dkc._split_counters(torch, first, 10) is grown


def test_quant_matmul_checks_before_any_launch(torch_module: Any) -> None:
    import decodekit.cuda as dkc

    torch = torch_module
    weight = torch.randn(64, 128)
    qweight = dkq.quantize(weight, 4, 32, scale_dtype=torch.float16)
    x = torch.randn(3, 128, dtype=torch.float16)
    with pytest.raises(dk.InvalidInputError, match="expects K = 128"):
        dkc.quant_matmul(x[:, :64], qweight)
    with pytest.raises(dk.InvalidInputError, match="float16 or bfloat16"):
        dkc.quant_matmul(x.float(), qweight)
    with pytest.raises(dk.InvalidInputError, match="scale_dtype"):
        dkc.quant_matmul(x.bfloat16(), qweight)
    with pytest.raises(dk.InvalidInputError, match="numpy arrays"):
        dkc.quant_matmul(x, dkq.quantize(weight.numpy(), 4, 32))
    with pytest.raises(dk.InvalidInputError, match="kernel must be"):
        dkc._quant_matmul(x, qweight, kernel="fastest")
    if not torch.cuda.is_available():
        with pytest.raises(dk.KernelUnavailableError):
            dkc.quant_matmul(x, qweight)
    layer = dkq.QuantLinear(qweight)  # on the CPU QuantLinear takes the torch path
    torch.testing.assert_close(layer(x.float()), x.float() @ qweight.dequantize().t())


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [4, 8])
def test_quant_matmul_on_a_gpu(torch_module: Any, bits: int) -> None:
    torch = torch_module
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("cupy", reason="needs CuPy (the cuda extra)")
    import decodekit.cuda as dkc

    weight = torch.randn(264, 512, device="cuda")  # 264 = 8 warps of 32 features and one of 8
    for dtype, group_size in ((torch.float16, 64), (torch.bfloat16, 128)):
        qweight = dkq.quantize(weight, bits, group_size, scale_dtype=dtype)
        for kernel, m, plan in (
            ("generic", 5, {}),
            ("swap", 1, {}),
            ("swap", 16, {"splits": 3}),
            ("auto", 9, {}),
            ("mma", 1, {}),
            ("mma", 19, {}),
            ("mma", 70, {}),
            ("mma", 5, {"splits": 1}),
            ("mma", 5, {"splits": 3}),
        ):
            x = torch.randn(m, 512, device="cuda", dtype=dtype)
            expected = x.float() @ qweight.dequantize().t()
            got = dkc._quant_matmul(x, qweight, kernel=kernel, **plan).float()
            error = (torch.linalg.norm(got - expected) / torch.linalg.norm(expected)).item()
            assert error < (3e-3 if dtype == torch.float16 else 1e-2), (kernel, m, plan, error)
