"""Type stubs of the decodekit._core extension (checked by ``python -m mypy.stubtest decodekit._core``)."""

from collections.abc import Sequence
from typing import Any, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "BatchVerification",
    "CorruptStateError",
    "DecodekitError",
    "DraftTree",
    "GrammarError",
    "InvalidInputError",
    "KernelUnavailableError",
    "NGramStore",
    "PromptLookup",
    "ResourceLimitError",
    "Rng",
    "TreeBatch",
    "TreeTemplate",
    "TrigramTable",
    "UnsupportedSchemaError",
    "Verification",
    "VocabularyError",
    "__version__",
    "_panic_for_testing",
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
    "verify_chain",
    "verify_chain_batch",
    "verify_greedy",
    "verify_tree",
    "verify_typical",
]
__version__: str

class DecodekitError(Exception): ...
class InvalidInputError(DecodekitError, ValueError): ...
class GrammarError(DecodekitError, ValueError): ...
class UnsupportedSchemaError(GrammarError): ...
class VocabularyError(DecodekitError, ValueError): ...
class CorruptStateError(DecodekitError, ValueError): ...
class ResourceLimitError(DecodekitError): ...
class KernelUnavailableError(DecodekitError, RuntimeError): ...

@final
class Rng:
    """Counter-based random generator (Philox4x32-10) keyed by a 64-bit seed."""

    def __new__(cls, seed: int, position: int = 0) -> Rng: ...
    @property
    def seed(self) -> int: ...
    @property
    def position(self) -> int: ...
    def spawn_seeds(self, n: int) -> npt.NDArray[np.uint64]: ...
    def random(self, n: int) -> npt.NDArray[np.float64]: ...
    def __reduce__(self) -> tuple[type[Rng], tuple[int, int]]: ...

def _panic_for_testing() -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def softmax(
    logits: npt.ArrayLike, temperature: float = 1.0, *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]: ...
def log_softmax(
    logits: npt.ArrayLike, temperature: float = 1.0, *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]: ...
def top_k_mask(
    logits: npt.ArrayLike, k: int, *, out: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.bool_]: ...
def top_p_mask(
    logits: npt.ArrayLike,
    p: float,
    *,
    temperature: float = 1.0,
    out: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]: ...
def min_p_mask(
    logits: npt.ArrayLike,
    min_p: float,
    *,
    temperature: float = 1.0,
    out: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]: ...
def sampling_mask(
    logits: npt.ArrayLike,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    out: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.bool_]: ...
def sample(
    logits: npt.ArrayLike,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    out: npt.NDArray[np.int32] | None = None,
) -> int | npt.NDArray[np.int32]: ...
def gumbel_top_k(
    logits: npt.ArrayLike,
    k: int,
    *,
    temperature: float = 1.0,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    out: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int32]: ...
def stochastic_beam_search_step(
    beam_log_probs: npt.ArrayLike,
    beam_gumbels: npt.ArrayLike,
    child_log_probs: npt.ArrayLike,
    k: int,
    rng: Rng,
) -> tuple[
    npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...

@final
class DraftTree:
    """A tree of draft tokens in topological order; node 0 is the root."""

    def __new__(cls, tokens: npt.ArrayLike, parents: npt.ArrayLike) -> DraftTree: ...
    @staticmethod
    def chain(root_token: int, tokens: npt.ArrayLike) -> DraftTree: ...
    @staticmethod
    def from_paths(root_token: int, paths: Sequence[Sequence[int]]) -> DraftTree: ...
    @staticmethod
    def batch(trees: Sequence[DraftTree], prefix_lens: npt.ArrayLike) -> TreeBatch: ...
    @property
    def tokens(self) -> npt.NDArray[np.int32]: ...
    @property
    def parents(self) -> npt.NDArray[np.int32]: ...
    @property
    def depth(self) -> npt.NDArray[np.int32]: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def leaves(self) -> npt.NDArray[np.int32]: ...
    def positions(
        self, prefix_len: int, *, out: npt.NDArray[np.int32] | None = None
    ) -> npt.NDArray[np.int32]: ...
    def attention_mask(self, *, out: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.bool_]: ...
    def packed_mask(self, *, out: npt.NDArray[np.int32] | None = None) -> npt.NDArray[np.int32]: ...
    def retrieve_indices(self, *, out: npt.NDArray[np.int32] | None = None) -> npt.NDArray[np.int32]: ...
    def first_child_next_sibling(
        self, *, out: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None = None
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...
    def attention_mask_with_prefix(
        self,
        prefix_len: int,
        dtype: npt.DTypeLike | None = None,
        *,
        out: npt.NDArray[np.floating[Any]] | None = None,
    ) -> npt.NDArray[np.floating[Any]]: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[type[DraftTree], tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]]: ...

@final
class TreeBatch:
    """Buffers of a ragged batch of draft trees (see ``DraftTree.batch``)."""

    @property
    def tokens(self) -> npt.NDArray[np.int32]: ...
    @property
    def positions(self) -> npt.NDArray[np.int32]: ...
    @property
    def packed_mask(self) -> npt.NDArray[np.int32]: ...
    @property
    def cu_nodes(self) -> npt.NDArray[np.int32]: ...
    @property
    def custom_mask(self) -> npt.NDArray[np.bool_]: ...
    @property
    def cu_custom_mask(self) -> npt.NDArray[np.int64]: ...

@final
class TreeTemplate:
    """The shape of a draft tree: parents plus the candidate rank each node takes."""

    def __new__(cls, parents: npt.ArrayLike, ranks: npt.ArrayLike) -> TreeTemplate: ...
    @staticmethod
    def from_paths(paths: Sequence[Sequence[int]], max_nodes: int = 4096) -> TreeTemplate: ...
    @staticmethod
    def balanced(num_nodes: int, max_depth: int, max_branching: int) -> TreeTemplate: ...
    @staticmethod
    def from_acceptance(probs: npt.ArrayLike, num_nodes: int) -> TreeTemplate: ...
    @property
    def parents(self) -> npt.NDArray[np.int32]: ...
    @property
    def ranks(self) -> npt.NDArray[np.int32]: ...
    @property
    def depth(self) -> npt.NDArray[np.int32]: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_candidates(self) -> int: ...
    def instantiate(self, root_token: int, candidates: npt.ArrayLike) -> DraftTree: ...
    def __len__(self) -> int: ...
    def __reduce__(
        self,
    ) -> tuple[type[TreeTemplate], tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]]: ...

