"""CUDA kernels, compiled at run time with CuPy (NVRTC) and launched on torch's current stream.

CuPy and a CUDA GPU are optional: nothing here imports CuPy until a kernel is launched, and then a missing
CuPy or GPU raises :class:`~decodekit.KernelUnavailableError`. Install CuPy with the ``cuda`` extra
(``cupy-cuda12x``); for a CUDA 13 driver stack install ``cupy-cuda13x`` instead
(``pip install decodekit cupy-cuda13x``). The kernel sources live in ``cuda/`` in the repository and are
embedded in the extension (``decodekit._core._kernel_source``).
"""

from __future__ import annotations

import importlib
import math
import warnings
from functools import cache
from typing import Any

from decodekit import _core
from decodekit.torch import _torch, tree_mask_words

#: NVRTC options of every kernel build; the CPU test suite compiles with exactly these (plus ``-arch``).
KERNEL_OPTIONS: tuple[str, ...] = ("--std=c++14", "--use_fast_math")
#: Head dimensions the tree-attention kernel is built for.
HEAD_DIMS = (64, 128)
#: Largest draft tree (the mask holds at most four 32-bit words per row).
MAX_TREE_TOKENS = 128
#: Threads of the split kernel and query rows per block (see cuda/tree_attention.cu).
_SPLIT_THREADS = 256
_ROWS_PER_BLOCK = 64
_KEYS_PER_TILE = 32


