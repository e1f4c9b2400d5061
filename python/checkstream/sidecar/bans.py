"""Compiling the sidecar's token maskers from its config, its policy set and the tokenizer.

Three maskers, all over the served model's token ids:

- **bans**: phrases that must never be generated (the config's ``logit_masking.phrases``, the
  ``banned_tokens_file`` and the policy set's enforced stop/redact phrase rules), expanded by
  :mod:`checkstream.masking` into every token sequence the tokenizer can produce for them;
- **risk**: phrases whose appearance raises a request's running risk (the config's
  ``risk_phrases`` and the policy's ``adapt_decoding`` phrase rules);
- **tool**: injected instructions masked inside tool-call argument values.

Requests' own ban lists (``checkstream_ban``) are compiled on demand by the same expansion, see
:mod:`checkstream.sidecar.request_bans`.

Which policy rules count is read off the compiled :class:`~checkstream.policy.PolicySet`; the
policy semantics themselves stay in the policy package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from checkstream.sidecar.config import EngineOptions, SidecarConfigError
from checkstream.sidecar.request_bans import RequestBanCompiler
from checkstream.sidecar.tools import CompiledTools

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from checkstream._core import TokenMasker
    from checkstream.masking.spelling import TokenSpelling
    from checkstream.policy import PolicySet


@dataclass(frozen=True)
class PolicyDerived:
    """What the sidecar takes from a policy set."""

    ban_phrases: tuple[str, ...] = ()
    risk_phrases: tuple[str, ...] = ()
    safe_temperature: float | None = None
    safe_top_p: float | None = None


def from_policy_set(policy_set: PolicySet) -> PolicyDerived:
    """Phrase rules the sidecar can enforce in the sampler.

    A rule that fires on any one of its phrases (a phrase list, or phrase lists under ``any``)
    and stops or redacts midstream, in enforce mode, is a ban; such a rule with
    ``adapt_decoding`` is a risk signal, and its action's values become safe mode (the most
    conservative one when several rules give one).
    """
    from checkstream.policy.policyset import AnyNode, PhraseLeaf

    def sufficient_phrases(node: Any) -> list[str]:
        """Phrases any one of which fires the trigger on its own (through ``any`` only)."""
        if isinstance(node, PhraseLeaf):
            return list(node.terms)
        if isinstance(node, AnyNode):
            return [t for child in node.children for t in sufficient_phrases(child)]
        return []

    bans: list[str] = []
    risks: list[str] = []
    temps: list[float] = []
    top_ps: list[float] = []
    for rule in policy_set.rules_for("midstream"):
        terms = sufficient_phrases(rule.trigger)
        if not terms or rule.mode != "enforce":
            continue
        kinds = rule.action_kinds
        if "stop" in kinds or "redact" in kinds:
            bans.extend(terms)
        adapt = rule.action("adapt_decoding")
        if adapt is not None:
            risks.extend(terms)
            temperature = getattr(adapt, "temperature", None)
            top_p = getattr(adapt, "top_p", None)
            if temperature is not None:
                temps.append(float(temperature))
            if top_p is not None:
                top_ps.append(float(top_p))
    return PolicyDerived(
        tuple(dict.fromkeys(bans)),
        tuple(dict.fromkeys(risks)),
        min(temps) if temps else None,
        min(top_ps) if top_ps else None,
    )


def load_tokenizer(path: str) -> Tokenizer:
    """A ``tokenizers`` tokenizer from a model directory (``tokenizer.json``) or file."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if file.is_file():
        return Tokenizer.from_file(str(file))
    try:  # a hub id or a slow-only tokenizer: let transformers convert it
        from transformers import AutoTokenizer

        backend = AutoTokenizer.from_pretrained(path).backend_tokenizer
    except Exception as err:  # the message names the path; the cause is kept
        raise SidecarConfigError(f"cannot load a tokenizer from {path!r}: {err}") from err
    return backend  # type: ignore[no-any-return]


@dataclass
class CompiledBans:
    vocab_size: int
    ban_masker: TokenMasker | None
    risk_masker: TokenMasker | None
    tool_masker: TokenMasker | None
    tools: CompiledTools | None
    encode: Callable[[str], list[int]]
    detokenize: Callable[[Sequence[int]], str]
    last_tokens: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    num_ban_sequences: int = 0
    ban_sources: tuple[str, ...] = ()
    derived: PolicyDerived = PolicyDerived()
    # checkstream_ban lists, compiled on demand with the same tokenizer and vocabulary.
    requests: RequestBanCompiler | None = None

    @property
    def ban_start(self) -> int:
        return self.ban_masker.start_state() if self.ban_masker is not None else 0

    @property
    def risk_start(self) -> int:
        return self.risk_masker.start_state() if self.risk_masker is not None else 0


