"""JSON-Schema constrained decoding on the Llama 3 vocabulary (128,256 ids): decodekit against llguidance and
xgrammar, every engine in one run, over the corpus of :mod:`bench.reference.json_schemas`.

Usage::

    .venv/bin/python bench/json_schema_masks.py [--schemas flat_object,tree] [--rounds 10] [--warmup 1]
        [--engines decodekit,llguidance,xgrammar] [--out .benchmarks/json_schema_masks.json]

All engines get the same schema text and the same semantics: decodekit
``Grammar.json_schema(text, whitespace="compact", strict=True)``, llguidance and xgrammar configured to
match as :mod:`bench.reference.json_anchors` describes (no whitespace, ``,`` and ``:``, properties in
schema order). The per-vocabulary objects (decodekit ``Vocabulary``, llguidance ``LLTokenizer``, xgrammar
``TokenizerInfo`` and an uncached ``GrammarCompiler``) are built before anything is timed.

What is measured, for each schema and engine (``--warmup`` rounds first, then ``--rounds`` measured
rounds; engines interleaved within a round; the garbage collector off while timing):

* **time to first mask** (TTFM): from the schema to the first filled mask row, on a fresh compile every
  round: ``Grammar.json_schema(...).compile(vocab)`` + ``Matcher`` + fill (decodekit);
  ``LLMatcher(tokenizer, grammar)`` + fill (llguidance; the lark text wrapping the schema is built
  beforehand); ``compile_json_schema(...)`` + ``GrammarMatcher`` + fill (xgrammar). Median over rounds.
* **per-token mask time**: each instance is tokenized by greedy longest match
  (``AnchorVocab.greedy_tokenize``; the same tokens for every engine) and walked on the matcher of that
  round's compile (reset between instances): at every position, including the final one where EOS must
  be allowed, one fill of the ``[1, words]`` int32 row is timed with ``perf_counter_ns``, then the token
  is consumed (untimed). Each engine's own numpy entry point: ``Matcher.fill_next_token_bitmask``,
  ``llguidance.numpy.fill_next_token_bitmask``, ``GrammarMatcher.fill_next_token_bitmask``. Nothing
  carries over between rounds (a fresh compile each), so every round includes each engine's first-visit
  work (llguidance's lazily built lexer states, decodekit's or xgrammar's uncached masks), as a new
  request would. Median and p99 over all fills of all measured rounds, per schema and pooled overall.

Before timing, an untimed check walks every instance on every engine: each mask must allow the next
token and, at the end, EOS. The masks of every pair of engines are compared at every position; the
diagnostic columns count the positions where two engines disagree and the summed popcount of the
difference (the engines' languages differ in known ways, see :mod:`bench.reference.json_anchors`).

Targets (issue 8), decodekit against llguidance: TTFM median at most llguidance's, per-token median at
most llguidance's, per-token p99 at most half of llguidance's. Prints markdown tables with the ratios
decodekit/llguidance and decodekit/xgrammar and whether each target holds; writes the raw numbers as JSON.
A missing engine (decodekit without ``Grammar.json_schema``, an anchor not installed) is skipped with
its reason, never faked.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Run as a script from anywhere: the anchors live in bench/reference and the Llama 3 special tokens in
# tests/vocabularies, both imported as packages of the repository root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.reference.grammar_anchors import AnchorVocab, llguidance_tokenizer  # noqa: E402
from bench.reference.json_anchors import (  # noqa: E402
    XGRAMMAR_COMPILE_THREADS,
    LlguidanceJson,
    XgrammarJson,
    llguidance_json_grammar,
    mask_allows,
    xgrammar_compile,
    xgrammar_compiler,
)
from bench.reference.json_schemas import SCHEMAS, SchemaCase, check_corpus  # noqa: E402

Mask = npt.NDArray[np.int32]
EOS = "<|end_of_text|>"
ENGINES = ("decodekit", "llguidance", "xgrammar")
BASELINE, ANCHOR, SECOND = ENGINES
TARGET_TTFM, TARGET_MEDIAN, TARGET_P99 = 1.0, 1.0, 0.5
clock = time.perf_counter_ns


# --- vocabularies -----------------------------------------------------------------------------------------


def llama3_tokenizer_path() -> Path:
    """``llama_models/llama3/tokenizer.model``, found without importing the package."""
    spec = importlib.util.find_spec("llama_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llama-models is not installed (it supplies the Llama 3 tokenizer.model)")
    path = Path(next(iter(spec.submodule_search_locations)), "llama3", "tokenizer.model")
    if not path.is_file():
        raise SystemExit(f"{path} is missing")
    return path


# --- engines ----------------------------------------------------------------------------------------------


@dataclass
class Walker:
    """One matcher of one compile: the timed fill is ``fill(*args)``, writing ``mask``."""

    fill: Callable[..., object]
    args: tuple[Any, ...]
    consume: Callable[[int], bool]
    restart: Callable[[], object]
    mask: Mask


@dataclass
class Engine:
    """How to turn a schema into a walker: ``prepare`` (untimed), then ``compile`` and ``start`` (timed)."""

    name: str
    prepare: Callable[[SchemaCase], Any]
    compile: Callable[[Any], Any]
    start: Callable[[Any, Mask], Walker]
    checker: Callable[[SchemaCase], Any]  # an object with fill_bitmask(row) / consume(token), for the check


def decodekit_engine(path: Path, vocab: AnchorVocab) -> Engine | str:
    """The decodekit engine, or the reason it is skipped."""
    import decodekit as dk

    from tests.vocabularies import llama3_special_tokens

    if not hasattr(dk.Grammar, "json_schema"):
        return f"decodekit {getattr(dk, '__version__', '?')} has no Grammar.json_schema yet"
    dk_vocab = dk.Vocabulary.from_tiktoken(path, llama3_special_tokens(), eos_tokens=[EOS])
    if dk_vocab.size != vocab.vocab_size or dk_vocab.eos_ids != [vocab.eos_id]:
        raise RuntimeError("decodekit and anchor vocabularies differ")

    def compile_(text: str) -> Any:
        return dk.Grammar.json_schema(text, whitespace="compact", strict=True).compile(dk_vocab)

    def start(compiled: Any, mask: Mask) -> Walker:
        matcher = dk.Matcher(compiled)
        return Walker(matcher.fill_next_token_bitmask, (mask,), matcher.accept_token, matcher.reset, mask)

    class Checker:
        def __init__(self, case: SchemaCase) -> None:
            self.matcher = dk.Matcher(compile_(case.schema_text))

        def fill_bitmask(self, row: Mask) -> None:
            self.matcher.fill_next_token_bitmask(row.reshape(1, -1))

        def consume(self, token: int) -> bool:
            if token == vocab.eos_id:
                return bool(self.matcher.is_accepting())
            return bool(self.matcher.accept_token(token))

    return Engine(BASELINE, lambda case: case.schema_text, compile_, start, Checker)


def llguidance_engine(vocab: AnchorVocab) -> Engine | str:
    """The llguidance engine, or the reason it is skipped."""
    if importlib.util.find_spec("llguidance") is None:
        return "llguidance is not installed"
    import llguidance
    from llguidance.numpy import fill_next_token_bitmask

    tokenizer = llguidance_tokenizer(vocab)

    def compile_(grammar: str) -> Any:
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def start(matcher: Any, mask: Mask) -> Walker:
        return Walker(fill_next_token_bitmask, (matcher, mask), matcher.consume_token, matcher.reset, mask)

    return Engine(
        ANCHOR,
        lambda case: llguidance_json_grammar(case.schema),
        compile_,
        start,
        lambda case: LlguidanceJson(vocab, case.schema),
    )


def xgrammar_engine(vocab: AnchorVocab) -> Engine | str:
    """The xgrammar engine, or the reason it is skipped."""
    if importlib.util.find_spec("xgrammar") is None:
        return "xgrammar is not installed (pip install xgrammar)"
    import xgrammar

    xgrammar_compiler(vocab)

    def start(compiled: Any, mask: Mask) -> Walker:
        matcher = xgrammar.GrammarMatcher(compiled)
        return Walker(matcher.fill_next_token_bitmask, (mask,), matcher.accept_token, matcher.reset, mask)

    return Engine(
        SECOND,
        lambda case: case.schema_text,
        lambda text: xgrammar_compile(vocab, text),
        start,
        lambda case: XgrammarJson(vocab, case.schema),
    )


# --- check (untimed) --------------------------------------------------------------------------------------


@dataclass
class Disagreement:
    """Where two engines' masks differ along the walks of one schema."""

    positions: int = 0
    bits: int = 0


