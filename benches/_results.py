"""Writing one bench's section of benches/RESULTS.md, leaving the other benches' sections alone."""

from __future__ import annotations

from pathlib import Path

NEW_FILE = "# Benchmark results\n"


def move_section_last(path: Path, header: str, report: str) -> None:
    """Drops the ``header`` section (``## ...``) wherever it is and appends ``report``."""
    old = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE + "\n"
    blocks = old.split("\n## ")
    kept = [blocks[0]] + [b for b in blocks[1:] if "## " + b.splitlines()[0] != header]
    path.write_text("\n## ".join(kept).rstrip("\n") + "\n\n" + report, encoding="utf-8")


def replace_section(path: Path, header: str, section: str) -> None:
    """Replaces the ``header`` section where it stands (``section`` starts with ``header``),
    or appends it."""
    text = path.read_text() if path.exists() else NEW_FILE
    if header in text:
        start = text.index(header)
        nxt = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
