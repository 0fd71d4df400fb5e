"""GPU check and timing of decodekit's weight-only quantized matmul (issue 10), in one run.

Usage (on a machine with a CUDA GPU, torch and CuPy, and decodekit installed from the abi3 wheel)::

    python bench/gpu/quant_matmul.py [--quick] [--json results.json]

1. **Correctness.** For fp16 and bf16 activations, int8 per-channel and with groups of 16, int4 with groups
   of 32, 64 and 128 and per-channel, symmetric and asymmetric, it compares every kernel (the swap and mma
   tensor-core kernels, the generic one) with fp32 `x @ dequant(W).T` at several M (every tile plan,
   several row blocks, split-K and
   direct writes, a weight whose N is not a multiple of 32, a misaligned activation buffer). Inputs are
   fresh random values, never zeros. The relative error must be under 1e-2 for bf16 and 3e-3 for fp16,
   with no NaN.
2. **Timing.** For N x K in {4096x4096, 4096x14336, 14336x4096, 4096x28672} and M in {1, 4, 16, 64}, it
   times, in the same process:
   - the kernel "auto" picks (int4 with groups of 128, int8 per-channel: the swap kernel up to M = 16);
     at M <= 16 also the mma kernel (the one "auto" took before the swap kernel), and at M <= 4 the
     generic kernel;
   - `torch.matmul` in fp16/bf16;
   - `torch._weight_int8pack_mm` and `torch._weight_int4pack_mm`, where the torch build has them.

   Each time is the median over CUDA-graph replays of a sequence of calls that rotates among copies of the
   weights at least three times the L2 cache in size, so that launch overhead and cache hits stay out. The
   kernel's bandwidth (packed weights, scales and activations read, output written) is printed as a
   fraction of a device-to-device copy measured in the same run.
3. **Tuning.** On the two largest shapes it times split-K and pipeline choices around the default plan,
   and at M = 1 each pipeline's memory traffic alone (`copy`: the kernel built without its arithmetic;
   `copy_tiled`: the same, reading each stage's codes as one contiguous run, as a tile-major layout
   would).

The script exits non-zero when any correctness check fails.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import decodekit.cuda as dkc
import decodekit.quant as dkq
import torch
from timing import copy_bandwidth, main, median_ms

TOLERANCE = {torch.float16: 3e-3, torch.bfloat16: 1e-2}
SHAPES = ((4096, 4096), (4096, 14336), (14336, 4096), (4096, 28672))  # (N, K)
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


def rel_error(got: Any, expected: Any) -> float:
    return float(torch.linalg.norm(got.float() - expected) / torch.linalg.norm(expected))


def check_layout(dtype: Any, bits: int, group_size: int | None, symmetric: bool) -> bool:
    """Every kernel against fp32 on the dequantized weight, at every plan the dispatcher can take."""
    rows, cols = 520, 1024  # 520 = 16 warps of 32 features + one warp with a single n8 tile
    weight = torch.randn(rows, cols, device="cuda") * torch.rand(rows, 1, device="cuda")
    qweight = dkq.quantize(weight, bits, group_size, symmetric, scale_dtype=dtype)
    reference = qweight.dequantize()
    ok = True
    cases: list[tuple[str, int, dict[str, Any]]] = [("generic", m, {}) for m in (1, 7, 9, 65)]
    cases += [("swap", m, {}) for m in (1, 7, 8, 9, 16, 23)]
    cases += [("swap", 3, {"m_tiles": 2}), ("swap", 5, {"splits": 1}), ("swap", 12, {"splits": 3})]
    cases += [("swap", 5, {"pipeline": (3, 2, 3)}), ("swap", 13, {"pipeline": (2, 4, 2), "splits": 3})]
    cases += [("auto", m, {}) for m in (1, 16, 17)]
    cases += [("mma", m, {}) for m in (1, 7, 16, 19, 33, 65, 130)]
    cases += [("mma", 65, {"m_tiles": 1}), ("mma", 65, {"m_tiles": 2}), ("mma", 5, {"splits": 1})]
    cases += [("mma", 5, {"splits": 3}), ("mma", 40, {"splits": 1})]
    # pipelines with several steps per stage, a last stage that is partly empty, more stages
    cases += [("mma", 5, {"pipeline": (3, 2, 3)}), ("mma", 5, {"pipeline": (2, 4, 2), "splits": 3})]
    cases += [("mma", 65, {"pipeline": (3, 1, 1)}), ("mma", 70, {"pipeline": (2, 2, 1), "splits": 3})]
    for kernel, m, plan in cases:
        x = torch.randn(m, cols, device="cuda", dtype=dtype)
        got = dkc._quant_matmul(x, qweight, kernel=kernel, **plan)
        error = rel_error(got, x.float() @ reference.t())
        passed = bool(torch.isfinite(got).all()) and error < TOLERANCE[dtype]
        ok &= passed
        label = f"{str(dtype).removeprefix('torch.')} int{bits} g={group_size} sym={symmetric}"
        print(f"check {label} {kernel} M={m} {plan or ''}: err={error:.2e} {'ok' if passed else 'BAD'}")
    return ok


def check_edges(dtype: Any) -> bool:
    """Auto dispatch of an unaligned shape, a misaligned activation buffer, QuantLinear with a bias."""
    ok = True
    weight = torch.randn(100, 96, device="cuda")
    qweight = dkq.quantize(weight, 4, 32, scale_dtype=dtype)  # K = 96: the generic kernel
    x = torch.randn(3, 5, 96, device="cuda", dtype=dtype)
    error = rel_error(dkc.quant_matmul(x, qweight), x.float() @ qweight.dequantize().t())
    ok &= error < TOLERANCE[dtype]
    print(f"check {dtype} unaligned shape [100, 96] auto: err={error:.2e}")
    weight = torch.randn(256, 512, device="cuda")
    qweight = dkq.quantize(weight, 4, 64, scale_dtype=dtype)
    storage = torch.randn(3 * 512 + 1, device="cuda", dtype=dtype)
    x = storage[1:].view(3, 512)  # contiguous, but 2 bytes off a 16-byte boundary
    error = rel_error(dkc.quant_matmul(x, qweight), x.float() @ qweight.dequantize().t())
    ok &= error < TOLERANCE[dtype]
    print(f"check {dtype} misaligned activations: err={error:.2e}")
    linear = torch.nn.Linear(512, 256, device="cuda")
    layer = dkq.QuantLinear(dkq.quantize(linear.weight, 8, None, scale_dtype=dtype), linear.bias)
    x = torch.randn(4, 512, device="cuda", dtype=dtype)
    expected = x.float() @ layer.qweight.dequantize().t() + linear.bias.float()
    error = rel_error(layer(x), expected)
    ok &= error < TOLERANCE[dtype]
    print(f"check {dtype} QuantLinear with bias: err={error:.2e}")
    return ok


def graph_ms(calls: list[Callable[[], Any]], replays: int = 7) -> float:
    """Median time of one call (ms): CUDA-graph replays of ``calls`` in sequence (two rounds)."""
    for fn in calls:
        fn()  # warm up: compile, allocate
    torch.cuda.synchronize()
    sequence = calls * 2
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for fn in sequence:
                fn()
        run = graph.replay
    except Exception as error:  # fall back to eager launches, and say so
        print(f"# graph capture failed ({error}); timing eager launches")

        def run() -> None:
            for fn in sequence:
                fn()

    return median_ms(run, repeats=replays, warmup=1) / len(sequence)


def copies_for(nbytes: int) -> int:
    """How many copies of an operand of ``nbytes`` make a rotation of at least three L2 caches."""
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(2, math.ceil(3 * l2 / nbytes))


def clone_weight(qweight: dkq.QuantizedWeight, count: int) -> list[dkq.QuantizedWeight]:
    return [
        dataclasses.replace(qweight, packed=qweight.packed.clone(), scales=qweight.scales.clone())
        for _ in range(count)
    ]


def torch_int8(weight: Any, dtype: Any) -> Callable[[Any, int], Any] | None:
    """torch's int8 weight-only matmul (per-channel scales), if this build has it on CUDA."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return None
    scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
    codes = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    scales = scales.to(dtype)
    copies = [codes.clone() for _ in range(copies_for(codes.numel()))]
    try:
        op(torch.randn(1, weight.shape[1], device="cuda", dtype=dtype), codes, scales)
    except RuntimeError as error:
        print(f"# torch int8 unavailable here: {str(error).splitlines()[0]}")
        return None
    return lambda x, i: op(x, copies[i % len(copies)], scales)


