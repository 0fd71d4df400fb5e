"""GPU check and timing of decodekit's weight-only quantized matmul (issue 10), in one run.

Usage (on a machine with a CUDA GPU, torch and CuPy, and decodekit installed from the abi3 wheel)::

    python bench/gpu/quant_matmul.py [--quick] [--json results.json]

1. **Correctness.** For fp16 and bf16 activations, int8 per-channel and int4 with groups of 32, 64 and
   128 and per-channel, it compares `decodekit.cuda.quant_matmul` with fp32 `x @ dequant(W).T`. Inputs
   are fresh random values, never zeros. The relative error must be under 1e-2 for bf16 and 3e-3 for
   fp16, with no NaN.
2. **Timing.** For N x K in {4096x4096, 4096x14336, 14336x4096, 4096x28672} and M in {1, 4, 16, 64}, it
   times, in the same process:
   - the kernel;
   - `torch.matmul` in fp16/bf16;
   - `torch._weight_int8pack_mm` and `torch._weight_int4pack_mm`, where the torch build has them.

   Each is the median of CUDA-event timings. The kernel's bandwidth (packed weights, scales and
   activations read, output written) is printed as a fraction of a device-to-device copy measured in
   the same run.

The script exits non-zero when any correctness check fails.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import decodekit.cuda as dkc
import decodekit.quant as dkq
import torch
from timing import copy_bandwidth, main, median_ms

TOLERANCE = {torch.float16: 3e-3, torch.bfloat16: 1e-2}
SHAPES = ((4096, 4096), (4096, 14336), (14336, 4096), (4096, 28672))  # (N, K)
LAYOUTS = ((8, None), (4, 32), (4, 64), (4, 128), (4, None))  # (bits, group_size); None = per-channel


def torch_int8(weight: Any, dtype: Any) -> Callable[[Any], Any] | None:
    """torch's int8 weight-only matmul (per-channel scales), if this build has it on CUDA."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return None
    scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
    codes = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    scales = scales.to(dtype)
    return lambda x: op(x, codes, scales)


