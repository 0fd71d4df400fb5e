"""Timing helpers shared by the GPU scripts in bench/gpu (run as ``python bench/gpu/<script>.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def median_ms(fn: Callable[[], Any], repeats: int = 30, warmup: int = 5) -> float:
    """Median wall time of `fn` on the current stream, in milliseconds (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), from a 1 GiB copy."""
    src = torch.empty(1 << 29, dtype=torch.float16, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), repeats=20)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def main(description: str, run: Callable[[bool], tuple[list[dict[str, Any]], bool]], quick_help: str) -> int:
    """The command line of a GPU script: ``[--quick] [--json PATH]``; runs ``run(quick)``, which returns
    the result rows and whether every correctness check passed, and exits non-zero when one failed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    rows, ok = run(args.quick)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": torch.cuda.get_device_name(0), "rows": rows}, f, indent=1)
    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1
