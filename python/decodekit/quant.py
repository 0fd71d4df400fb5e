"""Weight-only quantization (FineQuant): int8/int4 weights with fine-grained group scales.

``quantize(weight)`` turns an ``nn.Linear``-style weight ``[N, K]`` (``N`` outputs, ``K`` inputs) into a
:class:`QuantizedWeight`:

- the codes, packed into int32 words in the order the CUDA kernels dequantize fastest (int4: the eight
  nibbles of a word hold ``v0 v2 v4 v6 v1 v3 v5 v7``, so each 16-bit half of ``(word >> 4i) & 0x000f000f``
  is one code of an fp16/bf16 pair; codes are unsigned with a ``+8``/``+128`` bias when symmetric);
- one scale (and, when asymmetric, one zero point) per group of ``group_size`` consecutive input columns.

A weight comes back as ``(code - zero) * scale``. ``group_size="auto"`` is FineQuant's adaptive
granularity as decodekit implements it (``decodekit_core::quant::choose_group_size``): start per-channel
and halve the group size (per-channel, then 128, 64, 32) while the matrix's relative quantization error is
more than twice the error at the finest group size. Outliers stretch the scale of their whole group, so
matrices with outliers get finer groups and well-behaved ones keep coarse groups; the rule uses the
weights alone, no calibration data.

``QuantLinear`` replaces ``nn.Linear`` and ``quantize_model`` swaps them in a model. On the CPU they
dequantize and call ``torch.matmul`` (correct, not fast).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from decodekit import _core

# QuantLinear is served by __getattr__ (it subclasses torch.nn.Module, and torch is optional).
__all__ = ["QuantLinear", "QuantizedWeight", "pack", "quantize", "quantize_model", "unpack"]  # noqa: F822


@dataclass(frozen=True)
class QuantizedWeight:
    """A quantized ``[N, K]`` weight.

    ``packed`` is int32 ``[N, K * bits / 32]``; ``scales`` and ``zeros`` are ``[N, K / group_size]``
    (float32 numpy arrays, or torch tensors in ``scale_dtype`` when the weight was a tensor); ``zeros`` is
    ``None`` when symmetric (the zero point is then ``2 ** (bits - 1)``).
    """

    packed: Any
    scales: Any
    zeros: Any
    bits: int
    group_size: int
    shape: tuple[int, int]

    @property
    def symmetric(self) -> bool:
        """Whether the zero point is the fixed ``2 ** (bits - 1)``."""
        return self.zeros is None

    def dequantize(self) -> Any:
        """The weight the codes stand for, ``[N, K]``: float32 numpy, or a float32 tensor on the packed
        data's device when the weight was a tensor."""
        rows, cols = self.shape
        groups = cols // self.group_size
        if isinstance(self.packed, np.ndarray):
            codes = _core._unpack_codes(self.packed, self.bits).astype(np.float32)
            zeros = np.float32(2 ** (self.bits - 1)) if self.zeros is None else self.zeros.astype(np.float32)
            scales = self.scales.astype(np.float32)
            grouped = codes.reshape(rows, groups, self.group_size)
            zero_term = zeros if np.ndim(zeros) == 0 else np.asarray(zeros)[..., None]
            return ((grouped - zero_term) * scales[..., None]).reshape(rows, cols)
        torch = _torch()
        codes_np = _core._unpack_codes(self.packed.cpu().numpy(), self.bits)
        codes = torch.from_numpy(codes_np).to(self.packed.device, torch.float32).view(rows, groups, -1)
        zeros = 2.0 ** (self.bits - 1) if self.zeros is None else self.zeros.float().unsqueeze(-1)
        return ((codes - zeros) * self.scales.float().unsqueeze(-1)).reshape(rows, cols)


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this part of decodekit.quant needs torch: pip install 'decodekit[torch]'"
        ) from error


