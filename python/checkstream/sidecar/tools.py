"""Tool-call control: guarded tool arguments are steered while the JSON is being generated.

A :class:`ToolTracker` follows one guarded request's detokenised output (seeded with the tail
of its prompt). When the output opens the string value of a guarded argument
(``"to": "`` inside a ``send_email`` call), the value is no longer the model's to choose: the
tracker forces, token by token, the allowed value the model ranks highest (or the configured
replacement), closes the string, and, when that overrode the model's own choice, appends
``"_checkstream_modified": true`` to the object so that the consumer sees the rewrite. Inside
any argument value, the configured ``blocked_phrases`` (injected instructions) are masked by a
token masker, like banned phrases elsewhere.

:func:`rewrite_tool_call` applies the same rules to a finished tool call (for callers that get
whole calls, e.g. after a tool parser).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checkstream.sidecar.config import ToolArgumentRule, ToolControl

if TYPE_CHECKING:
    import torch

    from checkstream._core import TokenMasker

MODIFIED_KEY = "_checkstream_modified"
# The end of `"key": "` with the key captured: a string value has just been opened.
_OPENED = re.compile(r'"([A-Za-z_][\w.-]*)"\s*:\s*"$')
# The tool's name, in the shapes models emit: {"name": ...}, {"tool": ...}, {"function": ...}.
_TOOL_NAME = re.compile(r'"(?:name|tool|function|tool_name)"\s*:\s*"([^"\\]+)"')
_TAIL = 512


@dataclass(frozen=True)
class CompiledTools:
    config: ToolControl
    encode: Callable[[str], list[int]]
    masker: TokenMasker | None  # blocked phrases, active inside argument values only

    def rule(self, tool: str | None, argument: str) -> ToolArgumentRule | None:
        rules = self.config.arguments
        if tool is not None and f"{tool}.{argument}" in rules:
            return rules[f"{tool}.{argument}"]
        return rules.get(f"*.{argument}")


@dataclass
class ToolTracker:
    tools: CompiledTools
    detokenize: Callable[[Sequence[int]], str]
    text: str = ""
    in_argument: bool = False
    tool_state: int = 0
    forced: list[int] = field(default_factory=list)
    pending_rule: tuple[str | None, str, ToolArgumentRule] | None = None
    modified: bool = False
    forcing_value: bool = False
    forced_value: str = ""
    pending_event: dict[str, Any] | None = None
    _escape: bool = False

    def __post_init__(self) -> None:
        masker = self.tools.masker
        self.tool_state = masker.start_state() if masker is not None else 0

    def feed_tokens(self, tokens: Sequence[int]) -> None:
        for tok in tokens:
            self._feed_one(int(tok))

    def _feed_one(self, tok: int) -> None:
        piece = self.detokenize([tok])
        if self.forced:
            if tok == self.forced[0]:
                self.forced.pop(0)
                if not self.forced:
                    self._forced_done()
            else:
                # Something else won the row (another processor); stop forcing, record it.
                self.forced.clear()
                self.pending_event = {"action": "forcing_interrupted", "token": tok}
        elif self.in_argument:
            self._scan_value(piece, tok)
        self.text = (self.text + piece)[-_TAIL:]
        if not self.forced and not self.in_argument:
            self._detect_opening()

    def _scan_value(self, piece: str, tok: int) -> None:
        for ch in piece:
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self.in_argument = False
                return
        masker = self.tools.masker
        if masker is not None and tok < masker.vocab_size:
            self.tool_state = masker.walk(self.tool_state, [tok])

    def _detect_opening(self) -> None:
        m = _OPENED.search(self.text)
        if m is None:
            return
        argument = m.group(1)
        names = _TOOL_NAME.findall(self.text[: m.start()])
        tool = names[-1] if names else None
        rule = self.tools.rule(tool, argument)
        if rule is not None and not argument.startswith("_checkstream"):
            self.pending_rule = (tool, argument, rule)
        else:
            self.in_argument = True
            self._escape = False
            masker = self.tools.masker
            self.tool_state = masker.start_state() if masker is not None else 0

    def next_forced(self, row_logits: torch.Tensor) -> int | None:
        """The token this row must produce next, if a guarded value is being written."""
        if self.pending_rule is not None:
            tool, argument, rule = self.pending_rule
            self.pending_rule = None
            candidates = [rule.replacement] if rule.replacement else list(rule.allow)
            encoded = [self.tools.encode(v + '"') for v in candidates]
            best = max(
                range(len(candidates)),
                key=lambda i: float(row_logits[encoded[i][0]]) if encoded[i] else float("-inf"),
            )
            self.forced = list(encoded[best])
            self.forced_value = candidates[best]
            self.forcing_value = True
            self.modified = False
            self.pending_event = {"action": "argument_forced", "tool": tool, "argument": argument}
        if not self.forced:
            return None
        token = self.forced[0]
        if self.forcing_value and int(row_logits.argmax()) != token:
            self.modified = True
        return token

    def _forced_done(self) -> None:
        if self.forcing_value:
            self.forcing_value = False
            if self.modified:
                self.forced = list(self.tools.encode(f', "{MODIFIED_KEY}": true'))
                self.pending_event = {
                    "action": "argument_rewritten",
                    "value": self.forced_value,
                    "modified": True,
                }
            else:
                self.pending_event = {
                    "action": "argument_allowed",
                    "value": self.forced_value,
                    "modified": False,
                }


# --------------------------------------------------------------------------- finished calls


def _violations(
    tools: ToolControl, tool: str | None, args: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fixed = dict(args)
    findings: list[dict[str, Any]] = []
    for name, value in args.items():
        rules = tools.arguments
        rule = rules.get(f"{tool}.{name}") if tool is not None else None
        rule = rule or rules.get(f"*.{name}")
        if rule is not None and value not in rule.allow:
            fixed[name] = rule.replacement or rule.allow[0]
            findings.append({"argument": name, "reason": "not in allow-list"})
            continue
        if isinstance(value, str):
            lowered = value.lower()
            for phrase in tools.blocked_phrases:
                if phrase.lower() in lowered:
                    fixed[name] = re.sub(re.escape(phrase), "[BLOCKED]", value, flags=re.I)
                    findings.append({"argument": name, "reason": f"blocked phrase {phrase!r}"})
                    break
    return fixed, findings


def rewrite_tool_call(
    call: Mapping[str, Any], tools: ToolControl
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Applies the tool rules to a finished call; returns the call and what was changed.

    Accepts the OpenAI shape (``{"name": ..., "arguments": <dict or JSON string>}``, optionally
    under ``"function"``) and the flat shape of the spec (``{"tool": ..., <arguments>}``).
    """
    if not isinstance(call, Mapping):
        raise ValueError(f"a tool call must be a JSON object, got {type(call).__name__}")
    out = dict(call)
    if isinstance(call.get("function"), Mapping):
        inner, findings = rewrite_tool_call(call["function"], tools)
        out["function"] = inner
        if findings:
            out[MODIFIED_KEY] = True
        return out, findings
    if "arguments" in call:
        raw = call["arguments"]
        as_text = isinstance(raw, str)
        try:
            args = json.loads(raw) if as_text else raw
        except json.JSONDecodeError as err:
            raise ValueError(f"tool call arguments are not valid JSON: {err}") from None
        if not isinstance(args, Mapping):
            raise ValueError("tool call arguments must be a JSON object")
        fixed, findings = _violations(tools, call.get("name"), args)
        if findings:
            fixed[MODIFIED_KEY] = True
            out["arguments"] = json.dumps(fixed) if as_text else fixed
        return out, findings
    tool = call.get("tool")
    args = {k: v for k, v in call.items() if k != "tool"}
    fixed, findings = _violations(tools, tool if isinstance(tool, str) else None, args)
    if findings:
        out.update(fixed)
        out[MODIFIED_KEY] = True
    return out, findings
