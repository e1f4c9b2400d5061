"""Per-request options: ``SamplingParams.extra_args``, i.e. ``vllm_xargs`` over HTTP.

``vllm_xargs`` only carries flat values (a string, a number or a flat list of them; nested
lists are rejected by vLLM with a 400), so every option here is flat. Keys are namespaced with
``checkstream``; an unknown ``checkstream*`` key is an error rather than a silent no-op, because
a misspelt guardrail option must never pass as "guarded".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from checkstream.sidecar.config import EngineOptions

PREFIX = "checkstream"
KEYS = {
    "checkstream": "'on' or 'off' (or true/false): opt this request in or out",
    "checkstream_tag": "a label recorded with this request's events (e.g. a request id)",
    "checkstream_risk_threshold": "running risk at which safe mode starts (> 0)",
    "checkstream_safe_temperature": "temperature in safe mode (0 = greedy, <= 2)",
    "checkstream_safe_top_p": "top-p in safe mode (0 < p <= 1)",
    "checkstream_tools": "'on' or 'off': tool-call control for this request",
    "checkstream_ban": "a phrase or a flat list of phrases banned for this request only, on "
    "top of the configured ones",
}
# Per-request ban lists are compiled in the engine loop (on a cache miss), so they are bounded.
MAX_BAN_PHRASES = 16
MAX_BAN_PHRASE_CHARS = 64


def _switch(key: str, value: Any) -> Literal["on", "off"]:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float) and value in (0, 1):
        return "on" if value else "off"
    if isinstance(value, str) and value.strip().lower() in ("on", "off", "true", "false"):
        return "on" if value.strip().lower() in ("on", "true") else "off"
    raise ValueError(f"{key} must be 'on' or 'off', got {value!r}")


def _number(key: str, value: Any, lo: float, hi: float, lo_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    ok = (number > lo if lo_open else number >= lo) and number <= hi
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo:g} and <= {hi:g}"
        raise ValueError(f"{key} must be {bound}, got {value!r}")
    return number


def _ban_list(key: str, value: Any) -> tuple[str, ...]:
    """A phrase or a flat list of phrases: stripped, de-duplicated and sorted (the cache key)."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(
            f"{key} must be a string or a flat list of strings, got {type(value).__name__}"
        )
    if len(items) > MAX_BAN_PHRASES:
        raise ValueError(
            f"{key} has {len(items)} phrases; the limit is {MAX_BAN_PHRASES} per request"
        )
    phrases: list[str] = []
    for index, item in enumerate(items):
        where = key if isinstance(value, str) else f"{key}[{index}]"
        if not isinstance(item, str):
            raise ValueError(f"{where} must be a string (a flat list of strings), got {item!r}")
        phrase = item.strip()
        if not phrase:
            raise ValueError(f"{where} is empty or whitespace only")
        if len(phrase) > MAX_BAN_PHRASE_CHARS:
            raise ValueError(
                f"{where} is {len(phrase)} characters long; the limit is {MAX_BAN_PHRASE_CHARS}"
            )
        phrases.append(phrase)
    return tuple(sorted(set(phrases)))


@dataclass(frozen=True)
class RequestOptions:
    switch: Literal["on", "off"] | None = None
    tag: str | None = None
    risk_threshold: float | None = None
    safe_temperature: float | None = None
    safe_top_p: float | None = None
    tools: bool = True
    # checkstream_ban: stripped, de-duplicated and sorted phrases (empty: none).
    bans: tuple[str, ...] = ()

    @classmethod
    def parse(cls, extra: Mapping[str, Any] | None) -> RequestOptions:
        """Validates the request's ``checkstream*`` keys (ValueError names the key)."""
        if not extra:
            return cls()
        if not isinstance(extra, Mapping):
            raise ValueError(f"extra_args must be a mapping, got {type(extra).__name__}")
        values: dict[str, Any] = {}
        for key, value in extra.items():
            if not isinstance(key, str) or not key.startswith(PREFIX):
                continue  # another plugin's argument
            if key not in KEYS:
                known = ", ".join(sorted(KEYS))
                raise ValueError(f"unknown checkstream argument {key!r}; known: {known}")
            values[key] = value
        switch = _switch("checkstream", values["checkstream"]) if "checkstream" in values else None
        tag = values.get("checkstream_tag")
        if tag is not None and not isinstance(tag, str | int):
            raise ValueError(f"checkstream_tag must be a string, got {tag!r}")
        threshold = temperature = top_p = None
        if "checkstream_risk_threshold" in values:
            threshold = _number(
                "checkstream_risk_threshold", values["checkstream_risk_threshold"], 0.0, 1e9, True
            )
        if "checkstream_safe_temperature" in values:
            temperature = _number(
                "checkstream_safe_temperature",
                values["checkstream_safe_temperature"],
                0.0,
                2.0,
                False,
            )
        if "checkstream_safe_top_p" in values:
            top_p = _number(
                "checkstream_safe_top_p", values["checkstream_safe_top_p"], 0.0, 1.0, True
            )
        tools = True
        if "checkstream_tools" in values:
            tools = _switch("checkstream_tools", values["checkstream_tools"]) == "on"
        bans: tuple[str, ...] = ()
        if "checkstream_ban" in values:
            bans = _ban_list("checkstream_ban", values["checkstream_ban"])
            if bans and switch == "off":
                raise ValueError(
                    "checkstream_ban cannot be combined with checkstream: 'off' (a request "
                    "that bans phrases must be guarded)"
                )
        return cls(
            switch=switch,
            tag=None if tag is None else str(tag),
            risk_threshold=threshold,
            safe_temperature=temperature,
            safe_top_p=top_p,
            tools=tools,
            bans=bans,
        )

    def guarded(self, options: EngineOptions) -> bool:
        """Whether the engine's options and this request's switch put it under guard."""
        if options.requests == "opt_in":
            # A request that bans phrases of its own asks to be guarded.
            return self.switch == "on" or (self.switch is None and bool(self.bans))
        return not (self.switch == "off" and options.allow_opt_out)