def quantize(
    weight: Any,
    bits: int = 4,
    group_size: int | str | None = "auto",
    symmetric: bool = True,
    *,
    scale_dtype: Any = None,
) -> QuantizedWeight:
    """Quantize ``weight`` ``[N, K]`` (numpy array or torch tensor, any float dtype) to ``bits`` (4 or 8).

    ``group_size`` is ``"auto"`` (FineQuant's adaptive rule, see the module docstring), ``None``
    (per-channel) or an int dividing ``K`` (the CUDA kernels take 32, 64, 128 and per-channel). A tensor
    weight gives tensors on its device with scales in ``scale_dtype`` (default: the weight's dtype when it
    is float16 or bfloat16, else float16); a numpy weight gives numpy arrays with float32 scales.
    """
    is_tensor = type(weight).__module__.startswith("torch")
    if is_tensor:
        torch = _torch()
        host = weight.detach().to("cpu", torch.float32).numpy()
    else:
        host = np.asarray(weight, dtype=np.float32)
    if host.ndim != 2:
        raise _core.InvalidInputError(f"weight must be 2-D [N, K], got shape {host.shape}")
    packed, scales, zeros, chosen = _core._quantize(np.ascontiguousarray(host), bits, group_size, symmetric)
    shape = (int(host.shape[0]), int(host.shape[1]))
    if not is_tensor:
        return QuantizedWeight(packed, scales, None if symmetric else zeros, bits, chosen, shape)
    if scale_dtype is None:
        scale_dtype = weight.dtype if weight.dtype in (torch.float16, torch.bfloat16) else torch.float16
    device = weight.device
    return QuantizedWeight(
        torch.from_numpy(packed).to(device),
        torch.from_numpy(scales).to(device, scale_dtype),
        None if symmetric else torch.from_numpy(zeros).to(device, scale_dtype),
        bits,
        chosen,
        shape,
    )


def pack(codes: npt.ArrayLike, bits: int) -> npt.NDArray[np.int32]:
    """Pack unsigned codes (uint8 ``[N, K]``, each below ``2 ** bits``) into the kernels' int32 words."""
    return _core._pack_codes(np.ascontiguousarray(codes, dtype=np.uint8), bits)


def unpack(packed: npt.ArrayLike, bits: int) -> npt.NDArray[np.uint8]:
    """Unpack int32 words ``[N, W]`` into uint8 codes ``[N, W * 32 / bits]``: the inverse of :func:`pack`."""
    return _core._unpack_codes(np.ascontiguousarray(packed, dtype=np.int32), bits)


@cache
def _quant_linear_class() -> Any:
    torch = _torch()

    class QuantLinear(torch.nn.Module):  # type: ignore[misc, name-defined]
        """A drop-in ``nn.Linear`` with a :class:`QuantizedWeight`: ``y = x @ dequant(W).T + bias``.

        On CUDA, with CuPy and activations in the scales' dtype, it runs ``decodekit.cuda.quant_matmul``;
        otherwise (on the CPU, or without CuPy) it dequantizes and calls ``torch.matmul`` in the input's
        dtype.
        """

        def __init__(self, qweight: QuantizedWeight, bias: Any = None) -> None:
            super().__init__()
            self.qweight = qweight
            self.in_features = qweight.shape[1]
            self.out_features = qweight.shape[0]
            self.bias = (
                None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)
            )

        @classmethod
        def from_linear(
            cls, linear: Any, bits: int = 4, group_size: int | str | None = "auto", symmetric: bool = True
        ) -> QuantLinear:
            """Quantize an ``nn.Linear``."""
            qweight = quantize(linear.weight, bits, group_size, symmetric)
            return cls(qweight, linear.bias)

        def forward(self, x: Any) -> Any:
            if x.is_cuda and x.dtype == self.qweight.scales.dtype:
                from decodekit import cuda

                try:
                    y = cuda.quant_matmul(x, self.qweight)
                except _core.KernelUnavailableError:
                    y = None  # no CuPy: the torch path below is slower but the same computation
                if y is not None:
                    return y if self.bias is None else y + self.bias.to(x.dtype)
            weight = self.qweight.dequantize().to(x.dtype)
            y = torch.matmul(x, weight.t())
            return y if self.bias is None else y + self.bias.to(x.dtype)

        def extra_repr(self) -> str:
            q = self.qweight
            return (
                f"in_features={self.in_features}, out_features={self.out_features}, bits={q.bits}, "
                f"group_size={q.group_size}, symmetric={q.symmetric}, bias={self.bias is not None}"
            )

    return QuantLinear


def __getattr__(name: str) -> Any:
    # QuantLinear subclasses torch.nn.Module, so it is built when first asked for (torch is optional).
    if name == "QuantLinear":
        return _quant_linear_class()
    raise AttributeError(f"module 'decodekit.quant' has no attribute {name!r}")


def quantize_model(
    model: Any,
    bits: int = 4,
    group_size: int | str | None = "auto",
    *,
    symmetric: bool = True,
    skip: Iterable[str] = ("lm_head",),
) -> Any:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a :class:`QuantLinear`, except those whose
    qualified name contains one of ``skip`` (the output head by default). Returns the model."""
    torch = _torch()
    quant_linear = _quant_linear_class()
    skipped = tuple(skip)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not any(s in name for s in skipped)
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, quant_linear.from_linear(module, bits, group_size, symmetric))
    return model
