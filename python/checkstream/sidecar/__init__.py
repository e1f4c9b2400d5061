"""vLLM sidecar mode: logit masking, adaptive decoding and tool-call control in the sampler.

- :mod:`checkstream.sidecar.processor`: the ``vllm.logits_processors`` entry point (imports vLLM);
- :mod:`checkstream.sidecar.hf`: the same guard as a transformers ``LogitsProcessor``;
- :mod:`checkstream.sidecar.config`: ``sidecar-config.yaml`` and ``additional_config`` options;
- :mod:`checkstream.sidecar.serve`: ``checkstream sidecar serve``, the proxy app in front of
  vLLM's OpenAI server with the reactive guard from the same file (the merged safe stream).

This package's ``__init__`` imports neither torch nor vLLM, so the CLI and config validation work
without them.
"""

from checkstream.sidecar.config import (
    EngineOptions,
    SidecarConfig,
    SidecarConfigError,
    engine_options,
    load_sidecar_config,
)

__all__ = [
    "EngineOptions",
    "SidecarConfig",
    "SidecarConfigError",
    "engine_options",
    "load_sidecar_config",
]
