"""Release history: what each channel served, when, on whose say, and what a rollback goes back to.

A channel's history is an append-only list of events; nothing is ever deleted or edited, so the
history is itself the audit trail of policy changes. Actions:

* ``publish``: an uploaded bundle released on the channel (``POST /v1/bundles``);
* ``release``: an already stored version released on the channel (``POST .../release``), e.g.
  promoting what ``canary`` runs to ``stable``;
* ``rollback``: back to the release before the current one (``POST .../rollback``).

What a rollback goes back to is found by replaying the events as a stack: ``publish`` and
``release`` push, ``rollback`` pops. So after v1, v2, v3 two rollbacks give v2 then v1 (not v3,
which a naive "previous event" rule would flip back to). A version the channel rolled back from
and does not serve again is *withdrawn*; a node still running it is flagged as such.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["ACTIONS", "Action", "ReleaseEvent", "release_stack", "withdrawn_versions"]

Action = Literal["publish", "release", "rollback"]
ACTIONS: tuple[Action, ...] = ("publish", "release", "rollback")


@dataclass(frozen=True, slots=True)
class ReleaseEvent:
    id: int
    channel: str
    version: str  # the version the channel serves after this event
    at: float
    action: Action
    actor: str
    source: str | None = None
    """For a ``release``: the channel it was promoted from (if any); for a ``rollback``: the
    version rolled back from."""

    def to_json(self) -> dict[str, Any]:
        at = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")
        body: dict[str, Any] = {"id": self.id, "channel": self.channel, "version": self.version,
                                "at": at.replace("+00:00", "Z"), "by": self.actor,
                                "action": self.action}
        if self.source and self.action == "release":
            body["from_channel"] = self.source
        elif self.source and self.action == "rollback":
            body["rolled_back"] = self.source
        return body


def release_stack(events: Iterable[ReleaseEvent]) -> list[str]:
    """The channel's releases that a rollback can still return to, oldest first; the last one is
    what the channel serves."""
    stack: list[str] = []
    for event in events:
        if event.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(event.version)
    return stack


def withdrawn_versions(events: Iterable[ReleaseEvent]) -> set[str]:
    """Versions the channel rolled back from and does not serve or hold for a rollback now."""
    rolled_from: set[str] = set()
    stack: list[str] = []
    for event in events:
        if event.action == "rollback":
            if stack:
                rolled_from.add(stack.pop())
        else:
            stack.append(event.version)
    return rolled_from - set(stack)
