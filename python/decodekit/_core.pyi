"""Type stubs of the decodekit._core extension (checked by ``python -m mypy.stubtest decodekit._core``)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
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
