"""Where a decision log lives on disk: the active file, its rotated segments, head and lock files.

For ``decisions.jsonl`` the writer appends to ``decisions.jsonl`` itself; when it rotates, the
active file is renamed to the next numbered segment (``decisions-000001.jsonl``,
``decisions-000002.jsonl``, ...) and a new active file is started. Segments are never renamed
again, so a copy of the directory taken at any moment is a prefix of the chain plus the active
file. ``decisions.jsonl.head`` holds the last sealed (seq, hash), which is what makes a file cut
at a line boundary detectable; ``decisions.jsonl.lock`` keeps a second writer out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Tail",
    "head_path",
    "lock_path",
    "log_files",
    "next_segment_path",
    "read_tail",
    "segment_paths",
]

_CHUNK = 64 * 1024


def _segment_pattern(active: Path) -> re.Pattern[str]:
    return re.compile(re.escape(active.stem) + r"-(\d{6,})" + re.escape(active.suffix) + r"\Z")


def segment_paths(active: Path) -> list[Path]:
    """Rotated segments of the log whose active file is ``active``, oldest first."""
    pattern = _segment_pattern(active)
    found: list[tuple[int, Path]] = []
    if active.parent.is_dir():
        for candidate in active.parent.iterdir():
            match = pattern.match(candidate.name)
            if match and candidate.is_file():
                found.append((int(match.group(1)), candidate))
    return [path for _, path in sorted(found)]


def log_files(active: Path) -> list[Path]:
    """Every file of the log in chain order: segments, then the active file if it exists."""
    files = segment_paths(active)
    if active.is_file():
        files.append(active)
    return files


def next_segment_path(active: Path) -> Path:
    pattern = _segment_pattern(active)
    segments = segment_paths(active)
    index = int(pattern.match(segments[-1].name).group(1)) + 1 if segments else 1  # type: ignore[union-attr]
    return active.with_name(f"{active.stem}-{index:06d}{active.suffix}")


def head_path(active: Path) -> Path:
    return active.with_name(active.name + ".head")


def lock_path(active: Path) -> Path:
    return active.with_name(active.name + ".lock")


@dataclass(frozen=True, slots=True)
class Tail:
    """The end of a log file: its last complete line and anything after it (a torn write)."""

    size: int
    last_line: bytes | None  # without its newline
    last_line_offset: int
    fragment: bytes  # bytes after the last newline; b"" when the file ends cleanly
    fragment_offset: int


def read_tail(path: Path) -> Tail:
    """Read backwards from the end of ``path`` until the last complete line is found."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        buf = b""
        pos = size
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            last_nl = buf.rfind(b"\n")
            if last_nl != -1 and buf.rfind(b"\n", 0, last_nl) != -1:
                break
    last_nl = buf.rfind(b"\n")
    if last_nl == -1:
        return Tail(size, None, 0, buf, pos)
    start = buf.rfind(b"\n", 0, last_nl) + 1  # 0 when the line starts the file
    return Tail(
        size=size,
        last_line=buf[start:last_nl],
        last_line_offset=pos + start,
        fragment=buf[last_nl + 1 :],
        fragment_offset=pos + last_nl + 1,
    )
