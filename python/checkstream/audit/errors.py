"""Errors raised by the decision log. All derive from :class:`AuditError`."""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuditKeyError",
    "CanonicalError",
    "LogClosedError",
    "LogCorruptError",
    "LogInUseError",
]


class AuditError(Exception):
    """Base class of every decision-log error."""


class CanonicalError(AuditError, ValueError):
    """A value has no canonical JSON form; ``path`` says where (e.g. ``$.hits[2].score``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class AuditKeyError(AuditError, ValueError):
    """A key is missing, malformed, of the wrong kind, or not the key the log was sealed with."""


class LogCorruptError(AuditError):
    """The log on disk cannot be continued (its last complete record fails its own check)."""


class LogInUseError(AuditError):
    """Another process holds the log open for writing."""


class LogClosedError(AuditError, RuntimeError):
    """``append`` or ``flush`` was called after ``close``."""
