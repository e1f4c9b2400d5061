"""The provider-agnostic guard engine: policy sets applied to prompts and streamed output.

Adapters (proxy, sidecar) turn their protocol into :class:`ChatMessage` lists and text deltas,
and turn :class:`IngressResult` / :class:`StreamStep` / :class:`EgressResult` back into it.
"""

from checkstream.engine.guard import Guard
from checkstream.engine.stream import StreamGuard
from checkstream.engine.types import (
    ChatMessage,
    CheckRecord,
    DecodingParams,
    EgressResult,
    IngressResult,
    OutputResult,
    RequestContext,
    RuleHit,
    ScanTimeout,
    StreamStep,
)

__all__ = [
    "ChatMessage",
    "CheckRecord",
    "DecodingParams",
    "EgressResult",
    "Guard",
    "IngressResult",
    "OutputResult",
    "RequestContext",
    "RuleHit",
    "ScanTimeout",
    "StreamGuard",
    "StreamStep",
]
