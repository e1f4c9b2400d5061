# Hand-checked stub of the Rust extension `checkstream._core`; verified by mypy.stubtest in tests.

from collections.abc import Sequence
from typing import Literal, Self, TypeAlias, final

import numpy as np
import numpy.typing as npt

__version__: str
# pyo3 lists every added name in __all__; stubtest checks it against the runtime.
__all__ = [
    "CoreError",
    "HoldbackBuffer",
    "InputError",
    "MatchStream",
    "Normalizer",
    "OutputTextDeltaWriter",
    "PatternError",
    "PhraseMatcher",
    "StateError",
    "TextDeltaSplicer",
    "TokenMasker",
    "__version__",
]

class CoreError(ValueError): ...
class PatternError(CoreError): ...
class InputError(CoreError): ...
class StateError(CoreError): ...

# --- text hot path (rust/checkstream-py/src/{normalize,matcher,holdback}.rs) ---
# Offsets are char (code point) indices into the ORIGINAL text, end-exclusive.
# A match is ``(phrase_index, start, end)``.

_Match: TypeAlias = tuple[int, int, int]

@final
class Normalizer:
    """Per-code-point canonical form: NFKC fold, case fold, Cf/marks dropped, confusable
    skeleton (non-ASCII), optional leetspeak; every run of whitespace (NBSP, tabs, newlines,
    ...) becomes one space."""

    def __new__(cls, *, leetspeak: bool = False) -> Self: ...
    @property
    def leetspeak(self) -> bool: ...
    def normalize(self, text: str) -> str: ...
    def normalize_with_offsets(self, text: str) -> tuple[str, list[int]]:
        """``offsets[i]`` is the index in ``text`` of the char that produced normalised char i
        (for a collapsed whitespace run, its first char)."""

@final
class PhraseMatcher:
    """Immutable compiled phrase set, shareable by any number of streams and threads.

    Phrases are normalised like the text (whitespace runs become one space) and trimmed of
    leading and trailing whitespace.

    Raises ``PatternError`` (empty list, a phrase empty after normalisation, absurd sizes;
    the message names the phrase index) and ``InputError`` (``whole_word`` length mismatch).
    """

    def __new__(
        cls,
        phrases: Sequence[str],
        *,
        whole_word: bool | Sequence[bool] = ...,
        leetspeak: bool = False,
    ) -> Self: ...
    def __len__(self) -> int: ...
    def normalized_phrase(self, index: int) -> str: ...
    @property
    def engine(self) -> str: ...
    @property
    def memory_usage(self) -> int: ...
    def find_all(self, text: str) -> list[_Match]:
        """All overlapping matches, sorted by ``(end, start, phrase_index)``."""
    def stream(self) -> MatchStream: ...

@final
class MatchStream:
    """One stream over a ``PhraseMatcher``; offsets are absolute in the text fed so far."""

    def feed(self, text: str) -> list[_Match]: ...
    def feed_bytes(self, data: bytes) -> list[_Match]:
        """A code point split across calls is carried over; invalid UTF-8 raises ``InputError``
        and leaves the stream unchanged."""
    def finish(self) -> list[_Match]: ...
    @property
    def pending(self) -> int:
        """Trailing chars that could still become (part of) a match."""
    @property
    def position(self) -> int: ...
    @property
    def finished(self) -> bool: ...

@final
class HoldbackBuffer:
    """Per-stream buffer that releases only text that is final; one push is one token."""

    def __new__(cls, holdback: int = 16, matcher: PhraseMatcher | None = None) -> Self: ...
    def push(self, text: str) -> tuple[str, list[_Match]]: ...
    def redact(self, start: int, end: int, replacement: str) -> None: ...
    def hold_from(self, position: int | None) -> None: ...
    def release(self) -> str: ...
    def finish(self) -> list[_Match]: ...
    def flush(self) -> str: ...
    def stop(self) -> None: ...
    @property
    def released_chars(self) -> int: ...
    @property
    def held_text(self) -> str: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def position(self) -> int: ...
    @property
    def holdback(self) -> int: ...

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
    def count_banned(self, states: npt.NDArray[np.uint32], include_global: bool = True) -> int: ...
    def banned_into(
        self,
        states: npt.NDArray[np.uint32],
        rows: npt.NDArray[np.int64],
        token_ids: npt.NDArray[np.int64],
        include_global: bool = True,
    ) -> int: ...
    def banned_flat_into(
        self,
        states: npt.NDArray[np.uint32],
        width: int,
        out: npt.NDArray[np.int64],
        include_global: bool = True,
    ) -> int: ...
    def apply(
        self,
        states: npt.NDArray[np.uint32],
        logits: npt.NDArray[np.float32] | npt.NDArray[np.float16],
        value: float = ...,
    ) -> int: ...

# --- proxy codecs (rust/checkstream-py/src/text_delta.rs) ---

@final
class TextDeltaSplicer:
    """The usual streamed text event recognised, and re-emitted with other text in its own
    envelope. Shapes: "chat" (an OpenAI chat chunk: one choice, a delta with non-empty
    ``content`` and no other key but null ones, no finish reason, no logprobs), "completions"
    (a legacy completion chunk: the same with the choice's ``text``) and "messages" (an
    Anthropic ``content_block_delta`` with a ``text_delta`` or ``thinking_delta``)."""

    def __new__(cls, shape: Literal["chat", "completions", "messages"]) -> Self: ...
    def parse(self, data: str) -> tuple[int, str] | None:
        """``(index, text)`` for the usual event (its envelope is kept), else None."""
    def emit(self, text: str) -> bytes:
        """The last parsed event with ``text`` as its text, as SSE bytes; StateError without one."""

@final
class OutputTextDeltaWriter:
    """The usual Responses ``response.output_text.delta`` (plain addresses, non-empty delta, no
    logprobs, nothing else but ``sequence_number`` and ``obfuscation``) recognised, and written
    again for other text with the proxy's own sequence number."""

    def __new__(cls) -> Self: ...
    def parse(self, data: str) -> tuple[str, int, int, str] | None:
        """``(item_id, output_index, content_index, text)`` for the usual delta, else None."""
    def emit(self, text: str, sequence_number: int) -> bytes:
        """The last parsed delta's event with ``text``; StateError without one."""
