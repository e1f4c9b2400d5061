"""``vllm.general_plugins`` hook: refuse to start where vLLM would drop the guard silently.

vLLM's V1 model runner builds logits processors in ``build_logitsprocs``; with speculative
decoding enabled it skips every entry-point processor without a word, so checkstream-guarded
requests would be generated unguarded. vLLM runs general plugins in every process before the
model runner exists; this one wraps ``build_logitsprocs`` (in its module, and in the model
runner's namespace if that was imported already) so that an engine with checkstream enabled and
speculative decoding on the V1 runner fails to start with a message saying why. Engines without
checkstream in ``additional_config`` are untouched. (``VLLM_PLUGINS``, if set, must name
``checkstream`` for this hook to load.)
"""

from __future__ import annotations

import functools
import sys
from typing import Any

_WRAPPED = "_checkstream_guarded"


def _guard(build: Any) -> Any:
    if getattr(build, _WRAPPED, False):
        return build

    @functools.wraps(build)
    def build_logitsprocs(vllm_config: Any, *args: Any, **kwargs: Any) -> Any:
        from checkstream.sidecar.config import engine_options
        from checkstream.sidecar.processor import SPEC_DECODE_V1

        if getattr(vllm_config, "speculative_config", None) and engine_options(
            getattr(vllm_config, "additional_config", None)
        ):
            raise RuntimeError(SPEC_DECODE_V1)
        return build(vllm_config, *args, **kwargs)

    setattr(build_logitsprocs, _WRAPPED, True)
    return build_logitsprocs


def register() -> None:
    """Entry point of the ``vllm.general_plugins`` group (idempotent)."""
    import vllm.v1.sample.logits_processor as lp

    lp.build_logitsprocs = _guard(lp.build_logitsprocs)
    runner = sys.modules.get("vllm.v1.worker.gpu_model_runner")
    if runner is not None and hasattr(runner, "build_logitsprocs"):
        setattr(runner, "build_logitsprocs", _guard(runner.build_logitsprocs))  # noqa: B010
