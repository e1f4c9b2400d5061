"""Policy test cases: expected decisions per input, run by ``checkstream policy test`` and CI.

A cases file::

    cases:
      - name: card number is redacted
        input: "my card is 4111 1111 1111 1111"
        phase: output            # output (default) | ingress | egress
        context: {tenant: acme}  # optional request facts for context triggers
        expect:
          decision: redact       # output: pass|redact|stop; ingress: pass|modify|block;
                                 # egress: pass|disclaimer
          rules: [pii-card]      # exactly the enforce-mode rules that fired (optional)
          shadow: []             # exactly the shadow rules that fired (optional)
          output: "my card is [CREDIT_CARD]"   # the text after redaction (optional)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from checkstream.policy.errors import PolicyError
from checkstream.policy.policyset import PolicySet
from checkstream.policy.yamlsource import load_yaml

if TYPE_CHECKING:
    from checkstream.engine import Guard


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseContext(_Model):
    tenant: str = "default"
    model: str = "test-model"
    endpoint: str = "/v1/chat/completions"
    metadata: dict[str, str] = Field(default_factory=dict)


class CaseMessage(_Model):
    role: str
    content: str


class Expect(_Model):
    decision: Literal["pass", "redact", "stop", "modify", "block", "disclaimer"]
    rules: tuple[str, ...] | None = None
    shadow: tuple[str, ...] | None = None
    output: str | None = None


class Case(_Model):
    name: str
    phase: Literal["output", "ingress", "egress"] = "output"
    input: str | None = None
    messages: tuple[CaseMessage, ...] | None = None
    context: CaseContext = CaseContext()
    expect: Expect


class CasesFile(_Model):
    cases: tuple[Case, ...] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)


def load_cases(path: str | Path) -> list[Case]:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read cases file: {exc}", file=file) from exc
    data, lines = load_yaml(text, file)
    try:
        cases = CasesFile.model_validate(data).cases
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        raise PolicyError(
            err["msg"],
            file=file,
            line=lines.line_of(loc),
            field=".".join(str(p) for p in loc) or None,
        ) from None
    for index, case in enumerate(cases):
        if (case.input is None) == (case.messages is None):
            raise PolicyError(
                "give exactly one of input, messages",
                file=file,
                line=lines.line_of(("cases", index)),
                field=f"cases[{index}]",
            )
        if case.messages is not None and case.phase != "ingress":
            raise PolicyError(
                "messages are only for phase ingress",
                file=file,
                line=lines.line_of(("cases", index)),
                field=f"cases[{index}]",
            )
    return list(cases)


def run_case(guard: Guard, case: Case, *, chunks: Sequence[str] | None = None) -> CaseResult:
    """Run one case. ``chunks`` (output phase) streams the input in those pieces instead."""
    from checkstream.engine import ChatMessage, RequestContext

    c = case.context
    ctx = RequestContext(f"case:{case.name}", c.tenant, c.endpoint, c.model, dict(c.metadata))
    text: str | None
    decision: str
    if case.phase == "ingress":
        messages = (
            [ChatMessage(m.role, m.content) for m in case.messages]
            if case.messages is not None
            else [ChatMessage("user", case.input or "")]
        )
        ing = guard.ingress(messages, ctx)
        decision = ing.action
        hits = ing.hits
        text = ing.messages[-1].content if ing.messages else ""
    elif case.phase == "egress":
        eg = guard.egress(case.input or "", ctx)
        decision = "disclaimer" if eg.prepend or eg.append else "pass"
        hits = eg.hits
        text = eg.prepend + (case.input or "") + eg.append
    else:
        sg = guard.stream(ctx)
        pieces = list(chunks) if chunks is not None else [case.input or ""]
        released = "".join(sg.feed(piece).text for piece in pieces) + sg.finish().text
        hits = sg.hits
        text = released
        if sg.stopped:
            decision = "stop"
        elif any(h.mode == "enforce" and "redact" in h.actions for h in hits):
            decision = "redact"
        else:
            decision = "pass"
    enforce = sorted({h.rule for h in hits if h.mode == "enforce"})
    shadow = sorted({h.rule for h in hits if h.mode == "shadow"})
    problems: list[str] = []
    expect = case.expect
    if decision != expect.decision:
        problems.append(f"decision {decision!r}, expected {expect.decision!r}")
    if expect.rules is not None and enforce != sorted(set(expect.rules)):
        problems.append(f"rules {enforce}, expected {sorted(set(expect.rules))}")
    if expect.shadow is not None and shadow != sorted(set(expect.shadow)):
        problems.append(f"shadow rules {shadow}, expected {sorted(set(expect.shadow))}")
    if expect.output is not None and text != expect.output:
        problems.append(f"output {text!r}, expected {expect.output!r}")
    return CaseResult(
        case.name, not problems, problems, enforce + [f"{s} (shadow)" for s in shadow]
    )


def run_cases(
    pset: PolicySet, cases: Sequence[Case], *, registry: Any | None = None
) -> list[CaseResult]:
    from checkstream.engine import Guard

    guard = Guard(pset, registry)
    return [run_case(guard, case) for case in cases]
