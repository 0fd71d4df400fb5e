"""The README's example must run as written."""

from __future__ import annotations

import pathlib
import re

import decodekit as dk

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "README.md has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    tokens = namespace["tokens"]
    drafts = namespace["drafts"]
    assert getattr(tokens, "shape", None) == (4,)
    assert getattr(drafts, "shape", None) == (4, 8)
    tree_namespace: dict[str, object] = {}
    exec(compile(blocks[1], str(README), "exec"), tree_namespace)
    assert getattr(tree_namespace["mask"], "shape", None) == (5, 133)
    assert isinstance(tree_namespace["result"], dk.Verification)
    draft_namespace: dict[str, object] = {}
    exec(compile(blocks[2], str(README), "exec"), draft_namespace)
    draft = draft_namespace["draft"]
    assert isinstance(draft, dk.DraftTree)
    assert draft.tokens.tolist() == [6, 7, 8, 9, 1, 2, 5, 6]
    grammar_namespace: dict[str, object] = {}
    exec(compile(blocks[3], str(README), "exec"), grammar_namespace)
    assert getattr(grammar_namespace["allowed"], "tolist", list)() == [0, 1, 2, 3]
    assert isinstance(grammar_namespace["matcher"], dk.Matcher)
    assert grammar_namespace["matcher"].num_tokens == 1  # type: ignore[attr-defined]
