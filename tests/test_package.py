"""The installed package: metadata, exports and typing markers."""

from __future__ import annotations

import importlib.metadata
import importlib.resources

import decodekit as dk


def test_version_matches_metadata() -> None:
    assert dk.__version__ == importlib.metadata.version("decodekit")


def test_everything_exported_exists() -> None:
    for name in dk.__all__:
        assert getattr(dk, name) is not None


def test_typing_markers_ship() -> None:
    files = importlib.resources.files("decodekit")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_core.pyi").is_file()


def test_numpy_is_the_only_runtime_dependency() -> None:
    requires = importlib.metadata.requires("decodekit") or []
    core = [r for r in requires if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].strip() for r in core] == ["numpy"]


def test_importing_decodekit_does_not_import_torch() -> None:
    """``generate`` and the adapters import torch and transformers only when called."""
    import subprocess
    import sys

    code = (
        "import sys, decodekit, decodekit.drafters, decodekit.models, decodekit.demo; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_mini_benchmark_prompts_ship() -> None:
    from decodekit.demo import load_prompts

    prompts = load_prompts()
    assert len(prompts) == 26
    assert len({p.category for p in prompts}) == 13