def _masker(sequences: Sequence[Sequence[int]], vocab_size: int) -> TokenMasker | None:
    from checkstream._core import TokenMasker

    kept = [list(s) for s in sequences if s and max(s) < vocab_size]
    if not kept:
        return None
    return TokenMasker(kept, vocab_size)


def compile_bans(
    options: EngineOptions,
    tokenizer: Tokenizer,
    vocab_size: int,
    policy_set: PolicySet | None = None,
) -> CompiledBans:
    """Builds every masker the options and policy call for (once, at engine start)."""
    from checkstream.masking.phrases import BannedSequences, phrase_sequences, unpadded
    from checkstream.masking.spelling import token_spelling

    tokenizer = unpadded(tokenizer)
    # The per-tokenizer byte index, built once and shared by every expansion below and by the
    # request lists compiled later (which then cost no index build on the first request).
    # A tokenizer family it cannot read leaves it None: phrase_sequences then raises its own
    # error for configured phrases, and a request list fails closed for that request.
    spelling: TokenSpelling | None
    try:
        spelling = token_spelling(tokenizer)
    except ValueError:
        spelling = None

    def expand(phrases: Sequence[str]) -> BannedSequences:
        return phrase_sequences(tokenizer, phrases, spelling=spelling)

    preventive = options.guardrails.preventive
    derived = from_policy_set(policy_set) if policy_set is not None else PolicyDerived()
    ban_seqs: list[tuple[int, ...]] = []
    sources: list[str] = []
    if preventive.enabled and preventive.logit_masking.enabled:
        masking = preventive.logit_masking
        phrases = [*masking.phrases, *derived.ban_phrases]
        if phrases:
            found = expand(phrases)
            ban_seqs.extend(found.sequences)
            sources.extend(found.sources)
        if masking.banned_tokens_file:
            from checkstream.masking import load_banned_tokens

            try:
                from_file = load_banned_tokens(
                    masking.banned_tokens_file, tokenizer=tokenizer, vocab_size=vocab_size
                )
            except (OSError, ValueError) as err:
                raise SidecarConfigError(f"banned_tokens_file: {err}") from None
            ban_seqs.extend(from_file.sequences)
            sources.extend(from_file.sources)
    adaptive = preventive.adaptive_decoding
    risk_phrases = [*adaptive.risk_phrases, *derived.risk_phrases]
    risk_seqs: list[tuple[int, ...]] = []
    if preventive.enabled and adaptive.enabled and risk_phrases:
        risk_seqs = list(expand(risk_phrases).sequences)
    tools_cfg = options.guardrails.tools

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    def detokenize(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=False))

    tool_masker = None
    tools = None
    if tools_cfg.enabled and (tools_cfg.arguments or tools_cfg.blocked_phrases):
        if tools_cfg.blocked_phrases:
            tool_masker = _masker(expand(tools_cfg.blocked_phrases).sequences, vocab_size)
        tools = CompiledTools(tools_cfg, encode, tool_masker)
    ban_masker = _masker(ban_seqs, vocab_size)
    last = np.unique(np.array([s[-1] for s in ban_seqs if s], dtype=np.int64))
    return CompiledBans(
        vocab_size=vocab_size,
        ban_masker=ban_masker,
        risk_masker=_masker(risk_seqs, vocab_size),
        tool_masker=tool_masker,
        tools=tools,
        encode=encode,
        detokenize=detokenize,
        last_tokens=last[last < vocab_size],
        num_ban_sequences=len(ban_seqs),
        ban_sources=tuple(dict.fromkeys(sources)),
        derived=derived,
        requests=RequestBanCompiler(tokenizer, vocab_size, spelling=spelling),
    )


def options_with_policy(options: EngineOptions, derived: PolicyDerived) -> EngineOptions:
    """Safe-mode values from the policy's adapt_decoding actions win over the defaults."""
    if derived.safe_temperature is None and derived.safe_top_p is None:
        return options
    adaptive = options.guardrails.preventive.adaptive_decoding
    safe = adaptive.safe_mode.model_copy(
        update={
            k: v
            for k, v in (
                ("temperature", derived.safe_temperature),
                ("top_p", derived.safe_top_p),
            )
            if v is not None
        }
    )
    adaptive = adaptive.model_copy(update={"safe_mode": safe})
    preventive = options.guardrails.preventive.model_copy(update={"adaptive_decoding": adaptive})
    guardrails = options.guardrails.model_copy(update={"preventive": preventive})
    return options.model_copy(update={"guardrails": guardrails})
