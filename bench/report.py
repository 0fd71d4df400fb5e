"""Turn pytest-benchmark JSON into a Markdown ratio table for docs/BENCHMARKS.md.

Usage::

    python -m pytest bench --benchmark-only --benchmark-json=bench.json
    python bench/report.py bench.json

For every ``benchmark.group`` it lists each implementation's median time and how the reference medians
compare with decodekit's (``reference_median / decodekit_median``). Groups whose benchmarks record per-call
times in ``extra_info`` (``mask_median_us``, ``mask_p99_us``, ``masks``: the grammar mask walks) also get
a second table of those, with the ratios of the per-call medians.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINE = "decodekit"
# Table order within a group; implementations not listed here follow, alphabetically.
IMPL_ORDER = ("decodekit", "torch", "numpy", "torch_topk_only")


@dataclass(frozen=True)
class Result:
    """One benchmark's timings, filed under its group and implementation."""

    group: str
    impl: str
    name: str
    median_s: float
    min_s: float
    rounds: int
    # Per-call statistics some benchmarks keep in extra_info (the grammar mask walks), in microseconds.
    mask_median_us: float | None = None
    mask_p99_us: float | None = None
    masks: int | None = None


def load(path: Path) -> tuple[dict[str, Any], list[Result]]:
    """Read a ``--benchmark-json`` file: its header (machine info, datetime) and its results."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    results = [
        Result(
            group=bench.get("group") or "(no group)",
            # Older runs or foreign benchmarks may lack the tag; the test name still identifies them.
            impl=str(bench.get("extra_info", {}).get("impl", bench["name"])),
            name=bench["name"],
            median_s=float(bench["stats"]["median"]),
            min_s=float(bench["stats"]["min"]),
            rounds=int(bench["stats"]["rounds"]),
            mask_median_us=_optional_float(bench.get("extra_info", {}).get("mask_median_us")),
            mask_p99_us=_optional_float(bench.get("extra_info", {}).get("mask_p99_us")),
            masks=_optional_int(bench.get("extra_info", {}).get("masks")),
        )
        for bench in data.get("benchmarks", [])
    ]
    return data, results


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def format_time(seconds: float) -> str:
    """A duration in the largest unit that keeps it at least 1, to three significant digits (``25.2 ms``)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            decimals = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{decimals}f} {unit}"
    return f"{seconds / 1e-9:.0f} ns"


def compare(reference_s: float, decodekit_s: float) -> str:
    """Say how decodekit compares with one reference, as ``reference_median / decodekit_median``."""
    ratio = reference_s / decodekit_s
    if ratio >= 1.0:
        return f"decodekit is {ratio:.1f}x faster"
    # A ratio below 1 reads badly as "0.8x faster"; say slower, by the inverse ratio.
    return f"decodekit is {1.0 / ratio:.1f}x slower"


def _impl_key(result: Result) -> tuple[int, str]:
    rank = IMPL_ORDER.index(result.impl) if result.impl in IMPL_ORDER else len(IMPL_ORDER)
    return rank, result.impl


def group_results(results: Iterable[Result]) -> dict[str, list[Result]]:
    """Results by group, groups in the order they first appear, implementations in table order."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.group, []).append(result)
    return {group: sorted(members, key=_impl_key) for group, members in groups.items()}


def _thread_counts(results: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, set[int]] = {}
    for bench in results:
        for key, value in bench.get("extra_info", {}).items():
            if key.endswith("_num_threads"):
                counts.setdefault(key.removesuffix("_num_threads"), set()).add(int(value))
    return ", ".join(
        f"{lib} {'/'.join(str(n) for n in sorted(values))}" for lib, values in sorted(counts.items())
    )


def render(header: Mapping[str, Any], groups: Mapping[str, Sequence[Result]]) -> str:
    """The Markdown block: a line on the machine and the run, then one table over all groups."""
    machine: Mapping[str, Any] = header.get("machine_info", {})
    cpu: Mapping[str, Any] = machine.get("cpu", {})
    cpu_desc = str(cpu.get("brand_raw") or machine.get("processor") or "unknown CPU")
    if cpu.get("count"):
        cpu_desc += f", {cpu['count']} logical cores"
    python = f"{machine.get('python_implementation', 'Python')} {machine.get('python_version', '?')}"
    lines = [
        f"- Machine: {cpu_desc}",
        f"- Python: {python}; {machine.get('system', '')} {machine.get('release', '')}".rstrip(),
        f"- Run: {header.get('datetime', 'unknown date')}",
    ]
    threads = _thread_counts(header.get("benchmarks", []))
    if threads:
        lines.append(f"- Threads (library defaults): {threads}")
    lines += [
        "",
        "| Group | Implementation | Median | Min | Rounds | Reference / decodekit (medians) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for group, members in groups.items():
        baseline = next((r for r in members if r.impl == BASELINE), None)
        for result in members:
            if result.impl == BASELINE:
                verdict = "baseline"
            elif baseline is None:
                verdict = "n/a (no decodekit result in this group)"
            else:
                verdict = compare(result.median_s, baseline.median_s)
            times = f"{format_time(result.median_s)} | {format_time(result.min_s)}"
            lines.append(f"| `{group}` | {result.impl} | {times} | {result.rounds} | {verdict} |")
    if any(r.impl == "torch_topk_only" for members in groups.values() for r in members):
        lines += [
            "",
            "`torch_topk_only` is `torch.topk` alone on logits with the Gumbel noise already added: a lower "
            "bound for any torch Gumbel-top-k, not a sampler (it draws no fresh noise).",
        ]
    lines += render_mask_table(groups)
    return "\n".join(lines)


def render_mask_table(groups: Mapping[str, Sequence[Result]]) -> list[str]:
    """The per-call table of the groups whose results carry ``mask_median_us`` (none: no lines at all)."""
    timed = {group: [r for r in members if r.mask_median_us is not None] for group, members in groups.items()}
    timed = {group: members for group, members in timed.items() if members}
    if not timed:
        return []
    lines = [
        "",
        "Per-call mask fill times (each fill timed on its own; the medians above are of whole rounds):",
        "",
        "| Group | Implementation | Mask median | Mask p99 | p99 / median | Masks | "
        "Reference / decodekit (mask medians) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for group, members in timed.items():
        baseline = next((r for r in members if r.impl == BASELINE), None)
        for result in members:
            median_us = result.mask_median_us
            assert median_us is not None
            if result.impl == BASELINE:
                verdict = "baseline"
            elif baseline is None or baseline.mask_median_us is None:
                verdict = "n/a (no decodekit result in this group)"
            else:
                verdict = compare(median_us, baseline.mask_median_us)
            p99_us = result.mask_p99_us
            p99 = "n/a" if p99_us is None else format_time(p99_us * 1e-6)
            spread = "n/a" if p99_us is None or median_us <= 0 else f"{p99_us / median_us:.1f}x"
            masks = "n/a" if result.masks is None else str(result.masks)
            lines.append(
                f"| `{group}` | {result.impl} | {format_time(median_us * 1e-6)} | {p99} | {spread} | {masks} "
                f"| {verdict} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the Markdown report for the JSON file named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("json_path", type=Path, help="output of pytest --benchmark-json")
    args = parser.parse_args(argv)
    header, results = load(args.json_path)
    if not results:
        print(f"{args.json_path}: no benchmarks in this file", file=sys.stderr)
        return 1
    print(render(header, group_results(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
