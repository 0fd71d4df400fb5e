"""The decodekit command line: argument errors and the bundled mini-benchmark (the full demo runs in
tests/test_generate_model.py, which needs the embedded model)."""

from __future__ import annotations

import json
import pathlib

import pytest
from decodekit.cli import main
from decodekit.demo import PERSON_REGEX, load_prompts, validate_person

SPEC_BENCH = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "spec_bench" / "question.jsonl"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--drafters", "medusa"], "unknown drafter(s) medusa"),
        (["demo", "--prompts", "0"], "--prompts between 1 and 26"),
        (["demo", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    ],
)
def test_bad_demo_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--max-new-tokens", "--drafters", "--prompts", "--json", "--hf", "--no-prepack"):
        assert option in out


@pytest.mark.skipif(
    not SPEC_BENCH.is_file(), reason="the full Spec-Bench question set is not next to the repo"
)
def test_bundled_prompts_follow_the_selection_rule() -> None:
    """The bundled file is the first two questions of each category in file order, first turn, unchanged."""
    expected: dict[str, list[tuple[int, str]]] = {}
    for line in SPEC_BENCH.read_text(encoding="utf-8").splitlines():
        if line.strip():
            question = json.loads(line)
            bucket = expected.setdefault(question["category"], [])
            if len(bucket) < 2:
                bucket.append((question["question_id"], question["turns"][0]))
    flat = [(category, qid, text) for category, items in expected.items() for qid, text in items]
    assert [(p.category, p.question_id, p.text) for p in load_prompts()] == flat


def test_person_validator() -> None:
    import re

    good = '{"name": "Ada Lovelace", "age": 36, "city": "London"}'
    assert validate_person(good)
    assert re.fullmatch(PERSON_REGEX, good)
    assert not validate_person('{"name": "Ada", "age": 121, "city": "London"}')
    assert not validate_person('{"name": "Ada", "age": 3}')
    assert not validate_person("not json")
    assert not validate_person('{"name": "", "age": 3, "city": "x"}')