def kernel_source(dtype: str, head_dim: int, group: int) -> str:
    """The tree-attention source for one configuration: ``dtype`` ``"float16"`` or ``"bfloat16"``,
    ``head_dim`` 64 or 128, ``group`` query heads per KV head."""
    if dtype not in ("float16", "bfloat16"):
        raise _core.InvalidInputError(f"dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    if head_dim not in HEAD_DIMS:
        raise _core.InvalidInputError(f"head_dim must be one of {HEAD_DIMS}, got {head_dim}")
    if group < 1:
        raise _core.InvalidInputError(f"group must be >= 1, got {group}")
    return _source("tree_attention", DK_BF16=int(dtype == "bfloat16"), DK_HEAD_DIM=head_dim, DK_GROUP=group)


#: The software pipeline of each tensor-core ("mma") kernel, by m16 tiles of activation rows per warp:
#: (stages, warp steps per stage, blocks per SM the register budget is set for). A stage holds the packed
#: codes of 128 rows and the activation tile of each of its steps in shared memory; stages - 1 of them are
#: in flight.
QUANT_PIPELINES: dict[int, tuple[int, int, int]] = {1: (3, 1, 4), 2: (3, 1, 2), 4: (2, 1, 1)}
#: The same for the "swap" tensor-core kernels (weights as the m16 operand, for small M), by n8 tiles of
#: activation rows per warp. Not tuned on a GPU yet: the one-tile "mma" kernel's pipeline.
SWAP_PIPELINES: dict[int, tuple[int, int, int]] = {1: (3, 1, 4), 2: (3, 1, 4)}


def quant_shared_bytes(bits: int, m_tiles: int, stages: int, substeps: int, *, swap: bool = False) -> int:
    """Dynamic shared memory of the tensor-core kernel with ``m_tiles`` activation tiles (m16 tiles, or
    n8 tiles with ``swap``) and this pipeline."""
    k_step = 512 // bits
    rows = (8 if swap else 16) * m_tiles
    return stages * substeps * (128 * 64 + rows * k_step * 2)


def quant_matmul_source(
    dtype: str,
    bits: int,
    *,
    probe: str | None = None,
    pipelines: dict[int, tuple[int, int, int]] | None = None,
    swap_pipelines: dict[int, tuple[int, int, int]] | None = None,
) -> str:
    """The quantized-matmul source for ``dtype`` (``"float16"`` or ``"bfloat16"``) and ``bits`` (4 or 8),
    with the tensor-core kernels' ``pipelines`` (default :data:`QUANT_PIPELINES`) and ``swap_pipelines``
    (default :data:`SWAP_PIPELINES`). ``probe`` builds a
    measurement variant whose results are meaningless: ``"copy"`` without the arithmetic (the memory
    pipeline alone), ``"copy_tiled"`` the same reading each stage's codes as one contiguous run, ``"math"``
    without copying the codes (the arithmetic on whatever shared memory holds)."""
    if dtype not in ("float16", "bfloat16"):
        raise _core.InvalidInputError(f"dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    if bits not in (4, 8):
        raise _core.InvalidInputError(f"bits must be 4 or 8, got {bits}")
    if probe not in (None, "copy", "copy_tiled", "math"):
        raise _core.InvalidInputError(f"probe must be None, 'copy', 'copy_tiled' or 'math', got {probe!r}")
    shapes = {}
    for m_tiles, (stages, substeps, min_blocks) in (pipelines or QUANT_PIPELINES).items():
        shapes[f"DK_QM_STAGES_M{m_tiles}"] = stages
        shapes[f"DK_QM_SUBSTEPS_M{m_tiles}"] = substeps
        shapes[f"DK_QM_MIN_BLOCKS_M{m_tiles}"] = min_blocks
    for n_tiles, (stages, substeps, min_blocks) in (swap_pipelines or SWAP_PIPELINES).items():
        shapes[f"DK_QM_STAGES_N{n_tiles}"] = stages
        shapes[f"DK_QM_SUBSTEPS_N{n_tiles}"] = substeps
        shapes[f"DK_QM_MIN_BLOCKS_N{n_tiles}"] = min_blocks
    return _source(
        "quant_matmul",
        DK_BF16=int(dtype == "bfloat16"),
        DK_BITS=bits,
        DK_QM_PROBE_COPY_ONLY=int(probe in ("copy", "copy_tiled")),
        DK_QM_PROBE_MATH_ONLY=int(probe == "math"),
        DK_QM_PROBE_TILED=int(probe == "copy_tiled"),
        **shapes,
    )


def _source(name: str, **defines: int) -> str:
    """A kernel file with its configuration ``#define``s and the shared ``dk_common.cuh`` in front."""
    header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
    return header + _core._kernel_source("dk_common") + "\n" + _core._kernel_source(name)


def _cupy() -> Any:
    try:
        return importlib.import_module("cupy")
    except ImportError as error:
        raise _core.KernelUnavailableError(
            "decodekit.cuda needs CuPy: pip install 'decodekit[cuda]' "
            "(cupy-cuda12x; cupy-cuda13x for CUDA 13)"
        ) from error


@cache
def _sm_count(torch: Any, device: int) -> int:
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


#: CuPy handles on torch streams, by stream pointer (making one costs more than a small launch).
_STREAMS: dict[int, Any] = {}


def _external_stream(cupy: Any, stream: Any) -> Any:
    """A CuPy handle on a torch stream. CuPy 14 deprecates ``ExternalStream`` in favour of
    ``Stream.from_external``, which needs the CUDA stream protocol that not every torch release implements;
    the handle is the same either way, so the warning is silenced."""
    handle = _STREAMS.get(stream.cuda_stream)
    if handle is None:
        if len(_STREAMS) >= 64:
            _STREAMS.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            handle = _STREAMS[stream.cuda_stream] = cupy.cuda.ExternalStream(stream.cuda_stream)
    return handle


@cache
def _kernels(dtype: str, head_dim: int, group: int, device: int) -> tuple[Any, Any]:
    """The split and combine kernels of one configuration on one device (built once, then cached)."""
    cupy = _cupy()
    try:
        with cupy.cuda.Device(device):
            module = cupy.RawModule(code=kernel_source(dtype, head_dim, group), options=KERNEL_OPTIONS)
            kernels = (
                module.get_function("dk_tree_attention_split"),
                module.get_function("dk_tree_attention_combine"),
            )
    except Exception as error:  # CuPy raises CompileException, CUDADriverError, ... with the log
        raise _core.KernelUnavailableError(
            f"the tree-attention kernel ({dtype}, D={head_dim}, group={group}) failed to build: {error}"
        ) from error
    return kernels


def _check_tensor(torch: Any, name: str, tensor: Any) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise _core.InvalidInputError(
            f"{name} must be a torch tensor or CuPy array, got {type(tensor).__name__}"
        )
    if tensor.dim() != 3:
        raise _core.InvalidInputError(f"{name} must be 3-D, got shape {tuple(tensor.shape)}")


def _from_cupy(torch: Any, value: Any) -> tuple[Any, bool]:
    """CuPy arrays become torch tensors over the same memory (DLPack); other values pass through."""
    if type(value).__module__.startswith("cupy"):
        return torch.from_dlpack(value), True
    return value, False


def launch_plan(num_keys: int, rows: int, num_kv_heads: int, sm_count: int) -> tuple[int, int, int]:
    """``(splits, keys_per_split, row_tiles)`` of the split kernel's grid.

    A block owns one KV head, up to 64 query rows and ``keys_per_split`` consecutive keys (a whole number
    of 32-key tiles). The key range is split so that the grid covers the GPU about twice; every split
    gets at least one key.
    """
    row_tiles = -(-rows // _ROWS_PER_BLOCK)
    tiles = -(-num_keys // _KEYS_PER_TILE)
    splits = max(1, min(tiles, -(-2 * sm_count // (num_kv_heads * row_tiles))))
    keys_per_split = -(-tiles // splits) * _KEYS_PER_TILE
    return -(-num_keys // keys_per_split), keys_per_split, row_tiles


def tree_attention(
    q: Any,
    k_cache: Any,
    v_cache: Any,
    tree_mask: Any,
    prefix_len: int,
    *,
    scale: float | None = None,
    out: Any = None,
) -> Any:
    """Attention of a draft tree's T tokens over a KV cache, in one pass over the cache.

    ``q`` is ``[T, Hq, D]`` (``T <= 128``); ``k_cache`` and ``v_cache`` are contiguous ``[L, Hkv, D]`` with
    ``L >= prefix_len + T`` and the tree tokens' keys and values at positions
    ``prefix_len .. prefix_len + T - 1``. ``Hq`` is a multiple of ``Hkv`` (GQA), ``D`` is 64 or 128, and
    all three share one dtype, float16 or bfloat16, and one CUDA device. Query ``i`` sees all
    ``prefix_len`` prefix keys and tree key ``j`` where ``tree_mask`` sets bit ``j`` of row ``i``: int32
    ``[T, ceil(T/32)]`` as from ``DraftTree.packed_mask()``, or one int64/uint64 word per row (``T <= 64``).
    ``scale`` defaults to ``1 / sqrt(D)``. Accumulation is fp32 with an online softmax; the result is
    ``[T, Hq, D]`` in the input dtype (a CuPy array when ``q`` is one), computed on torch's current stream,
    written into ``out`` when given (a contiguous tensor of that shape, dtype and device).

    Raises :class:`~decodekit.InvalidInputError` for bad shapes, dtypes or devices and
    :class:`~decodekit.KernelUnavailableError` when there is no CUDA GPU or no CuPy. On the CPU use
    :func:`decodekit.torch.tree_attention_reference`.
    """
    torch = _torch()
    q, q_is_cupy = _from_cupy(torch, q)
    k_cache, _ = _from_cupy(torch, k_cache)
    v_cache, _ = _from_cupy(torch, v_cache)
    for name, tensor in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _check_tensor(torch, name, tensor)
    num_tree, num_q_heads, head_dim = q.shape
    cache_len, num_kv_heads, kv_dim = k_cache.shape
    if tuple(v_cache.shape) != tuple(k_cache.shape):
        raise _core.InvalidInputError(
            f"v_cache {tuple(v_cache.shape)} must have k_cache's shape {tuple(k_cache.shape)}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16) or k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise _core.InvalidInputError(
            f"q, k_cache and v_cache must share one dtype, float16 or bfloat16; got {q.dtype}, "
            f"{k_cache.dtype}, {v_cache.dtype}"
        )
    if head_dim != kv_dim or head_dim not in HEAD_DIMS:
        raise _core.InvalidInputError(
            f"the head dimension must be one of {HEAD_DIMS} and equal in q ({head_dim}) "
            f"and the cache ({kv_dim})"
        )
    if num_kv_heads == 0 or num_q_heads % num_kv_heads != 0:
        raise _core.InvalidInputError(f"Hq = {num_q_heads} must be a multiple of Hkv = {num_kv_heads}")
    if not 1 <= num_tree <= MAX_TREE_TOKENS:
        raise _core.InvalidInputError(f"the tree must have 1..{MAX_TREE_TOKENS} tokens, got T = {num_tree}")
    if prefix_len < 0 or cache_len < prefix_len + num_tree:
        raise _core.InvalidInputError(
            f"prefix_len = {prefix_len} must be >= 0 and the cache ({cache_len} tokens) must hold "
            f"prefix_len + T = {prefix_len + num_tree}"
        )
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise _core.InvalidInputError("k_cache and v_cache must be contiguous [L, Hkv, D] tensors")
    mask = tree_mask_words(tree_mask, num_tree)  # checked (and converted) where it is, moved below
    _cupy()
    if not torch.cuda.is_available():
        raise _core.KernelUnavailableError("no CUDA GPU is available to torch")
    devices = {t.device for t in (q, k_cache, v_cache)}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        raise _core.InvalidInputError(
            f"q, k_cache and v_cache must be on one CUDA device, got {sorted(str(d) for d in devices)}; "
            "on the CPU use decodekit.torch.tree_attention_reference"
        )
    device = q.device
    mask = mask.to(device)
    q = q.contiguous()
    group = num_q_heads // num_kv_heads
    dtype = "bfloat16" if q.dtype == torch.bfloat16 else "float16"
    split_kernel, combine_kernel = _kernels(dtype, head_dim, group, device.index)

    if out is None:
        out = torch.empty_like(q)
    else:
        out, _ = _from_cupy(torch, out)
        if (
            not isinstance(out, torch.Tensor)
            or tuple(out.shape) != tuple(q.shape)
            or out.dtype != q.dtype
            or out.device != device
            or not out.is_contiguous()
        ):
            raise _core.InvalidInputError(
                f"out must be a contiguous {q.dtype} tensor of shape {tuple(q.shape)} on {device}"
            )
    scale = head_dim**-0.5 if scale is None else float(scale)
    cupy = _cupy()
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), _external_stream(cupy, stream):
        _launch_tree_attention(
            split_kernel,
            combine_kernel,
            q,
            k_cache,
            v_cache,
            mask,
            prefix_len,
            scale,
            out,
            _sm_count(torch, device.index),
        )
    if q_is_cupy:
        return cupy.from_dlpack(out)
    return out


def _launch_tree_attention(
    split_kernel: Any,
    combine_kernel: Any,
    q: Any,
    k_cache: Any,
    v_cache: Any,
    mask: Any,
    prefix_len: int,
    scale: float,
    out: Any,
    sm_count: int,
) -> None:
    """Launch tree attention on checked tensors (CUDA tensors on the current stream; CPU tensors with the
    emulator's kernels in the tests): the split kernel over :func:`launch_plan`'s key slices, then the
    combine kernel into ``out``."""
    torch = _torch()
    numpy = importlib.import_module("numpy")
    pointer, i32 = numpy.uint64, numpy.int32
    num_tree, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    rows = num_tree * (num_q_heads // num_kv_heads)
    splits, keys_per_split, row_tiles = launch_plan(prefix_len + num_tree, rows, num_kv_heads, sm_count)
    partial_out = torch.empty((splits, num_kv_heads, rows, head_dim), dtype=torch.float32, device=q.device)
    partial_ml = torch.empty((splits, num_kv_heads, rows, 2), dtype=torch.float32, device=q.device)
    split_kernel(
        (splits, num_kv_heads, row_tiles),
        (_SPLIT_THREADS,),
        (
            pointer(q.data_ptr()),
            pointer(k_cache.data_ptr()),
            pointer(v_cache.data_ptr()),
            pointer(mask.data_ptr()),
            i32(num_tree),
            i32(prefix_len),
            i32(num_q_heads),
            i32(num_kv_heads),
            i32(mask.shape[1]),
            numpy.float32(scale * math.log2(math.e)),
            i32(keys_per_split),
            pointer(partial_out.data_ptr()),
            pointer(partial_ml.data_ptr()),
        ),
    )
    combine_kernel(
        (rows, num_kv_heads),
        (head_dim // 2,),
        (
            pointer(partial_out.data_ptr()),
            pointer(partial_ml.data_ptr()),
            i32(splits),
            i32(num_tree),
            i32(num_q_heads),
            i32(num_kv_heads),
            pointer(out.data_ptr()),
        ),
    )


#: The functions of the quantized-matmul module (see cuda/quant_matmul.cu).
QUANT_KERNELS: tuple[str, ...] = (
    "dk_quant_matmul",
    "dk_quant_mma_m1",
    "dk_quant_mma_m2",
    "dk_quant_mma_m4",
    "dk_quant_swap_n1",
    "dk_quant_swap_n2",
)


@cache
def _quant_kernels(
    dtype: str,
    bits: int,
    device: int,
    probe: str | None = None,
    pipelines: tuple[tuple[int, tuple[int, ...]], ...] | None = None,
    swap_pipelines: tuple[tuple[int, tuple[int, ...]], ...] | None = None,
) -> dict[str, Any]:
    """The quantized-matmul kernels of one configuration on one device (built once, then cached), with
    the tensor-core kernels allowed the dynamic shared memory of their pipelines."""
    cupy = _cupy()
    mma = _pipeline_dict(pipelines, QUANT_PIPELINES)
    swap = _pipeline_dict(swap_pipelines, SWAP_PIPELINES)
    source = quant_matmul_source(dtype, bits, probe=probe, pipelines=mma, swap_pipelines=swap)
    try:
        with cupy.cuda.Device(device):
            module = cupy.RawModule(code=source, options=KERNEL_OPTIONS)
            return _bind_quant_kernels(module, bits, mma, swap)
    except Exception as error:  # CuPy raises CompileException, CUDADriverError, ... with the log
        raise _core.KernelUnavailableError(
            f"the quantized-matmul kernel ({dtype}, {bits}-bit) failed to build: {error}"
        ) from error


def _pipeline_dict(
    pipelines: tuple[tuple[int, tuple[int, ...]], ...] | None, default: dict[int, tuple[int, int, int]]
) -> dict[int, tuple[int, int, int]]:
    """A hashable pipeline override (sorted ``(tiles, pipeline)`` pairs) as a full pipeline dict."""
    return {**default, **{tiles: (p[0], p[1], p[2]) for tiles, p in pipelines or ()}}


def _bind_quant_kernels(
    module: Any,
    bits: int,
    pipelines: dict[int, tuple[int, int, int]],
    swap_pipelines: dict[int, tuple[int, int, int]],
) -> dict[str, Any]:
    """The functions of a built quantized-matmul module (a ``cupy.RawModule``, or the CPU emulator's
    stand-in in the tests), the tensor-core ones allowed the dynamic shared memory of their pipelines."""
    kernels = {name: module.get_function(name) for name in QUANT_KERNELS}
    for swap, shapes in ((False, pipelines), (True, swap_pipelines)):
        for tiles, (stages, substeps, _) in shapes.items():
            kernels[_tc_kernel(swap, tiles)].max_dynamic_shared_size_bytes = quant_shared_bytes(
                bits, tiles, stages, substeps, swap=swap
            )
    return kernels


def _tc_kernel(swap: bool, tiles: int) -> str:
    """The tensor-core kernel with ``tiles`` activation tiles (n8 tiles when ``swap``, else m16)."""
    return f"dk_quant_swap_n{tiles}" if swap else f"dk_quant_mma_m{tiles}"


#: Output features per block and activation rows per block slice of the generic (CUDA-core) kernel.
_QM_WARPS = 4
_QM_M_TILE = 8
#: Output features per warp of the tensor-core kernel, and the m16 tiles per warp it is built for.
_MMA_FEATURES_PER_WARP = 32
_MMA_M_TILES = (1, 2, 4)
#: n8 tiles of activation rows per warp the swap kernels are built for, and the most rows "auto" gives them.
_SWAP_N_TILES = (1, 2)
_SWAP_MAX_ROWS = 16
#: Warps per multiprocessor the split-K plan aims for, by m16 tiles per warp (tuned on an H200 with
#: bench/gpu/quant_matmul.py: one full wave of the one-tile kernel, two for int8, whose steps are half as
#: long; fewer, longer splits at four tiles, where the fp32 partials grow with M).
_MMA_TARGET_WARPS = {1: 16, 2: 12, 4: 8}


def mma_supported(rows: int, cols: int, bits: int, group_size: int) -> bool:
    """Whether the tensor-core kernel takes an ``[N, K] = [rows, cols]`` weight: ``N`` a multiple of 8, ``K``
    of 128 (int4) or 64 (int8), and groups of whole 32 (int4) or 16 (int8) columns."""
    k_thread = 128 // bits
    return rows % 8 == 0 and cols % (4 * k_thread) == 0 and group_size % k_thread == 0


def _plan_tiles(m: int, swap: bool, m_tiles: int | None) -> int:
    """``m_tiles`` (checked), or the fewest activation tiles of the kernel that cover ``m`` rows."""
    tile_rows, choices = (8, _SWAP_N_TILES) if swap else (16, _MMA_M_TILES)
    if m_tiles is None:
        return next((t for t in choices if m <= tile_rows * t), choices[-1])
    if m_tiles not in choices:
        raise _core.InvalidInputError(f"m_tiles must be one of {choices}, got {m_tiles}")
    return m_tiles


def mma_plan(
    m: int,
    n: int,
    k: int,
    bits: int,
    sm_count: int,
    *,
    m_tiles: int | None = None,
    splits: int | None = None,
    swap: bool = False,
    blocks_per_sm: int | None = None,
) -> tuple[int, int, int]:
    """``(m_tiles, splits, steps_per_split)`` of the tensor-core kernel for ``x [m, k] @ W[n, k].T``.

    A warp owns 32 output features, ``16 * m_tiles`` activation rows (``8 * m_tiles`` for the ``swap``
    kernels) and ``steps_per_split`` steps of ``512 / bits`` input columns. ``m_tiles`` defaults to the
    fewest tiles (1, 2, 4; swap: 1, 2) that cover ``m`` (the most beyond that, with more row blocks);
    ``splits`` (split-K) defaults to enough warps to keep every multiprocessor busy. Every split gets at
    least one step.

    The swap kernels split K so that the blocks fill whole waves: as many splits as fit in
    ``sm_count * blocks_per_sm`` resident blocks (default: the pipeline's register budget in
    :data:`SWAP_PIPELINES`), twice that for one-tile int8, whose steps are half as long. A plan a little
    over one wave would leave a second, nearly empty one.
    """
    tile_rows = 8 if swap else 16
    m_tiles = _plan_tiles(m, swap, m_tiles)
    if bits not in (4, 8):
        raise _core.InvalidInputError(f"bits must be 4 or 8, got {bits}")
    steps = k // (512 // bits)
    if steps == 0:
        raise _core.InvalidInputError(f"K = {k} is shorter than one {512 // bits}-column step")
    waves = 2 if bits == 8 and m_tiles == 1 else 1
    row_blocks = -(-m // (tile_rows * m_tiles))
    if splits is None and swap:
        blocks = -(-n // (_MMA_FEATURES_PER_WARP * _QM_WARPS)) * row_blocks
        per_sm = SWAP_PIPELINES[m_tiles][2] if blocks_per_sm is None else blocks_per_sm
        splits = max(1, waves * sm_count * per_sm // blocks)
    elif splits is None:
        warps = -(-n // _MMA_FEATURES_PER_WARP) * row_blocks
        splits = -(-_MMA_TARGET_WARPS[m_tiles] * waves * sm_count // warps)
    splits = max(1, min(int(splits), steps))
    per_split = -(-steps // splits)
    return m_tiles, -(-steps // per_split), per_split


def quant_matmul(x: Any, qweight: Any) -> Any:
    """``x @ dequant(W).T`` for a :class:`decodekit.quant.QuantizedWeight` ``W`` ``[N, K]``: ``x`` is a
    float16/bfloat16 CUDA tensor ``[..., K]``, the result ``[..., N]`` in ``x``'s dtype.

    The weight's tensors must be on ``x``'s device with scales (and zeros) in ``x``'s dtype (quantize
    with ``scale_dtype=x.dtype``). Weights with ``N`` a multiple of 8, ``K`` a multiple of 128 (int4) or 64
    (int8) and groups of at least 32 (int4) or 16 (int8) columns run on the tensor-core kernel, with fp32
    accumulation and a deterministic split-K reduction; other shapes run on a generic CUDA-core kernel.
    Every check happens before the launch: :class:`~decodekit.InvalidInputError` for shapes, dtypes and
    devices, :class:`~decodekit.KernelUnavailableError` without CuPy or a GPU.
    """
    return _quant_matmul(x, qweight)


def _quant_matmul(
    x: Any,
    qweight: Any,
    *,
    kernel: str = "auto",
    m_tiles: int | None = None,
    splits: int | None = None,
    probe: str | None = None,
    pipeline: tuple[int, int, int] | None = None,
) -> Any:
    """:func:`quant_matmul` with the kernel choice open (for tests and benchmarks): ``kernel`` is
    ``"auto"``, ``"swap"`` (the tensor-core kernel with the weights as the m16 operand, ``"auto"``'s
    choice up to 16 rows), ``"mma"`` (the tensor-core kernel with the activations as the m16 operand,
    ``"auto"``'s choice beyond) or ``"generic"`` (the CUDA-core kernel). ``m_tiles`` and ``splits`` go to
    :func:`mma_plan`; ``probe`` runs a measurement variant of the tensor-core kernel (see
    :func:`quant_matmul_source`; the result is meaningless); ``pipeline`` replaces the chosen kernel's
    :data:`QUANT_PIPELINES` or :data:`SWAP_PIPELINES` entry."""
    torch = _torch()
    if kernel not in ("auto", "swap", "mma", "generic"):
        raise _core.InvalidInputError(f"kernel must be 'auto', 'swap', 'mma' or 'generic', got {kernel!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise _core.InvalidInputError(f"x must be a torch tensor [..., K], got {type(x).__name__}")
    rows, cols = qweight.shape
    if x.shape[-1] != cols:
        raise _core.InvalidInputError(f"x has {x.shape[-1]} features but the weight expects K = {cols}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise _core.InvalidInputError(f"x must be float16 or bfloat16, got {x.dtype}")
    if not isinstance(qweight.packed, torch.Tensor):
        raise _core.InvalidInputError(
            "the quantized weight holds numpy arrays; quantize a torch tensor instead"
        )
    if qweight.scales.dtype != x.dtype or (qweight.zeros is not None and qweight.zeros.dtype != x.dtype):
        raise _core.InvalidInputError(
            f"the weight's scales are {qweight.scales.dtype} but x is {x.dtype}; "
            f"quantize with scale_dtype={x.dtype}"
        )
    per_word = 32 // qweight.bits
    if qweight.group_size % per_word != 0 or cols % qweight.group_size != 0:
        raise _core.InvalidInputError(
            f"group_size = {qweight.group_size} must divide K = {cols} and be a multiple of {per_word}"
        )
    tensors = [qweight.packed, qweight.scales] + ([] if qweight.zeros is None else [qweight.zeros])
    if not all(t.is_contiguous() for t in tensors):
        raise _core.InvalidInputError("the quantized weight's tensors must be contiguous")
    _cupy()
    if not torch.cuda.is_available():
        raise _core.KernelUnavailableError("no CUDA GPU is available to torch")
    devices = {t.device for t in [x, *tensors]}
    if len(devices) != 1 or x.device.type != "cuda":
        raise _core.InvalidInputError(
            f"x and the quantized weight must be on one CUDA device, got {sorted(str(d) for d in devices)}"
        )
    flat = x.reshape(-1, cols).contiguous()
    m_total = flat.shape[0]
    y = torch.empty((m_total, rows), dtype=x.dtype, device=x.device)
    if m_total == 0:
        return y.reshape(*x.shape[:-1], rows)
    tensor_cores = (
        mma_supported(rows, cols, qweight.bits, qweight.group_size) and qweight.packed.data_ptr() % 16 == 0
    )
    if kernel in ("swap", "mma") and not tensor_cores:
        raise _core.InvalidInputError(
            f"the tensor-core kernel does not take this weight ([{rows}, {cols}], {qweight.bits}-bit, "
            f"group_size {qweight.group_size}): it needs N % 8 == 0, K % {512 // qweight.bits} == 0, "
            f"group_size % {128 // qweight.bits} == 0 and 16-byte aligned packed data"
        )
    variant = _quant_variant(kernel, tensor_cores, m_total)
    block_rows = {"generic": _QM_M_TILE, "mma": 16 * _MMA_M_TILES[-1], "swap": 8 * _SWAP_N_TILES[-1]}[variant]
    if -(-m_total // block_rows) > 65535:  # the grid's y (generic) or z (tensor-core) dimension
        raise _core.InvalidInputError(f"x has {m_total} rows, more than one launch takes; split it")
    if variant != "generic" and flat.data_ptr() % 16 != 0:
        flat = flat.clone()  # the kernel reads activations 16 bytes at a time
    dtype = "bfloat16" if x.dtype == torch.bfloat16 else "float16"
    overrides: dict[str, Any] = {"pipelines": None, "swap_pipelines": None}
    if pipeline is not None and variant != "generic":
        swap = variant == "swap"
        chosen = _plan_tiles(m_total, swap, m_tiles)
        overrides["swap_pipelines" if swap else "pipelines"] = ((chosen, tuple(pipeline)),)
    kernels = _quant_kernels(dtype, qweight.bits, x.device.index, probe, **overrides)
    cupy = _cupy()
    stream = torch.cuda.current_stream(x.device)
    with cupy.cuda.Device(x.device.index), _external_stream(cupy, stream):
        _launch_quant(
            kernels,
            flat,
            qweight,
            y,
            counters=lambda count: _split_counters(torch, stream, count),
            variant=variant,
            sm_count=_sm_count(torch, x.device.index) if variant != "generic" else 1,
            m_tiles=m_tiles,
            splits=splits,
            pipelines=_pipeline_dict(overrides["pipelines"], QUANT_PIPELINES),
            swap_pipelines=_pipeline_dict(overrides["swap_pipelines"], SWAP_PIPELINES),
        )
    return y.reshape(*x.shape[:-1], rows)


def _quant_variant(kernel: str, tensor_cores: bool, m_total: int) -> str:
    """The kernel that runs: ``kernel`` unless it is ``"auto"``, then the swap tensor-core kernel up to
    16 rows, the mma one beyond, and the generic kernel where the tensor-core kernels do not apply."""
    if kernel != "auto":
        return kernel
    if not tensor_cores:
        return "generic"
    return "swap" if m_total <= _SWAP_MAX_ROWS else "mma"


def _group_shift(group_size: int) -> int:
    """log2 of the group size when it is a power of two (the kernels shift instead of dividing), else -1."""
    return group_size.bit_length() - 1 if group_size & (group_size - 1) == 0 else -1


#: Split-K tile counters, by (device, CUDA stream pointer): see :func:`_split_counters`. (Every device's
#: default stream has pointer 0.)
_COUNTERS: dict[tuple[int, int], Any] = {}


def _split_counters(torch: Any, stream: Any, count: int) -> Any:
    """At least ``count`` int32 zeros on ``stream``'s device: the split-K kernels' tile counters. Each
    launch leaves them at zero again, so one buffer serves every launch on the stream (launches on one
    stream never overlap). While a CUDA graph is being captured, a buffer that is too small is replaced
    by one that the graph zeroes itself and that is not kept."""
    key = (stream.device.index, stream.cuda_stream)
    counters = _COUNTERS.get(key)
    if counters is not None and counters.numel() >= count:
        return counters
    counters = torch.zeros(max(count, 1024), dtype=torch.int32, device=stream.device)
    if not torch.cuda.is_current_stream_capturing():
        if len(_COUNTERS) >= 64:
            _COUNTERS.clear()
        _COUNTERS[key] = counters
    return counters


def _launch_quant(
    kernels: dict[str, Any],
    flat: Any,
    qweight: Any,
    y: Any,
    *,
    counters: Any = None,
    variant: str,
    sm_count: int,
    m_tiles: int | None = None,
    splits: int | None = None,
    pipelines: dict[int, tuple[int, int, int]] | None = None,
    swap_pipelines: dict[int, tuple[int, int, int]] | None = None,
) -> None:
    """Launch the quantized matmul ``y [M, N] = flat [M, K] @ dequant(W).T`` on checked, contiguous tensors
    (CUDA tensors on the current stream; CPU tensors with the emulator's kernels in the tests) with the
    ``variant`` kernel (``"generic"``, ``"mma"`` or ``"swap"``; the tensor-core ones with
    :func:`mma_plan`'s split-K) and the pipelines it was built with. ``counters(count)`` gives the split-K
    tile counters (``count`` int32 zeros; fresh zeros when it is None)."""
    torch = _torch()
    numpy = importlib.import_module("numpy")
    pointer, i32 = numpy.uint64, numpy.int32
    m_total, cols = flat.shape
    rows = qweight.shape[0]
    zeros = 0 if qweight.zeros is None else qweight.zeros.data_ptr()
    weight_args = (
        pointer(flat.data_ptr()),
        pointer(qweight.packed.data_ptr()),
        pointer(qweight.scales.data_ptr()),
        pointer(zeros),
        i32(m_total),
        i32(rows),
        i32(cols),
        i32(qweight.group_size),
    )
    if variant == "generic":
        kernels["dk_quant_matmul"](
            (-(-rows // _QM_WARPS), -(-m_total // _QM_M_TILE)),
            (_QM_WARPS * 32,),
            (*weight_args, pointer(y.data_ptr())),
        )
        return
    if variant not in ("mma", "swap"):
        raise _core.InvalidInputError(f"variant must be 'generic', 'mma' or 'swap', got {variant!r}")
    swap = variant == "swap"
    if m_total * rows >= 2**31:
        splits = 1  # no fp32 partials that large; such an M fills the GPU without split-K anyway
    shapes = (swap_pipelines or SWAP_PIPELINES) if swap else (pipelines or QUANT_PIPELINES)
    tiles = _plan_tiles(m_total, swap, m_tiles)
    stages, substeps, min_blocks = shapes[tiles]
    tiles, num_splits, per_split = mma_plan(
        m_total,
        rows,
        cols,
        qweight.bits,
        sm_count,
        m_tiles=tiles,
        splits=splits,
        swap=swap,
        blocks_per_sm=min_blocks,
    )
    partial = (
        y
        if num_splits == 1
        else torch.empty((num_splits, m_total, rows), dtype=torch.float32, device=y.device)
    )
    grid = (
        -(-rows // (_MMA_FEATURES_PER_WARP * _QM_WARPS)),
        num_splits,
        -(-m_total // ((8 if swap else 16) * tiles)),
    )
    tile_count = grid[0] * grid[2]
    if num_splits == 1:
        tile_counters = partial  # not read
    elif counters is None:
        tile_counters = torch.zeros(tile_count, dtype=torch.int32, device=y.device)
    else:
        tile_counters = counters(tile_count)
    kernels[_tc_kernel(swap, tiles)](
        grid,
        (_QM_WARPS * 32,),
        (
            *weight_args,
            i32(_group_shift(qweight.group_size)),
            i32(per_split),
            pointer(y.data_ptr()),
            pointer(partial.data_ptr()),
            pointer(tile_counters.data_ptr()),
        ),
        shared_mem=quant_shared_bytes(qweight.bits, tiles, stages, substeps, swap=swap),
    )
