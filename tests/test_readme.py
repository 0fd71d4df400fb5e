"""The README's example must run as written."""

from __future__ import annotations

import pathlib
import re

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