@dataclass
class SchemaResult:
    """Everything measured for one schema."""

    name: str
    walks: list[list[int]]
    refused: dict[str, str] = field(default_factory=dict)
    ttfm_ns: dict[str, list[int]] = field(default_factory=dict)
    mask_ns: dict[str, list[int]] = field(default_factory=dict)
    disagreements: dict[str, Disagreement] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        return sum(len(w) + 1 for w in self.walks)


def check(case: SchemaCase, engines: Sequence[Engine], vocab: AnchorVocab, result: SchemaResult) -> None:
    """Walk every instance on every engine (a fresh matcher each); record refusals, rejected tokens and
    pairwise mask differences (counted only where both engines are still walking)."""
    pairs = [(a.name, b.name) for i, a in enumerate(engines) for b in engines[i + 1 :]]
    for a, b in pairs:
        result.disagreements[f"{a}/{b}"] = Disagreement()
    rows = {engine.name: vocab.new_bitmask() for engine in engines}
    for walk_index, tokens in enumerate(result.walks):
        checkers: dict[str, Any] = {}
        for engine in engines:
            if engine.name in result.refused:
                continue
            try:
                checkers[engine.name] = engine.checker(case)
            except Exception as e:  # a refused schema is a result (UnsupportedSchemaError, xgrammar's)
                result.refused[engine.name] = f"compile failed: {type(e).__name__}: {str(e).strip()[:160]}"
        for position, token in enumerate([*tokens, vocab.eos_id]):
            live = [name for name in checkers if name not in result.refused]
            for name in live:
                checkers[name].fill_bitmask(rows[name])
            for a, b in pairs:
                if a in live and b in live:
                    diff = int(np.bitwise_count(rows[a].view(np.uint32) ^ rows[b].view(np.uint32)).sum())
                    result.disagreements[f"{a}/{b}"].positions += diff > 0
                    result.disagreements[f"{a}/{b}"].bits += diff
            what = "EOS" if token == vocab.eos_id else repr(vocab.token_bytes[token])
            where = f"{what} at position {position} of instance {walk_index}"
            for name in live:
                if not mask_allows(rows[name], token):
                    result.refused[name] = f"mask forbids {where}"
                elif not checkers[name].consume(token):
                    result.refused[name] = f"rejects {where}"


