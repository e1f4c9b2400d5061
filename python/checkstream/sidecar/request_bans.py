"""Per-request ban lists (``checkstream_ban``): compiled like the configured phrases, cached.

A request's phrases are expanded with the served model's tokenizer by the same
:func:`checkstream.masking.phrases.phrase_sequences` call, with the same expansion options, as
``logit_masking.phrases`` at engine start, and compiled into a second Rust
:class:`~checkstream._core.TokenMasker` of their own. The configured masker is left as it is:
every guarded row keeps its one state in it, and a row with a request list also has a state in
that list's masker. Each step, :class:`~checkstream.sidecar.core.GuardCore` makes one Rust call
for the configured masker over the whole batch plus one per *distinct* request list present
(rows grouped by list), and all pairs still go to the logits in one sparse write.

Compilation runs in vLLM's engine loop when a request is admitted, so lists are cached by
content: an LRU keyed by the sorted, de-duplicated phrase tuple
(:attr:`RequestOptions.bans <checkstream.sidecar.requests.RequestOptions.bans>`), so a thousand
requests carrying the same list compile it once. The size of a list is bounded at validation
(``MAX_BAN_PHRASES``, ``MAX_BAN_PHRASE_CHARS`` in :mod:`checkstream.sidecar.requests`), which
also bounds a miss's cost.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from checkstream._core import TokenMasker
    from checkstream.masking.spelling import TokenSpelling

DEFAULT_CACHE_SIZE = 128


def ban_digest(phrases: Sequence[str]) -> str:
    """SHA-256 of a list's canonical form (sorted, de-duplicated, newline-joined): what the
    events log and decision records show instead of the phrases."""
    canonical = "\n".join(sorted(set(phrases)))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RequestBans:
    """One compiled request list. ``masker`` is None when no sequence fits the model's
    vocabulary (nothing the model can emit spells the phrases)."""

    id: int
    phrases: tuple[str, ...]
    digest: str
    masker: TokenMasker | None
    start: int
    #: last token of every sequence (masked for a row whose history is unknown)
    last_tokens: npt.NDArray[np.int64]
    num_sequences: int
    #: phrases whose segmentations were capped (the reactive text check covers the rest)
    truncated: tuple[str, ...]
    compile_ms: float
    #: the same phrases as a stop rule on text (checkstream.engine.Guard), for the reactive
    #: layer: a spelling outside the masker's caps is still caught in the detokenised output
    text_guard: Any = None


class RequestBanCompiler:
    """Compiles request lists against one tokenizer and vocabulary, with an LRU by content."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        vocab_size: int,
        cache_size: int = DEFAULT_CACHE_SIZE,
        *,
        spelling: TokenSpelling | None = None,
    ) -> None:
        from checkstream.masking.phrases import unpadded

        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        # Copied once here if it pads or truncates (phrase_sequences would copy it per call).
        self.tokenizer = unpadded(tokenizer)
        self.vocab_size = vocab_size
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], RequestBans] = OrderedDict()
        # The tokenizer's byte index (built at the first miss unless given).
        self._spelling = spelling
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, phrases: tuple[str, ...]) -> tuple[RequestBans, bool]:
        """The compiled list for ``phrases`` (a ``RequestOptions.bans`` tuple) and whether it
        came from the cache. A phrase the tokenizer cannot encode raises ValueError."""
        with self._lock:
            found = self._cache.get(phrases)
            if found is not None:
                self._cache.move_to_end(phrases)
                self.hits += 1
                return found, True
        compiled = self._compile(phrases)
        with self._lock:
            self.misses += 1
            self._cache[phrases] = compiled
            self._cache.move_to_end(phrases)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return compiled, False

    def __len__(self) -> int:
        return len(self._cache)

    def _compile(self, phrases: tuple[str, ...]) -> RequestBans:
        from checkstream._core import TokenMasker
        from checkstream.masking.phrases import phrase_sequences
        from checkstream.masking.spelling import token_spelling

        t0 = time.perf_counter()
        if self._spelling is None:
            self._spelling = token_spelling(self.tokenizer)
        found = phrase_sequences(self.tokenizer, phrases, spelling=self._spelling)
        kept = [list(s) for s in found.sequences if s and max(s) < self.vocab_size]
        masker = TokenMasker(kept, self.vocab_size) if kept else None
        last = np.unique(np.array([s[-1] for s in kept], dtype=np.int64))
        return RequestBans(
            id=next(self._ids),
            phrases=phrases,
            digest=ban_digest(phrases),
            masker=masker,
            start=masker.start_state() if masker is not None else 0,
            last_tokens=last,
            num_sequences=len(kept),
            truncated=found.truncated,
            compile_ms=(time.perf_counter() - t0) * 1000.0,
            text_guard=ban_text_guard(phrases),
        )


REQUEST_BAN_RULE = "request-ban"
REQUEST_BAN_MESSAGE = "This response was stopped: it contained a phrase this request banned."


def ban_text_guard(phrases: Sequence[str]) -> Any:
    """A Guard whose one midstream rule stops on any of ``phrases``, matched on text the way a
    policy's phrases are (normalised, whole words, leetspeak folded as in the shipped packs)."""
    import yaml

    from checkstream.engine import Guard
    from checkstream.policy.loader import load_policy_text

    doc = {
        "name": "checkstream-request",
        "version": "1",
        "defaults": {"leetspeak": True},
        "rules": [{
            "name": REQUEST_BAN_RULE,
            "phases": ["midstream"],
            "trigger": {"phrases": list(phrases)},
            "actions": [{"stop": {"message": REQUEST_BAN_MESSAGE}}],
        }],
    }  # fmt: skip
    return Guard(load_policy_text(yaml.safe_dump(doc), file="<checkstream_ban>"))


def summary(bans: RequestBans, cached: bool, full_evidence: bool) -> dict[str, Any]:
    """What the events log and the decision record say about a request's list: its hash,
    size and cost; the phrases themselves only under full evidence."""
    out: dict[str, Any] = {
        "sha256": bans.digest,
        "phrases": len(bans.phrases),
        "sequences": bans.num_sequences,
        "truncated": len(bans.truncated),
        "cached": cached,
        "compile_ms": round(bans.compile_ms, 3),
    }
    if full_evidence:
        out["text"] = list(bans.phrases)
    return out
