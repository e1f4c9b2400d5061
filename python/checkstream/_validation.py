"""Shared wording of pydantic validation errors in configuration messages."""

from __future__ import annotations

from pydantic import ValidationError


def error_lines(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error as ``(dotted field path, message)``; an empty path reads ``(top level)``."""
    return [
        (".".join(str(p) for p in err["loc"]) or "(top level)", err["msg"])
        for err in exc.errors()
    ]
