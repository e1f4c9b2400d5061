"""Provider wire formats: one codec per API the proxy serves."""

from __future__ import annotations

from checkstream.proxy.codecs.anthropic_messages import AnthropicMessagesCodec
from checkstream.proxy.codecs.base import Codec, PromptSlot, StreamTranslator, UpstreamProtocolError
from checkstream.proxy.codecs.openai_chat import OpenAIChatCodec
from checkstream.proxy.codecs.openai_completions import OpenAICompletionsCodec
from checkstream.proxy.codecs.openai_responses import OpenAIResponsesCodec

CODECS: dict[str, Codec] = {
    c.path: c
    for c in (
        OpenAIChatCodec(),
        OpenAICompletionsCodec(),
        OpenAIResponsesCodec(),
        AnthropicMessagesCodec(),
    )
}

__all__ = [
    "CODECS",
    "AnthropicMessagesCodec",
    "Codec",
    "OpenAIChatCodec",
    "OpenAICompletionsCodec",
    "OpenAIResponsesCodec",
    "PromptSlot",
    "StreamTranslator",
    "UpstreamProtocolError",
]
