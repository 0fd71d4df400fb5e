"""Compile a CUDA kernel source with NVRTC (no GPU or driver needed) and read ptxas's report, with the
exact options `decodekit.cuda` uses at run time plus `-arch` and ptxas verbosity."""

from __future__ import annotations

import re

import decodekit.cuda as dkc
import pytest


def compile_report(source: str, arch: str) -> str:
    """ptxas's verbose report of compiling ``source`` for ``arch`` (``"sm_80"``); fails the test with the
    compiler log if NVRTC refuses the source."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC comes with cuda-bindings (test extra)")
    options = [o.encode() for o in (*dkc.KERNEL_OPTIONS, f"-arch={arch}", "--ptxas-options=-v")]
    error, program = nvrtc.nvrtcCreateProgram(source.encode(), b"kernel.cu", 0, [], [])
    assert error == nvrtc.nvrtcResult.NVRTC_SUCCESS
    try:
        (result,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        _, size = nvrtc.nvrtcGetProgramLogSize(program)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(program, log)
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    text = log.decode(errors="replace")
    assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, text
    return text


def assert_no_spills(report: str, kernels: list[str], arch: str) -> None:
    """Every kernel was compiled for ``arch`` with no local-memory spills and at most 255 registers."""
    for kernel in kernels:
        assert f"Compiling entry function '{kernel}' for '{arch}'" in report, report
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert len(spills) == len(kernels), report
    assert all(stores == "0" and loads == "0" for stores, loads in spills), report
    assert max(int(r) for r in re.findall(r"Used (\d+) registers", report)) <= 255
