"""End-to-end speculative decoding on the CPU: the 26-prompt Spec-Bench mini-benchmark (2 per category,
bundled with decodekit), SmolLM2-135M-Instruct, greedy, N new tokens, every configuration in one run.

Usage::

    .venv/bin/python bench/generate_e2e.py [--max-new-tokens 128] [--dtype float32] [--threads 2]
        [--configs greedy,prompt_lookup,...] [--out .benchmarks/generate_e2e.json]

Configurations (``decodekit.demo.CONFIGS``): ``greedy`` (decodekit, no drafter), each decodekit drafter
(one object per configuration, kept across the prompts as a server keeps it), ``hf_greedy``,
``hf_prompt_lookup`` and ``hf_prompt_lookup_gqa`` (transformers' ``generate``, the latter two with
``prompt_lookup_num_tokens=10``, the last with ``TRANSFORMERS_SDPA_FORCE_GQA=1``). Prints
a markdown table (overall and per category) with tokens/s, the speedup over ``greedy``, the mean accepted
length (tokens per verification step), the share of time outside the model, and how many outputs equal
``greedy``'s; writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from decodekit import demo


def table(results: list[demo.ConfigResult], title: str) -> str:
    plain = results[0]
    lines = [
        f"**{title}**",
        "",
        "| config | tokens/s | speedup vs greedy | mean accepted length | drafted per step | in decodekit "
        "| identical to greedy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        same = sum(a.tokens == b.tokens for a, b in zip(result.outcomes, plain.outcomes, strict=True))
        mal = result.mean_accepted_length
        hf = result.name.startswith("hf_")
        lines.append(
            f"| {result.name} | {result.tokens_per_second:.1f} | "
            f"{result.tokens_per_second / plain.tokens_per_second:.2f}x | "
            f"{'-' if mal is None else f'{mal:.2f}'} | "
            f"{'-' if result.mean_drafted is None else f'{result.mean_drafted:.1f}'} | "
            f"{'-' if hf else f'{result.decodekit_share:.1%}'} | "
            f"{same}/{len(result.outcomes)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=26)
    parser.add_argument(
        "--configs", default=",".join(c for c in demo.CONFIGS if c != demo.HF_GREEDY), help="comma-separated"
    )
    parser.add_argument(
        "--no-prepack",
        action="store_true",
        help="keep torch's nn.Linear (default: decodekit.models.prepack_linears)",
    )
    parser.add_argument("--out", type=Path, default=Path(".benchmarks/generate_e2e.json"))
    args = parser.parse_args(argv)

    import torch
    from decodekit.models import load_default, prepack_linears

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_default()
    model = model.to(getattr(torch, args.dtype))
    prepacked = not args.no_prepack and args.dtype == "float32"
    if prepacked:
        prepack_linears(model)
    prompts = [(p.category, demo.chat_ids(tokenizer, p.text)) for p in demo.load_prompts(args.prompts)]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if configs[0] != demo.PLAIN:
        configs.insert(0, demo.PLAIN)
    # one untimed warm-up generation so that first-call costs land in no configuration
    demo.run_configs([demo.PLAIN], model, prompts[:1], 8)
    start = time.perf_counter()
    done = [0]

    def progress() -> None:
        done[0] += 1
        if done[0] % len(configs) == 0:
            print(
                f"{done[0] // len(configs)}/{len(prompts)} prompts, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    results = demo.run_configs(configs, model, prompts, args.max_new_tokens, on_generation=progress)
    header = (
        f"SmolLM2-135M-Instruct {args.dtype}, {len(prompts)} prompts, {args.max_new_tokens} new tokens, "
        f"linears {'prepacked for oneDNN' if prepacked else 'as loaded (MKL)'}, "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(table(results, f"All {len(prompts)} prompts. {header}"))
    categories = list(dict.fromkeys(category for category, _ in prompts))
    split = [result.by_category() for result in results]
    print("\n**Per category** (tokens/s, speedup vs greedy in parentheses; mean accepted length after /)\n")
    print("| category | " + " | ".join(r.name for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for category in categories:
        base = split[0][category].tokens_per_second
        cells = []
        for per in split:
            part = per[category]
            mal = part.mean_accepted_length
            cells.append(
                f"{part.tokens_per_second:.1f} ({part.tokens_per_second / base:.2f}x)"
                + ("" if mal is None else f" / {mal:.2f}")
            )
        print(f"| {category} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "header": header,
        "configs": {
            r.name: [
                {
                    "category": o.category,
                    "tokens": o.tokens,
                    "seconds": o.seconds,
                    "steps": o.steps,
                    "model_seconds": o.model_seconds,
                    "drafted": o.drafted,
                }
                for o in r.outcomes
            ]
            for r in results
        },
    }
    args.out.write_text(json.dumps(raw), encoding="utf-8")


if __name__ == "__main__":
    main()
