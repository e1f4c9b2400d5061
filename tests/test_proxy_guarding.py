"""The proxy's per-request guard state (``checkstream.proxy.guarding``)."""

from __future__ import annotations

from checkstream.engine import Guard, RequestContext
from checkstream.policy.loader import load_policy_text
from checkstream.proxy.config import GuardrailsConfig, MidstreamConfig
from checkstream.proxy.guarding import GuardSession
from proxy_helpers import STOP_AND_REDACT

GUARD = Guard(load_policy_text(STOP_AND_REDACT.format(name="guarding")))


def test_concurrent_streams_get_spread_classifier_check_offsets() -> None:
    # Streams that receive their tokens together (requests sent at once, a batch decoded in
    # lockstep) must not all launch their classifier windows on the same token.
    settings = GuardrailsConfig(midstream=MidstreamConfig(check_interval=8))
    offsets = []
    for i in range(8):
        session = GuardSession(GUARD, RequestContext(f"r{i}", "default", "chat", "m", {}),
                               settings)
        stream = session.channel(("choice", 0)).stream
        assert stream is not None and stream.check_interval == 8
        offsets.append(stream.check_offset)
    assert sorted(offsets) == list(range(8))
