# Hand-checked stub of the Rust extension `checkstream._core`; verified by mypy.stubtest in tests.

from collections.abc import Sequence
from typing import Self, final

import numpy as np
import numpy.typing as npt

__version__: str
# pyo3 lists every added name in __all__; stubtest checks it against the runtime.
__all__ = ["CoreError", "PatternError", "StateError", "TokenMasker", "__version__"]

class CoreError(ValueError): ...
class PatternError(CoreError): ...
class StateError(CoreError): ...

# --- token masker (rust/checkstream-py/src/masker.rs) ---

@final
class TokenMasker:
    """Compiled, immutable set of banned token-id sequences over ``0..vocab_size``.

    Per-generation state is a uint32 id held by the caller (one per batch row, start at
    ``start_state()``). A one-token sequence is banned everywhere; a longer one only right
    after its other tokens were sampled. Bad arrays raise ``TypeError`` (dtype or ndim) or
    ``ValueError`` (length, contiguity, out-of-range state or token id).
    """

    def __new__(cls, sequences: Sequence[Sequence[int]], vocab_size: int) -> Self: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def num_sequences(self) -> int: ...
    @property
    def num_states(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    def start_state(self) -> int: ...
    def global_banned(self) -> npt.NDArray[np.int64]: ...
    def banned_tokens(self, state: int) -> list[int]: ...
    def walk(self, state: int, tokens: Sequence[int]) -> int: ...
    def advance(
        self,
        states: npt.NDArray[np.uint32],
        tokens: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    ) -> None: ...
    def banned(
        self, states: npt.NDArray[np.uint32], include_global: bool = True
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def apply(
        self,
        states: npt.NDArray[np.uint32],
        logits: npt.NDArray[np.float32] | npt.NDArray[np.float16],
        value: float = ...,
    ) -> int: ...