def torch_int4(weight: Any, dtype: Any, group_size: int) -> Callable[[Any, int], Any] | None:
    """torch's tinygemm int4 matmul, if this build has it and accepts this shape on this GPU."""
    op = getattr(torch.ops.aten, "_weight_int4pack_mm", None)
    pack = getattr(torch.ops.aten, "_convert_weight_to_int4pack", None)
    if op is None or pack is None or dtype != torch.bfloat16:
        return None
    rows, cols = weight.shape
    grouped = weight.float().reshape(rows, cols // group_size, group_size)
    lo, hi = grouped.amin(-1), grouped.amax(-1)
    scales = ((hi - lo).clamp(min=1e-8) / 15).to(dtype)
    zeros = (lo + scales.float() * 8).to(dtype)
    codes = torch.round((grouped - lo[..., None]) / scales.float()[..., None]).clamp(0, 15).to(torch.int32)
    codes = codes.reshape(rows, cols)
    scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()
    errors = []
    for layout in (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8), codes:  # torch >= 2.5, older
        try:
            packed = pack(layout, 8)
            x = torch.randn(2, cols, device="cuda", dtype=dtype)
            op(x, packed, group_size, scales_and_zeros)
        except RuntimeError as error:
            errors.append(str(error).splitlines()[0])
            continue
        copies = [packed.clone() for _ in range(copies_for(packed.numel() * packed.element_size()))]
        return lambda x, i: op(x, copies[i % len(copies)], group_size, scales_and_zeros)
    print(f"# torch int4 unavailable here: {errors}")
    return None


def time_shape(
    dtype: Any, rows_n: int, cols_k: int, bandwidth: float, ms: tuple[int, ...]
) -> list[dict[str, Any]]:
    weight = torch.randn(rows_n, cols_k, device="cuda")
    dense = [weight.to(dtype) for _ in range(copies_for(rows_n * cols_k * 2))]
    int8 = dkq.quantize(weight, 8, None, scale_dtype=dtype)
    int4 = dkq.quantize(weight, 4, 128, scale_dtype=dtype)
    int8s = clone_weight(int8, copies_for(int8.packed.numel() * 4))
    int4s = clone_weight(int4, copies_for(int4.packed.numel() * 4))
    theirs8, theirs4 = torch_int8(weight, dtype), torch_int4(weight, dtype, 128)
    del weight
    out = []
    for m in ms:
        x = torch.randn(m, cols_k, device="cuda", dtype=dtype)
        timings = {
            "torch_dense": graph_ms([lambda w=w, x=x: torch.matmul(x, w.t()) for w in dense]),
            "dk_int4": graph_ms([lambda q=q, x=x: dkc.quant_matmul(x, q) for q in int4s]),
            "dk_int8": graph_ms([lambda q=q, x=x: dkc.quant_matmul(x, q) for q in int8s]),
        }
        if m <= 16:  # "auto" takes the swap kernel here; the mma kernel is the one measured before it
            timings["dk_int4_mma"] = graph_ms(
                [lambda q=q, x=x: dkc._quant_matmul(x, q, kernel="mma") for q in int4s]
            )
            timings["dk_int8_mma"] = graph_ms(
                [lambda q=q, x=x: dkc._quant_matmul(x, q, kernel="mma") for q in int8s]
            )
        if m <= 4:
            timings["dk_int4_generic"] = graph_ms(
                [lambda q=q, x=x: dkc._quant_matmul(x, q, kernel="generic") for q in int4s]
            )
        if theirs8 is not None:
            timings["torch_int8"] = graph_ms([lambda i=i, x=x: theirs8(x, i) for i in range(len(int8s))])
        if theirs4 is not None:
            timings["torch_int4"] = graph_ms([lambda i=i, x=x: theirs4(x, i) for i in range(len(int4s))])
        io = x.numel() * 2 + m * rows_n * 2
        moved4 = int4.packed.numel() * 4 + int4.scales.numel() * 2 + io
        moved8 = int8.packed.numel() * 4 + int8.scales.numel() * 2 + io
        row = {
            "dtype": str(dtype).removeprefix("torch."),
            "N": rows_n,
            "K": cols_k,
            "M": m,
            "ms": timings,
            "dense_MB": rows_n * cols_k * 2 / 1e6,
            "int4_bandwidth_fraction": moved4 / (timings["dk_int4"] * 1e-3) / bandwidth,
            "int8_bandwidth_fraction": moved8 / (timings["dk_int8"] * 1e-3) / bandwidth,
            "int4_speedup_vs_dense": timings["torch_dense"] / timings["dk_int4"],
            "int8_speedup_vs_dense": timings["torch_dense"] / timings["dk_int8"],
        }
        out.append(row)
        print(
            f"{row['dtype']:>8} {rows_n}x{cols_k} M={m:<3} "
            + " ".join(f"{k} {v * 1e3:.1f}us" for k, v in timings.items())
            + f" | int4 x{row['int4_speedup_vs_dense']:.2f} ({row['int4_bandwidth_fraction']:.0%} of copy)"
            + f" int8 x{row['int8_speedup_vs_dense']:.2f} ({row['int8_bandwidth_fraction']:.0%})"
        )
        sys.stdout.flush()
    return out


#: Pipelines (stages, steps per stage, blocks per SM) tried around decodekit.cuda.QUANT_PIPELINES and
#: SWAP_PIPELINES, by (kernel, tiles).
PIPELINES = {
    ("swap", 1): ((3, 1, 4), (4, 1, 4), (3, 2, 3), (2, 4, 2), (4, 2, 4)),
    ("swap", 2): ((3, 1, 4), (4, 1, 4), (3, 2, 3), (2, 4, 2)),
    ("mma", 4): ((2, 1, 1), (2, 2, 1)),
}


def tune(dtype: Any, rows_n: int, cols_k: int) -> list[dict[str, Any]]:
    """Split-K and pipeline choices around the default plan, int4 g128 and int8 per-channel; at M = 1 also
    each pipeline's memory traffic alone (``copy``: the kernel built without its arithmetic;
    ``copy_tiled``: the same, reading each stage as one contiguous run, as a tile-major layout would;
    ``math``: the arithmetic without the code copies)."""
    weight = torch.randn(rows_n, cols_k, device="cuda")
    sm_count = torch.cuda.get_device_properties(0).multi_processor_count
    out = []
    for bits, group_size in ((4, 128), (8, None)):
        qweight = dkq.quantize(weight, bits, group_size, scale_dtype=dtype)
        copies = clone_weight(qweight, copies_for(qweight.packed.numel() * 4))
        for m in (1, 16, 64):
            x = torch.randn(m, cols_k, device="cuda", dtype=dtype)
            kernel = "swap" if m <= 16 else "mma"  # what "auto" takes
            tiles, splits, _ = dkc.mma_plan(m, rows_n, cols_k, bits, sm_count, swap=kernel == "swap")

            def timed(x: Any = x, copies: list[Any] = copies, kernel: str = kernel, **plan: Any) -> float:
                return graph_ms([lambda q=q: dkc._quant_matmul(x, q, kernel=kernel, **plan) for q in copies])

            results = {f"s{s}": timed(splits=s) for s in sorted({max(1, splits // 2), splits, 2 * splits})}
            for pipeline in PIPELINES.get((kernel, tiles), ()):
                name = "p" + "".join(map(str, pipeline))
                results[name] = timed(pipeline=pipeline)
                if m == 1:
                    results[name + "_copy"] = timed(pipeline=pipeline, probe="copy")
                    results[name + "_copy_tiled"] = timed(pipeline=pipeline, probe="copy_tiled")
                    results[name + "_math"] = timed(pipeline=pipeline, probe="math")
            best = min(
                (k for k in results if k.startswith(("s", "p")) and "_" not in k), key=results.__getitem__
            )
            print(
                f"tune int{bits} {rows_n}x{cols_k} M={m} default {kernel}{tiles}_s{splits} "
                f"p{(dkc.SWAP_PIPELINES if kernel == 'swap' else dkc.QUANT_PIPELINES)[tiles]}: "
                + " ".join(f"{k} {v * 1e3:.1f}us" for k, v in results.items())
                + f" | best {best}"
            )
            sys.stdout.flush()
            out.append(
                {
                    "bits": bits,
                    "N": rows_n,
                    "K": cols_k,
                    "M": m,
                    "default": f"{kernel}{tiles}_s{splits}",
                    "us": results,
                }
            )
    return out


def eager_overhead() -> dict[str, float]:
    """Wall time per call of back-to-back eager calls at M = 1 (what a Python caller sees)."""
    weight = torch.randn(4096, 4096, device="cuda")
    dense = weight.half()
    qweight = dkq.quantize(weight, 4, 128, scale_dtype=torch.float16)
    x = torch.randn(1, 4096, device="cuda", dtype=torch.float16)
    out = {}
    for name, fn in (
        ("torch_dense", lambda: torch.matmul(x, dense.t())),
        ("dk_int4", lambda: dkc.quant_matmul(x, qweight)),
    ):
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(500):
            fn()
        torch.cuda.synchronize()
        out[name] = (time.perf_counter() - start) / 500 * 1e6
    print("eager 4096x4096 M=1 per call: " + " ".join(f"{k} {v:.1f}us" for k, v in out.items()))
    return out


def summarize(rows: list[dict[str, Any]]) -> None:
    """The issue's targets at M = 1 on shapes of 50 MB or more, and at M = 16."""
    for row in rows:
        if row["dense_MB"] < 50 or row["M"] not in (1, 16):
            continue
        name = f"{row['dtype']} {row['N']}x{row['K']} M={row['M']}"
        if row["M"] == 1:
            verdicts = [
                ("int4 >= 80% of copy", row["int4_bandwidth_fraction"] >= 0.8),
                ("int4 >= 3x dense", row["int4_speedup_vs_dense"] >= 3),
                ("int8 >= 1.7x dense", row["int8_speedup_vs_dense"] >= 1.7),
            ]
        else:
            verdicts = [("int4 >= 2.5x dense", row["int4_speedup_vs_dense"] >= 2.5)]
        print(
            f"target {name}: " + ", ".join(f"{label} {'MET' if ok else 'missed'}" for label, ok in verdicts)
        )


def run(quick: bool) -> tuple[list[dict[str, Any]], bool]:
    """Check every layout, then time every shape and tune; returns the rows and whether every check passed."""
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    props = torch.cuda.get_device_properties(0)
    print(
        f"# {props.name}, {props.multi_processor_count} SMs, L2 {props.L2_cache_size >> 20} MiB; "
        f"torch {torch.__version__}; copy bandwidth {bandwidth / 1e12:.2f} TB/s"
    )
    ok = True
    for dtype in (torch.float16, torch.bfloat16):
        for bits, group_size, symmetric in LAYOUTS:
            ok &= check_layout(dtype, bits, group_size, symmetric)
        ok &= check_edges(dtype)
    print(f"# correctness: {'all passed' if ok else 'FAILURES'}")
    sys.stdout.flush()
    rows: list[dict[str, Any]] = []
    shapes = SHAPES[:2] if quick else SHAPES
    for dtype in (torch.float16, torch.bfloat16):
        for rows_n, cols_k in shapes:
            rows += time_shape(dtype, rows_n, cols_k, bandwidth, (1, 4, 16, 64))
            torch.cuda.empty_cache()
    summarize(rows)
    eager = eager_overhead()
    tuning = []
    if not quick:
        for rows_n, cols_k in ((4096, 28672), (14336, 4096)):
            tuning += tune(torch.float16, rows_n, cols_k)
    rows.append({"tuning": tuning, "copy_bandwidth": bandwidth, "eager_us": eager})
    return rows, ok


if __name__ == "__main__":
    sys.exit(main(__doc__.split("\n")[0], run, "two shapes only, no tuning"))