# --- timing -----------------------------------------------------------------------------------------------


def time_round(
    engine: Engine, prepared: Any, walks: Sequence[Sequence[int]], mask: Mask, eos: int
) -> tuple[int, list[int]]:
    """One fresh compile: its time to first mask and the time of every fill along every walk."""
    gc.collect()
    gc.disable()
    try:
        start = clock()
        walker = engine.start(engine.compile(prepared), mask)
        walker.fill(*walker.args)
        ttfm = clock() - start
        fill, args, consume, samples = walker.fill, walker.args, walker.consume, []
        for tokens in walks:
            walker.restart()
            for token in tokens:
                t0 = clock()
                fill(*args)
                samples.append(clock() - t0)
                if not consume(token):
                    raise AssertionError(f"{engine.name}: token {token} rejected while timing")
            t0 = clock()
            fill(*args)
            samples.append(clock() - t0)
            if not mask_allows(mask[0], eos):
                raise AssertionError(f"{engine.name}: EOS not allowed at the end of an instance")
    finally:
        gc.enable()
    return ttfm, samples


# --- report -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """One engine's numbers on one schema (or overall): TTFM median (ms), mask median and p99 (µs)."""

    ttfm_ms: float
    median_us: float
    p99_us: float


def _us(ns: Sequence[int], q: float) -> float:
    return float(np.percentile(ns, q)) / 1e3