@final
class Verification:
    """The outcome of verifying one draft tree or chain."""

    @property
    def accepted_nodes(self) -> npt.NDArray[np.int32]: ...
    @property
    def tokens(self) -> npt.NDArray[np.int32]: ...
    @property
    def kv_keep(self) -> npt.NDArray[np.int32]: ...
    @property
    def num_accepted(self) -> int: ...

@final
class BatchVerification:
    """The outcomes of verifying a ragged batch of trees."""

    @property
    def accepted_nodes(self) -> npt.NDArray[np.int32]: ...
    @property
    def cu_accepted(self) -> npt.NDArray[np.int32]: ...
    @property
    def kv_keep(self) -> npt.NDArray[np.int32]: ...
    @property
    def tokens(self) -> npt.NDArray[np.int32]: ...
    @property
    def cu_tokens(self) -> npt.NDArray[np.int32]: ...
    @property
    def num_accepted(self) -> npt.NDArray[np.int32]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Verification: ...

@overload
def verify_greedy(tree: DraftTree, target_tokens: npt.ArrayLike) -> Verification: ...
@overload
def verify_greedy(tree: Sequence[DraftTree], target_tokens: npt.ArrayLike) -> BatchVerification: ...
@overload
def verify_tree(
    tree: DraftTree,
    target_probs: npt.ArrayLike,
    draft_probs: npt.ArrayLike | None = None,
    *,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    validate: bool = True,
) -> Verification: ...
@overload
def verify_tree(
    tree: Sequence[DraftTree],
    target_probs: npt.ArrayLike,
    draft_probs: npt.ArrayLike | None = None,
    *,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    validate: bool = True,
) -> BatchVerification: ...
def verify_chain(
    draft_tokens: npt.ArrayLike,
    target_probs: npt.ArrayLike,
    draft_probs: npt.ArrayLike | None = None,
    *,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    validate: bool = True,
) -> Verification: ...
def verify_chain_batch(
    draft_tokens: npt.ArrayLike,
    cu_num_draft_tokens: npt.ArrayLike,
    target_probs: npt.ArrayLike,
    draft_probs: npt.ArrayLike | None = None,
    *,
    rng: Rng | None = None,
    seeds: npt.NDArray[np.uint64] | int | None = None,
    validate: bool = True,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...
def verify_typical(
    tree: DraftTree, target_probs: npt.ArrayLike, *, epsilon: float = 0.09, alpha: float = 0.3
) -> Verification: ...

@final
class PromptLookup:
    """Incremental prompt lookup over one sequence."""

    def __new__(
        cls,
        min_n: int = 1,
        max_n: int = 4,
        max_depth: int = 8,
        max_nodes: int = 8,
        *,
        vocab_size: int | None = None,
        store: NGramStore | None = None,
    ) -> PromptLookup: ...
    def extend(self, tokens: npt.ArrayLike) -> None: ...
    def rollback(self, count: int) -> None: ...
    def reset(self) -> None: ...
    def propose(self) -> DraftTree: ...
    @property
    def tokens(self) -> npt.NDArray[np.int32]: ...
    @staticmethod
    def propose_batch(lookups: Sequence[PromptLookup]) -> list[DraftTree]: ...
    def __len__(self) -> int: ...

@final
class NGramStore:
    """A thread-safe n-gram continuation store shared across requests."""

    def __new__(cls, max_n: int = 4, capacity_tokens: int = 1000000) -> NGramStore: ...
    def add(self, tokens: npt.ArrayLike) -> None: ...
    def propose(self, context: npt.ArrayLike, max_nodes: int = 8, max_depth: int = 8) -> DraftTree: ...
    @property
    def max_n(self) -> int: ...
    @property
    def capacity_tokens(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> NGramStore: ...
    def __len__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class TrigramTable:
    """ADED's adaptive tri-gram table with Monte-Carlo tree search drafts."""

    @staticmethod
    def from_corpus(
        token_arrays: Sequence[npt.ArrayLike], top_k: int = 12, *, vocab_size: int | None = None
    ) -> TrigramTable: ...
    def adapt(self, tokens: npt.ArrayLike) -> None: ...
    def propose(
        self,
        last_two_tokens: npt.ArrayLike,
        *,
        max_nodes: int = 64,
        iterations: int = 150,
        rollout_depth: int = 4,
        c_puct: float = 1.0,
        rng: Rng | None = None,
        seeds: int | None = None,
    ) -> DraftTree: ...
    def lookup(self, a: int, b: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
    @property
    def top_k(self) -> int: ...
    @property
    def num_pairs(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> TrigramTable: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