def torch_int4(weight: Any, dtype: Any, group_size: int) -> Callable[[Any], Any] | None:
    """torch's tinygemm int4 matmul, if this build has it and accepts this shape on this GPU."""
    op = getattr(torch.ops.aten, "_weight_int4pack_mm", None)
    pack = getattr(torch.ops.aten, "_convert_weight_to_int4pack", None)
    if op is None or pack is None or dtype != torch.bfloat16:
        return None
    try:
        rows, cols = weight.shape
        grouped = weight.float().reshape(rows, cols // group_size, group_size)
        lo, hi = grouped.amin(-1), grouped.amax(-1)
        scales = ((hi - lo).clamp(min=1e-8) / 15).to(dtype)
        zeros = (lo + scales.float() * 8).to(dtype)
        codes = (
            torch.round((grouped - lo[..., None]) / scales.float()[..., None]).clamp(0, 15).to(torch.int32)
        )
        packed = pack(codes.reshape(rows, cols), 8)
        scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()
        return lambda x: op(x, packed, group_size, scales_and_zeros)
    except RuntimeError as error:
        print(f"# torch int4 unavailable here: {error}")
        return None


def check(dtype: Any, bits: int, group_size: int | None, m: int) -> tuple[float, bool]:
    """Relative error against fp32 on the dequantized weight, at a small shape."""
    weight = torch.randn(512, 1024, device="cuda") * torch.rand(512, 1, device="cuda")
    qweight = dkq.quantize(weight, bits, group_size, scale_dtype=dtype)
    x = torch.randn(m, 1024, device="cuda", dtype=dtype)
    expected = x.float() @ qweight.dequantize().t()
    got = dkc.quant_matmul(x, qweight)
    error = float(torch.linalg.norm(got.float() - expected) / torch.linalg.norm(expected))
    return error, bool(torch.isfinite(got).all()) and error < TOLERANCE[dtype]


def time_once(
    x: Any,
    dense: Any,
    int8: dkq.QuantizedWeight,
    int4: dkq.QuantizedWeight,
    theirs_int8: Callable[[Any], Any] | None,
    theirs_int4: Callable[[Any], Any] | None,
) -> dict[str, float]:
    """Median times (ms) of every implementation on activations ``x``."""
    timings = {
        "torch_dense": median_ms(lambda: torch.matmul(x, dense.t())),
        "dk_int8": median_ms(lambda: dkc.quant_matmul(x, int8)),
        "dk_int4": median_ms(lambda: dkc.quant_matmul(x, int4)),
    }
    if theirs_int8 is not None:
        timings["torch_int8"] = median_ms(lambda: theirs_int8(x))
    if theirs_int4 is not None:
        timings["torch_int4"] = median_ms(lambda: theirs_int4(x))
    return timings


def run(quick: bool) -> tuple[list[dict[str, Any]], bool]:
    """Check every layout, then time every shape; returns the rows and whether every check passed."""
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    props = torch.cuda.get_device_properties(0)
    print(f"# {props.name}, {props.multi_processor_count} SMs; copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    ok = True
    for dtype in (torch.float16, torch.bfloat16):
        for bits, group_size in LAYOUTS:
            for m in (1, 7, 16, 65):
                error, passed = check(dtype, bits, group_size, m)
                ok &= passed
                verdict = "ok" if passed else "BAD"
                print(f"check {dtype!s:>14} int{bits} group={group_size} M={m}: err={error:.2e} {verdict}")
    rows = []
    shapes = SHAPES[:2] if quick else SHAPES
    for dtype in (torch.float16, torch.bfloat16):
        for rows_n, cols_k in shapes:
            weight = torch.randn(rows_n, cols_k, device="cuda")
            dense = weight.to(dtype)
            int8 = dkq.quantize(weight, 8, None, scale_dtype=dtype)
            int4 = dkq.quantize(weight, 4, 128, scale_dtype=dtype)
            theirs_int8, theirs_int4 = torch_int8(weight, dtype), torch_int4(weight, dtype, 128)
            for m in (1, 4, 16, 64):
                x = torch.randn(m, cols_k, device="cuda", dtype=dtype)
                timings = time_once(x, dense, int8, int4, theirs_int8, theirs_int4)
                moved4 = rows_n * cols_k // 2 + int4.scales.numel() * 2 + x.numel() * 2 + m * rows_n * 2
                moved8 = rows_n * cols_k + int8.scales.numel() * 2 + x.numel() * 2 + m * rows_n * 2
                row = {
                    "dtype": str(dtype).removeprefix("torch."),
                    "N": rows_n,
                    "K": cols_k,
                    "M": m,
                    "ms": timings,
                    "int4_bandwidth_fraction": moved4 / (timings["dk_int4"] * 1e-3) / bandwidth,
                    "int8_bandwidth_fraction": moved8 / (timings["dk_int8"] * 1e-3) / bandwidth,
                    "int4_speedup_vs_dense": timings["torch_dense"] / timings["dk_int4"],
                    "int8_speedup_vs_dense": timings["torch_dense"] / timings["dk_int8"],
                }
                rows.append(row)
                print(
                    f"{row['dtype']:>8} {rows_n}x{cols_k} M={m:<3} "
                    + " ".join(f"{k} {v:.4f}" for k, v in timings.items())
                    + f" | int4 x{row['int4_speedup_vs_dense']:.2f}"
                    + f" ({row['int4_bandwidth_fraction']:.0%} of copy)"
                    + f" int8 x{row['int8_speedup_vs_dense']:.2f} ({row['int8_bandwidth_fraction']:.0%})"
                )
                sys.stdout.flush()
    return rows, ok


if __name__ == "__main__":
    sys.exit(main(__doc__.split("\n")[0], run, "two shapes only"))