def schema_stats(result: SchemaResult, engine: str) -> Stats | None:
    """The numbers of one engine on one schema, if it was measured there."""
    ns = result.mask_ns.get(engine)
    if not ns:
        return None
    return Stats(float(np.median(result.ttfm_ns[engine])) / 1e6, _us(ns, 50), _us(ns, 99))


def overall_stats(results: Sequence[SchemaResult], engine: str) -> Stats | None:
    """TTFM: the median over schemas of the per-schema medians; masks: every fill of every schema pooled."""
    per = [schema_stats(r, engine) for r in results]
    if not per or any(s is None for s in per):
        return None
    ns = [s for r in results for s in r.mask_ns[engine]]
    return Stats(float(np.median([s.ttfm_ms for s in per if s])), _us(ns, 50), _us(ns, 99))


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(cells: Sequence[str]) -> list[str]:
    return [_row(cells), "|---|" + "---:|" * (len(cells) - 1)]


def _ratio(a: Stats | None, b: Stats | None, attr: str) -> str:
    if a is None or b is None:
        return "-"
    return f"{getattr(a, attr) / getattr(b, attr):.2f}x"


def tables(results: Sequence[SchemaResult], shown: Sequence[str], skipped: dict[str, str]) -> str:
    """The markdown report: TTFM, per-token masks, disagreements, targets."""
    rows: list[tuple[str, str, dict[str, Stats | None], dict[str, str]]] = [
        (r.name, str(r.positions), {e: schema_stats(r, e) for e in shown}, r.refused) for r in results
    ]
    # The overall row pools the schemas every measured engine walked: its ratios compare like with like.
    measured = [e for e in shown if e not in skipped]
    common = [r for r in results if all(schema_stats(r, e) is not None for e in measured)]
    overall = {e: overall_stats(common, e) for e in shown}
    label = (
        "**overall**"
        if len(common) == len(results)
        else f"**overall ({len(common)}/{len(results)} schemas)**"
    )
    rows.append((label, str(sum(r.positions for r in common)), overall, {}))

    def cell(stats: dict[str, Stats | None], refused: dict[str, str], engine: str, attr: str) -> str:
        s = stats[engine]
        if s is not None:
            return f"{getattr(s, attr):.2f}" if attr == "ttfm_ms" else f"{getattr(s, attr):.1f}"
        return "skipped" if engine in skipped else ("failed" if engine in refused else "-")

    pairs = [(BASELINE, ANCHOR), (BASELINE, SECOND)]
    out = ["**Time to first mask (compile + first fill), median ms** (overall: median of the schemas)", ""]
    out += _header(["schema", *shown, *(f"{a}/{b}" for a, b in pairs)])
    for name, _, stats, refused in rows:
        ratios = [_ratio(stats.get(a), stats.get(b), "ttfm_ms") for a, b in pairs]
        out.append(_row([name, *(cell(stats, refused, e, "ttfm_ms") for e in shown), *ratios]))

    out += ["", "**Per-token mask time along the instances, µs** (overall: every fill pooled)", ""]
    columns = [f"{e} {q}" for e in shown for q in ("median", "p99")]
    out += _header(
        [
            "schema",
            "fills per round",
            *columns,
            *(f"{a}/{b} {q}" for a, b in pairs for q in ("median", "p99")),
        ]
    )
    for name, fills, stats, refused in rows:
        cells = [cell(stats, refused, e, attr) for e in shown for attr in ("median_us", "p99_us")]
        ratios = [
            _ratio(stats.get(a), stats.get(b), attr) for a, b in pairs for attr in ("median_us", "p99_us")
        ]
        out.append(_row([name, fills, *cells, *ratios]))

    out += [
        "",
        "**Mask disagreements: positions where two engines differ / summed popcount of the difference**",
        "",
    ]
    pair_names = [f"{a}/{b}" for i, a in enumerate(shown) for b in shown[i + 1 :]]
    out += _header(["schema", "positions", *pair_names, "refused or rejected"])
    for r in results:
        cells = [
            "-" if (d := r.disagreements.get(p)) is None else f"{d.positions} / {d.bits}" for p in pair_names
        ]
        out.append(_row([r.name, r.positions, *cells, "; ".join(f"{e}: {w}" for e, w in r.refused.items())]))

    out += ["", "**Targets (decodekit against llguidance)**", ""]
    # The targets compare decodekit and llguidance on every schema both walked.
    pair = [r for r in results if schema_stats(r, BASELINE) and schema_stats(r, ANCHOR)]
    if not pair:
        why = (
            "; ".join(f"{e}: {skipped[e]}" for e in (BASELINE, ANCHOR) if e in skipped)
            or "no schema walked by both"
        )
        out.append(f"Not evaluated ({why}).")
        return "\n".join(out)
    if len(pair) < len(results):
        left_out = ", ".join(r.name for r in results if r not in pair)
        out.append(f"Over the {len(pair)}/{len(results)} schemas both walked; left out: {left_out}.")
    ours, theirs = overall_stats(pair, BASELINE), overall_stats(pair, ANCHOR)
    targets = [
        ("TTFM median <= llguidance's", "ttfm_ms", TARGET_TTFM),
        ("per-token median <= llguidance's", "median_us", TARGET_MEDIAN),
        ("per-token p99 <= half of llguidance's", "p99_us", TARGET_P99),
    ]
    for label, attr, bound in targets:
        ok = getattr(ours, attr) <= bound * getattr(theirs, attr)
        per_schema = sum(
            getattr(schema_stats(r, BASELINE), attr) <= bound * getattr(schema_stats(r, ANCHOR), attr)
            for r in pair
        )
        out.append(
            f"- {label}: {'holds' if ok else 'MISSED'} overall ({_ratio(ours, theirs, attr)}); "
            f"holds on {per_schema}/{len(pair)} schemas"
        )
    return "\n".join(out)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("decodekit", "llguidance", "xgrammar", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


# --- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--schemas", default=",".join(SCHEMAS), help="comma-separated (default: all)")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (a fresh compile each)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds before them")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path(".benchmarks/json_schema_masks.json"))
    args = parser.parse_args(argv)
    names = [s for s in args.schemas.split(",") if s]
    unknown = [n for n in names if n not in SCHEMAS]
    if unknown:
        parser.error(f"unknown schemas {unknown}; known: {', '.join(SCHEMAS)}")
    wanted = [e for e in args.engines.split(",") if e]
    if set(wanted) - set(ENGINES):
        parser.error(f"engines are {ENGINES}")
    cases = [SCHEMAS[n] for n in names]
    try:
        check_corpus(cases)
    except ModuleNotFoundError as e:
        raise SystemExit(f"{e.name} is needed to validate the corpus: pip install jsonschema") from e

    from tests.vocabularies import llama3_special_tokens

    path = llama3_tokenizer_path()
    vocab = AnchorVocab.from_tiktoken(str(path), list(llama3_special_tokens()), EOS)
    makers: dict[str, Callable[[], Engine | str]] = {
        BASELINE: lambda: decodekit_engine(path, vocab),
        ANCHOR: lambda: llguidance_engine(vocab),
        SECOND: lambda: xgrammar_engine(vocab),
    }
    engines: list[Engine] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        made = makers[name]()
        if isinstance(made, str):
            skipped[name] = made
            print(f"skipping {name}: {made}", file=sys.stderr)
        else:
            engines.append(made)

    results = [
        SchemaResult(c.name, [vocab.greedy_tokenize(t.encode()) for t in c.instance_texts]) for c in cases
    ]
    for case, result in zip(cases, results, strict=True):
        check(case, engines, vocab, result)
    measure(cases, results, engines, vocab, rounds=args.rounds, warmup=args.warmup)

    info = run_info(argv, args.rounds, args.warmup, skipped)
    print(f"# JSON-schema masks, Llama 3 vocabulary ({vocab.vocab_size} ids)\n")
    print(f"{info['date']}; `{info['command']}`; {info['machine']}; Python {info['python']}; ", end="")
    print(", ".join(f"{k} {v}" for k, v in info["versions"].items()), end="; ")
    print(f"{args.rounds} rounds after {args.warmup} warm-up\n")
    for name, why in skipped.items():
        print(f"- {name} skipped: {why}")
    print()
    print(tables(results, wanted, skipped))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "schemas": [raw_numbers(r) for r in results]}, indent=1))
    print(f"\nraw numbers: {args.out}", file=sys.stderr)


