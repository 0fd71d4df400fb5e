"""Run decodekit's CUDA kernels on the CPU, for tests on machines without a GPU.

:class:`Module` compiles a kernel source (as :mod:`decodekit.cuda` builds it) with g++ and
``dk_emulator.h`` (which says what the emulator models and what it does not) into a shared library, and
hands out functions that launch like CuPy's ``RawKernel``: ``function(grid, block, args, shared_mem=...)``
with NumPy scalars as arguments and pointers into host memory (numpy arrays or CPU torch tensors) as
``dk_ptr``. Kernels may only ``cp.async`` from the buffers registered with :meth:`Module.register`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HEADER = Path(__file__).with_name("dk_emulator.h")
#: CUDA's limit on dynamic shared memory without opting in through the function attribute.
DEFAULT_SHARED = 48 * 1024


class EmulatorError(AssertionError):
    """The emulator refused a launch or found the kernel misbehaving (a deadlock, a diverged warp, a copy
    outside its buffers, ...)."""


def compiler() -> str:
    """The C++ compiler, or skip the test where there is none."""
    found = shutil.which(os.environ.get("CXX", "g++"))
    if found is None:
        pytest.skip("the CUDA emulator needs a C++ compiler (g++)")
    return found


def _emulated_source(source: str, names: Sequence[str]) -> str:
    """``source`` as C++: the emulator's header after the configuration #defines, shared memory declared
    the way the emulator provides it, and one exported launcher per kernel."""
    lines = source.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if not line.startswith("#define"))
    text = "".join(lines[:first]) + f'#include "{HEADER}"\n' + "".join(lines[first:])
    # extern __shared__ T name[];  ->  T* name = (T*)dk_emu::dynamic_shared();
    text = re.sub(
        r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]+?)\s+(\w+)\[\];",
        r"\1* \2 = (\1*)dk_emu::dynamic_shared();",
        text,
    )
    text = text.replace("__shared__", "static")  # one block runs at a time, so a static is its shared memory
    for name in names:
        text += (
            f'\nextern "C" int dk_emu_launch_{name}(const unsigned int* dims, unsigned long long shared,\n'
            "    const unsigned long long* args, int count, int flags, const unsigned long long* regions,\n"
            "    int region_count, char* error, int error_size) {\n"
            f"    return dk_emu::launch({name}, dims, shared, args, count, flags, regions, region_count,\n"
            "                          error, error_size);\n}\n"
        )
    return text


def _build(text: str) -> Path:
    """The shared library of ``text``, compiled once per content into the temporary directory."""
    digest = hashlib.sha256((text + HEADER.read_text()).encode()).hexdigest()[:24]
    directory = Path(tempfile.gettempdir()) / "decodekit-cuda-emulator"
    directory.mkdir(exist_ok=True)
    library = directory / f"{digest}.so"
    if library.exists():
        return library
    cpp = directory / f"{digest}.cpp"
    cpp.write_text(text)
    partial = directory / f"{digest}.{os.getpid()}.so"
    command = [
        compiler(),
        "-std=c++17",
        "-O1",
        "-shared",
        "-fPIC",
        "-fno-strict-aliasing",
        "-U_FORTIFY_SOURCE",  # the fibers switch stacks with _longjmp, which fortified builds refuse
        "-Wno-unknown-pragmas",
        "-o",
        str(partial),
        str(cpp),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmulatorError(f"g++ refused the emulated kernel source:\n{result.stderr[-6000:]}")
    partial.replace(library)
    return library


def _pointer_range(buffer: Any) -> tuple[int, int]:
    if isinstance(buffer, np.ndarray):
        return buffer.ctypes.data, buffer.ctypes.data + buffer.nbytes
    return buffer.data_ptr(), buffer.data_ptr() + buffer.numel() * buffer.element_size()  # a torch tensor


def _raw(value: Any) -> int:
    if isinstance(value, np.floating):
        return int(np.float32(value).view(np.uint32))
    if isinstance(value, np.integer):
        return int(value) & 0xFFFF_FFFF_FFFF_FFFF
    raise EmulatorError(f"kernel arguments must be NumPy scalars, got {type(value).__name__}")


class Function:
    """One kernel of a :class:`Module`, launched like CuPy's ``RawKernel``."""

    def __init__(self, module: Module, name: str) -> None:
        self._module = module
        self._launch = getattr(module._library, f"dk_emu_launch_{name}")
        self._launch.restype = ctypes.c_int
        self.name = name
        self.max_dynamic_shared_size_bytes = DEFAULT_SHARED

    def __call__(
        self,
        grid: tuple[int, ...],
        block: tuple[int, ...],
        args: Sequence[Any],
        *,
        shared_mem: int = 0,
        stream: Any = None,
    ) -> None:
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise EmulatorError(
                f"{self.name}: {shared_mem} bytes of dynamic shared memory, but the function allows "
                f"{self.max_dynamic_shared_size_bytes} (set max_dynamic_shared_size_bytes)"
            )
        grid3 = tuple(grid) + (1,) * (3 - len(grid))
        block3 = tuple(block) + (1,) * (3 - len(block))
        dims = (ctypes.c_uint * 6)(*grid3, *block3)
        raw = (ctypes.c_ulonglong * max(1, len(args)))(*(_raw(a) for a in args))
        ranges = [bound for buffer in self._module.buffers for bound in _pointer_range(buffer)]
        regions = (ctypes.c_ulonglong * max(1, len(ranges)))(*ranges)
        error = ctypes.create_string_buffer(512)
        flags = int(self._module.late_copies) | 6 * int(self._module.reverse)
        status = self._launch(
            dims, ctypes.c_ulonglong(shared_mem), raw, len(args), flags, regions, len(ranges) // 2, error, 512
        )
        if status != 0:
            raise EmulatorError(f"{self.name}: {error.value.decode()}")


class Module:
    """A kernel source compiled for the emulator (like ``cupy.RawModule``). ``late_copies`` delays each
    ``cp.async`` to its ``wait_group`` (otherwise it lands at issue); ``reverse`` runs the blocks of a
    launch, and a block's threads between barriers, in reverse order."""

    def __init__(
        self, source: str, names: Sequence[str], *, late_copies: bool = True, reverse: bool = False
    ) -> None:
        self._library = ctypes.CDLL(str(_build(_emulated_source(source, names))))
        self._names = tuple(names)
        self.late_copies = late_copies
        self.reverse = reverse
        self.buffers: list[Any] = []

    def register(self, *buffers: Any) -> None:
        """Buffers (numpy arrays or CPU torch tensors) the kernels may ``cp.async`` from; they must stay
        alive while this module launches."""
        self.buffers.extend(buffers)

    def get_function(self, name: str) -> Function:
        if name not in self._names:
            raise EmulatorError(f"{name} was not built into this module (built: {self._names})")
        return Function(self, name)
