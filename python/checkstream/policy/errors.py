"""The one exception a policy load raises: it names the file, line, rule and field at fault."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy file (or set of files) that cannot be loaded.

    Every load problem is raised, never skipped: a half-understood policy must not serve traffic.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.rule = rule
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [where]
        if self.rule is not None:
            parts.append(f"rule {self.rule!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return f"{': '.join(parts)}: {self.message}"