def measure(
    cases: Sequence[SchemaCase],
    results: Sequence[SchemaResult],
    engines: Sequence[Engine],
    vocab: AnchorVocab,
    *,
    rounds: int,
    warmup: int,
) -> None:
    """Time every engine on every schema it walked without fault, ``warmup + rounds`` times."""
    prepared = {
        (c.name, e.name): e.prepare(c)
        for c, r in zip(cases, results, strict=True)
        for e in engines
        if e.name not in r.refused
    }
    masks = {e.name: np.zeros((1, vocab.mask_words), dtype=np.int32) for e in engines}
    for round_index in range(warmup + rounds):
        for case, result in zip(cases, results, strict=True):
            for engine in engines:
                if engine.name in result.refused:
                    continue
                ttfm, samples = time_round(
                    engine, prepared[case.name, engine.name], result.walks, masks[engine.name], vocab.eos_id
                )
                if round_index >= warmup:
                    result.ttfm_ns.setdefault(engine.name, []).append(ttfm)
                    result.mask_ns.setdefault(engine.name, []).extend(samples)
        print(f"round {round_index + 1}/{warmup + rounds} done", file=sys.stderr)


def run_info(argv: list[str] | None, rounds: int, warmup: int, skipped: dict[str, str]) -> dict[str, Any]:
    """Where and how the numbers were measured."""
    import decodekit as dk

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "versions": versions(),
        "decodekit_num_threads": dk.get_num_threads(),
        "xgrammar_compile_threads": XGRAMMAR_COMPILE_THREADS,
        "rounds": rounds,
        "warmup": warmup,
        "skipped": skipped,
    }


def raw_numbers(result: SchemaResult) -> dict[str, Any]:
    """One schema's samples and statistics, for the JSON output."""
    return {
        "name": result.name,
        "positions": result.positions,
        "refused": result.refused,
        "disagreements": {pair: vars(d) for pair, d in result.disagreements.items()},
        "engines": {
            engine: {
                "ttfm_ms": [t / 1e6 for t in result.ttfm_ns[engine]],
                "mask_median_us": _us(ns, 50),
                "mask_p99_us": _us(ns, 99),
                "mask_max_us": max(ns) / 1e3,
                "masks": len(ns),
            }
            for engine, ns in result.mask_ns.items()
        },
    }


if __name__ == "__main__":
    main()
