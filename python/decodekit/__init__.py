"""decodekit: Rust-accelerated LLM decoding primitives.

Samplers (softmax, top-k/top-p/min-p keep-masks, sampling, Gumbel-top-k, Stochastic Beam Search) with
counter-based reproducible randomness. Every array argument is a numpy array (float32 logits; float16 is
converted); batched calls take ``[B, V]`` rows and run them in parallel with the GIL released.
"""

from decodekit._core import (
    CorruptStateError,
    DecodekitError,
    GrammarError,
    InvalidInputError,
    KernelUnavailableError,
    ResourceLimitError,
    Rng,
    UnsupportedSchemaError,
    VocabularyError,
    __version__,
    get_num_threads,
    gumbel_top_k,
    log_softmax,
    min_p_mask,
    sample,
    sampling_mask,
    set_num_threads,
    softmax,
    top_k_mask,
    top_p_mask,
)
from decodekit.sampling import BeamStep, stochastic_beam_search_step

__all__ = [
    "BeamStep",
    "CorruptStateError",
    "DecodekitError",
    "GrammarError",
    "InvalidInputError",
    "KernelUnavailableError",
    "ResourceLimitError",
    "Rng",
    "UnsupportedSchemaError",
    "VocabularyError",
    "__version__",
    "get_num_threads",
    "gumbel_top_k",
    "log_softmax",
    "min_p_mask",
    "sample",
    "sampling_mask",
    "set_num_threads",
    "softmax",
    "stochastic_beam_search_step",
    "top_k_mask",
    "top_p_mask",
]
